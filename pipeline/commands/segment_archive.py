"""Segment's own archive as backfill input: the layout of its Amazon S3 destination.

Segment writes gzipped newline-delimited JSON of the full calls (``receivedAt``
included) under ``<root>/segment-logs/<source id>/<received day>/*.gz``, where the
received day is that UTC day's midnight as a unix timestamp in milliseconds. The same
layout is read from ``s3://`` (Beam's S3 filesystem), ``gs://`` or a local folder.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime

from apache_beam.io.filesystems import FileSystems

ROOT_FOLDER = "segment-logs"


def day_folder(day: date) -> str:
    """The received-day folder name: UTC midnight of ``day`` in unix milliseconds."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return str(int(midnight.timestamp()) * 1000)


def split_archive(archive: str) -> tuple[str, str | None]:
    """(the ``segment-logs`` folder, the one source id named after it or None for all)."""
    base = archive.rstrip("/")
    head, _, last = base.rpartition("/")
    if last == ROOT_FOLDER:
        return base, None
    if head.rpartition("/")[2] == ROOT_FOLDER and last and "*" not in last:
        return head, last
    raise ValueError(
        f"--segment_archive={archive}: expected <bucket or folder>/{ROOT_FOLDER} or "
        f"<bucket or folder>/{ROOT_FOLDER}/<source id>"
    )


def parse_source_map(pairs: Sequence[str]) -> dict[str, str]:
    """``ID=NAME`` pairs (``--source_map``, repeatable) as {source id: source name}."""
    mapping = {}
    for pair in pairs:
        source_id, sep, name = pair.partition("=")
        if not sep or not source_id.strip() or not name.strip():
            raise ValueError(f"--source_map={pair}: expected SOURCE_ID=SOURCE NAME")
        mapping[source_id.strip()] = name.strip()
    return mapping


def files_by_source(
    root: str, days: Sequence[date], only: str | None = None
) -> dict[str, dict[date, list[str]]]:
    """{source id: {day: files}} of the archive, for the days that have files."""
    source = only or "*"
    patterns = [f"{root}/{source}/{day_folder(day)}/*.gz" for day in days]
    found: dict[str, dict[date, list[str]]] = defaultdict(dict)
    for day, result in zip(days, FileSystems.match(patterns), strict=True):
        for metadata in result.metadata_list:
            source_id = metadata.path.split("/")[-3]  # <root>/<source id>/<day>/<file>
            found[source_id].setdefault(day, []).append(metadata.path)
    return {source_id: dict(sorted(by_day.items())) for source_id, by_day in sorted(found.items())}


def source_name(source_id: str, mapping: Mapping[str, str]) -> str:
    """The source name a source id loads as (its dataset is that name's snake_case)."""
    return mapping.get(source_id, source_id)


def day_pattern(root: str, source_id: str, day: date) -> str:
    return f"{root}/{source_id}/{day_folder(day)}/*.gz"
