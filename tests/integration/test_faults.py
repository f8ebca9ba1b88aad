"""The batch pipeline against a flaky BigQuery: a fault-injecting proxy in front of the emulator.

Faults (429 rateLimitExceeded, 500 backendError/internalError, 503 backendError, slow answers,
connection resets) are injected on the pipeline's requests only; every assertion reads the
emulator directly (``bq_client``), never through the proxy. What must hold whatever the faults:
every event lands once (rows + dead letters == the pure model's), no transient fault becomes a
dead letter (``write_rejected`` / ``internal_error``), and no id is shown twice.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from google.cloud import bigquery

from bench.corpus import generate
from pipeline.run import counters, run
from tests.faults.proxy import INSERT_ALL, TABLE_METADATA, FaultPlan, FaultProxy
from tests.integration.test_batch_pipeline import (
    SECONDARY,
    expected_from_model,
    query,
    source_name,
    table_counts,
)
from transforms.naming import DEAD_LETTER_TABLE

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


def run_through(proxy: FaultProxy, stack, input_path: Path, source: str):  # noqa: ANN001, ANN201
    return run(
        [
            f"--input={input_path}",
            f"--bigquery_project={stack.project}",
            f"--bigquery_endpoint={proxy.endpoint}",
            f"--source_name={source}",
        ]
    )


def check_every_event_once(bq_client: bigquery.Client, lines: list[bytes], source: str) -> None:
    per_table, expected_dead, _, distinct_users = expected_from_model(lines, source)
    input_events = len(lines)  # no batch lines here
    dataset = source.lower().replace(" ", "_")
    project = bq_client.project

    dead = query(bq_client, f"SELECT stage, reason, error FROM `{project}.{dataset}.{DEAD_LETTER_TABLE}`")
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
            f"SELECT COUNT(DISTINCT id) AS ids, COUNT(*) AS n FROM `{project}.{dataset}.{table}_view`",
        )[0]
        views[table] = row
    duplicated_in_views = {t: r for t, r in views.items() if r["ids"] != r["n"]}
    assert not duplicated_in_views, f"the dedup views show an id twice: {duplicated_in_views}"

    base_duplicates = {}
    for table in views:
        row = query(
            bq_client,
            f"SELECT COUNT(DISTINCT id) AS ids, COUNT(*) AS n FROM `{project}.{dataset}.{table}`",
        )[0]
        if row["ids"] != row["n"]:
            base_duplicates[table] = row["n"] - row["ids"]
    if base_duplicates:
        # Streaming inserts are at-least-once (a lost answer is retried); the views hide it.
        _LOG.warning("duplicate rows in base tables (hidden by the views): %s", base_duplicates)

    distinct = {t: r["ids"] for t, r in views.items()}
    assert query(
        bq_client, f"SELECT COUNT(DISTINCT id) AS n FROM `{project}.{dataset}.users`"
    )[0]["n"] == distinct_users
    assert counts["users"] == distinct_users, "users must hold one row per user id"
    expected_tables = {t: n for t, n in per_table.items() if t != "users"}
    assert distinct == expected_tables, "distinct ids per table differ from the event model's"
    assert len(dead) == expected_dead == len(BAD_LINES)
    primary = sum(n for table, n in distinct.items() if table not in SECONDARY)
    assert primary + len(dead) == input_events


def report(proxy: FaultProxy) -> str:
    return f"requests={proxy.requests} eligible={proxy.eligible} faults={dict(proxy.faults)}"


@pytest.fixture()
def corpus(tmp_path: Path) -> tuple[Path, list[bytes]]:
    path = tmp_path / "events.jsonl"
    return path, write_corpus(path)


def test_mixed_faults_on_every_call_lose_and_duplicate_nothing(
    local_stack, bq_client, corpus
) -> None:
    path, lines = corpus
    source = source_name("Faults Mixed")
    plan = FaultPlan(
        seed=7,
        rates={"429": 0.06, "500": 0.05, "503": 0.04, "reset": 0.03, "delay": 0.02},
        skip_first=2,
        delay_seconds=1.5,
    )
    with FaultProxy(local_stack.bigquery_endpoint, plan) as proxy:
        result = run_through(proxy, local_stack, path, source)
    print(report(proxy), counters(result))
    assert sum(proxy.faults.values()) >= 3, f"too few faults to mean anything: {report(proxy)}"
    check_every_event_once(bq_client, lines, source)


def test_faults_on_table_metadata_only(local_stack, bq_client, corpus) -> None:
    path, lines = corpus
    source = source_name("Faults Metadata")
    plan = FaultPlan(
        seed=11,
        rates={"429": 0.12, "500": 0.08, "503": 0.08, "reset": 0.05},
        path_filter=TABLE_METADATA,
        skip_first=2,
    )
    with FaultProxy(local_stack.bigquery_endpoint, plan) as proxy:
        result = run_through(proxy, local_stack, path, source)
    print(report(proxy), counters(result))
    assert sum(proxy.faults.values()) >= 2, f"too few faults to mean anything: {report(proxy)}"
    check_every_event_once(bq_client, lines, source)


def test_faults_on_insert_all_only(local_stack, bq_client, corpus) -> None:
    path, lines = corpus
    source = source_name("Faults Inserts")
    plan = FaultPlan(
        seed=5,
        rates={"429": 0.1, "500": 0.06, "503": 0.06, "reset": 0.04},
        path_filter=INSERT_ALL,
        skip_first=0,
    )
    with FaultProxy(local_stack.bigquery_endpoint, plan) as proxy:
        result = run_through(proxy, local_stack, path, source)
    print(report(proxy), counters(result))
    assert sum(proxy.faults.values()) >= 2, f"too few faults to mean anything: {report(proxy)}"
    check_every_event_once(bq_client, lines, source)
