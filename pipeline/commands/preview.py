"""``opentrack preview``: what events become, without touching any cloud service.

Reads JSONL events on stdin (or --input), prints every destination row as
``{"dataset", "table", "row"}`` and every dead letter as ``{"dead_letter": {...}}``
on stdout, one JSON object per line, then a summary of tables, columns and
inferred types on stderr. It runs the same pure chain as the pipeline.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import BinaryIO, TextIO

import orjson

from pipeline.warehouse.summary import RunSummary
from transforms.beam.event_model import utc_now
from transforms.model.chain import ModelConfig, RawMessage, process_payload
from transforms.model.deadletter import DeadLetter
from transforms.model.route import DEFAULT_SOURCE, DEFAULT_SOURCE_ATTRIBUTE, SourceConfig
from transforms.model.timestamps import format_timestamp, parse_timestamp
from transforms.model.validate import Limits


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source_name", default=DEFAULT_SOURCE, help="default source name")
    parser.add_argument(
        "--source_field", default=None, help="dotted event field holding the source name"
    )
    parser.add_argument(
        "--input", type=argparse.FileType("rb"), default=None, help="JSONL file (default stdin)"
    )
    parser.add_argument(
        "--now",
        default=None,
        help="ISO-8601 instant the events were received at, also their load time "
        "(reproducible output); as a real receive time, clock skew is corrected against it. "
        "Without it a line is treated as a batch run treats a file line: read now, its "
        "timestamp kept as sent",
    )
    parser.add_argument("--max_event_bytes", type=int, default=Limits().max_event_bytes)
    parser.add_argument("--max_depth", type=int, default=Limits().max_depth)


def preview(
    lines: BinaryIO,
    out: TextIO,
    err: TextIO,
    config: ModelConfig,
    now: datetime,
    received: bool = True,
) -> RunSummary:
    """Write the rows and dead letters of every line to ``out``; return the summary.
    ``received``: ``now`` is when the events arrived (a skew correction may use it),
    not only when they were read."""
    loaded_at = format_timestamp(now)
    summary = RunSummary()
    write = out.write
    for line in lines:
        if not line.strip():
            continue
        message = RawMessage(line.rstrip(b"\r\n"), None, now if received else None)
        for item in process_payload(message, now, loaded_at, config):
            if isinstance(item, DeadLetter):
                summary.add_dead_letter(item.reason)
                write(orjson.dumps({"dead_letter": item.to_json_dict()}).decode() + "\n")
            else:
                summary.add_row(item.dataset, item.table, item.schema)
                record = {"dataset": item.dataset, "table": item.table, "row": item.row}
                write(orjson.dumps(record).decode() + "\n")
    err.write(summary.render() + "\n")
    return summary


def main(args: argparse.Namespace) -> int:
    config = ModelConfig(
        limits=Limits(max_event_bytes=args.max_event_bytes, max_depth=args.max_depth),
        sources=SourceConfig(
            default_source=args.source_name,
            source_attribute=DEFAULT_SOURCE_ATTRIBUTE,
            source_field=args.source_field,
        ),
    )
    now = parse_timestamp(args.now) if args.now else utc_now()
    preview(args.input or sys.stdin.buffer, sys.stdout, sys.stderr, config, now, bool(args.now))
    return 0
