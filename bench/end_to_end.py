"""Every write method on one corpus, through the CLI, into the BigQuery emulator.

    python -m bench.end_to_end [--events 10000] [--methods FILE_LOADS,STREAMING_INSERTS]

Starts its own local stack (temporary data, the shared emulator install), writes one
corpus (``--events`` events, 2 % bad lines, 1 % replayed lines), asks ``opentrack
preview`` what it should become, then runs ``opentrack run`` once per method (each
into a fresh dataset) and once as the ``--output_dir`` dry run, each in its own
process, so process start is included. For each it prints:

- wall time and events/s, and the ratio to the dry run's events/s;
- CPU seconds of the pipeline process and of the emulator over the run;
- load jobs (and per table), insert requests, Storage Write append requests;
- whether the tables hold exactly what preview predicted (distinct ids per table,
  one users row per user, the dead letters);
- then each method once more into the dataset it made ("tables exist"): the steady
  state of a scheduled job, without the first run's table and view creation, which
  the emulator takes ~0.45 s per table for (both methods pay it alike);
- with py-spy installed (``pip install -c constraints.txt -e '.[bench]'``), a second,
  profiled run of each method and the share of its samples inside Beam's
  ``_check_row_size`` (streaming inserts' per-row size check).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench.corpus import generate
from pipeline import localstack
from pipeline.warehouse.client import make_client
from transforms.model.naming import DEAD_LETTER_TABLE, dataset_name

BAD_LINES = [b"{truncated", b"[]", b'{"type": "track", "userId": "u"}', b"\xff not utf-8"]
_TICKS = os.sysconf("SC_CLK_TCK")
DRY_RUN = "dry run (--output_dir)"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def write_corpus(path: Path, events: int) -> int:
    """``events`` events, then 2 % bad lines and 1 % replays of earlier lines; returns lines."""
    rng = random.Random(11)
    lines = generate(events, seed=5)
    for _ in range(events // 100):
        lines.insert(rng.randrange(len(lines)), lines[rng.randrange(events)])
    for n in range(events // 50):
        lines.insert(rng.randrange(len(lines)), BAD_LINES[n % len(BAD_LINES)])
    path.write_bytes(b"\n".join(lines) + b"\n")
    return len(lines)


@dataclass
class Expected:
    ids: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    dead_letters: int = 0


def predicted(corpus: Path) -> Expected:
    """What ``opentrack preview`` says the corpus becomes: ids per table, dead letters."""
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.commands.cli", "preview", "--input", str(corpus)],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    expected = Expected()
    for line in out.splitlines():
        record = orjson.loads(line)
        if "dead_letter" in record:
            expected.dead_letters += 1
        else:
            expected.ids[record["table"]].add(record["row"]["id"])
    return expected


def loaded(client, dataset: str) -> tuple[dict[str, set[str]], int]:  # noqa: ANN001
    ids: dict[str, set[str]] = {}
    dead = 0
    for table in client.list_tables(dataset):
        if table.table_type != "TABLE":
            continue
        rows = client.query(f"SELECT id FROM `{client.project}.{dataset}.{table.table_id}`")
        values = [row.id for row in rows.result()]
        if table.table_id == DEAD_LETTER_TABLE:
            dead = len(values)
        else:
            ids[table.table_id] = set(values)
    return ids, dead


def parse_counters(stdout: str) -> dict[str, int]:
    counters: dict[str, int] = {}
    lines = stdout.splitlines()
    if "counters:" not in lines:
        return counters
    for line in lines[lines.index("counters:") + 1 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counters[parts[0]] = int(parts[1])
    return counters


@dataclass
class Run:
    method: str
    seconds: float
    pipeline_cpu: float
    emulator_cpu: float
    counters: dict[str, int]
    matches: str = ""
    check_row_size: str = "n/a"


def command(method: str, corpus: Path, stack: localstack.LocalStack, scratch: Path) -> list[str]:
    base = [sys.executable, "-m", "pipeline.commands.cli", "run", f"--input={corpus}"]
    if method == DRY_RUN:
        return [*base, f"--output_dir={scratch / 'dry'}"]
    return [
        *base, f"--bigquery_project={stack.project}",
        f"--bigquery_endpoint={stack.bigquery_endpoint}",
        f"--source_name=Bench {method}", f"--write_method={method}",
        f"--bigquery_storage_endpoint={stack.bigquery_grpc_endpoint}",
    ]  # fmt: skip


def run_once(method: str, argv: list[str], emulator_pid: int) -> Run:
    emulator_before, children_before = process_cpu_seconds(emulator_pid), children_cpu_seconds()
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{method} failed:\n{done.stderr[-3000:]}")
    return Run(
        method,
        seconds,
        children_cpu_seconds() - children_before,
        process_cpu_seconds(emulator_pid) - emulator_before,
        parse_counters(done.stdout),
    )


def check_row_size_share(argv: list[str], profile: Path) -> str:
    """Share of py-spy samples (all threads) with Beam's ``_check_row_size`` on the stack."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return "py-spy not installed"
    subprocess.run(
        [spy, "record", "--format", "raw", "--rate", "50", "--nonblocking", "--output",
         str(profile), "--", *argv],
        check=True, capture_output=True,
    )  # fmt: skip
    total = inside = 0
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "process_bundle" not in stack and "_check_row_size" not in stack:
            continue  # idle and start-up threads: not the pipeline's work
        total += int(count)
        inside += int(count) if "_check_row_size" in stack else 0
    return f"{inside / max(total, 1):.0%} of {total} busy samples"


def verdict(client, run: Run, expected: Expected) -> str:  # noqa: ANN001
    ids, dead = loaded(client, dataset_name(f"Bench {run.method}"))
    want = {t: len(v) for t, v in expected.ids.items()}
    got = {t: len(v) for t, v in ids.items()}
    if got == want and dead == expected.dead_letters:
        return f"yes ({sum(got.values())} distinct rows, {dead} dead letters)"
    diff = {t: (got.get(t), want.get(t)) for t in set(got) | set(want) if got.get(t) != want.get(t)}
    return f"NO: tables (got, want) {diff}; dead letters {dead} vs {expected.dead_letters}"


def report(runs: list[Run], events: int) -> None:
    dry = next((r for r in runs if r.method == DRY_RUN), None)
    print(f"\n{events} events (+2 % bad lines, +1 % replays), one process per run:\n")
    header = ("method", "wall s", "events/s", "x dry run", "pipeline CPU s", "emulator CPU s",
              "load jobs (per table)", "insert requests", "append requests",
              "_check_row_size")  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for run in runs:
        rate = events / run.seconds
        ratio = f"{rate / (events / dry.seconds):.2f}" if dry else "n/a"
        jobs, tables = run.counters.get("bigquery_load_jobs", 0), run.counters.get("load_tables", 0)
        per_table = f"{jobs} ({jobs / tables:.1f})" if tables else str(jobs)
        inserts = str(run.counters.get("bigquery_insert_requests", 0))
        appends = str(run.counters.get("storage_write_append_requests", 0))
        cells = (run.method, f"{run.seconds:.1f}", f"{rate:,.0f}", ratio, f"{run.pipeline_cpu:.1f}",
                 f"{run.emulator_cpu:.1f}", per_table, inserts, appends,
                 run.check_row_size)  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    print()
    for run in runs:
        if run.matches:
            print(f"{run.method}: tables match preview: {run.matches}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="events in the corpus")
    parser.add_argument(
        "--methods",
        default="FILE_LOADS,STREAMING_INSERTS,STORAGE_WRITE_API",
        help="comma-separated write methods",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy runs")
    args = parser.parse_args(argv)
    methods = [DRY_RUN, *(m.strip() for m in args.methods.split(",") if m.strip())]
    with tempfile.TemporaryDirectory(prefix="opentrack-bench-") as directory:
        scratch = Path(directory)
        install = localstack.default_state_dir()
        with localstack.running(scratch / "stack", install_dir=install) as stack:
            os.environ.update(localstack.environment(stack))
            corpus = scratch / "events.jsonl"
            write_corpus(corpus, args.events)
            expected = predicted(corpus)
            client = make_client(stack.project, stack.bigquery_endpoint)
            runs = []
            for method in methods:
                print(f"running {method} ...", file=sys.stderr, flush=True)
                argv_m = command(method, corpus, stack, scratch)
                run = run_once(method, argv_m, stack.pids[0])
                if method != DRY_RUN:
                    run.matches = verdict(client, run, expected)
                    if not args.no_profile:
                        print(f"profiling {method} ...", file=sys.stderr, flush=True)
                        other = [a.replace(f"Bench {method}", f"Bench {method} p") for a in argv_m]
                        run.check_row_size = check_row_size_share(other, scratch / "prof.txt")
                runs.append(run)
                shutil.rmtree(scratch / "dry", ignore_errors=True)
            for method in methods[1:]:
                print(f"running {method} again (tables exist) ...", file=sys.stderr, flush=True)
                again = run_once(method, command(method, corpus, stack, scratch), stack.pids[0])
                again.method = f"{method} (tables exist)"
                runs.append(again)
            report(runs, args.events)
    return 1 if any(r.matches.startswith("NO") for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
