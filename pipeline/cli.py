"""The ``opentrack`` command: ``preview`` and ``run``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from pipeline import backfill, localstack, preview, replay, run, schema_cli


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="opentrack", description="Segment-spec analytics events into BigQuery."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    preview_parser = commands.add_parser(
        "preview", help="print the rows and dead letters events become (no cloud calls)"
    )
    preview.add_arguments(preview_parser)
    commands.add_parser(
        "run",
        help="run the pipeline; every other flag is a Beam pipeline option "
        "(see pipeline/options.py)",
        add_help=False,
    )
    commands.add_parser(
        "local", help="start/stop the local stack of emulators: local up|down|status", add_help=False
    )
    commands.add_parser(
        "backfill",
        help="load --from..--to days of <prefix>/dt=YYYY-MM-DD/ files, idempotently",
        add_help=False,
    )
    if argv[:1] == ["backfill"]:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        return backfill.main(argv[1:])
    commands.add_parser(
        "schema",
        help="compare the warehouse with a contract file: schema check|plan|apply --contracts FILE",
        add_help=False,
    )
    if argv[:1] == ["schema"]:
        return schema_cli.main(argv[1:])
    commands.add_parser(
        "replay", help="re-feed dead letters (by reason, stage, time) to a file or a topic",
        add_help=False,
    )
    if argv[:1] == ["replay"]:
        return replay.main(argv[1:])
    if argv[:1] == ["local"]:
        return localstack.main(argv[1:])
    if argv[:1] == ["run"]:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        return run.main(argv[1:])
    args = parser.parse_args(argv)
    return preview.main(args)


if __name__ == "__main__":
    raise SystemExit(main())
