"""Every flag of the pipeline, in one PipelineOptions subclass (each with help).

The Flex Template's metadata.json mirrors this class; a test keeps them equal.
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Sequence
from typing import NoReturn

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    S3Options,
    StandardOptions,
)

from pipeline.warehouse.client import checked_endpoint, is_emulator
from pipeline.warehouse.config import WarehouseConfig
from pipeline.warehouse.manager import TableSettings
from pipeline.warehouse.schema import MAX_COLUMNS
from transforms.model.chain import ModelConfig
from transforms.model.normalize import STANDARD_COLUMNS
from transforms.model.route import DEFAULT_SOURCE, DEFAULT_SOURCE_ATTRIBUTE, SourceConfig
from transforms.model.validate import Limits

_DEFAULT_LIMITS = Limits()
AUTO_TABLE_MANAGEMENT_ENV = "BIGQUERY_AUTO_TABLE_MANAGEMENT"
WRITE_METHODS = ("FILE_LOADS", "STREAMING_INSERTS", "STORAGE_WRITE_API")
WRITE_MODES = ("append", "insert_missing_by_id")
# TIMESTAMP columns every event table has, whatever its events carry: the only columns a
# --partition_field can name and be sure to partition every table (sent_at and
# original_timestamp are missing from events without sentAt or a client timestamp).
PARTITION_FIELDS = ("timestamp", "received_at", "loaded_at", "uuid_ts")
# Segment's own columns (never FLOAT, so each may cluster); a table without one of them
# (``event`` outside track tables) is clustered on the others.
CLUSTERING_FIELDS = tuple(STANDARD_COLUMNS)
MAX_CLUSTERING_FIELDS = 4  # BigQuery's limit


class OptionError(ValueError):
    """An option that is wrong, or that would do nothing: refused before the run starts."""


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def auto_table_management_default() -> bool:
    """The specification's switch: BIGQUERY_AUTO_TABLE_MANAGEMENT=false turns management off."""
    return _flag(os.environ.get(AUTO_TABLE_MANAGEMENT_ENV, "true"))


class OpenTrackOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:  # noqa: ANN001 - Beam's signature
        parser.add_argument(
            "--input",
            help="File pattern of newline-delimited JSON events to load (local path, gs:// "
            "or s3://; .jsonl or .jsonl.gz). Segment batch envelopes are expanded.",
        )
        parser.add_argument(
            "--subscription",
            help="Pub/Sub subscription to stream from, projects/P/subscriptions/S (with "
            "--streaming).",
        )
        parser.add_argument(
            "--dedup_window_seconds",
            type=float,
            default=86_400.0,
            help="Streaming: a message id seen again within this much event time is dropped "
            "(default 24 h, like Segment's API). Older repeats are hidden by <table>_view.",
        )
        parser.add_argument(
            "--users_merge_interval_seconds",
            type=float,
            default=60.0,
            help="Streaming: how often the users rows gathered so far are MERGEd (default 60).",
        )
        parser.add_argument(
            "--schema_retry_delays",
            default="5,30",
            help="Streaming: seconds to wait before each retry of rows refused because a new "
            "column is not yet visible (comma-separated; default 5,30). Then: dead letter.",
        )
        parser.add_argument(
            "--schema_side_input",
            type=_flag,
            default=None,
            help="Streaming: refresh all managed schemas every cache TTL with a periodic "
            "impulse as a side input (default: true, except on the local DirectRunner, whose "
            "streaming mode cannot run PeriodicImpulse; there each worker's own schema cache, "
            "refreshed at the same TTL, serves).",
        )
        parser.add_argument(
            "--mutation_batch_seconds",
            type=float,
            default=1.0,
            help="Streaming: how long rows needing a schema change are gathered per table "
            "before the change is applied once for all of them (default 1).",
        )
        parser.add_argument(
            "--rewrite_drain_seconds",
            type=float,
            default=2.0,
            help="Streaming: margin for the longest bundle: a rewrite (widening to STRING) "
            "waits the schema cache TTL plus this after marking the table, so every worker's "
            "inserts already in flight land first (default 2).",
        )
        parser.add_argument(
            "--output_dir",
            help="Write the rows and dead letters as JSON lines under this directory "
            "(one file set per dataset.table) instead of loading them into BigQuery.",
        )
        parser.add_argument(
            "--source_name",
            default=DEFAULT_SOURCE,
            help="Source of events that name none; its snake_case is the dataset "
            f"(default {DEFAULT_SOURCE!r}).",
        )
        parser.add_argument(
            "--source_attribute",
            default=DEFAULT_SOURCE_ATTRIBUTE,
            help="Pub/Sub message attribute holding the source name; it wins over "
            f"--source_field (default {DEFAULT_SOURCE_ATTRIBUTE!r}; empty to ignore).",
        )
        parser.add_argument(
            "--source_field",
            default=None,
            help="Dotted path of an event field holding the source name, e.g. "
            "context.source (default: none).",
        )
        parser.add_argument(
            "--max_event_bytes",
            type=int,
            default=_DEFAULT_LIMITS.max_event_bytes,
            help="Largest single event accepted, in bytes (Segment: 32 KiB).",
        )
        parser.add_argument(
            "--max_batch_bytes",
            type=int,
            default=_DEFAULT_LIMITS.max_batch_bytes,
            help="Largest batch envelope accepted, in bytes (Segment: 500 KiB).",
        )
        parser.add_argument(
            "--max_depth",
            type=int,
            default=_DEFAULT_LIMITS.max_depth,
            help="Deepest nesting of objects/arrays accepted in an event.",
        )
        parser.add_argument(
            "--bigquery_project",
            default=None,
            help="Project of the destination datasets (default: --project).",
        )
        parser.add_argument(
            "--bigquery_endpoint",
            default=None,
            help="BigQuery API endpoint, e.g. http://127.0.0.1:9050 for the local emulator "
            "or an https:// regional/private endpoint (default: Google's); plain http:// "
            "only on a loopback address.",
        )
        parser.add_argument(
            "--bigquery_storage_endpoint",
            default=None,
            help="BigQuery Storage Write API endpoint as host:port, for "
            "--write_method=STORAGE_WRITE_API: the local emulator's gRPC port "
            "(127.0.0.1:9060, plain text: loopback only) or a regional/private endpoint "
            "(TLS). Default: Google's.",
        )
        parser.add_argument(
            "--auto_table_management",
            type=_flag,
            default=None,
            help="true: create datasets/tables and add/widen columns as events need; "
            f"false: change nothing, rows go to existing tables (default: "
            f"${AUTO_TABLE_MANAGEMENT_ENV}, else true).",
        )
        parser.add_argument(
            "--location", default=None, help="Location of datasets created (e.g. US, EU)."
        )
        parser.add_argument(
            "--partition_field",
            default="timestamp",
            help="TIMESTAMP column new event tables are DAY-partitioned on: "
            f"{', '.join(PARTITION_FIELDS)} (default timestamp).",
        )
        parser.add_argument(
            "--clustering_fields",
            default="",
            help="Comma-separated columns new tables are clustered on (at most 4), from "
            "Segment's columns: " + ", ".join(CLUSTERING_FIELDS) + "; a table without one "
            "is clustered on the others.",
        )
        parser.add_argument(
            "--partition_expiration_days",
            type=int,
            default=None,
            help="Partition expiration (retention) of new tables, in days (default: none).",
        )
        parser.add_argument(
            "--max_columns",
            type=int,
            default=MAX_COLUMNS,
            help="Most columns a table may get (BigQuery allows 10,000, the default). A row "
            "that would need more becomes a column_limit dead letter; the pipeline goes on.",
        )
        parser.add_argument(
            "--contracts",
            default=None,
            help="Schema contract file (YAML, local or gs://; see templates/contracts/): the "
            "retention it declares for a table or a dataset is the partition expiration of "
            "tables the pipeline creates there (else --partition_expiration_days).",
        )
        parser.add_argument(
            "--schema_cache_ttl_seconds",
            type=float,
            default=300.0,
            help="How long known table schemas are trusted before being re-read (default 300); "
            "streaming: also the side input's refresh period and part of a rewrite's wait.",
        )
        parser.add_argument(
            "--local_slice_mb",
            type=float,
            default=128.0,
            help="Local batch runs only: an input larger than this many MB runs as "
            "consecutive pipelines over slices of about this size, so memory stays bounded "
            "(the local runner holds stage boundaries in memory). 0: never slice.",
        )
        parser.add_argument(
            "--request_timeout_seconds",
            type=float,
            default=60.0,
            help="Timeout of each BigQuery request (default 60). A request unanswered by then "
            "is retried, like a 429 or 503, within the 120 s retry deadline. Beam's own "
            "client keeps its 120 s for insertAll when no --bigquery_endpoint is set.",
        )
        parser.add_argument(
            "--write_method",
            choices=WRITE_METHODS,
            default=None,
            help="FILE_LOADS (the batch default): one BigQuery load job per table and run, "
            "free of charge, files under --temp_location (gs:// or a local directory; a "
            "local run without it uses a temporary directory). STORAGE_WRITE_API (the "
            "streaming default): proto rows into committed streams at offsets (a retry adds "
            "nothing), half the price of streaming inserts; needs "
            "--bigquery_storage_endpoint with a local --bigquery_endpoint. "
            "STREAMING_INSERTS: legacy streaming inserts, billed per byte.",
        )
        parser.add_argument(
            "--write_mode",
            choices=WRITE_MODES,
            default="append",
            help="append (default): insert every row. insert_missing_by_id: stage the rows "
            "and MERGE them in on id, so a row whose id the table already holds is skipped: "
            "a rerun of the same input adds nothing (backfills use it).",
        )
        parser.add_argument(
            "--ignore_unknown_values",
            type=_flag,
            default=False,
            help="true: BigQuery drops values of columns the table lacks instead of "
            "rejecting the row (default false: the row becomes a dead letter).",
        )
        parser.add_argument(
            "--skip_invalid_rows",
            type=_flag,
            default=True,
            help="true (the only mode of Beam's streaming inserts): the valid rows of an "
            "insert request load and each invalid one becomes a dead letter.",
        )


def model_config(options: OpenTrackOptions) -> ModelConfig:
    """The event model's configuration from the pipeline options."""
    return ModelConfig(
        limits=Limits(
            max_event_bytes=options.max_event_bytes,
            max_batch_bytes=options.max_batch_bytes,
            max_depth=options.max_depth,
        ),
        sources=SourceConfig(
            default_source=options.source_name,
            source_attribute=options.source_attribute or None,
            source_field=options.source_field or None,
        ),
    )


def contract_retention(path: str) -> dict[str, int | None]:
    """Declared retention by "dataset.table" and by "dataset", from a contract file."""
    # Imported here: the contract loader (pydantic) is needed at launch, never on a worker,
    # which unpickles this module with the graph's functions.
    from pipeline.warehouse.contracts import parse_contract

    with FileSystems.open(path) as handle:
        contract = parse_contract(handle.read().decode("utf-8"), path)
    retention: dict[str, int | None] = {}
    for dataset in contract.datasets:
        if dataset.retention_days is not None:
            retention[dataset.name] = dataset.retention_days
        for table in dataset.tables:
            if table.partitioning is not None:
                retention[f"{dataset.name}.{table.name}"] = table.retention_days
    return retention


def _parse_with_beam(argv: Sequence[str]) -> tuple[list[str], dict[str, bool]]:
    """(arguments no option takes, every valid flag and whether it takes a value), by
    Beam's own parser of every option class, ours and Beam's (Beam itself only warns
    about the unknown and runs on)."""
    seen: list[tuple[list[str], dict[str, bool]]] = []

    def refuse(message: str) -> NoReturn:
        raise OptionError(message)  # not argparse's usage of ~200 lines and exit

    def parse(parser: argparse.ArgumentParser) -> None:
        # Parsed here, before Beam adds the unknown arguments to this same parser.
        parser.error = refuse  # type: ignore[method-assign]
        _, unknown = parser.parse_known_args(list(argv))
        flags = {f: a.nargs != 0 for a in parser._actions for f in a.option_strings}
        seen.append((unknown, flags))

    PipelineOptions(list(argv)).get_all_options(
        add_extra_args_fn=parse, retain_unknown_options=True
    )
    return seen[0]


def refuse_unknown_arguments(argv: Sequence[str]) -> None:
    """``OptionError`` naming the first unknown argument and the nearest valid option."""
    unknown, valid = _parse_with_beam(argv)
    if not unknown:
        return
    first = unknown[0]
    close = difflib.get_close_matches(first.split("=", 1)[0], list(valid), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise OptionError(f"unknown argument {first}{hint}; `opentrack run --help` lists every option")


def pipeline_flags() -> dict[str, bool]:
    """Every long flag a run takes (ours and Beam's), and whether it takes a value."""
    _, flags = _parse_with_beam([])
    return {flag: takes for flag, takes in flags.items() if flag.startswith("--")}


def checked_s3_endpoint(options: PipelineOptions) -> None:
    """Beam's ``--s3_endpoint_url`` (a local S3 server, a private endpoint) under the same
    rule as the BigQuery endpoint: plain http:// only on loopback, so AWS credentials never
    travel in clear; ``--s3_disable_ssl`` likewise."""
    s3 = options.view_as(S3Options)
    try:
        checked_endpoint(s3.s3_endpoint_url, "--s3_endpoint_url")
    except ValueError as error:
        raise OptionError(str(error)) from None
    if s3.s3_disable_ssl and not is_emulator(s3.s3_endpoint_url):
        raise OptionError(
            "--s3_disable_ssl is accepted only with a loopback --s3_endpoint_url "
            "(a local S3 server): anywhere else AWS credentials would travel in clear"
        )


def table_settings(options: OpenTrackOptions) -> TableSettings:
    """How new tables are made; a partition or clustering column that could not apply
    to the tables is refused (BigQuery would silently make them unpartitioned)."""
    if options.partition_field not in PARTITION_FIELDS:
        raise OptionError(
            f"--partition_field={options.partition_field}: new tables can be partitioned "
            f"on {', '.join(PARTITION_FIELDS)} (TIMESTAMP columns every event table has)"
        )
    clustering = tuple(c.strip() for c in (options.clustering_fields or "").split(",") if c.strip())
    wrong = [c for c in clustering if c not in CLUSTERING_FIELDS]
    if wrong:
        raise OptionError(
            f"--clustering_fields: {', '.join(wrong)} is not one of Segment's columns "
            f"({', '.join(CLUSTERING_FIELDS)})"
        )
    if len(clustering) > MAX_CLUSTERING_FIELDS or len(set(clustering)) < len(clustering):
        raise OptionError(
            f"--clustering_fields={options.clustering_fields}: at most "
            f"{MAX_CLUSTERING_FIELDS} distinct columns"
        )
    days = options.partition_expiration_days
    if days is not None and days <= 0:
        raise OptionError("--partition_expiration_days must be a positive number of days")
    return TableSettings(
        location=options.location,
        partition_field=options.partition_field,
        clustering_fields=clustering,
        partition_expiration_days=days,
        retention_days=contract_retention(options.contracts) if options.contracts else {},
    )


def write_method(options: OpenTrackOptions) -> str:
    """--write_method, or the default for batch (FILE_LOADS) or streaming (STORAGE_WRITE_API)."""
    streaming = options.view_as(StandardOptions).streaming
    if streaming and options.write_method == "FILE_LOADS":
        raise OptionError(
            "--write_method=FILE_LOADS is for batch runs: a streaming run writes with "
            "STORAGE_WRITE_API (the default) or STREAMING_INSERTS"
        )
    method = options.write_method or ("STORAGE_WRITE_API" if streaming else "FILE_LOADS")
    if (
        method == "STORAGE_WRITE_API"
        and is_emulator(options.bigquery_endpoint)
        and not options.bigquery_storage_endpoint
    ):
        raise OptionError(
            "--write_method=STORAGE_WRITE_API (the streaming default) with a local "
            "--bigquery_endpoint needs --bigquery_storage_endpoint=127.0.0.1:PORT, the "
            "emulator's gRPC port ($OPENTRACK_BIGQUERY_STORAGE_ENDPOINT after `opentrack "
            "local up`), or choose --write_method=STREAMING_INSERTS"
        )
    return method


def warehouse_config(options: OpenTrackOptions) -> WarehouseConfig:
    """Where and how rows are written, from the pipeline options."""
    project = options.bigquery_project or options.view_as(GoogleCloudOptions).project
    if not project:
        raise OptionError("--bigquery_project (or --project) is required to write to BigQuery")
    auto = options.auto_table_management
    if not options.skip_invalid_rows:
        raise OptionError(
            "--skip_invalid_rows=false is not supported: Beam's streaming inserts always "
            "load the valid rows of a request and report each invalid row (a dead letter)"
        )
    if not options.request_timeout_seconds > 0:
        raise OptionError("--request_timeout_seconds must be a positive number of seconds")
    try:
        endpoint = checked_endpoint(options.bigquery_endpoint)
    except ValueError as error:
        raise OptionError(str(error)) from None
    return WarehouseConfig(
        project=project,
        endpoint=endpoint,
        storage_endpoint=options.bigquery_storage_endpoint,
        auto_table_management=auto_table_management_default() if auto is None else auto,
        settings=table_settings(options),
        cache_ttl=options.schema_cache_ttl_seconds,
        request_timeout=options.request_timeout_seconds,
        write_method=write_method(options),
        write_mode=options.write_mode,
        max_columns=min(options.max_columns, MAX_COLUMNS),
        ignore_unknown_values=options.ignore_unknown_values,
    )
