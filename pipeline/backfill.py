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

from pipeline.options import OptionError, refuse_unknown_arguments
from pipeline.run import counters, run

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


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="opentrack backfill", description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="first", type=date.fromisoformat, required=True)
    parser.add_argument("--to", dest="last", type=date.fromisoformat, required=True)
    parser.add_argument("--input-prefix", required=True, help="e.g. gs://bucket/events/")
    return parser.parse_known_args(list(argv))


def main(argv: Sequence[str]) -> int:
    args, pipeline_args = _parse(argv)
    try:
        refuse_unknown_arguments(pipeline_args)
        return _backfill(args, pipeline_args)
    except OptionError as error:
        print(f"opentrack backfill: error: {error}", file=sys.stderr)
        return 2


def _backfill(args: argparse.Namespace, pipeline_args: list[str]) -> int:
    patterns = day_patterns(args.input_prefix, args.first, args.last)
    found = files_per_pattern(patterns)
    for pattern, count in found.items():
        print(f"{pattern}: {count} files")
    if not any(found.values()):
        print("no files in the range: nothing to load")
        return 0
    if any(a.startswith("--input=") or a == "--input" for a in pipeline_args):
        raise SystemExit("opentrack backfill: --input is derived from --input-prefix and the dates")
    if any(a.startswith("--write_mode") for a in pipeline_args):
        raise SystemExit("opentrack backfill: always writes with --write_mode=insert_missing_by_id")
    present = [pattern for pattern, count in found.items() if count]
    result = run(
        [f"--input={','.join(present)}", "--write_mode=insert_missing_by_id", *pipeline_args]
    )
    for name, value in sorted(counters(result).items()):
        print(f"    {name:<48} {value:>9}")
    return 0
