"""Dead letters stored from one place: the last step of the streaming graph.

Every dead letter of a streaming run, whichever step made it (the event model, the
schema path, a row BigQuery refused for good), becomes a row of its dataset's
dead-letter table here. One step at the end rather than a branch through the schema
path and a sink of its own: that branch sat below every merge of the graph, so the
local runner ran its dozen steps again for each of them, on empty bundles, after
every pull. The dead-letter table's schema is fixed (``DEAD_LETTER_SCHEMA``): it is
made once per dataset, never fitted. Its rows are few, so each bundle's go out as
insertAll requests when the bundle ends (``warehouse.loads.insert_reporting``); a
dead letter's id is deterministic, so a retried bundle adds nothing to the view. A
dead letter that cannot be stored fails the run (``report_lost``): nothing ends as
only a counter and a log line.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from google.cloud import bigquery

from pipeline.warehouse import loads
from pipeline.warehouse.config import WarehouseConfig
from pipeline.warehouse.manager import SchemaManager
from transforms.beam.event_model import METRICS_NAMESPACE, Clock
from transforms.beam.streaming import worker_manager
from transforms.beam.write import report_lost
from transforms.model.deadletter import (
    DEAD_LETTER_SCHEMA,
    DeadLetter,
    dead_letter_dataset,
    dead_letter_row,
)
from transforms.model.naming import DEAD_LETTER_TABLE
from transforms.model.timestamps import format_timestamp


class StoreDeadLetters(beam.DoFn):
    """DeadLetters -> rows of ``<dataset>._opentrack_dead_letters``, sent as the bundle
    ends; the table is made first when the pipeline manages tables."""

    def __init__(self, config: WarehouseConfig, default_source: str, clock: Clock) -> None:
        self._config = config
        self._default_source = default_source
        self._clock = clock
        self._client: bigquery.Client | None = None
        self._manager: SchemaManager | None = None
        self._pending: dict[str, list[tuple[DeadLetter, dict[str, Any]]]] = {}
        self._stored = Metrics.counter(METRICS_NAMESPACE, "dead_letters_stored")

    def setup(self) -> None:
        self._client = self._config.client()
        if self._config.auto_table_management:
            self._manager = worker_manager(self._config)

    def start_bundle(self) -> None:
        self._pending = defaultdict(list)
        self._loaded_at = format_timestamp(self._clock())

    def process(self, dead_letter: DeadLetter) -> None:
        dataset = dead_letter_dataset(dead_letter.source, self._default_source)
        self._pending[dataset].append((dead_letter, dead_letter_row(dead_letter, self._loaded_at)))

    def finish_bundle(self) -> None:
        pending, self._pending = self._pending, {}
        assert self._client is not None, "setup() makes the client"
        for dataset, letters in pending.items():
            if self._manager is not None:
                self._manager.ensure(dataset, DEAD_LETTER_TABLE, DEAD_LETTER_SCHEMA)
            table = bigquery.TableReference.from_string(
                f"{self._config.project}.{dataset}.{DEAD_LETTER_TABLE}"
            )
            refused = loads.insert_reporting(self._client, table, [row for _, row in letters])
            self._stored.inc(len(letters) - len(refused))
            for index, error in refused.items():
                dead_letter = letters[index][0]
                report_lost(dead_letter._replace(error=f"{dead_letter.error} (BigQuery: {error})"))
