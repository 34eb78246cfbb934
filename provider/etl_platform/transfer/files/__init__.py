"""Files on any fsspec filesystem as a transfer source (sources/files.py) or destination (export.py).

Small modules, one job each: where the files are (locate), which Arrow types a PostgreSQL column takes
(schema), streaming rows out of Parquet and CSV by position (parquet_stream, csv_stream), turning Arrow
into PostgreSQL CSV (encode), bad rows (rejects), and publishing files atomically (publish).
"""
