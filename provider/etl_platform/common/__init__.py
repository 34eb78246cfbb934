"""What every engine needs: the error root, one retry helper, logger/metrics protocols, catalog look-ups.

Plain Python, no Airflow: the transfer and partition engines import from here, never from each other.
"""
