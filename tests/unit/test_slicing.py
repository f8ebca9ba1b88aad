"""Slicing a large local input (pipeline.graphs.slicing): whole lines, byte for byte, bounded."""

from __future__ import annotations

import gzip
from pathlib import Path

from pipeline.graphs.slicing import GZIP_EXPANSION, estimated_bytes, input_paths, write_slices


def _slices(files: list[tuple[str, int]], slice_bytes: int, tmp_path: Path) -> list[bytes]:
    out = tmp_path / "slices"
    out.mkdir()
    contents = []
    for path in write_slices(files, slice_bytes, out):
        contents.append(path.read_bytes())
        path.unlink()  # as run_sliced does: a slice is gone once run
    return contents


def test_lines_are_copied_whole_and_in_order_across_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    first.write_bytes(b'{"n":1}\n{"n":2}\r\n\n{"n":3}')  # CRLF, blank line, no final newline
    with gzip.open(second, "wb") as handle:
        handle.write(b'{"n":4}\n{"n":5}\n')
    files = input_paths(f"{first},{second}")
    slices = _slices(files, 16, tmp_path)
    assert b"".join(slices) == b'{"n":1}\n{"n":2}\r\n\n{"n":3}\n{"n":4}\n{"n":5}\n'
    assert all(len(s) <= 16 for s in slices)
    assert all(s.endswith(b"\n") for s in slices)
    assert [len(s) for s in slices] == [8, 9 + 1, 8 + 8, 8]  # greedy, whole lines


def test_a_line_longer_than_a_slice_gets_its_own(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"a\n" + b"x" * 100 + b"\nb\n")
    slices = _slices(input_paths(str(path)), 10, tmp_path)
    assert slices == [b"a\n", b"x" * 100 + b"\n", b"b\n"]


def test_an_empty_input_makes_no_slice(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert _slices(input_paths(str(path)), 10, tmp_path) == []


def test_compressed_files_are_estimated_at_their_expansion(tmp_path: Path) -> None:
    assert estimated_bytes([("x.jsonl", 100), ("y.jsonl.gz", 100)]) == 100 + 100 * GZIP_EXPANSION


def test_patterns_that_match_nothing_give_no_files(tmp_path: Path) -> None:
    assert input_paths(str(tmp_path / "none-*.jsonl")) == []
