"""What the local streaming runner needs done differently.

The BundleBasedDirectRunner (``opentrack run --streaming`` without ``--runner``)
keeps the state of every key it has ever seen until the run ends, even after the
key's state is cleared and its timers have fired: a few KB per key. Steps that key
by something unbounded (message ids) or spread work over many keys for parallelism
it does not have grow its memory for as long as it runs. Those steps ask here and
take a bounded form on this runner; Dataflow runs are untouched.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner


def on_local_streaming_runner(pipeline: beam.Pipeline) -> bool:
    return isinstance(pipeline.runner, BundleBasedDirectRunner)
