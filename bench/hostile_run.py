"""A mixed hostile run on the local stack: every input event accounted for.

    python -m bench.hostile_run [--events 2000] [--write_method FILE_LOADS]

Writes a corpus of ordinary events mixed with hostile classes (integers past 2**53
and past INT64 beside floats, timestamp-looking text beside other text, names
BigQuery reserves, month-old events with ``sentAt``, replays, batch envelopes,
colliding and empty keys, lines that cannot be events), runs ``opentrack run`` on it
into the BigQuery emulator, and checks the one rule that matters: every event is a
distinct id in its table's dedup view or exactly one dead letter, none both, none
neither. It prints the count of each and of the unexplained, then spot checks the
rules for digits, text and time (``README.md``, "Faults and hostile input").
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from bench.corpus import generate
from pipeline import localstack
from pipeline.warehouse.client import make_client
from transforms.model.naming import DEAD_LETTER_TABLE

SOURCE = "Hostile Run"
DATASET = "hostile_run"
PRIMARY = ("tracks", "pages", "identifies", "screens", "groups", "aliases")
WIDE = (2**53 + 1, 2**63 - 1, -(2**63), 4611686018427387905)
PAST_INT64 = (2**63, 2**64 - 1)
STAMPS = ("2024-01-01T10:00:00+02:00", "2024-01-01 08:00:00Z", "2024-01-01t08:00:00.5z")
NOT_EVENTS = (b"not json", b"[1,2]", b'"text"', b"{", b'{"type":"track"}', b'{"type":"nope"}')


def _track(message_id: str, event: str = "Hostile Event", **fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": event, "userId": "u1", "messageId": message_id,
            "timestamp": "2026-12-01T10:00:00Z", **fields}  # fmt: skip


def hostile(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """One hostile event (or a batch envelope of three) of class ``n % 9``."""
    mid = f"h-{n}"
    kind = n % 9
    if kind == 0:  # digits: wide and past-INT64 integers beside floats in one column
        value = rng.choice([*WIDE, *PAST_INT64, 2.5, 7])
        return [_track(mid, "Digits", properties={"amount": value, "big": rng.choice(WIDE)})]
    if kind == 1:  # text: timestamps beside words in one column, timestamps alone in another
        text = rng.choice([*STAMPS, "never", "soon"])
        return [_track(mid, "Texts", properties={"when": text, "at": rng.choice(STAMPS)})]
    if kind == 2:  # names BigQuery or the model reserves
        event = rng.choice(["INFORMATION_SCHEMA", "users", "Tracks", "Order View", "__TABLES__"])
        keys = {"_PARTITIONTIME": 1, "_TABLE_SUFFIX": "x", "__ROOT__": True, "id": "spoof"}
        return [_track(mid, event, properties=keys)]
    if kind == 3:  # a month-old event read today
        return [_track(mid, "Late", timestamp="2026-11-01T09:00:00Z",
                       sentAt="2026-11-01T09:00:03Z")]  # fmt: skip
    if kind == 4:  # a batch envelope of three events sharing sentAt and context
        return [{"batch": [_track(f"{mid}-{i}", "In Batch") for i in range(3)],
                 "sentAt": "2026-12-01T10:00:01Z", "context": {"ip": "10.0.0.1"}}]  # fmt: skip
    if kind == 5:  # colliding, empty, non-ASCII and deep keys
        props = {"a_b": 1, "a": {"b": 2}, "": "empty", "名前": "name", "deep": {"x": {"y": [1]}}}
        return [_track(mid, "Keys", properties=props)]
    if kind == 6:  # drifting types: a flag that is sometimes text, an array
        return [_track(mid, "Drift", properties={"flag": rng.choice([True, "yes", 0]),
                                                 "list": [1, "two", {"3": None}]})]  # fmt: skip
    if kind == 7:  # refused as events: bad timestamp, no identity, unknown type
        return [rng.choice([
            _track(mid, timestamp="yesterday"),
            {"type": "track", "event": "No One", "messageId": mid},
            {"type": "purchase", "userId": "u1", "messageId": mid},
        ])]  # fmt: skip
    return [
        {
            "type": "identify",
            "userId": f"u{n % 7}",
            "messageId": mid,
            "traits": {"plan": rng.choice(["free", "pro"]), "seen": rng.choice(STAMPS)},
        }
    ]


def write_corpus(path: Path, events: int) -> tuple[Counter[str], int]:
    """Half ordinary, half hostile, 2 % replays, 1 % lines that are no event: returns
    how often each message id is in the input and the count of lines that carry none."""
    rng = random.Random(3)
    lines = generate(events // 2, seed=9)
    lines += [orjson.dumps(e) for n in range(events - events // 2) for e in hostile(n, rng)]
    rng.shuffle(lines)
    lines += [lines[rng.randrange(len(lines))] for _ in range(events // 50)]  # replays
    no_id = [NOT_EVENTS[n % len(NOT_EVENTS)] for n in range(events // 100)]
    lines += no_id
    path.write_bytes(b"\n".join(lines) + b"\n")
    ids: Counter[str] = Counter()
    for line in lines:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict):
            for item in record.get("batch") or [record]:
                if isinstance(item, dict) and isinstance(item.get("messageId"), str):
                    ids[item["messageId"]] += 1
    return ids, len(no_id)


def account(client: Any, sent: Counter[str], no_id_lines: int) -> dict[str, int]:
    """Input events against what the warehouse holds: views, dead letters, neither, both.
    A line sent twice is two messages: a refused one is two dead letters."""
    ids = set(sent)
    stored: set[str] = set()
    for table in PRIMARY:
        sql = f"SELECT DISTINCT id FROM `{client.project}.{DATASET}.{table}_view`"
        try:
            stored |= {row.id for row in client.query(sql).result()}
        except Exception:  # noqa: BLE001 - a table the corpus never made
            continue
    dead = list(client.query(
        f"SELECT message_id, reason FROM `{client.project}.{DATASET}.{DEAD_LETTER_TABLE}`"
    ).result())  # fmt: skip
    dead_ids = Counter(row.message_id for row in dead if row.message_id)
    return {
        "input events (with an id)": len(ids),
        "input lines with no id": no_id_lines,
        "distinct ids in the views": len(stored & ids),
        "dead letters with an id": sum(dead_ids.values()),
        "distinct ids in the dead letters": len(set(dead_ids) & ids),
        "dead letters without an id": sum(1 for row in dead if not row.message_id),
        "unexplained: in neither": len(ids - stored - set(dead_ids)),
        "unexplained: in both": len(stored & set(dead_ids)),
        "unexplained: more dead letters than sent": sum(
            1 for key, count in dead_ids.items() if count > sent[key]
        ),
        "unexplained: stored, not in input": len(stored - ids),
    }


def spot_checks(client: Any) -> list[str]:
    checks = {
        "digits: amount (integers past 2**53 beside floats)": "amount",
        "text: when (timestamps beside words)": "when",
    }
    lines = []
    for label, column in checks.items():
        table = "digits" if column == "amount" else "texts"
        live = client.get_table(f"{client.project}.{DATASET}.{table}")
        kind = {f.name: f.field_type for f in live.schema}[column]
        source = f"`{client.project}.{DATASET}.{table}`"
        sample = [row[0] for row in client.query(
            f"SELECT DISTINCT `{column}` FROM {source} ORDER BY 1 LIMIT 6"
        ).result()]  # fmt: skip
        lines.append(f"{label}: {kind}, e.g. {sample}")
    late = list(client.query(
        f"SELECT DISTINCT `timestamp` FROM `{client.project}.{DATASET}.late`"
    ).result())  # fmt: skip
    lines.append(f"late files keep their time: late.timestamp = {[str(r[0]) for r in late]}")
    names = sorted(t.table_id for t in client.list_tables(DATASET) if t.table_type == "TABLE")
    lines.append(f"tables: {', '.join(names)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="events in the corpus")
    parser.add_argument("--write_method", default="FILE_LOADS", help="the run's write method")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="opentrack-hostile-") as directory:
        scratch = Path(directory)
        install = localstack.default_state_dir()
        with localstack.running(scratch / "stack", install_dir=install) as stack:
            env = {**os.environ, **localstack.environment(stack)}
            corpus = scratch / "events.jsonl"
            ids, no_id = write_corpus(corpus, args.events)
            print(f"corpus: {sum(1 for _ in corpus.open('rb'))} lines", file=sys.stderr)
            run = subprocess.run(
                [sys.executable, "-m", "pipeline.commands.cli", "run", f"--input={corpus}",
                 f"--bigquery_project={stack.project}",
                 f"--bigquery_endpoint={stack.bigquery_endpoint}",
                 f"--bigquery_storage_endpoint={stack.bigquery_grpc_endpoint}",
                 f"--source_name={SOURCE}", f"--write_method={args.write_method}"],
                env=env, capture_output=True, text=True,
            )  # fmt: skip
            if run.returncode != 0:
                print(run.stderr[-2000:], file=sys.stderr)
                return run.returncode
            client = make_client(stack.project, stack.bigquery_endpoint)
            figures = account(client, ids, no_id)
            for name, value in figures.items():
                print(f"{name:<40} {value:>7}")
            explained = (
                figures["distinct ids in the views"] + figures["distinct ids in the dead letters"]
            )
            print(f"input ids {len(ids)} = in views + in dead letters {explained}: "
                  f"{len(ids) == explained}")  # fmt: skip
            for line in spot_checks(client):
                print(line)
    unexplained = sum(v for k, v in figures.items() if k.startswith("unexplained"))
    return 1 if unexplained or figures["dead letters without an id"] != no_id else 0


if __name__ == "__main__":
    raise SystemExit(main())
