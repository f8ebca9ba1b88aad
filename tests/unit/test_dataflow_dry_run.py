"""The three graphs as Dataflow (Runner v2) would receive them, built offline.

DataflowRunner --dry_run=True builds the whole job (overrides, Runner API proto,
environment, apiclient.Job) and returns before any staging or API call. Each graph must
build without a warning (the non-deterministic key coder one above all), use only
transforms Runner v2 runs, key every stateful step on a deterministic coder, and have
every function load in a fresh process outside the repository, as on a worker.
"""

from __future__ import annotations

import collections
import json
import logging
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2 as pb
from apache_beam.runners import pipeline_context

from pipeline.commands.run import pipeline_options
from pipeline.graphs.batch import build_graph
from pipeline.graphs.streaming import build_streaming_graph

SAMPLE = str(Path(__file__).resolve().parents[2] / "pipeline" / "samples" / "events.jsonl")
DATAFLOW = [
    "--runner=DataflowRunner",
    "--dry_run=True",  # must be in the options given to beam.Pipeline (validation runs there)
    "--project=dry-run-project",  # a valid project id; nothing is contacted
    "--region=us-central1",
    "--temp_location=gs://dry-run-bucket/tmp",  # a VALID bucket name; it need not exist
    "--bigquery_project=dry-run-project",
]
GRAPHS = {
    # A single --input pattern is matched when the graph is built (ReadFromText validates):
    # a gs:// pattern would try GCS; an existing local file does not.
    "batch": [f"--input={SAMPLE}"],
    # Several patterns go through ReadAllFromText: not matched at build time.
    "backfill": [
        "--input=gs://dry-run-bucket/in/dt=2024-01-01/*.jsonl*,"
        "gs://dry-run-bucket/in/dt=2024-01-02/*.jsonl*",
        "--write_mode=insert_missing_by_id",
    ],
    "streaming": ["--streaming", "--subscription=projects/dry-run-project/subscriptions/events"],
}
# Leaf URNs Dataflow Runner v2 executes (the runner's primitives, Dataflow-native I/O).
DATAFLOW_LEAF_URNS = {
    common_urns.primitives.IMPULSE.urn,
    common_urns.primitives.PAR_DO.urn,
    common_urns.primitives.FLATTEN.urn,
    common_urns.primitives.GROUP_BY_KEY.urn,
    common_urns.primitives.ASSIGN_WINDOWS.urn,
    "beam:transform:pubsub_read:v1",
    "beam:transform:pubsub_write:v1",
    "beam:transform:pubsub_write:v2",
}
IDENTITY_OK = "beam:transform:pickled_python:v1"  # Create's MaybeReshuffle: output is input
WORKER_CHECK = Path(__file__).with_name("dataflow_worker_check.py")


def dry_run(kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    options = pipeline_options(DATAFLOW + GRAPHS[kind])
    pipeline = beam.Pipeline(options=options)
    with caplog.at_level(logging.WARNING):
        (build_streaming_graph if kind == "streaming" else build_graph)(pipeline)
        result = pipeline.run()
    proto = pipeline.runner.proto_pipeline  # == result.job.proto_pipeline
    path = tmp_path / f"{kind}.pb"
    path.write_bytes(proto.SerializeToString())
    return result, proto, path


@pytest.mark.parametrize("kind", list(GRAPHS))
def test_graph_builds_for_dataflow_offline(kind, tmp_path, caplog) -> None:
    result, proto, path = dry_run(kind, tmp_path, caplog)
    assert result.job.proto.type_.name == (
        "JOB_TYPE_STREAMING" if kind == "streaming" else "JOB_TYPE_BATCH"
    )
    # No warning while building: e.g. apache_beam.transforms.core's
    # "Key coder FastPrimitivesCoder for transform ... may not be deterministic".
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []

    comps = proto.components
    leaves = [t for t in comps.transforms.values() if not t.subtransforms]
    unsupported = [
        (t.unique_name, t.spec.urn)
        for t in leaves
        if t.spec.urn not in DATAFLOW_LEAF_URNS
        and not (t.spec.urn == IDENTITY_OK and dict(t.inputs) == dict(t.outputs))
    ]
    assert unsupported == []
    assert all(e.urn == common_urns.environments.DOCKER.urn for e in comps.environments.values())

    # Every stateful ParDo / GroupByKey keys on a deterministic coder.
    context = pipeline_context.PipelineContext(comps)
    loose = []
    for t in comps.transforms.values():
        if t.spec.urn == common_urns.primitives.PAR_DO.urn:
            payload = pb.ParDoPayload.FromString(t.spec.payload)
            if not (payload.state_specs or payload.timer_family_specs):
                continue
            main = [pc for tag, pc in t.inputs.items() if tag not in payload.side_inputs]
        elif t.spec.urn == common_urns.primitives.GROUP_BY_KEY.urn:
            main = list(t.inputs.values())
        else:
            continue
        kv = comps.coders[comps.pcollections[main[0]].coder_id]
        key = context.coders.get_by_id(kv.component_coder_ids[0])
        if not key.is_deterministic():
            loose.append((t.unique_name, repr(key)))
    assert loose == []

    # Every payload unpickles in a fresh, isolated process outside the repository.
    done = subprocess.run(
        [sys.executable, "-I", str(WORKER_CHECK), str(path)],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(done.stdout)
    assert report["failures"] == [], report["failures"]
    assert set(report["top_level_modules"]) <= {"apache_beam", "pipeline", "transforms"}
    counts = collections.Counter(report["checked"])
    assert counts["dofn"] > 0
