"""Simulate a worker: unpickle every serialized payload of a Runner API pipeline proto.

Run in a fresh process, outside the repository, isolated (``-I``: no current directory or
PYTHONPATH on sys.path), as ``tests/unit/test_dataflow_dry_run.py`` does:
    cd / && .venv/bin/python -I tests/unit/dataflow_worker_check.py PIPELINE.pb
Prints one JSON object: counts, failures, top-level modules the unpickling imported.
"""

import json
import sys
import time

from apache_beam.internal import pickler
from apache_beam.portability import common_urns, python_urns
from apache_beam.portability.api import beam_runner_api_pb2 as pb
from apache_beam.runners import pipeline_context

t0 = time.perf_counter()
path = sys.argv[1]

pickler.set_library("default")  # what the worker uses unless --pickle_library was given
proto = pb.Pipeline.FromString(open(path, "rb").read())
comps = proto.components
before = set(sys.modules)
checked, failures = [], []


def attempt(kind, ident, fn):
    try:
        obj = fn()
        checked.append(
            (
                kind,
                ident,
                type(obj).__name__ if not isinstance(obj, tuple) else type(obj[0]).__name__,
            )
        )
    except BaseException as e:  # noqa: BLE001 - report everything
        failures.append({"kind": kind, "id": ident, "error": f"{type(e).__name__}: {e}"})


def loads(payload):
    return lambda: pickler.loads(payload)


ctx = pipeline_context.PipelineContext(comps)
for cid in comps.coders:
    attempt("coder", cid, lambda cid=cid: ctx.coders.get_by_id(cid))
for wid in comps.windowing_strategies:
    attempt("windowing", wid, lambda wid=wid: ctx.windowing_strategies.get_by_id(wid))

for t in comps.transforms.values():
    urn, payload = t.spec.urn, t.spec.payload
    label = t.unique_name
    if urn == common_urns.primitives.PAR_DO.urn:
        p = pb.ParDoPayload.FromString(payload)
        if p.do_fn.urn == python_urns.PICKLED_DOFN_INFO:
            attempt("dofn", label, loads(p.do_fn.payload))
        for tag, si in p.side_inputs.items():
            if si.view_fn.urn == python_urns.PICKLED_VIEWFN:
                attempt("view_fn", f"{label}[{tag}]", loads(si.view_fn.payload))
            if si.window_mapping_fn.urn == python_urns.PICKLED_WINDOW_MAPPING_FN:
                attempt("window_mapping_fn", f"{label}[{tag}]", loads(si.window_mapping_fn.payload))
    elif urn in (
        common_urns.composites.COMBINE_PER_KEY.urn,
        common_urns.composites.COMBINE_GLOBALLY.urn,
        common_urns.combine_components.COMBINE_PER_KEY_PRECOMBINE.urn,
        common_urns.combine_components.COMBINE_PER_KEY_MERGE_ACCUMULATORS.urn,
        common_urns.combine_components.COMBINE_PER_KEY_EXTRACT_OUTPUTS.urn,
        common_urns.combine_components.COMBINE_GROUPED_VALUES.urn,
    ):
        p = pb.CombinePayload.FromString(payload)
        if p.combine_fn.urn in (python_urns.PICKLED_COMBINE_FN, python_urns.PACKED_COMBINE_FN):
            attempt("combine_fn", label, loads(p.combine_fn.payload))
    elif urn == common_urns.primitives.ASSIGN_WINDOWS.urn:
        p = pb.WindowIntoPayload.FromString(payload)
        if p.window_fn.urn == python_urns.PICKLED_WINDOWFN:
            attempt("window_fn", label, loads(p.window_fn.payload))
    elif urn == common_urns.deprecated_primitives.READ.urn:
        p = pb.ReadPayload.FromString(payload)
        if p.source.urn == python_urns.PICKLED_SOURCE:
            attempt("source", label, loads(p.source.payload))
    elif urn == python_urns.PICKLED_TRANSFORM:
        attempt("pickled_transform", label, loads(payload))

new = sorted({m.split(".")[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names))
kinds = {}
for k, _, _ in checked:
    kinds[k] = kinds.get(k, 0) + 1
print(
    json.dumps(
        {
            "sys_path": sys.path,
            "checked": kinds,
            "failures": failures,
            "top_level_modules": new,
            "pipeline_transforms_origin": {
                m: getattr(sys.modules.get(m), "__file__", None) for m in ("pipeline", "transforms")
            },
            "seconds": round(time.perf_counter() - t0, 2),
        },
        indent=1,
    )
)
sys.exit(1 if failures else 0)
