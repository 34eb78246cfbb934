"""The shared engine base (etl_platform.common): error branches, SQLSTATEs, the one retry helper."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from etl_platform.common.errors import (
    ConfigError,
    EtlError,
    TerminalError,
    TransientError,
    is_terminal,
    sqlstate_of,
    transient_sqlstate,
)
from etl_platform.common.retry import retry_with_backoff
from etl_platform.partitions.errors import PartitionConfigError, PartitionError, PartitionLockTimeout
from etl_platform.transfer.errors import (
    ChunkLoadError,
    SourceUnavailableError,
    StagingLostError,
    TransferConfigError,
    TransferError,
)
from harness import SchemaDb

# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "branch"),
    [
        (TransferConfigError("bad"), TerminalError),
        (PartitionConfigError("bad"), TerminalError),
        (ChunkLoadError("rejected", sqlstate="23505"), TerminalError),
        (StagingLostError("lost"), TransientError),
        (SourceUnavailableError("refused", retryable=True), TransientError),
        (PartitionLockTimeout("gave up"), TransientError),
    ],
)
def test_each_engine_error_sits_on_the_branch_its_meaning_says(error: EtlError, branch: type) -> None:
    assert isinstance(error, branch)
    assert is_terminal(error) is (branch is TerminalError)


def test_both_engines_share_one_root_and_config_errors_stay_value_errors() -> None:
    assert issubclass(TransferError, EtlError) and issubclass(PartitionError, EtlError)
    for config in (TransferConfigError, PartitionConfigError):
        assert issubclass(config, ConfigError) and issubclass(config, ValueError)
    assert issubclass(PartitionLockTimeout, PartitionError)


def test_an_instance_can_say_more_than_its_branch() -> None:
    # An unknown host will not resolve on a retry; a deadlocked chunk may load on one.
    assert is_terminal(SourceUnavailableError("no such host", retryable=False))
    assert not is_terminal(ChunkLoadError("deadlock", sqlstate="40P01"))
    assert is_terminal(ChunkLoadError("duplicate key", sqlstate="23505"))
    assert is_terminal(ChunkLoadError("no server error behind it"))
    assert not is_terminal(ValueError("not an engine error: Airflow's retries decide"))


@pytest.mark.parametrize(
    ("sqlstate", "transient"),
    [
        ("40P01", True),  # deadlock_detected
        ("40001", True),  # serialization_failure
        ("55P03", True),  # lock_not_available
        ("08006", True),  # connection_failure
        ("57014", True),  # query_canceled
        ("53100", True),  # disk_full
        ("23505", False),  # unique_violation
        ("22P02", False),  # invalid_text_representation
        ("55000", False),  # object_not_in_prerequisite_state: same class as 55P03, not transient
        (None, False),
    ],
)
def test_transient_sqlstates(sqlstate: str | None, transient: bool) -> None:
    assert transient_sqlstate(sqlstate) is transient


def test_a_server_error_keeps_its_sqlstate(dst_db: SchemaDb) -> None:
    with dst_db.connect() as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute("SELECT 1/0")
    assert sqlstate_of(caught.value) == "22012"  # division_by_zero, from the real server
    error = PartitionError("wrapped", sqlstate=sqlstate_of(caught.value))
    assert error.sqlstate == "22012" and str(error) == "wrapped"
    assert sqlstate_of(ValueError("not a server error")) is None
    assert EtlError("no cause").sqlstate is None


# -- retry_with_backoff --------------------------------------------------------------------------


class Flaky:
    """Fails with `error` on the first `failures` attempts, then returns the attempt number."""

    def __init__(self, failures: int, error: type[Exception] = KeyError) -> None:
        self.failures = failures
        self.error = error
        self.attempts: list[int] = []

    def __call__(self, attempt: int) -> int:
        self.attempts.append(attempt)
        if attempt <= self.failures:
            raise self.error(f"failure {attempt}")
        return attempt


def test_retries_wait_backoff_doubled_each_time_and_report_each_retry() -> None:
    work, slept, retried = Flaky(3), [], []
    result = retry_with_backoff(
        work,
        attempts=5,
        backoff_seconds=0.5,
        retry_on=KeyError,
        on_retry=lambda n, delay, exc: retried.append((n, delay, str(exc))),
        sleep=slept.append,
    )
    assert result == 4
    assert work.attempts == [1, 2, 3, 4]
    assert slept == [0.5, 1.0, 2.0]
    assert retried == [(1, 0.5, "'failure 1'"), (2, 1.0, "'failure 2'"), (3, 2.0, "'failure 3'")]


def test_after_the_last_attempt_give_up_names_the_error_raised() -> None:
    work, slept = Flaky(9), []

    def give_up(attempts: int, exc: BaseException) -> Exception:
        return PartitionLockTimeout(f"gave up after {attempts} attempts ({exc})")

    with pytest.raises(PartitionLockTimeout, match=r"gave up after 3 attempts \('failure 3'\)") as caught:
        retry_with_backoff(
            work, attempts=3, backoff_seconds=0.1, retry_on=KeyError, give_up=give_up, sleep=slept.append
        )
    assert work.attempts == [1, 2, 3]
    assert slept == pytest.approx([0.1, 0.2])
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_without_give_up_the_last_error_propagates() -> None:
    work: Any = Flaky(9)
    with pytest.raises(KeyError, match="failure 2"):
        retry_with_backoff(work, attempts=2, backoff_seconds=0, retry_on=KeyError, sleep=lambda s: None)


def test_other_errors_are_not_retried() -> None:
    work, slept = Flaky(1, error=ValueError), []
    with pytest.raises(ValueError, match="failure 1"):
        retry_with_backoff(work, attempts=5, backoff_seconds=1, retry_on=KeyError, sleep=slept.append)
    assert work.attempts == [1] and slept == []


def test_one_attempt_never_sleeps_and_zero_attempts_are_refused() -> None:
    slept: list[float] = []
    assert (
        retry_with_backoff(Flaky(0), attempts=1, backoff_seconds=5, retry_on=KeyError, sleep=slept.append)
        == 1
    )
    assert slept == []
    with pytest.raises(ValueError, match="attempts must be at least 1, got 0"):
        retry_with_backoff(Flaky(0), attempts=0, backoff_seconds=5, retry_on=KeyError)


# -- catalog reads -------------------------------------------------------------------------------


def test_catalog_reads_never_commit_or_undo_the_callers_transaction(dst_db: SchemaDb) -> None:
    from etl_platform.common.catalog import read_row, resolve_table
    from etl_platform.partitions.catalog import load_partitioned_table

    t, p = dst_db.table("notes"), dst_db.table("ev")
    notes, ev = sql.Identifier(dst_db.schema, "notes"), sql.Identifier(dst_db.schema, "ev")
    count = sql.SQL("SELECT count(*) FROM {}").format(notes)
    with dst_db.connect() as admin:
        admin.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, note text)").format(notes))
        admin.execute(sql.SQL("CREATE TABLE {} (at date NOT NULL) PARTITION BY RANGE (at)").format(ev))
    with psycopg.connect(dst_db.conninfo) as conn:  # not autocommit, like the hooks' connections
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1, 'uncommitted')").format(notes))
        assert resolve_table(conn, t, "table").columns[1].name == "note"
        assert load_partitioned_table(conn, p).column == "at"
        assert read_row(conn, count) == (1,)  # the caller's row, still in its transaction
        with pytest.raises(ConfigError, match=r"table 'no\.such' does not exist"):
            resolve_table(conn, "no.such", "table")
        with pytest.raises(ConfigError, match="does not exist"):  # to_regclass refuses the name: a savepoint
            resolve_table(conn, '"unterminated', "table")
        assert (
            conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        )  # still usable, still open
        conn.rollback()
        assert read_row(conn, count) == (0,)  # nothing was committed on the way
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # a read of its own: closed


def test_a_relation_raises_its_engines_config_error_for_a_missing_column(dst_db: SchemaDb) -> None:
    from etl_platform.common.catalog import resolve_table
    from etl_platform.transfer import catalog as transfer_catalog

    t = dst_db.table("notes")
    with dst_db.connect() as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(sql.Identifier(dst_db.schema, "notes"))
        )
        with pytest.raises(
            TransferConfigError, match=r"key_column 'nope' is not a column of .*notes \(columns: id\)"
        ):
            transfer_catalog.resolve_table(conn, t, "table").require_column("nope", "key_column")
        with pytest.raises(PartitionConfigError, match=r"table '.*missing' does not exist"):
            resolve_table(conn, dst_db.table("missing"), "table", error=PartitionConfigError)


def test_a_config_error_from_the_server_keeps_its_sqlstate(dst_db: SchemaDb) -> None:
    from etl_platform.transfer.catalog import describe_query

    with dst_db.connect() as conn, pytest.raises(TransferConfigError, match="not a valid SELECT") as caught:
        describe_query(conn, "SELECT * FROM no_such_table")
    assert caught.value.sqlstate == "42P01"  # undefined_table
    assert is_terminal(caught.value)
