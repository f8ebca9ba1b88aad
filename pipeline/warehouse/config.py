"""Where and how the pipeline writes: a picklable value DoFns carry to workers."""

from __future__ import annotations

from dataclasses import dataclass, field

from google.cloud import bigquery

from pipeline.warehouse.client import REQUEST_TIMEOUT_S, make_client
from pipeline.warehouse.manager import SchemaManager, TableSettings
from pipeline.warehouse.schema import MAX_COLUMNS


@dataclass(frozen=True)
class WarehouseConfig:
    project: str
    endpoint: str | None = None
    storage_endpoint: str | None = None  # Storage Write API host:port (gRPC)
    auto_table_management: bool = True
    settings: TableSettings = field(default_factory=TableSettings)
    cache_ttl: float = 300.0
    write_method: str = "STREAMING_INSERTS"
    write_mode: str = "append"  # or "insert_missing_by_id" (idempotent reruns)
    max_columns: int = MAX_COLUMNS
    ignore_unknown_values: bool = False
    request_timeout: float = REQUEST_TIMEOUT_S

    def client(self) -> bigquery.Client:
        return make_client(
            self.project, self.endpoint, self.settings.location, self.request_timeout
        )

    def manager(self) -> SchemaManager:
        return SchemaManager(
            self.client(), self.project, self.settings, self.cache_ttl, max_columns=self.max_columns
        )
