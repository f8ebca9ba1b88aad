"""Beam's BigQuery client at a chosen endpoint (emulator, regional or private).

``WriteToBigQuery(test_client=...)`` takes an apitools ``BigqueryV2``; Beam's
streaming inserts call its ``insert_rows_json``, which here goes through a
``google.cloud.bigquery.Client`` built by ``warehouse.client.make_client``.
It pickles as (project, endpoint, timeout) and rebuilds itself on the worker.
Beam asks for a 120 s timeout per insertAll; ``request_timeout`` replaces it, so
one ``--request_timeout_seconds`` governs every call the pipeline makes.
"""

from __future__ import annotations

from typing import Any

from apache_beam.io.gcp.internal.clients.bigquery import BigqueryV2
from apache_beam.metrics import Metrics
from google.cloud import bigquery

from pipeline.warehouse.client import REQUEST_TIMEOUT_S, make_client


class EndpointBigQueryClient(BigqueryV2):
    def __init__(
        self, project: str, endpoint: str, request_timeout: float = REQUEST_TIMEOUT_S
    ) -> None:
        self._project = project
        self._endpoint = endpoint
        self._request_timeout = request_timeout
        self._gcp_client: bigquery.Client | None = None
        super().__init__(
            url=f"{endpoint.rstrip('/')}/bigquery/v2/", get_credentials=False, credentials=None
        )

    def insert_rows_json(self, table: str, json_rows: list[dict[str, Any]], **kwargs: Any) -> Any:
        if self._gcp_client is None:
            self._gcp_client = make_client(
                self._project, self._endpoint, request_timeout=self._request_timeout
            )
        Metrics.counter("opentrack", "bigquery_insert_requests").inc()
        kwargs["timeout"] = self._request_timeout
        return self._gcp_client.insert_rows_json(table, json_rows, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "project": self._project,
            "endpoint": self._endpoint,
            "request_timeout": self._request_timeout,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["project"], state["endpoint"], state["request_timeout"]
        )
