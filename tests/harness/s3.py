"""An S3-compatible server for tests: moto's ThreadedMotoServer on a free 127.0.0.1 port, in this process.

Nothing external to configure or fall back from: the server is a thread of the test session, its buckets
live in memory and vanish with it. Code under test reaches it the way it reaches real S3 through Airflow:
an `aws` connection whose extras carry `endpoint_url` and (dummy) keys, given as an AIRFLOW_CONN_<ID>
env var in Airflow's JSON form:

    {"conn_type": "aws",
     "extra": {"aws_access_key_id": "testing", "aws_secret_access_key": "testing",
               "region_name": "us-east-1", "endpoint_url": "http://127.0.0.1:<port>"}}

(The amazon provider also takes the keys as login/password; extras keep every setting in one place.)
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

S3_REGION = "us-east-1"
S3_ACCESS_KEY_ID = "testing"
S3_SECRET_ACCESS_KEY = "testing"
S3_CONN_ID = "etl_test_s3"


@dataclass
class S3Server:
    """A running moto server; `endpoint_url` is what boto3/s3fs/Airflow connections point at."""

    host: str
    port: int
    _moto: Any = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self) -> Any:
        """A boto3 S3 client on this server (dummy keys, us-east-1)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=S3_REGION,
            aws_access_key_id=S3_ACCESS_KEY_ID,
            aws_secret_access_key=S3_SECRET_ACCESS_KEY,
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)  # us-east-1: no CreateBucketConfiguration
        return name

    def delete_bucket(self, name: str) -> None:
        """Delete the bucket and everything in it (a no-op if it is gone)."""
        client = self.client()
        try:
            paginator = client.get_paginator("list_object_versions")
            for page in paginator.paginate(Bucket=name):
                for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    client.delete_object(Bucket=name, Key=item["Key"], VersionId=item["VersionId"])
            client.delete_bucket(Bucket=name)
        except client.exceptions.NoSuchBucket:
            pass

    def airflow_conn_uri(self) -> str:
        """The value of an AIRFLOW_CONN_<ID> env var: an `aws` connection on this server (JSON form)."""
        return json.dumps(
            {
                "conn_type": "aws",
                "extra": {
                    "aws_access_key_id": S3_ACCESS_KEY_ID,
                    "aws_secret_access_key": S3_SECRET_ACCESS_KEY,
                    "region_name": S3_REGION,
                    "endpoint_url": self.endpoint_url,
                },
            }
        )

    def stop(self) -> None:
        if self._moto is not None:
            self._moto.stop()
            self._moto = None


def start_s3_server() -> S3Server:
    """Start moto's server on a free loopback port (port 0: the OS picks it, no race)."""
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    return S3Server(host, port, _moto=moto)


def bucket_name_for(test_name: str) -> str:
    """A unique, valid bucket name (3-63 chars: lower-case letters, digits, hyphens) naming the test."""
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{slug}-{secrets.token_hex(4)}" if slug else f"t-{secrets.token_hex(4)}"


@dataclass
class S3Bucket:
    """One test's own bucket, and the Airflow connection that reaches it."""

    server: S3Server
    name: str
    conn_id: str = S3_CONN_ID

    def url(self, key: str) -> str:
        return f"s3://{self.name}/{key.lstrip('/')}"

    @property
    def conn_uri(self) -> str:
        return self.server.airflow_conn_uri()

    @property
    def conn_env(self) -> dict[str, str]:
        """For run_dag(conn_env=...) / connections_env(): {conn_id: AIRFLOW_CONN value}."""
        return {self.conn_id: self.conn_uri}

    @property
    def env_var(self) -> str:
        return f"AIRFLOW_CONN_{self.conn_id.upper()}"


def create_s3_bucket(server: S3Server, test_name: str) -> S3Bucket:
    return S3Bucket(server, server.create_bucket(bucket_name_for(test_name)))
