"""Migration from Segment's archive: its S3 destination's layout (gzipped JSON lines of
full calls under segment-logs/<source id>/<received day in unix ms>/), read from a local
S3 server and from the GCS emulator into the BigQuery emulator, idempotently."""

from __future__ import annotations

import gzip
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import boto3
import orjson
import pytest
from google.cloud import bigquery

from pipeline.commands import backfill, segment_archive
from transforms.model.timestamps import parse_timestamp

SOURCES = ("src_web", "src_app")
DAYS = (date(2026, 10, 1), date(2026, 10, 2), date(2026, 10, 3))
OUTSIDE = date(2026, 10, 4)  # archived, but after --to: never loaded
CLOCK_BEHIND = timedelta(minutes=5, milliseconds=250)  # the devices' clocks run late


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def archived_call(source: str, day: date, n: int) -> dict:
    """A track call as Segment archives it: its own timestamp already skew-corrected."""
    received = datetime(day.year, day.month, day.day, 9, tzinfo=UTC) + timedelta(minutes=n)
    sent = received - CLOCK_BEHIND  # the device's clock when it sent
    original = sent - timedelta(seconds=2)  # the device's clock when the call happened
    corrected = received - (sent - original)
    return {
        "type": "track", "event": "Order Completed", "messageId": f"{source}-{day}-{n}",
        "userId": f"user-{n}", "properties": {"revenue": n + 0.5},
        "originalTimestamp": _iso(original), "sentAt": _iso(sent),
        "receivedAt": _iso(received), "timestamp": _iso(corrected),
        "context": {"library": {"name": "analytics.js"}},
    }  # fmt: skip


def archive_files() -> dict[str, bytes]:
    """{key under the bucket: gzipped lines}: two files a day per source."""
    files = {}
    for source in SOURCES:
        for day in (*DAYS, OUTSIDE):
            for part in range(2):
                calls = [archived_call(source, day, part * 10 + n) for n in range(3)]
                lines = b"".join(orjson.dumps(c) + b"\n" for c in calls)
                key = f"segment-logs/{source}/{segment_archive.day_folder(day)}/part-{part}.gz"
                files[key] = gzip.compress(lines)
    return files


def expected_calls(sources=SOURCES) -> dict[str, dict]:
    return {
        call["messageId"]: call
        for source in sources
        for day in DAYS
        for n in (0, 1, 2, 10, 11, 12)
        for call in [archived_call(source, day, n)]
    }


def loaded(bq_client: bigquery.Client, dataset: str) -> list[dict]:
    sql = (
        f"SELECT id, timestamp, original_timestamp, sent_at, received_at, revenue "
        f"FROM `{bq_client.project}.{dataset}.order_completed`"
    )
    return [dict(row) for row in bq_client.query(sql).result()]


def check_loaded(rows: list[dict], expected: dict[str, dict]) -> None:
    assert Counter(row["id"] for row in rows) == Counter(list(expected))  # each id once
    for row in rows:
        call = expected[row["id"]]
        assert row["timestamp"] == parse_timestamp(call["timestamp"])  # Segment's own
        assert row["original_timestamp"] == parse_timestamp(call["originalTimestamp"])
        assert row["sent_at"] == parse_timestamp(call["sentAt"])
        assert row["received_at"] == parse_timestamp(call["receivedAt"])


def _argv(local_stack, archive: str, *extra: str) -> list[str]:
    return [
        f"--segment_archive={archive}", "--from=2026-10-01", "--to=2026-10-03",
        f"--bigquery_project={local_stack.project}",
        f"--bigquery_endpoint={local_stack.bigquery_endpoint}", *extra,
    ]  # fmt: skip


def test_an_s3_archive_loads_every_source_once_and_a_rerun_changes_nothing(
    local_stack, bq_client, s3_server, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")  # boto3's own chain, as on AWS
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local-secret")
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    bucket = f"segment-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    for key, body in archive_files().items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    suffix = uuid.uuid4().hex[:6]
    argv = _argv(
        local_stack, f"s3://{bucket}/segment-logs", f"--s3_endpoint_url={s3_server}",
        "--s3_region_name=us-east-1", f"--source_map=src_web=Web {suffix}",
        f"--source_map=src_app=App {suffix}",
    )  # fmt: skip

    assert backfill.main(argv) == 0
    err = capsys.readouterr().err
    assert f"src_app as 'App {suffix}': 6 files over 3 of 3 days" in err
    assert "local-secret" not in err
    web, app = f"web_{suffix}", f"app_{suffix}"
    check_loaded(loaded(bq_client, web), expected_calls(["src_web"]))
    check_loaded(loaded(bq_client, app), expected_calls(["src_app"]))
    first = sorted(map(str, loaded(bq_client, web) + loaded(bq_client, app)))

    assert backfill.main(argv) == 0
    assert sorted(map(str, loaded(bq_client, web) + loaded(bq_client, app))) == first


def test_one_source_of_a_gcs_archive_loads_under_its_id(local_stack, bq_client, gcs_client) -> None:
    bucket = gcs_client.create_bucket(f"segment-{uuid.uuid4().hex[:8]}")
    for key, body in archive_files().items():
        bucket.blob(key).upload_from_string(body)
    source = f"src_web_{uuid.uuid4().hex[:6]}"
    for key, body in archive_files().items():  # the same calls under a fresh source id
        if key.startswith("segment-logs/src_web/"):
            bucket.blob(key.replace("src_web", source, 1)).upload_from_string(body)

    assert backfill.main(_argv(local_stack, f"gs://{bucket.name}/segment-logs/{source}")) == 0

    check_loaded(loaded(bq_client, source), expected_calls(["src_web"]))


def test_received_day_folders_are_utc_midnight_in_milliseconds() -> None:
    assert segment_archive.day_folder(date(1970, 1, 2)) == "86400000"
    assert segment_archive.day_folder(date(2026, 10, 1)) == "1790812800000"


@pytest.mark.parametrize(
    ("archive", "split"),
    [
        ("s3://b/segment-logs", ("s3://b/segment-logs", None)),
        ("s3://b/segment-logs/", ("s3://b/segment-logs", None)),
        ("gs://b/x/segment-logs/abc", ("gs://b/x/segment-logs", "abc")),
        ("/data/segment-logs/abc/", ("/data/segment-logs", "abc")),
    ],
)
def test_an_archive_path_names_all_sources_or_one(archive: str, split) -> None:
    assert segment_archive.split_archive(archive) == split


def test_a_path_outside_the_layout_and_a_bad_source_map_are_refused() -> None:
    with pytest.raises(ValueError, match="expected <bucket or folder>/segment-logs"):
        segment_archive.split_archive("s3://b/logs/abc")
    with pytest.raises(ValueError, match="expected SOURCE_ID=SOURCE NAME"):
        segment_archive.parse_source_map(["abc"])
    pairs = segment_archive.parse_source_map(["a=Shop Web", " b = B "])
    assert pairs == {"a": "Shop Web", "b": "B"}
