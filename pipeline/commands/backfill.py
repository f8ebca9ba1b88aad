"""``opentrack backfill``: load a range of days of archived events, idempotently.

Two layouts, local, ``gs://`` or ``s3://``:

* ``--input_prefix PREFIX``: ``<prefix>/dt=YYYY-MM-DD/*.jsonl`` (or ``.jsonl.gz``), one
  batch job over every day's files;
* ``--segment_archive ROOT/segment-logs[/SOURCE_ID]``: Segment's own archive (its S3
  destination, ``pipeline.commands.segment_archive``), one batch job per source id, its source
  name from ``--source_map ID=NAME`` (default: the id).

Every job writes with ``--write_mode=insert_missing_by_id``: rows are staged and MERGEd in
only when their id is new, so running the same range twice leaves the tables exactly as
one run did (and overlapping ranges add nothing twice). Every other flag is a pipeline
option passed through (``--bigquery_project``, ``--s3_endpoint_url``...).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date, timedelta

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.commands import segment_archive
from pipeline.commands.arguments import (
    OneLineParser,
    given,
    parser_flags,
    snake_flags,
    with_environment,
)
from pipeline.commands.preflight import PreflightError
from pipeline.commands.run import preflight, report, run
from pipeline.commands.run_help import help_parser
from pipeline.graphs.options import (
    OptionError,
    checked_s3_endpoint,
    pipeline_flags,
    refuse_unknown_arguments,
)

MAX_DAYS = 366
USAGE = (
    "opentrack backfill --from YYYY-MM-DD --to YYYY-MM-DD "
    "(--input_prefix PREFIX | --segment_archive ROOT/segment-logs[/SOURCE_ID]) [options]"
)


def days_of(first: date, last: date) -> list[date]:
    """Every day of the range, in order; refused when reversed or longer than a year."""
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    days = (last - first).days + 1
    if days > MAX_DAYS:
        raise ValueError(f"{days} days: split backfills longer than {MAX_DAYS} days")
    return [first + timedelta(days=n) for n in range(days)]


def day_patterns(prefix: str, first: date, last: date) -> list[str]:
    """The file pattern of each day of the range, in order."""
    base = prefix.rstrip("/")
    return [f"{base}/dt={day}/*.jsonl*" for day in days_of(first, last)]


def files_per_pattern(patterns: Sequence[str]) -> dict[str, int]:
    return {
        pattern: len(result.metadata_list)
        for pattern, result in zip(patterns, FileSystems.match(list(patterns)), strict=True)
    }


def _own_arguments(parser: argparse.ArgumentParser) -> None:
    days = parser.add_argument_group("backfill options")
    days.add_argument(
        "--from",
        dest="first",
        type=date.fromisoformat,
        required=True,
        metavar="YYYY-MM-DD",
        help="first day to load (UTC)",
    )
    days.add_argument(
        "--to",
        dest="last",
        type=date.fromisoformat,
        required=True,
        metavar="YYYY-MM-DD",
        help="last day to load, included",
    )
    where = days.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--input_prefix",
        metavar="PREFIX",
        help="folder holding dt=YYYY-MM-DD/ folders (local, gs:// or s3://)",
    )
    where.add_argument(
        "--segment_archive",
        metavar="ROOT/segment-logs[/SOURCE_ID]",
        help="Segment's archive (its S3 destination's layout; s3://, gs:// or "
        "local): the received days of every source, or of one",
    )
    days.add_argument("--source_map", action="append", default=[], metavar="ID=NAME",
                      help="with --segment_archive: the source name a source id loads as "
                      "(repeatable; default: the id itself)")  # fmt: skip


def help_text() -> str:
    description = (
        "Load a range of days of archived events, idempotently. Every `opentrack run` "
        "option applies as well (the write mode is always insert_missing_by_id; --input "
        "comes from the layout and the days; for s3:// Beam's --s3_* options, e.g. "
        "--s3_endpoint_url, with credentials from the AWS environment)."
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
        for flag in ("--input", "--write_mode"):
            if given(pipeline_args, flag):
                raise OptionError(f"{flag} is set by the backfill itself: leave it out")
        options = PipelineOptions(pipeline_args)
        checked_s3_endpoint(options)
        FileSystems.set_options(options)  # s3:// listing needs the --s3_* options
        days = days_of(args.first, args.last)
        if args.segment_archive:
            return _archive_backfill(args, days, pipeline_args)
        return _prefix_backfill(args.input_prefix, days, pipeline_args)
    except (OptionError, argparse.ArgumentTypeError, ValueError) as error:
        print(f"opentrack backfill: error: {error}", file=sys.stderr)
        return 2
    except PreflightError as error:
        print(f"opentrack backfill: error: {error}", file=sys.stderr)
        return 1


def _load(patterns: Sequence[str], pipeline_args: Sequence[str]) -> None:
    argv = [f"--input={','.join(patterns)}", "--write_mode=insert_missing_by_id", *pipeline_args]
    preflight(argv)
    report(run(argv), argv)


def _prefix_backfill(prefix: str, days: Sequence[date], pipeline_args: list[str]) -> int:
    found = files_per_pattern(day_patterns(prefix, days[0], days[-1]))
    for pattern, count in found.items():
        print(f"{pattern}: {count} files")
    present = [pattern for pattern, count in found.items() if count]
    if not present:
        print("no files in the range: nothing to load")
        return 0
    _load(present, pipeline_args)
    return 0


def _archive_backfill(
    args: argparse.Namespace, days: Sequence[date], pipeline_args: list[str]
) -> int:
    if given(pipeline_args, "--source_name"):
        raise OptionError("with --segment_archive name sources by --source_map ID=NAME")
    root, only = segment_archive.split_archive(args.segment_archive)
    mapping = segment_archive.parse_source_map(args.source_map)
    found = segment_archive.files_by_source(root, days, only)
    if not found:
        print(f"no archived files for {days[0]}..{days[-1]} under {args.segment_archive}")
        return 0
    for number, (source_id, by_day) in enumerate(found.items(), 1):
        name = segment_archive.source_name(source_id, mapping)
        files = sum(len(paths) for paths in by_day.values())
        print(f"source {number} of {len(found)}: {source_id} as {name!r}: {files} files over "
              f"{len(by_day)} of {len(days)} days", file=sys.stderr)  # fmt: skip
        patterns = [segment_archive.day_pattern(root, source_id, day) for day in by_day]
        _load(patterns, [f"--source_name={name}", *pipeline_args])
    return 0
