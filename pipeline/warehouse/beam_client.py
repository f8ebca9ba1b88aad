"""Beam's BigQuery client at a chosen endpoint (emulator, regional or private).

``WriteToBigQuery(test_client=...)`` takes an apitools ``BigqueryV2``; Beam's
streaming inserts call its ``insert_rows_json``, which here goes through a
``google.cloud.bigquery.Client`` built by ``warehouse.client.make_client``.
It pickles as (project, endpoint) and rebuilds itself on the worker.
"""

from __future__ import annotations

from typing import Any

from apache_beam.io.gcp.internal.clients.bigquery import BigqueryV2
from apache_beam.metrics import Metrics

from pipeline.warehouse.client import make_client


class EndpointBigQueryClient(BigqueryV2):
    def __init__(self, project: str, endpoint: str) -> None:
        self._project = project
        self._endpoint = endpoint
        self._gcp_client = None
        super().__init__(
            url=f"{endpoint.rstrip('/')}/bigquery/v2/", get_credentials=False, credentials=None
        )

    def insert_rows_json(self, table: str, json_rows: list[dict[str, Any]], **kwargs: Any) -> Any:
        if self._gcp_client is None:
            self._gcp_client = make_client(self._project, self._endpoint)
        Metrics.counter("opentrack", "bigquery_insert_requests").inc()
        return self._gcp_client.insert_rows_json(table, json_rows, **kwargs)

    def __getstate__(self) -> dict[str, str]:
        return {"project": self._project, "endpoint": self._endpoint}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.__init__(state["project"], state["endpoint"])  # type: ignore[misc]
