"""dlt's sql_database MariaDB -> PostgreSQL load, run by benchmarks.source_methods.mysql_dlt in the
.venv-bench-dlt interpreter (dlt pins libraries differently from Airflow). Prints one JSON line.

URLs come from the environment (ETL_BENCH_MYSQL_URL, ETL_BENCH_DST_URL); only the timing of
pipeline.run() is reported, dlt's imports and set-up excluded.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from urllib.parse import urlsplit, urlunsplit


def _with_database(url: str, scheme: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((scheme, parts.netloc, f"/{database}", parts.query, ""))


def main() -> None:
    import dlt
    from dlt.sources.sql_database import sql_table

    args = json.loads(sys.argv[1])
    mysql = _with_database(os.environ["ETL_BENCH_MYSQL_URL"], "mysql+mysqldb", args["mysql_database"])
    dst = urlsplit(os.environ["ETL_BENCH_DST_URL"])
    netloc = dst.netloc
    if dst.password is None:  # dlt insists on a password; a trust-auth server ignores this one
        user, _, host = netloc.rpartition("@")
        netloc = f"{user or 'postgres'}:unused@{host}"
    schema, table = args["pg_table"].split(".", 1)
    table_rows = sql_table(
        credentials=mysql, table=args["mysql_table"], backend="pyarrow", chunk_size=100_000
    )
    pipeline = dlt.pipeline(
        pipeline_name=f"etl_bench_{args['run_id'].replace('-', '_')}",
        pipelines_dir=tempfile.mkdtemp(prefix="etl-bench-dlt-"),
        destination=dlt.destinations.postgres(
            credentials=urlunsplit(("postgresql", netloc, dst.path, "", ""))
        ),
        dataset_name=f"{schema}_dlt",
    )
    started = time.perf_counter()
    info = pipeline.run(table_rows, table_name=table, write_disposition="replace")
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "dlt_loads": len(info.loads_ids),
                "peak_rss_mb_override": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                "rss_source": "the dlt interpreter",
            }
        )
    )


if __name__ == "__main__":
    main()
