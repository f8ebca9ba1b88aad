"""Which shard of a table a row goes to, and how many shards a runner gets.

A shard is a stable function of the row's ``id``: a retried bundle regroups the same
rows, and every copy of one event lands in the same shard (what a per-shard
``MERGE ... ON id`` needs). On Dataflow a table's rows spread over
``DATAFLOW_SHARDS`` workers; the local runner has one worker, so one shard.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import apache_beam as beam

DATAFLOW_SHARDS = 16


def shards_for(pipeline: beam.Pipeline, on_dataflow: int = DATAFLOW_SHARDS) -> int:
    """Shards per table: ``on_dataflow`` on Dataflow, 1 on the local runner."""
    return on_dataflow if type(pipeline.runner).__name__ == "DataflowRunner" else 1


def shard_of(row: Mapping[str, Any], shards: int) -> int:
    """A stable shard for a row, by its id."""
    if shards == 1:
        return 0
    return zlib.crc32(str(row.get("id")).encode()) % shards
