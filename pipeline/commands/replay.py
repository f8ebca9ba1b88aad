"""``opentrack replay``: re-feed dead letters after a fix.

Selects dead letters of one dataset by reason, stage and ``received_at``
range and sends their original payloads either to a JSON-lines file (input
for ``opentrack run --input FILE``) or to a Pub/Sub topic (attribute
``opentrack_replay=1``, and the original source under ``--source_attribute``
when known). Replayed events keep their ids (``messageId``, or the UUIDv5 of
the canonical payload), so rows stored twice are hidden by ``<table>_view``.

Not replayable, counted and reported: payloads cut at 1 MB
(``payload_truncated``), and, for a file, a non-JSON payload holding a line
break (a file line is one payload; publish those with ``--topic``). A JSON
payload's line breaks are whitespace between tokens and become spaces.
``invalid_encoding`` payloads are stored with their bad bytes escaped, so
their replay is the escaped text, not the original bytes.

``--delete-replayed`` deletes, after a successful write or publish, exactly
the dead letters replayed: the same filter plus a fingerprint of each
replayed row, so a dead letter stored meanwhile (or a truncated one) is never
deleted unreplayed. BigQuery refuses DML on rows still in the streaming
buffer (up to ~30 minutes after they were streamed); the command then says so
and leaves them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from google.api_core.exceptions import GoogleAPIError
from google.cloud import bigquery

from pipeline.commands.arguments import OneLineParser, parse_with_environment
from pipeline.commands.preflight import PreflightError, check_bigquery
from pipeline.warehouse import identifiers
from pipeline.warehouse.client import RETRY, NotFound, make_client
from transforms.model.chain import REPLAY_ATTRIBUTE
from transforms.model.deadletter import DEAD_LETTER_SCHEMA, Reason, Stage
from transforms.model.naming import DEAD_LETTER_TABLE
from transforms.model.route import DEFAULT_SOURCE_ATTRIBUTE
from transforms.model.timestamps import TimestampError, parse_timestamp

if TYPE_CHECKING:
    import google.cloud.pubsub_v1 as pubsub_v1


DELETE_CHUNK = 10_000  # fingerprints per DELETE: keeps each request far below BigQuery's limits
PUBLISH_TIMEOUT_S = 120.0
PUBLISH_IN_FLIGHT = 1_000  # messages awaiting Pub/Sub's answer at most
PROGRESS_EVERY = 10_000  # dead letters between two progress lines
STREAMING_BUFFER_NOTE = (
    "BigQuery cannot DELETE rows still in the streaming buffer (up to ~30 minutes after "
    "they were streamed): these dead letters stay in the table. Rows a second replay stores "
    "again keep their ids and are hidden by the <table>_view views."
)
_T = "d"  # alias of the dead-letter table in every statement


def _col(name: str) -> str:
    return f"{_T}.{identifiers.quoted_column(name)}"


# One fingerprint per dead letter, computed the same way in SELECT and DELETE
# (named STRUCT fields: plain column lists lose their names on the emulator).
ROW_KEY = "FARM_FINGERPRINT(TO_JSON_STRING(STRUCT({})))".format(
    ", ".join(f"{_col(c)} AS {identifiers.quoted_column(c)}" for c in DEAD_LETTER_SCHEMA)
)
_TRUNCATED = f"COALESCE({_col('payload_truncated')}, FALSE)"


@dataclass(frozen=True)
class Selection:
    """Which dead letters to replay; every value reaches SQL as a query parameter."""

    reasons: tuple[str, ...] = ()
    stage: str | None = None
    since: datetime | None = None  # received_at >= since
    until: datetime | None = None  # received_at < until

    def where(
        self,
    ) -> tuple[str, list[bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter]]:
        clauses = ["TRUE"]
        params: list[bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter] = []
        if self.reasons:
            clauses.append(f"{_col('reason')} IN UNNEST(@reasons)")
            params.append(bigquery.ArrayQueryParameter("reasons", "STRING", list(self.reasons)))
        if self.stage:
            clauses.append(f"{_col('stage')} = @stage")
            params.append(bigquery.ScalarQueryParameter("stage", "STRING", self.stage))
        if self.since:
            clauses.append(f"{_col('received_at')} >= @since")
            params.append(bigquery.ScalarQueryParameter("since", "TIMESTAMP", self.since))
        if self.until:
            clauses.append(f"{_col('received_at')} < @until")
            params.append(bigquery.ScalarQueryParameter("until", "TIMESTAMP", self.until))
        return " AND ".join(clauses), params


def _table(project: str, dataset: str) -> str:
    return f"{identifiers.quoted_table(project, dataset, DEAD_LETTER_TABLE)} AS {_T}"


def select_sql(project: str, dataset: str, selection: Selection) -> tuple[str, list]:
    """The selected dead letters, oldest first; truncated payloads are not fetched."""
    where, params = selection.where()
    sql = (
        f"SELECT IF({_TRUNCATED}, NULL, {_col('payload')}) AS payload, "
        f"{_TRUNCATED} AS truncated, {_col('source')} AS source, {ROW_KEY} AS row_key "
        f"FROM {_table(project, dataset)} WHERE {where} "
        f"ORDER BY {_col('received_at')}, {_col('loaded_at')}"
    )
    return sql, params


def count_sql(project: str, dataset: str, selection: Selection) -> tuple[str, list]:
    """Dead letters selected and truncated, per reason and stage (``--dry-run``)."""
    where, params = selection.where()
    sql = (
        f"SELECT {_col('reason')} AS reason, {_col('stage')} AS stage, COUNT(*) AS selected, "
        f"COUNTIF({_TRUNCATED}) AS truncated FROM {_table(project, dataset)} WHERE {where} "
        f"GROUP BY reason, stage ORDER BY reason, stage"
    )
    return sql, params


def delete_sql(
    project: str, dataset: str, selection: Selection, keys: Sequence[int]
) -> tuple[str, list]:
    """DELETE of exactly the replayed dead letters: the filter and their fingerprints."""
    where, params = selection.where()
    sql = (
        f"DELETE FROM {_table(project, dataset)} WHERE {where} AND NOT {_TRUNCATED} "
        f"AND {ROW_KEY} IN UNNEST(@row_keys)"
    )
    return sql, [*params, bigquery.ArrayQueryParameter("row_keys", "INT64", list(keys))]


@dataclass(frozen=True)
class DeadLetterRow:
    payload: str | None
    truncated: bool
    source: str | None
    key: int


@dataclass
class Summary:
    selected: int = 0
    replayed: int = 0
    skipped_truncated: int = 0
    skipped_multiline: int = 0
    failed: int = 0
    deleted: int = 0
    sources: set[str] = field(default_factory=set)

    def render(self) -> str:
        parts = [
            f"selected: {self.selected}",
            f"replayed: {self.replayed}",
            f"skipped-truncated: {self.skipped_truncated}",
        ]
        if self.skipped_multiline:
            parts.append(f"skipped-multiline: {self.skipped_multiline}")
        if self.failed:
            parts.append(f"failed: {self.failed}")
        parts.append(f"deleted: {self.deleted}")
        return ", ".join(parts)


def _query(client: bigquery.Client, sql: str, params: list) -> bigquery.table.RowIterator:
    config = bigquery.QueryJobConfig(query_parameters=params)
    return client.query(sql, job_config=config, retry=RETRY).result()


def read_dead_letters(
    client: bigquery.Client, project: str, dataset: str, selection: Selection
) -> Iterator[DeadLetterRow]:
    sql, params = select_sql(project, dataset, selection)
    for row in _query(client, sql, params):
        yield DeadLetterRow(row["payload"], bool(row["truncated"]), row["source"], row["row_key"])


def replayable(rows: Iterable[DeadLetterRow], summary: Summary) -> Iterator[DeadLetterRow]:
    """Counts every row; yields those whose payload is whole. Says on stderr how far a
    long replay is, every ``PROGRESS_EVERY`` dead letters."""
    for row in rows:
        summary.selected += 1
        if summary.selected % PROGRESS_EVERY == 0:
            print(f"replay: {summary.selected:,} dead letters read", file=sys.stderr, flush=True)
        if row.truncated or row.payload is None:
            summary.skipped_truncated += 1
            continue
        yield row


def one_line(payload: str) -> str | None:
    """The payload as one file line, or None when that would change it."""
    if "\n" not in payload and "\r" not in payload:
        return payload
    try:
        json.loads(payload)  # strict: raw line breaks inside strings are refused
    except ValueError:
        return None
    return payload.replace("\r", " ").replace("\n", " ")


def write_jsonl(path: Path, rows: Iterable[DeadLetterRow], summary: Summary) -> list[int]:
    """Writes the payloads (atomically: a temporary file renamed); returns their row keys."""
    keys: list[int] = []
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8", newline="\n") as out:
            for row in rows:
                assert row.payload is not None
                line = one_line(row.payload)
                if line is None:
                    summary.skipped_multiline += 1
                    continue
                out.write(line + "\n")
                keys.append(row.key)
                if row.source:
                    summary.sources.add(row.source)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    summary.replayed = len(keys)
    return keys


def publish(
    publisher: pubsub_v1.PublisherClient,
    topic: str,
    rows: Iterable[DeadLetterRow],
    source_attribute: str,
    summary: Summary,
) -> list[int]:
    """Publishes every payload; returns the row keys of those Pub/Sub accepted."""
    pending: list[tuple[futures.Future, int]] = []
    for row in rows:
        assert row.payload is not None
        attributes = {REPLAY_ATTRIBUTE: "1"}
        if row.source and source_attribute:
            attributes[source_attribute] = row.source
            summary.sources.add(row.source)
        pending.append(
            (publisher.publish(topic, row.payload.encode("utf-8"), **attributes), row.key)
        )
    keys = []
    for future, key in pending:
        try:
            future.result(timeout=PUBLISH_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - reported and counted, never deleted
            summary.failed += 1
            print(f"publish failed: {error}", file=sys.stderr)
            continue
        keys.append(key)
    summary.replayed = len(keys)
    return keys


def delete_replayed(
    client: bigquery.Client, project: str, dataset: str, selection: Selection, keys: Sequence[int]
) -> int:
    """Deletes the replayed dead letters, in chunks; returns the rows deleted."""
    deleted = 0
    for start in range(0, len(keys), DELETE_CHUNK):
        sql, params = delete_sql(project, dataset, selection, keys[start : start + DELETE_CHUNK])
        config = bigquery.QueryJobConfig(query_parameters=params)
        job = client.query(sql, job_config=config, retry=RETRY)
        job.result()
        deleted += job.num_dml_affected_rows or 0
    return deleted


# -- command line --------------------------------------------------------------------


def _timestamp(text: str) -> datetime:
    try:
        return parse_timestamp(text)
    except TimestampError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _topic(text: str) -> str:
    parts = text.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != "topics" or not all(parts):
        raise argparse.ArgumentTypeError(f"expected projects/P/topics/T, got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="opentrack replay",
        description="Re-feed dead letters (their original payloads) after a fix.",
    )
    parser.add_argument("--bigquery_project", required=True, help="project of the dataset")
    parser.add_argument(
        "--bigquery_endpoint", default=None, help="BigQuery API endpoint (emulator)"
    )
    parser.add_argument("--dataset", required=True, help="dataset holding the dead letters")
    parser.add_argument(
        "--reason",
        action="append",
        choices=[reason.value for reason in Reason],
        metavar="REASON",
        help="replay only this reason (repeatable; default: all reasons)",
    )
    parser.add_argument("--stage", choices=[stage.value for stage in Stage], default=None)
    parser.add_argument(
        "--since",
        type=_timestamp,
        default=None,
        help="received_at >= this ISO instant (UTC if no offset)",
    )
    parser.add_argument(
        "--until",
        type=_timestamp,
        default=None,
        help="received_at < this ISO instant (UTC if no offset)",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--output", type=Path, help="write the payloads as JSON lines to FILE")
    target.add_argument("--topic", type=_topic, help="publish the payloads to projects/P/topics/T")
    parser.add_argument(
        "--source_attribute",
        default=DEFAULT_SOURCE_ATTRIBUTE,
        help="attribute carrying the original source on --topic (the pipeline's option)",
    )
    parser.add_argument("--dry_run", action="store_true", help="count only; write nothing")
    parser.add_argument(
        "--delete_replayed",
        action="store_true",
        help="after a successful write/publish, delete the replayed dead letters",
    )
    return parser


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = build_parser()
    args = parse_with_environment(parser, argv)
    if not args.dry_run and not (args.output or args.topic):
        parser.error("a target is required: --output FILE or --topic projects/P/topics/T")
    if args.dry_run and args.delete_replayed:
        parser.error("--delete_replayed deletes only what a real replay sent, not with --dry_run")
    if args.since and args.until and args.since >= args.until:
        parser.error("--since must be before --until")
    try:
        identifiers.project_id(args.bigquery_project)
        identifiers.dataset_id(args.dataset)
    except identifiers.InvalidIdentifier as error:
        parser.error(str(error))
    return args


def dry_run(client: bigquery.Client, project: str, dataset: str, selection: Selection) -> Summary:
    summary = Summary()
    sql, params = count_sql(project, dataset, selection)
    for row in _query(client, sql, params):
        reason, stage, selected, truncated = (
            row[k] for k in ("reason", "stage", "selected", "truncated")
        )
        print(f"{reason}\t{stage}\t{selected} selected, {truncated} truncated")
        summary.selected += selected
        summary.skipped_truncated += truncated
    return summary


def run_replay(
    args: argparse.Namespace, client: bigquery.Client, selection: Selection
) -> tuple[Summary, int]:
    """Sends the selection to its target, then deletes what was sent if asked."""
    project, dataset = args.bigquery_project, args.dataset
    summary = Summary()
    rows = replayable(read_dead_letters(client, project, dataset, selection), summary)
    if args.output:
        keys = write_jsonl(args.output, rows, summary)
    else:
        import google.cloud.pubsub_v1 as pubsub_v1  # only the Pub/Sub target needs it

        # Honours PUBSUB_EMULATOR_HOST; blocks instead of buffering a whole replay in memory.
        flow = pubsub_v1.types.PublishFlowControl(
            message_limit=PUBLISH_IN_FLIGHT,
            limit_exceeded_behavior=pubsub_v1.types.LimitExceededBehavior.BLOCK,
        )
        publisher = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(flow_control=flow)
        )
        try:
            keys = publish(publisher, args.topic, rows, args.source_attribute, summary)
        finally:
            publisher.stop()
    status = 1 if summary.failed else 0
    if args.delete_replayed and keys:
        try:
            summary.deleted = delete_replayed(client, project, dataset, selection, keys)
        except GoogleAPIError as error:
            print(f"delete failed: {error}\n{STREAMING_BUFFER_NOTE}", file=sys.stderr)
            status = 1
    return summary, status


def report(summary: Summary, to_file: bool) -> None:
    print(summary.render())
    if summary.skipped_truncated:
        print(f"{summary.skipped_truncated} dead letters hold a truncated payload: not replayable")
    if to_file and len(summary.sources) == 1:
        print(f"source: {next(iter(summary.sources))} (opentrack run --source_name)")
    elif to_file and summary.sources:
        print(f"sources: {', '.join(sorted(summary.sources))} (mixed: split the file per source)")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    selection = Selection(tuple(args.reason or ()), args.stage, args.since, args.until)
    try:
        check_bigquery(args.bigquery_project, args.bigquery_endpoint)
    except PreflightError as error:
        print(f"opentrack replay: error: {error}", file=sys.stderr)
        return 1
    client = make_client(args.bigquery_project, args.bigquery_endpoint)
    try:
        if args.dry_run:
            summary = dry_run(client, args.bigquery_project, args.dataset, selection)
            print(f"dry run: {summary.render()}")
            print(f"would replay: {summary.selected - summary.skipped_truncated}")
            return 0
        summary, status = run_replay(args, client, selection)
    except NotFound as error:
        print(f"not found: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
    report(summary, to_file=bool(args.output))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
