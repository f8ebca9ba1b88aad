"""Soak tests: memory and throughput of the batch pipeline as the input grows, and
RSS / lag of the streaming pipeline over a long steady publish.

    python -m bench.soak batch [--events 100000,1000000]
    python -m bench.soak backfill [--events 100000,1000000]
    python -m bench.soak streaming [--minutes 30] [--rate 50]

batch: for each size, writes the corpus to a temporary file in chunks (the bench
process never holds the whole corpus), runs ``opentrack run --input FILE
--output_dir DIR`` (local FnApiRunner, file sink, no service) in a fresh child
process, and reports its wall time, events/s and peak RSS (GNU ``time`` when
available, else ``getrusage(RUSAGE_CHILDREN)``), then the rows and dead letters
found in the output files.

backfill: the same, but into the BigQuery emulator of a local stack it starts, as a
backfill loads (``--write_mode=insert_missing_by_id``, load jobs): rows are staged
and MERGEd per id shard. It reports peak RSS and the distinct ids found in the
per-type tables (one per event).

streaming: starts the local stack, creates a topic and subscription, starts
``opentrack run --streaming`` in a child process, publishes ``--rate`` events/s
for ``--minutes``, and every ``--sample`` seconds prints the child's RSS, the
events published, the events loaded (rows of the per-type tables: tracks, pages,
identifies, screens, groups, aliases: one row per event) and the lag between them.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.corpus import generate

SOURCE = "Soak"
DATASET = "soak"
CHUNK = 50_000
# One row per event in exactly one of these tables (Segment's per-type tables).
EVENT_TABLES = ("tracks", "pages", "identifies", "screens", "groups", "aliases")
GNU_TIME = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)


# ----------------------------------------------------------------------------- batch


def write_corpus(path: Path, events: int) -> None:
    """``events`` lines of the corpus, generated and written ``CHUNK`` at a time."""
    with path.open("wb") as handle:
        written, seed = 0, 1000
        while written < events:
            count = min(CHUNK, events - written)
            lines = generate(count, seed=seed)
            handle.write(b"\n".join(lines) + b"\n")
            del lines
            written += count
            seed += 1


def _run_child(argv: list[str], log: Path) -> tuple[int, float, float]:
    """Run ``argv`` in a child; return (exit code, seconds, peak RSS in MB)."""
    stats = log.with_suffix(".time")
    command = list(argv)
    if GNU_TIME:
        command = [GNU_TIME, "-f", "%M", "-o", str(stats), *command]
    started = time.perf_counter()
    with log.open("wb") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    seconds = time.perf_counter() - started
    peak_kb = None
    if GNU_TIME and stats.exists():
        try:
            peak_kb = int(stats.read_text().strip().splitlines()[-1])
        except (ValueError, IndexError):
            peak_kb = None
    if peak_kb is None:  # RUSAGE_CHILDREN is a running max: exact when this child is the largest
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return code, seconds, peak_kb / 1024


def count_output(output_dir: Path) -> tuple[int, int, int]:
    """(rows, of which event-table rows, dead letters) in the file sink's output."""
    from transforms.beam.file_sink import FILE_SUFFIX
    from transforms.model.naming import DEAD_LETTER_TABLE

    rows = event_rows = dead = 0
    for path in output_dir.rglob(f"*{FILE_SUFFIX}"):
        table = path.name.partition(".")[2].split("-", 1)[0]
        with path.open("rb") as handle:
            lines = sum(1 for line in handle if line.strip())
        if table == DEAD_LETTER_TABLE:
            dead += lines
        else:
            rows += lines
            if table in EVENT_TABLES:
                event_rows += lines
    return rows, event_rows, dead


def _distinct_events(client, dataset: str) -> int:  # noqa: ANN001 - bigquery.Client
    """Distinct ids over the per-type tables of ``dataset`` (one per event)."""
    made = {t.table_id for t in client.list_tables(dataset)}
    total = 0
    for table in EVENT_TABLES:
        if table in made:
            sql = f"SELECT COUNT(DISTINCT id) AS n FROM `{client.project}.{dataset}.{table}`"
            total += list(client.query(sql).result())[0]["n"]
    return total


def _dead_letters(client, dataset: str) -> int:  # noqa: ANN001 - bigquery.Client
    from transforms.model.naming import DEAD_LETTER_TABLE

    if DEAD_LETTER_TABLE not in {t.table_id for t in client.list_tables(dataset)}:
        return 0
    sql = f"SELECT COUNT(*) AS n FROM `{client.project}.{dataset}.{DEAD_LETTER_TABLE}`"
    return list(client.query(sql).result())[0]["n"]


def batch(args: argparse.Namespace) -> int:
    if args.mode != "backfill":
        return _sizes(args, None)
    from pipeline import localstack

    with tempfile.TemporaryDirectory(prefix="opentrack-soak-backfill-", dir=args.tmp) as scratch:
        with localstack.running(
            Path(scratch) / "stack", install_dir=localstack.default_state_dir()
        ) as stack:
            return _sizes(args, stack)


def _sizes(args: argparse.Namespace, stack) -> int:  # noqa: ANN001, C901 - LocalStack or None
    from pipeline.warehouse.client import make_client
    from transforms.model.naming import dataset_name

    sizes = [int(s.replace("_", "")) for s in args.events.split(",") if s.strip()]
    results = []
    for events in sizes:
        with tempfile.TemporaryDirectory(prefix="opentrack-soak-", dir=args.tmp) as scratch:
            scratch_path = Path(scratch)
            corpus = scratch_path / "events.jsonl"
            began = time.perf_counter()
            write_corpus(corpus, events)
            size_mb = corpus.stat().st_size / 1e6
            print(
                f"[{events:,} events] corpus {size_mb:,.0f} MB written in "
                f"{time.perf_counter() - began:.1f} s; running the pipeline...",
                flush=True,
            )
            output_dir = scratch_path / "out"
            source = SOURCE if stack is None else f"{SOURCE} {events}"
            argv = [
                sys.executable,
                "-m",
                "pipeline.commands.cli",
                "run",
                "--input",
                str(corpus),
                "--source_name",
                source,
                *args.pipeline_arg,
            ]
            if stack is None:
                argv += ["--output_dir", str(output_dir)]
            else:
                argv += [
                    f"--bigquery_project={stack.project}",
                    f"--bigquery_endpoint={stack.bigquery_endpoint}",
                    "--write_mode=insert_missing_by_id",
                    "--write_method=FILE_LOADS",
                    f"--temp_location={scratch_path}",
                ]
            log = scratch_path / "run.log"
            code, seconds, peak_mb = _run_child(argv, log)
            if code != 0:
                print(f"[{events:,} events] pipeline FAILED (exit {code}); last log lines:")
                print("\n".join(log.read_text(errors="replace").splitlines()[-30:]))
                if args.keep_logs:
                    shutil.copy(log, Path(args.keep_logs) / f"soak-{events}.log")
                return 1
            if stack is None:
                rows, event_rows, dead = count_output(output_dir)
            else:
                client = make_client(stack.project, stack.bigquery_endpoint)
                rows = event_rows = _distinct_events(client, dataset_name(source))
                dead = _dead_letters(client, dataset_name(source))
            print(
                f"[{events:,} events] {seconds:.1f} s, {events / seconds:,.0f} events/s, "
                f"peak RSS {peak_mb:,.0f} MB, rows {rows:,} (event-table rows {event_rows:,}"
                f"{'' if event_rows == events else ' != events!'}), dead letters {dead:,}",
                flush=True,
            )
            results.append((events, seconds, peak_mb, rows, event_rows, dead))
    print()
    print(
        f"{'events':>10} {'seconds':>9} {'events/s':>9} {'peak RSS MB':>12} "
        f"{'rows':>10} {'dead letters':>12}"
    )
    for events, seconds, peak_mb, rows, _event_rows, dead in results:
        print(
            f"{events:>10,} {seconds:>9.1f} {events / seconds:>9,.0f} {peak_mb:>12,.0f} "
            f"{rows:>10,} {dead:>12,}"
        )
    if len(results) >= 2:
        (small, _, small_peak, *_), (large, _, large_peak, *_) = results[0], results[-1]
        print(
            f"peak RSS ratio {large:,}/{small:,} events: {large_peak / small_peak:.2f}x "
            f"(input ratio {large / small:.0f}x)"
        )
    print(f"peak RSS measured with {'GNU time %M' if GNU_TIME else 'getrusage(RUSAGE_CHILDREN)'}")
    return 0


# ------------------------------------------------------------------------- streaming


def _rss_mb(pid: int) -> float | None:
    """VmRSS of ``pid`` and its descendants (the DirectRunner may spawn none)."""
    total_kb = 0
    pids = [pid]
    seen = set()
    while pids:
        current = pids.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            if current == pid:
                return None
            continue
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            pids.extend(int(c) for c in children)
        except OSError:
            pass
    return total_kb / 1024


def _loaded_events(client) -> tuple[int, int]:  # noqa: ANN001 - bigquery.Client
    """(events loaded = rows of the per-type tables, all rows except users/staging)."""
    from google.api_core.exceptions import NotFound

    try:
        tables = [t.table_id for t in client.list_tables(DATASET) if t.table_type == "TABLE"]
    except Exception:  # noqa: BLE001 - dataset not made yet
        return 0, 0
    events = rows = 0
    for table in tables:
        if table.startswith("_opentrack_users") or table == "users":
            continue
        sql = f"SELECT COUNT(*) AS n FROM `{client.project}.{DATASET}.{table}`"
        try:
            n = list(client.query(sql).result())[0]["n"]
        except NotFound:
            continue
        rows += n
        if table in EVENT_TABLES:
            events += n
    return events, rows


def _stop(child: subprocess.Popen, timeout: float) -> str:
    if child.poll() is not None:
        return f"child had already exited ({child.returncode})"
    child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=timeout)
        return f"child stopped by SIGINT (exit {child.returncode})"
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(timeout=30)
        return f"child did not stop within {timeout:.0f} s of SIGINT: SIGKILLed"


def streaming(args: argparse.Namespace) -> int:
    from google.cloud import pubsub_v1

    from pipeline import localstack
    from pipeline.warehouse.client import make_client

    duration = args.minutes * 60
    samples: list[tuple[float, float | None, int, int, int]] = []
    with tempfile.TemporaryDirectory(prefix="opentrack-soak-stream-", dir=args.tmp) as scratch:
        scratch_path = Path(scratch)
        with localstack.running(
            scratch_path / "stack", install_dir=localstack.default_state_dir()
        ) as stack:
            env = dict(os.environ, **localstack.environment(stack))
            os.environ.update(localstack.environment(stack))
            publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
            topic = publisher.topic_path(stack.project, "soak-events")
            subscription = subscriber.subscription_path(stack.project, "soak-events")
            publisher.create_topic(name=topic)
            subscriber.create_subscription(name=subscription, topic=topic)
            client = make_client(stack.project, stack.bigquery_endpoint)
            log = scratch_path / "pipeline.log"
            argv = [
                sys.executable,
                "-m",
                "pipeline.commands.cli",
                "run",
                "--streaming",
                f"--subscription={subscription}",
                f"--bigquery_project={stack.project}",
                f"--bigquery_endpoint={stack.bigquery_endpoint}",
                f"--source_name={SOURCE}",
                f"--bigquery_storage_endpoint={stack.bigquery_grpc_endpoint}",
                *args.pipeline_arg,
            ]
            with log.open("wb") as out:
                child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
            print(
                f"streaming soak: {args.rate} events/s for {args.minutes} min, sample every "
                f"{args.sample:.0f} s; pipeline pid {child.pid}",
                flush=True,
            )
            print(
                f"{'t (s)':>7} {'RSS MB':>8} {'published':>10} {'loaded':>8} {'lag':>7} "
                f"{'rows':>8}",
                flush=True,
            )
            published = 0
            pending = []
            buffer: list[bytes] = []
            seed = 5000
            started = time.monotonic()
            next_sample = started + args.sample
            try:
                while True:
                    now = time.monotonic()
                    elapsed = now - started
                    if elapsed >= duration:
                        break
                    if child.poll() is not None:
                        print(f"pipeline child exited early (code {child.returncode})")
                        break
                    due = min(int(elapsed * args.rate) + 1, int(duration * args.rate))
                    while published < due:
                        if not buffer:
                            buffer = generate(max(1000, int(args.rate * 60)), seed=seed)[::-1]
                            seed += 1
                        pending.append(publisher.publish(topic, buffer.pop()))
                        published += 1
                    if len(pending) > 500:
                        for future in pending:
                            future.result(timeout=60)
                        pending = []
                    if now >= next_sample:
                        for future in pending:
                            future.result(timeout=60)
                        pending = []
                        loaded, rows = _loaded_events(client)
                        rss = _rss_mb(child.pid)
                        samples.append((elapsed, rss, published, loaded, rows))
                        print(
                            f"{elapsed:>7.0f} {rss if rss is not None else float('nan'):>8.0f} "
                            f"{published:>10,} {loaded:>8,} {published - loaded:>7,} "
                            f"{rows:>8,}",
                            flush=True,
                        )
                        next_sample += args.sample
                    time.sleep(min(0.05, 1 / max(args.rate, 1)))
                for future in pending:
                    future.result(timeout=60)
                # drain: how long until loaded catches up (bounded)
                drain_started = time.monotonic()
                loaded, rows = _loaded_events(client)
                while loaded < published and time.monotonic() - drain_started < args.drain:
                    time.sleep(5)
                    loaded, rows = _loaded_events(client)
                drain_seconds = time.monotonic() - drain_started
                final_rss = _rss_mb(child.pid)
            finally:
                stop_message = _stop(child, args.stop_timeout)
            print(stop_message)
            if child.returncode not in (0, None) and args.show_log:
                print("\n".join(log.read_text(errors="replace").splitlines()[-20:]))
    print()
    print("summary:")
    if samples:
        first_rss, last_rss = samples[0][1], samples[-1][1]
        lags = [p - loaded for _, _, p, loaded, _ in samples]
        print(
            f"  RSS first sample {first_rss or 0:,.0f} MB, last sample {last_rss or 0:,.0f} MB, "
            f"after publishing/draining {final_rss or 0:,.0f} MB, "
            f"max {max((s[1] or 0) for s in samples):,.0f} MB"
        )
        print(
            f"  lag (published - loaded events): max {max(lags):,}, "
            f"samples {', '.join(str(x) for x in lags)}"
        )
        half = len(lags) // 2
        if half:
            early, late = sum(lags[:half]) / half, sum(lags[half:]) / (len(lags) - half)
            trend = (
                "growing"
                if late > early * 1.25 + 5
                else "shrinking"
                if late < early * 0.8 - 5
                else "flat"
            )
            print(f"  lag trend: mean first half {early:,.1f}, second half {late:,.1f}: {trend}")
    print(
        f"  published {published:,} events; loaded {loaded:,} events ({rows:,} rows) "
        f"{drain_seconds:.0f} s after publishing stopped"
        f"{'' if loaded >= published else ' (drain timed out)'}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tmp", default=None, help="directory for temporary files")
    modes = parser.add_subparsers(dest="mode", required=True)
    for mode, text in (
        ("batch", "batch RSS and throughput across input sizes (file sink)"),
        ("backfill", "the same as a backfill into the local BigQuery emulator"),
    ):
        b = modes.add_parser(mode, help=text)
        b.add_argument("--events", default="100000,1000000", help="comma-separated sizes")
        b.add_argument("--keep_logs", default=None, help="copy a failed run's log here")
        b.add_argument(
            "--pipeline_arg",
            action="append",
            default=[],
            help="extra option for the pipeline, e.g. --pipeline_arg=--local_slice_mb=0",
        )
    s = modes.add_parser("streaming", help="streaming RSS and lag over a steady publish")
    s.add_argument("--minutes", type=float, default=30)
    s.add_argument("--rate", type=float, default=50, help="events per second")
    s.add_argument("--sample", type=float, default=30, help="seconds between samples")
    s.add_argument(
        "--drain",
        type=float,
        default=120,
        help="seconds to wait for the lag to clear after publishing stops",
    )
    s.add_argument("--stop_timeout", type=float, default=60)
    s.add_argument("--show_log", action="store_true")
    s.add_argument(
        "--pipeline_arg",
        action="append",
        default=[],
        help="extra option for the pipeline, e.g. --pipeline_arg=--dedup_window_seconds=300",
    )
    args = parser.parse_args(argv)
    return streaming(args) if args.mode == "streaming" else batch(args)


if __name__ == "__main__":
    raise SystemExit(main())
