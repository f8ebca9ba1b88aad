"""Write rows and dead letters as JSON lines, one file set per ``dataset.table``.

Used by ``opentrack run --output_dir`` (a dry run that touches no cloud
service) and by the tests; the BigQuery writer takes its place in production.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO

import apache_beam as beam
import orjson
from apache_beam.io import fileio
from apache_beam.pvalue import PCollection

from transforms.model.deadletter import DeadLetter, dead_letter_dataset
from transforms.model.naming import DEAD_LETTER_TABLE
from transforms.model.normalize import TableRow

FILE_SUFFIX = ".jsonl"


class _JsonLinesSink(fileio.FileSink):
    """Writes the JSON half of ``(destination, json_bytes)`` pairs, one per line."""

    def open(self, fh: BinaryIO) -> None:
        self._fh = fh

    def write(self, record: tuple[str, bytes]) -> None:
        self._fh.write(record[1])
        self._fh.write(b"\n")

    def flush(self) -> None:
        self._fh.flush()


def row_record(row: TableRow) -> tuple[str, bytes]:
    return f"{row.dataset}.{row.table}", orjson.dumps(row.row)


def dead_letter_record(dead_letter: DeadLetter, default_source: str) -> tuple[str, bytes]:
    dataset = dead_letter_dataset(dead_letter.source, default_source)
    return f"{dataset}.{DEAD_LETTER_TABLE}", orjson.dumps(dead_letter.to_json_dict())


def _destination(record: tuple[str, Any]) -> str:
    return record[0]


def file_naming(label: str = "") -> Callable[..., str]:
    """``<dataset>.<table>[-<label>]-<shard>...jsonl``: a label keeps the files of one
    slice of a sliced run from overwriting another's."""
    # Beam's FileNaming alias lists seven arguments; its namers are called with six.
    named: Callable[..., str] = fileio.destination_prefix_naming(suffix=FILE_SUFFIX)
    if not label:
        return named

    def labelled(
        window: Any,
        pane: Any,
        shard_index: int,
        total_shards: int,
        compression: Any,
        destination: str,
    ) -> str:
        return named(window, pane, shard_index, total_shards, compression, f"{destination}-{label}")

    return labelled


class WriteJsonLines(beam.PTransform):
    """(rows, dead_letters) -> ``<output_dir>/<dataset>.<table>-*.jsonl`` files."""

    def __init__(self, output_dir: str, default_source: str, label: str = "") -> None:
        super().__init__()
        self._output_dir = output_dir
        self._default_source = default_source
        self._label = label

    def expand(self, pcolls: tuple[PCollection, PCollection]) -> PCollection:
        rows, dead_letters = pcolls
        records = (
            rows | "RowRecords" >> beam.Map(row_record),
            dead_letters
            | "DeadLetterRecords" >> beam.Map(dead_letter_record, self._default_source),
        ) | "AllRecords" >> beam.Flatten()
        return records | "WriteFiles" >> fileio.WriteToFiles(
            path=self._output_dir,
            destination=_destination,
            sink=lambda _destination: _JsonLinesSink(),
            file_naming=file_naming(self._label),
        )
