"""The pipeline against a flaky BigQuery: a fault-injecting proxy in front of the emulator.

Faults (429 rateLimitExceeded, 500 backendError/internalError, 503 backendError, answers held
past the client's timeout, connections reset before the request reaches BigQuery, answers lost
after BigQuery did the work, the emulator restarted mid-run) are injected on the pipeline's
requests only; every assertion reads the emulator directly (``bq_client``), never through the
proxy. What must hold whatever the faults, batch and streaming: every event lands once (distinct
ids + dead letters == the pure model's), no transient fault becomes a dead letter
(``write_rejected`` / ``internal_error``), and no view shows an id twice.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from bench.corpus import generate
from pipeline import localstack
from pipeline.commands.run import counters, run, start
from tests.faults.proxy import (
    INSERT_ALL,
    LOAD_JOB_INSERTS,
    LOAD_JOBS,
    TABLE_METADATA,
    FaultPlan,
    FaultProxy,
)
from tests.faults.tcp_proxy import DroppingProxy
from tests.integration.test_batch_pipeline import (
    SECONDARY,
    expected_from_model,
    query,
    source_name,
    table_counts,
)
from tests.integration.test_streaming_pipeline import (
    DEFAULT_SOURCE,
    expected_rows,
    ids_in,
    wait_for,
)
from transforms.model.naming import DEAD_LETTER_TABLE, dataset_name

_LOG = logging.getLogger(__name__)

BAD_LINES = [
    b"{truncated",
    b"[]",
    b'{"type": "track", "userId": "u"}',
    b'{"type": "teleport", "userId": "u"}',
]
TRANSIENT_REASONS = {"write_rejected", "internal_error"}


def write_corpus(path: Path, events: int = 200, seed: int = 41) -> list[bytes]:
    lines = generate(events, seed=seed)
    for position, bad in enumerate(BAD_LINES):
        lines.insert(position * 40 + 5, bad)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


def run_through(  # noqa: ANN201
    proxy: FaultProxy,
    stack,
    input_path: Path,
    source: str,
    *extra: str,  # noqa: ANN001
):
    return run(
        [
            f"--input={input_path}",
            f"--bigquery_project={stack.project}",
            f"--bigquery_endpoint={proxy.endpoint}",
            f"--source_name={source}",
            *extra,
        ]
    )


def check_every_event_once(bq_client: bigquery.Client, lines: list[bytes], source: str) -> None:
    per_table, expected_dead, _, distinct_users = expected_from_model(lines, source)
    input_events = len(lines)  # no batch lines here
    dataset = source.lower().replace(" ", "_")
    project = bq_client.project

    dead = query(
        bq_client, f"SELECT stage, reason, error FROM `{project}.{dataset}.{DEAD_LETTER_TABLE}`"
    )
    transient = [d for d in dead if d["reason"] in TRANSIENT_REASONS]
    assert not transient, (
        f"{len(transient)} transient fault(s) became dead letters, e.g. {transient[:3]}"
    )

    counts = table_counts(bq_client, dataset)
    views = {}
    for table in counts:
        if table in (DEAD_LETTER_TABLE, "users"):
            continue
        row = query(
            bq_client,
            "SELECT COUNT(DISTINCT id) AS ids, COUNT(*) AS n "
            f"FROM `{project}.{dataset}.{table}_view`",
        )[0]
        views[table] = row
    duplicated_in_views = {t: r for t, r in views.items() if r["ids"] != r["n"]}
    assert not duplicated_in_views, f"the dedup views show an id twice: {duplicated_in_views}"

    doubled = {t: n for t, n in base_duplicates(bq_client, source).items() if t in views}
    if doubled:
        # Streaming inserts are at-least-once (a lost answer is retried); the views hide it.
        _LOG.warning("duplicate rows in base tables (hidden by the views): %s", doubled)

    distinct = {t: r["ids"] for t, r in views.items()}
    assert (
        query(bq_client, f"SELECT COUNT(DISTINCT id) AS n FROM `{project}.{dataset}.users`")[0]["n"]
        == distinct_users
    )
    assert counts["users"] == distinct_users, "users must hold one row per user id"
    expected_tables = {t: n for t, n in per_table.items() if t != "users"}
    assert distinct == expected_tables, "distinct ids per table differ from the event model's"
    assert len(dead) == expected_dead == len(BAD_LINES)
    primary = sum(n for table, n in distinct.items() if table not in SECONDARY)
    assert primary + len(dead) == input_events


def report(proxy: FaultProxy) -> str:
    return (
        f"requests={proxy.requests} eligible={proxy.eligible} faults={dict(proxy.faults)} "
        f"upstream_failures={proxy.upstream_failures}"
    )


def run_faulted(
    stack,
    bq_client,
    corpus,
    plan: FaultPlan,
    name: str,
    min_faults: int,
    *extra: str,  # noqa: ANN001
) -> FaultProxy:
    """Run the batch pipeline through a proxy with ``plan``, then check every event once."""
    path, lines = corpus
    source = source_name(name)
    with FaultProxy(stack.bigquery_endpoint, plan) as proxy:
        result = run_through(proxy, stack, path, source, *extra)
    print(report(proxy), counters(result))
    assert sum(proxy.faults.values()) >= min_faults, (
        f"too few faults to mean anything: {report(proxy)}"
    )
    check_every_event_once(bq_client, lines, source)
    return proxy


@pytest.fixture()
def corpus(tmp_path: Path) -> tuple[Path, list[bytes]]:
    path = tmp_path / "events.jsonl"
    return path, write_corpus(path)


def test_mixed_faults_on_every_call_lose_and_duplicate_nothing(
    local_stack, bq_client, corpus
) -> None:
    plan = FaultPlan(
        seed=7,
        rates={"429": 0.06, "500": 0.05, "503": 0.04, "reset": 0.03, "delay": 0.02},
        skip_first=2,
        delay_seconds=1.5,
    )
    run_faulted(local_stack, bq_client, corpus, plan, "Faults Mixed", 3)


def test_faults_on_table_metadata_only(local_stack, bq_client, corpus) -> None:
    plan = FaultPlan(
        seed=11,
        rates={"429": 0.12, "500": 0.08, "503": 0.08, "reset": 0.05},
        path_filter=TABLE_METADATA,
        skip_first=2,
    )
    run_faulted(local_stack, bq_client, corpus, plan, "Faults Metadata", 2)


def test_faults_on_insert_all_only(local_stack, bq_client, corpus) -> None:
    plan = FaultPlan(
        seed=5,
        rates={"429": 0.1, "500": 0.06, "503": 0.06, "reset": 0.04},
        path_filter=INSERT_ALL,
        skip_first=0,
    )
    run_faulted(
        local_stack, bq_client, corpus, plan, "Faults Inserts", 2,
        "--write_method=STREAMING_INSERTS",
    )  # fmt: skip


def base_duplicates(bq_client: bigquery.Client, source: str) -> dict[str, int]:
    dataset, project = dataset_name(source), bq_client.project
    found = {}
    for table in table_counts(bq_client, dataset):
        row = query(
            bq_client,
            f"SELECT COUNT(DISTINCT id) AS ids, COUNT(*) AS n FROM `{project}.{dataset}.{table}`",
        )[0]
        if row["ids"] != row["n"]:
            found[table] = row["n"] - row["ids"]
    return found


def test_faults_on_load_jobs_lose_nothing_and_never_load_twice(
    local_stack, bq_client, corpus
) -> None:
    """5xx and resets on the upload that starts a load job and on its polls, and answers
    lost after BigQuery started the job: the job is found again by its id, never re-run."""
    plan = FaultPlan(
        seed=3,
        rates={"500": 0.1, "503": 0.1, "reset": 0.1, "lost": 0.15},
        path_filter=LOAD_JOBS,
        skip_first=0,
    )
    path, lines = corpus
    source = source_name("Faults Loads")
    with FaultProxy(local_stack.bigquery_endpoint, plan) as proxy:
        result = run_through(proxy, local_stack, path, source, "--write_method=FILE_LOADS")
    print(report(proxy), counters(result))
    assert proxy.faults["lost"] >= 1 and sum(proxy.faults.values()) >= 4, report(proxy)
    check_every_event_once(bq_client, lines, source)
    assert base_duplicates(bq_client, source) == {}, "a load ran twice"


def test_load_jobs_bigquery_fails_are_started_again_once(local_stack, bq_client, corpus) -> None:
    """Load jobs that BigQuery itself failed (backendError; they wrote nothing) are started
    again under the next attempt's id: every event once, no table loaded twice."""
    plan = FaultPlan(nth={1: "job_failed", 3: "job_failed"}, path_filter=LOAD_JOB_INSERTS)
    path, lines = corpus
    source = source_name("Faults Failed Jobs")
    with FaultProxy(local_stack.bigquery_endpoint, plan) as proxy:
        result = run_through(proxy, local_stack, path, source, "--write_method=FILE_LOADS")
    seen = counters(result)
    print(report(proxy), seen)
    assert proxy.faults["job_failed"] == 2, report(proxy)
    check_every_event_once(bq_client, lines, source)
    assert base_duplicates(bq_client, source) == {}, "a load ran twice"
    # the two failed jobs are the only extra ones (staging loads are counted elsewhere)
    assert seen["bigquery_load_jobs"] - seen["load_tables"] <= 2


def test_lost_answers_and_client_timeouts_lose_and_duplicate_nothing(
    local_stack, bq_client, corpus
) -> None:
    """BigQuery did the work but the client never heard: creates answered 409 on retry,
    patches 412, inserts landing twice. And answers held past the request timeout."""
    plan = FaultPlan(
        seed=23,
        rates={"lost": 0.12, "delay": 0.06},
        path_filter=f"{INSERT_ALL}|{TABLE_METADATA}",
        skip_first=1,
        delay_seconds=4.5,
    )
    proxy = run_faulted(
        local_stack, bq_client, corpus, plan, "Faults Lost", 3, "--request_timeout_seconds=3",
        "--write_method=STREAMING_INSERTS",
    )  # fmt: skip
    assert proxy.faults["lost"] >= 2 and proxy.faults["delay"] >= 1, report(proxy)


def test_emulator_restart_mid_run_loses_nothing(
    local_stack, local_stack_install_dir, tmp_path, corpus
) -> None:
    """The emulator stops after the first inserts and comes back on the same port and data:
    requests meanwhile are refused (the proxy resets them) and retried. A stack of its own,
    so the session's stack is never restarted under other tests."""
    path, lines = corpus
    source = source_name("Faults Restart")
    state_dir = tmp_path / "restart-stack"
    restarted = threading.Event()
    errors: list[BaseException] = []
    with localstack.running(state_dir, install_dir=local_stack_install_dir) as stack:
        client = bigquery.Client(
            project=stack.project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": stack.bigquery_endpoint},
        )
        plan = FaultPlan(path_filter=INSERT_ALL)
        with FaultProxy(stack.bigquery_endpoint, plan) as proxy:

            def restart_after_first_inserts() -> None:
                try:
                    deadline = time.monotonic() + 120
                    while proxy.eligible < 3 and time.monotonic() < deadline:
                        time.sleep(0.05)
                    localstack.restart_bigquery(state_dir)
                    restarted.set()
                except BaseException as error:  # noqa: BLE001 - reported by the test
                    errors.append(error)

            restarter = threading.Thread(target=restart_after_first_inserts, daemon=True)
            restarter.start()
            result = run_through(proxy, stack, path, source, "--write_method=STREAMING_INSERTS")
            restarter.join(timeout=120)
        print(report(proxy), counters(result))
        assert not errors, errors
        assert restarted.is_set(), "the emulator was never restarted"
        assert proxy.upstream_failures >= 1, f"no request met the restart: {report(proxy)}"
        check_every_event_once(client, lines, source)
        client.close()


@pytest.mark.parametrize("method", ["STREAMING_INSERTS", "STORAGE_WRITE_API"])
def test_streaming_through_faults_loads_every_message_once(
    local_stack, bq_client, pubsub_publisher, pubsub_subscriber, method: str
) -> None:
    """Faults on every REST call; with the Storage Write API also appends whose answers
    are lost on the way back (a loopback TCP proxy resets the gRPC connection)."""
    suffix = uuid.uuid4().hex[:6]
    web = f"Faulty Web {suffix}"
    topic = pubsub_publisher.topic_path(local_stack.project, f"faults-{suffix}")
    subscription = pubsub_subscriber.subscription_path(local_stack.project, f"faults-{suffix}")
    pubsub_publisher.create_topic(name=topic)
    pubsub_subscriber.create_subscription(name=subscription, topic=topic)
    messages = [(line, {"source": web}) for line in generate(40, seed=77)]
    messages += messages[:6]  # re-published: loaded once
    messages += [
        (b"{broken", {"source": web}),
        (b'{"type": "track", "userId": "u"}', {"source": web}),
    ]
    plan = FaultPlan(
        seed=31,
        rates={"429": 0.03, "500": 0.03, "503": 0.02, "reset": 0.02, "lost": 0.03, "delay": 0.02},
        skip_first=2,
        delay_seconds=4.5,
    )
    with (
        FaultProxy(local_stack.bigquery_endpoint, plan) as proxy,
        DroppingProxy(local_stack.bigquery_grpc_endpoint, resets=3) as grpc_proxy,
    ):
        result = start(
            [
                "--streaming",
                f"--subscription={subscription}",
                f"--bigquery_project={local_stack.project}",
                f"--bigquery_endpoint={proxy.endpoint}",
                f"--bigquery_storage_endpoint={grpc_proxy.endpoint}",
                f"--write_method={method}",
                f"--source_name={DEFAULT_SOURCE}",
                "--request_timeout_seconds=3",
                "--schema_cache_ttl_seconds=5",
                "--users_merge_interval_seconds=2",
                "--schema_retry_delays=1,3",
                "--mutation_batch_seconds=0.5",
            ]
        )
        try:
            futures = [pubsub_publisher.publish(topic, data, **attrs) for data, attrs in messages]
            for future in futures:
                future.result(timeout=30)
            expected, expected_dead = expected_rows(messages)
            dataset = dataset_name(web)

            def all_loaded() -> bool:
                return (
                    all(
                        set(ids_in(bq_client, ds, f"{table}_view")) >= ids
                        for (ds, table), ids in expected.items()
                    )
                    and len(ids_in(bq_client, dataset, DEAD_LETTER_TABLE)) >= expected_dead
                )

            wait_for(all_loaded, "every expected row through the faults", timeout=180)
            time.sleep(3)  # a late retry or duplicate would land by now
        finally:
            result.cancel()
    print(report(proxy), f"grpc answers lost: {grpc_proxy.dropped}")
    assert sum(proxy.faults.values()) >= 5, f"too few faults to mean anything: {report(proxy)}"
    if method == "STORAGE_WRITE_API":
        assert grpc_proxy.dropped >= 1, "no append answer was lost"
        assert base_duplicates(bq_client, web) == {}, "a resent append landed twice"
    for (ds, table), ids in expected.items():
        view = ids_in(bq_client, ds, f"{table}_view")
        assert sorted(view) == sorted(ids), f"{ds}.{table}_view: each message exactly once"
        assert set(ids_in(bq_client, ds, table)) == ids, f"{ds}.{table}: nothing lost or foreign"
    dead = query(
        bq_client,
        f"SELECT reason FROM `{bq_client.project}.{dataset}.{DEAD_LETTER_TABLE}`",
    )
    assert sorted(d["reason"] for d in dead) == ["invalid_json", "missing_event"]
    assert expected_dead == 2
