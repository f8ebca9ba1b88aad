"""Which write method a run gets, and the combinations refused at start-up."""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.graphs.options import OpenTrackOptions, write_method

LOCAL = "--bigquery_endpoint=http://127.0.0.1:9050"


def method_of(*argv: str) -> str:
    return write_method(PipelineOptions(list(argv)).view_as(OpenTrackOptions))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ((), "FILE_LOADS"),
        (("--streaming",), "STORAGE_WRITE_API"),
        (("--streaming", LOCAL, "--bigquery_storage_endpoint=127.0.0.1:9060"), "STORAGE_WRITE_API"),
        (("--streaming", LOCAL, "--write_method=STREAMING_INSERTS"), "STREAMING_INSERTS"),
        (("--write_method=STREAMING_INSERTS",), "STREAMING_INSERTS"),
        (
            (LOCAL, "--write_method=STORAGE_WRITE_API", "--bigquery_storage_endpoint=127.0.0.1:1"),
            "STORAGE_WRITE_API",
        ),
    ],
    ids=[
        "batch",
        "streaming",
        "streaming-local",
        "streaming-inserts",
        "batch-inserts",
        "batch-storage-write",
    ],
)
def test_defaults_and_choices(argv: tuple[str, ...], expected: str) -> None:
    assert method_of(*argv) == expected


def test_streaming_cannot_load_files() -> None:
    with pytest.raises(ValueError, match="FILE_LOADS is for batch runs"):
        method_of("--streaming", "--write_method=FILE_LOADS")


@pytest.mark.parametrize(
    "argv", [("--streaming", LOCAL), (LOCAL, "--write_method=STORAGE_WRITE_API")]
)
def test_the_storage_write_api_on_a_local_endpoint_needs_its_grpc_port(argv: tuple) -> None:
    with pytest.raises(ValueError, match="needs --bigquery_storage_endpoint"):
        method_of(*argv)
