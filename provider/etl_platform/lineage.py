"""OpenLineage facets for what a transfer or a partition task did: datasets, schemas, column lineage,
output statistics and the query.

Dataset names come from the asset URIs `etl_platform.assets` builds (one normalization of hosts,
ports and names for both Airflow assets and lineage), rewritten to the OpenLineage naming spec:
``postgres://host:port`` + ``database.schema.table``, ``mysql://host:port`` + ``database.table``,
``file`` + path, ``s3://bucket`` + key. A ``source_sql`` is parsed by OpenLineage's own SQL parser
(what common.sql uses) for its input tables and column lineage.

Building facets never fails a task: `guarded` logs the first error of a task once, counts it in
StatsD (``etl.lineage.errors``) and returns empty lineage. Nothing here talks to a database.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from airflow.providers.common.compat.openlineage.facet import (
    ColumnLineageDatasetFacet,
    Dataset,
    Fields,
    InputDataset,
    InputField,
    OutputDataset,
    OutputStatisticsOutputDatasetFacet,
    SchemaDatasetFacet,
    SchemaDatasetFacetFields,
    SQLJobFacet,
)
from airflow.providers.openlineage.extractors import OperatorLineage
from openlineage.client.generated.column_lineage_dataset import Transformation  # not in common.compat

ERROR_METRIC = "etl.lineage.errors"
IDENTITY = "IDENTITY"  # the value is copied unchanged
TRANSFORMATION = "TRANSFORMATION"  # a transform (or an expression) computed it


@dataclass(frozen=True)
class DatasetId:
    namespace: str
    name: str


def dataset_id(uri: str) -> DatasetId:
    """The OpenLineage namespace and name of an asset URI built by `etl_platform.assets`."""
    parts = urlsplit(uri)
    path = [unquote(p) for p in parts.path.split("/") if p]
    if parts.scheme in ("postgres", "mysql"):
        expected = 3 if parts.scheme == "postgres" else 2
        if len(path) != expected or not parts.netloc:
            raise ValueError(f"asset URI {uri!r} does not name one {parts.scheme} table")
        return DatasetId(f"{parts.scheme}://{parts.netloc}", ".".join(path))
    if parts.scheme == "file":
        return DatasetId("file", unquote(parts.path))
    if parts.scheme == "s3":
        return DatasetId(f"s3://{parts.netloc}", unquote(parts.path).lstrip("/"))
    raise ValueError(f"asset URI {uri!r}: no OpenLineage naming for scheme {parts.scheme!r}")


@dataclass(frozen=True)
class TransferRecord:
    """What a transfer run recorded, in plain values: names, types, the column mapping, counts."""

    destination_uri: str | None  # None: the destination has no URI (a socket-directory host)
    source_uri: str | None = None  # a table or a single file; None for a query, many files, no URI
    source_sql: str | None = None
    # for source_sql: the asset URI of any table on the source's database (names its namespace and
    # the database a query's unqualified tables are in)
    source_database_uri: str | None = None
    dialect: str = "postgres"  # the source's SQL dialect, for the query facet and the parser
    source_columns: Sequence[tuple[str, str]] = ()  # (name, type) of the source table or query
    destination_columns: Sequence[tuple[str, str]] = ()  # (name, type) of the destination table
    mapping: Sequence[tuple[str, str]] = ()  # (source column, destination column), pass-through
    transformed: Sequence[str] = ()  # output columns a transform produced (empty: no transform)
    rows: int | None = None  # None on failure: nothing is known to have been written
    bytes: int | None = None
    file_count: int | None = None


def transfer_lineage(record: TransferRecord) -> OperatorLineage:
    """Inputs, the output (schema, column lineage, statistics) and the SQL job facet of a transfer.
    A side with no URI (its connection's host is a socket directory) is left out, like its asset."""
    inputs: list[Dataset] = []
    sources: dict[str, list[InputField]] = {}
    if record.source_uri is not None:
        source_id = dataset_id(record.source_uri)
        inputs.append(_input(source_id, record.source_columns))
        sources = _table_lineage(source_id, record)
    elif record.source_sql:
        query_inputs, sources = _query_lineage(record)
        inputs.extend(query_inputs)
    facets: dict[str, Any] = {}
    if record.destination_columns:
        facets["schema"] = _schema(record.destination_columns)
    if sources:
        facets["columnLineage"] = ColumnLineageDatasetFacet(
            fields={name: Fields(inputFields=fields) for name, fields in sources.items()}
        )
    output_facets: dict[str, Any] = {}
    if record.rows is not None:
        output_facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(
            rowCount=record.rows, size=record.bytes, fileCount=record.file_count
        )
    outputs: list[Dataset] = []
    if record.destination_uri is not None:
        output_id = dataset_id(record.destination_uri)
        outputs.append(
            OutputDataset(output_id.namespace, output_id.name, facets=facets, outputFacets=output_facets)
        )
    job_facets: dict[str, Any] = {}
    if record.source_sql:
        job_facets["sql"] = SQLJobFacet(query=record.source_sql, dialect=record.dialect)
    return OperatorLineage(inputs=inputs, outputs=outputs, job_facets=job_facets)


def _table_lineage(source: DatasetId, record: TransferRecord) -> dict[str, list[InputField]]:
    """Pass-through columns are identities; a transform's outputs are transformations of the columns
    of the same name, or of every source column when the transform made the name up."""
    if record.transformed:
        names = [name for name, _ in record.source_columns]
        return {
            out: [_field(source, name, TRANSFORMATION) for name in ([out] if out in names else names)]
            for out in record.transformed
        }
    return {dst: [_field(source, src, IDENTITY)] for src, dst in record.mapping}


def _query_lineage(record: TransferRecord) -> tuple[list[Dataset], dict[str, list[InputField]]]:
    """The query's tables and column origins, as OpenLineage's SQL parser reads them; unqualified
    names resolve on the source's database (PostgreSQL: in ``public``)."""
    from openlineage.common.sql import parse

    assert record.source_sql is not None
    if record.source_database_uri is None:  # the source has no URI: its tables cannot be named
        return [], {}
    where = dataset_id(record.source_database_uri)
    database = where.name.split(".", 1)[0]
    # MySQL's "schema" is the database: unqualified tables are in the connection's one.
    default_schema = database if record.dialect == "mysql" else "public"
    meta = parse([record.source_sql], dialect=record.dialect, default_schema=default_schema)
    if meta is None:
        return [], {}

    def table_id(table: Any) -> DatasetId:
        if record.dialect == "mysql":  # database.table; the parser calls the database a schema
            return DatasetId(where.namespace, f"{table.schema or database}.{table.name}")
        return DatasetId(
            where.namespace, f"{table.database or database}.{table.schema or 'public'}.{table.name}"
        )

    inputs: list[Dataset] = [_input(table_id(t), ()) for t in meta.in_tables]
    by_column: dict[str, list[tuple[DatasetId, str]]] = {}
    for lineage in meta.column_lineage:
        origins = [(table_id(c.origin), c.name) for c in lineage.lineage if c.origin is not None]
        by_column[lineage.descendant.name] = origins
    outputs = record.transformed or [dst for _, dst in record.mapping]
    sources_of = {dst: src for src, dst in record.mapping}
    # The parser names origins, not whether a column is an expression of them: no subtype unless a
    # transform ran (then every output is a transformation).
    subtype = TRANSFORMATION if record.transformed else None
    result: dict[str, list[InputField]] = {}
    for out in outputs:
        origins = by_column.get(sources_of.get(out, out), [])
        if origins:
            result[out] = [_field(ds, name, subtype) for ds, name in origins]
    return inputs, result


def partition_lineage(
    table_uri: str,
    columns: Sequence[tuple[str, str]],
    report: Mapping[str, Any],
) -> OperatorLineage:
    """The partitioned table as output (schema, rows moved out of the default when any moved); an
    archive's tables as outputs too; a drain also reads the table (its default partition)."""
    table = dataset_id(table_uri)
    facets: dict[str, Any] = {"schema": _schema(columns)} if columns else {}
    output_facets: dict[str, Any] = {}
    if report.get("rows_moved"):
        output_facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(
            rowCount=int(report["rows_moved"])
        )
    outputs: list[Dataset] = [
        OutputDataset(table.namespace, table.name, facets=facets, outputFacets=output_facets)
    ]
    database = table.name.split(".", 1)[0]
    for archived in report.get("archived") or ():
        outputs.append(OutputDataset(table.namespace, f"{database}.{archived}", facets=dict(facets)))
    inputs: list[Dataset] = []
    if report.get("moved"):
        inputs.append(InputDataset(table.namespace, table.name, facets=dict(facets)))
    return OperatorLineage(inputs=inputs, outputs=outputs)


def guarded(
    owner: Any,
    build: Callable[[], OperatorLineage],
    *,
    tags: Mapping[str, str],
    metrics: Any = None,
) -> OperatorLineage:
    """`build()`, or empty lineage when it raises: logged once per task (owner's logger) and counted."""
    try:
        return build()
    except Exception as exc:
        if not getattr(owner, "_lineage_error_logged", False):
            owner._lineage_error_logged = True
            owner.log.warning(
                "OpenLineage facets for %s not built (the task's result stands): %s: %s",
                tags.get("task_id", "?"),
                type(exc).__name__,
                exc,
            )
            if metrics is None:
                from airflow.sdk.observability.stats import Stats as metrics
            metrics.incr(ERROR_METRIC, 1, tags=dict(tags))
        return OperatorLineage()


def _input(ds: DatasetId, columns: Sequence[tuple[str, str]]) -> InputDataset:
    return InputDataset(ds.namespace, ds.name, facets={"schema": _schema(columns)} if columns else {})


def _schema(columns: Sequence[tuple[str, str]]) -> SchemaDatasetFacet:
    return SchemaDatasetFacet(
        fields=[
            SchemaDatasetFacetFields(name=name, type=type_, ordinal_position=i)
            for i, (name, type_) in enumerate(columns, start=1)
        ]
    )


def _field(ds: DatasetId, column: str, subtype: str | None) -> InputField:
    return InputField(
        ds.namespace, ds.name, column, transformations=[Transformation(type="DIRECT", subtype=subtype)]
    )


__all__ = [
    "ERROR_METRIC",
    "DatasetId",
    "TransferRecord",
    "dataset_id",
    "guarded",
    "partition_lineage",
    "transfer_lineage",
]
