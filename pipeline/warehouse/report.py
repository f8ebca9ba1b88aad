"""What a run left in the warehouse: tables, row counts, columns, dead letters by reason."""

from __future__ import annotations

from typing import Iterable

from google.cloud import bigquery

from pipeline.summary import RunSummary, TableSummary
from pipeline.warehouse import identifiers
from pipeline.warehouse.schema import from_api
from transforms.naming import DEAD_LETTER_TABLE


def warehouse_summary(client: bigquery.Client, datasets: Iterable[str]) -> RunSummary:
    """Two queries per table; meant for demos and checks, not for hot paths."""
    summary = RunSummary()
    for dataset in datasets:
        for item in client.list_tables(identifiers.dataset_id(dataset)):
            if item.table_type != "TABLE":
                continue  # dedup views repeat their table
            target = identifiers.quoted_table(client.project, dataset, item.table_id)
            if item.table_id == DEAD_LETTER_TABLE:
                sql = f"SELECT reason, COUNT(*) AS n FROM {target} GROUP BY reason"
                for row in client.query(sql).result():
                    summary.dead_letters[row["reason"]] += row["n"]
                continue
            count = list(client.query(f"SELECT COUNT(*) AS n FROM {target}").result())[0]["n"]
            columns = from_api(client.get_table(f"{client.project}.{dataset}.{item.table_id}").schema)
            summary.tables[f"{dataset}.{item.table_id}"] = TableSummary(count, columns)
    return summary
