"""Bounded memory for large local batch runs: the input runs as consecutive slices.

The local batch runner (the FnApiRunner) runs a graph stage by stage and keeps
in memory everything that crosses a stage boundary: the rows waiting for the
schema side input, the GroupByKeys inside the BigQuery and file writers. One
pipeline's peak memory therefore grows with its input (measured: 1.3 GB for
100,000 events, 11.4 GB for 1,000,000). Dataflow spills those boundaries to its
shuffle; locally, an input larger than ``--local_slice_mb`` is instead streamed
into slice files of about that many megabytes of whole lines, and the same
pipeline runs on each slice in turn. Peak memory then depends on the slice size,
not on the input.

Every slice goes through the whole graph (schema step, writes, users MERGE, dead
letters), so a slice is a complete, correct run; a failing slice stops the run
and names the slices already loaded.
"""

from __future__ import annotations

import logging
import math
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.runners.runner import PipelineResult, PipelineState

_LOG = logging.getLogger(__name__)
GZIP_EXPANSION = 10  # a .gz input is assumed to hold up to 10x its size in lines
_COPY_CHUNK = 1 << 20


def input_paths(patterns: str) -> list[tuple[str, int]]:
    """(path, size in bytes) of every file the comma-separated ``patterns`` match."""
    names = [p.strip() for p in patterns.split(",") if p.strip()]
    matched: list[tuple[str, int]] = []
    for result in FileSystems.match(names):
        matched.extend((meta.path, meta.size_in_bytes) for meta in result.metadata_list)
    return matched


def estimated_bytes(files: Sequence[tuple[str, int]]) -> int:
    """Upper estimate of the lines' bytes: compressed files count ``GZIP_EXPANSION`` times."""
    return sum(size * GZIP_EXPANSION if _compressed(path) else size for path, size in files)


def _compressed(path: str) -> bool:
    return CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED


def _open_lines(path: str) -> BinaryIO:
    return FileSystems.open(path, compression_type=CompressionTypes.AUTO)


def write_slices(
    files: Sequence[tuple[str, int]], slice_bytes: int, directory: Path
) -> Iterator[Path]:
    """Stream the lines of ``files`` into ``directory/slice-NNNNN.jsonl`` files of at most
    ``slice_bytes`` (a longer line gets a slice of its own), yielding each once it is
    complete. Lines are copied byte for byte; a last line without a newline gets one."""
    index, written = 0, 0
    current: BinaryIO | None = None
    path = directory / "slice-00000.jsonl"
    try:
        for name, _size in files:
            with _open_lines(name) as source:
                for line in iter(source.readline, b""):
                    if not line.endswith(b"\n"):
                        line += b"\n"
                    if current is not None and written + len(line) > slice_bytes:
                        current.close()
                        current = None
                        yield path
                        index += 1
                    if current is None:
                        path = directory / f"slice-{index:05d}.jsonl"
                        current = path.open("wb")
                        written = 0
                    current.write(line)
                    written += len(line)
        if current is not None:
            current.close()
            current = None
            yield path
    finally:
        if current is not None:
            current.close()


class _Counters:
    """``metrics().query()`` over several results: the counters of every slice."""

    def __init__(self, results: Sequence[PipelineResult]) -> None:
        self._results = results

    def query(self, filter: Any = None) -> dict[str, list[Any]]:  # noqa: A002 - Beam's name
        merged: dict[str, list[Any]] = {"counters": [], "distributions": [], "gauges": []}
        for result in self._results:
            for kind, entries in result.metrics().query(filter).items():
                merged.setdefault(kind, []).extend(entries)
        return merged


@dataclass
class SlicedResult:
    """The results of a sliced run, read like one ``PipelineResult``."""

    results: list[PipelineResult] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.results[-1].state if self.results else PipelineState.DONE

    def wait_until_finish(self, duration: Any = None) -> str:
        return self.state

    def metrics(self) -> _Counters:
        return _Counters(self.results)


def run_sliced(
    files: Sequence[tuple[str, int]],
    slice_bytes: int,
    run_one: Any,  # Callable[[str, int], PipelineResult]: runs the pipeline on one slice
    scratch: str | None = None,
) -> SlicedResult:
    """Run ``run_one(slice_path, slice_index)`` on each slice of ``files`` in turn, saying
    on stderr how far it is (a slice of a large input takes minutes)."""
    sliced = SlicedResult()
    expected = max(1, math.ceil(sum(size for _, size in files) / slice_bytes))
    with tempfile.TemporaryDirectory(prefix="opentrack-slices-", dir=scratch) as directory:
        for index, path in enumerate(write_slices(files, slice_bytes, Path(directory))):
            started = time.monotonic()
            size_mb = path.stat().st_size / 1e6
            print(f"slice {index + 1} of ~{expected}: {size_mb:.1f} MB ...", file=sys.stderr,
                  flush=True)  # fmt: skip
            try:
                result = run_one(str(path), index)
            except Exception:
                _LOG.error("slice %d failed; the %d slice(s) before it are loaded", index + 1,
                           index)  # fmt: skip
                raise
            print(f"slice {index + 1} done in {time.monotonic() - started:.0f} s", file=sys.stderr,
                  flush=True)  # fmt: skip
            sliced.results.append(result)
            path.unlink()
    return sliced
