"""Endpoints credentials may be sent to: https://, or plain http:// on loopback only."""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.graphs.options import OpenTrackOptions, warehouse_config
from pipeline.warehouse.client import checked_endpoint, make_client


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:9050",
        "http://localhost:9050/",
        "http://[::1]:9050",
        "https://bq.example.com",
    ],
)
def test_https_and_loopback_http_endpoints_are_accepted(endpoint: str) -> None:
    assert checked_endpoint(endpoint) == endpoint


def test_plain_http_off_loopback_is_refused_before_any_credential_is_sent() -> None:
    with pytest.raises(ValueError, match="credentials never travel in clear"):
        make_client("p", "http://bigquery.example.com:9050")


@pytest.mark.parametrize("endpoint", ["ftp://host", "127.0.0.1:9050", "http://", "https://"])
def test_endpoints_that_are_not_urls_are_refused(endpoint: str) -> None:
    with pytest.raises(ValueError, match="expected https://"):
        checked_endpoint(endpoint)


def test_the_pipeline_refuses_a_clear_text_endpoint_at_start_up() -> None:
    options = PipelineOptions(
        ["--bigquery_project=p", "--bigquery_endpoint=http://10.0.0.5:9050"]
    ).view_as(OpenTrackOptions)
    with pytest.raises(ValueError, match="plain http:// is accepted only on a loopback"):
        warehouse_config(options)
