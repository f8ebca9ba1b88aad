"""What a run left in the warehouse: tables, row counts, columns, dead letters by reason."""

from __future__ import annotations

from collections.abc import Iterable

from google.cloud import bigquery

from pipeline.warehouse import identifiers
from pipeline.warehouse.schema import from_api
from pipeline.warehouse.summary import RunSummary, TableSummary
from transforms.model.naming import DEAD_LETTER_TABLE


def warehouse_summary(
    client: bigquery.Client, datasets: Iterable[str], columns: bool = True
) -> RunSummary:
    """Per dataset: one query counting every table's rows and the dead letters by reason,
    and, with ``columns``, one schema read per table."""
    summary = RunSummary(show_columns=columns)
    for dataset in datasets:
        tables = [
            t.table_id
            for t in client.list_tables(identifiers.dataset_id(dataset))
            if t.table_type == "TABLE"
        ]  # dedup views repeat their table
        if not tables:
            continue
        counts, names = [], []
        for index, table in enumerate(tables):
            target = identifiers.quoted_table(client.project, dataset, table)
            label = "reason" if table == DEAD_LETTER_TABLE else "CAST(NULL AS STRING)"
            counts.append(f"SELECT @t{index} AS t, {label} AS reason, COUNT(*) AS n "
                          f"FROM {target} GROUP BY 2")  # fmt: skip
            names.append(bigquery.ScalarQueryParameter(f"t{index}", "STRING", table))
        job = bigquery.QueryJobConfig(query_parameters=names)
        for row in client.query(" UNION ALL ".join(counts), job_config=job).result():
            if row["t"] == DEAD_LETTER_TABLE:
                summary.dead_letters[row["reason"]] += row["n"]
                continue
            summary.tables[f"{dataset}.{row['t']}"] = TableSummary(row["n"])
        for table in tables:
            if table != DEAD_LETTER_TABLE:
                known = summary.tables.setdefault(f"{dataset}.{table}", TableSummary(0))
                if columns:
                    schema = client.get_table(f"{client.project}.{dataset}.{table}").schema
                    known.columns = from_api(schema)
        if DEAD_LETTER_TABLE in tables:
            summary.dead_letter_tables.append(f"{dataset}.{DEAD_LETTER_TABLE}")
    return summary
