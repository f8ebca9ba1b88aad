"""Summaries of what a run or a preview produced: tables, columns, types, dead letters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from transforms.model.infer import INTEGER, WIDE_INTEGER, widen


@dataclass
class TableSummary:
    rows: int = 0
    columns: dict[str, str] = field(default_factory=dict)  # column -> widened type

    def add(self, schema: Mapping[str, str]) -> None:
        self.rows += 1
        for column, column_type in schema.items():
            known = self.columns.get(column)
            self.columns[column] = column_type if known is None else widen(known, column_type)


@dataclass
class RunSummary:
    tables: dict[str, TableSummary] = field(default_factory=dict)  # "dataset.table"
    dead_letters: Counter[str] = field(default_factory=Counter)  # reason -> count
    dead_letter_tables: list[str] = field(default_factory=list)  # where they are stored
    show_columns: bool = True  # False: tables and rows only (a run's summary; reads no schema)

    def add_row(self, dataset: str, table: str, schema: Mapping[str, str]) -> None:
        self.tables.setdefault(f"{dataset}.{table}", TableSummary()).add(schema)

    def add_dead_letter(self, reason: str) -> None:
        self.dead_letters[reason] += 1

    def render(self) -> str:
        lines = [f"{'table':<48} {'rows':>7}" + ("  columns" if self.show_columns else "")]
        for name in sorted(self.tables):
            table = self.tables[name]
            if not self.show_columns:
                lines.append(f"{name:<48} {table.rows:>7}")
                continue
            lines.append(f"{name:<48} {table.rows:>7}  {len(table.columns)} columns")
            for column in sorted(table.columns):
                kind = table.columns[column]
                shown = f"{INTEGER} (values past 2**53)" if kind == WIDE_INTEGER else kind
                lines.append(f"    {column:<44} {shown}")
        total = sum(self.dead_letters.values())
        where = ", ".join(self.dead_letter_tables)
        stored = f" (stored in {where})" if where else ""
        lines.append(f"dead letters: {total}{stored}")
        for reason, count in sorted(self.dead_letters.items()):
            lines.append(f"    {reason:<44} {count:>7}")
        return "\n".join(lines)


def summarize(
    rows: Iterable[tuple[str, str, Mapping[str, str]]], reasons: Iterable[str]
) -> RunSummary:
    summary = RunSummary()
    for dataset, table, schema in rows:
        summary.add_row(dataset, table, schema)
    for reason in reasons:
        summary.add_dead_letter(reason)
    return summary
