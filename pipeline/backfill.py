"""``opentrack backfill``: load a range of days of archived events, idempotently.

Files are laid out by day under a prefix: ``<prefix>/dt=YYYY-MM-DD/*.jsonl``
(or ``.jsonl.gz``), local or ``gs://``. A backfill of ``--from`` .. ``--to``
(inclusive) is one batch job reading every day's files, written with
``--write_mode=insert_missing_by_id``: rows are staged and MERGEd in only when
their id is new, so running the same range twice leaves the tables exactly as
one run did (and overlapping ranges add nothing twice). Every other flag is a
pipeline option passed through (``--bigquery_project``, ``--source_name``...).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from typing import Sequence

from apache_beam.io.filesystems import FileSystems

from pipeline.arguments import OneLineParser, parser_flags, snake_flags, with_environment
from pipeline.options import OptionError, pipeline_flags, refuse_unknown_arguments
from pipeline.preflight import PreflightError
from pipeline.run import counters, preflight, run
from pipeline.run_help import help_parser

MAX_DAYS = 366


def day_patterns(prefix: str, first: date, last: date) -> list[str]:
    """The file pattern of each day of the range, in order."""
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    days = (last - first).days + 1
    if days > MAX_DAYS:
        raise ValueError(f"{days} days: split backfills longer than {MAX_DAYS} days")
    base = prefix.rstrip("/")
    return [f"{base}/dt={first + timedelta(days=n)}/*.jsonl*" for n in range(days)]


def files_per_pattern(patterns: Sequence[str]) -> dict[str, int]:
    return {
        pattern: len(result.metadata_list)
        for pattern, result in zip(patterns, FileSystems.match(list(patterns)))
    }


USAGE = "opentrack backfill --from YYYY-MM-DD --to YYYY-MM-DD --input_prefix PREFIX [options]"


def _own_arguments(parser: argparse.ArgumentParser) -> None:
    days = parser.add_argument_group("backfill options")
    days.add_argument("--from", dest="first", type=date.fromisoformat, required=True,
                      metavar="YYYY-MM-DD", help="first day to load (UTC)")
    days.add_argument("--to", dest="last", type=date.fromisoformat, required=True,
                      metavar="YYYY-MM-DD", help="last day to load, included")
    days.add_argument("--input_prefix", required=True, metavar="PREFIX",
                      help="folder holding dt=YYYY-MM-DD/ folders, local or gs://")  # fmt: skip


def help_text() -> str:
    description = (
        __doc__.splitlines()[0] + " Every `opentrack run` option applies as well (the write "
        "mode is always insert_missing_by_id; --input comes from the prefix and the days)."
    )
    return help_parser("opentrack backfill", USAGE, description, _own_arguments).format_help()


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = OneLineParser(prog="opentrack backfill", usage=USAGE, add_help=False)
    _own_arguments(parser)
    own = with_environment(snake_flags(argv), parser_flags(parser))
    args, pipeline_args = parser.parse_known_args(own)
    return args, with_environment(pipeline_args, pipeline_flags())


def main(argv: Sequence[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(help_text())
        return 0
    args, pipeline_args = _parse(argv)
    try:
        refuse_unknown_arguments(pipeline_args)
        return _backfill(args, pipeline_args)
    except (OptionError, argparse.ArgumentTypeError) as error:
        print(f"opentrack backfill: error: {error}", file=sys.stderr)
        return 2
    except PreflightError as error:
        print(f"opentrack backfill: error: {error}", file=sys.stderr)
        return 1


def _backfill(args: argparse.Namespace, pipeline_args: list[str]) -> int:
    try:
        patterns = day_patterns(args.input_prefix, args.first, args.last)
    except ValueError as error:
        raise OptionError(str(error)) from None
    found = files_per_pattern(patterns)
    for pattern, count in found.items():
        print(f"{pattern}: {count} files")
    if not any(found.values()):
        print("no files in the range: nothing to load")
        return 0
    if any(a.startswith("--input=") or a == "--input" for a in pipeline_args):
        raise OptionError("--input is derived from --input_prefix and the dates")
    if any(a.startswith("--write_mode") for a in pipeline_args):
        raise OptionError("a backfill always writes with --write_mode=insert_missing_by_id")
    present = [pattern for pattern, count in found.items() if count]
    argv = [f"--input={','.join(present)}", "--write_mode=insert_missing_by_id", *pipeline_args]
    preflight(argv)
    result = run(argv)
    for name, value in sorted(counters(result).items()):
        print(f"    {name:<48} {value:>9}")
    return 0
