"""Validate and quote every identifier that reaches SQL or DDL.

Table and column names come from user data. They are produced by
``transforms.model.naming`` and so already safe, but this module does not trust
that: anything outside BigQuery's rules is refused before it is quoted, and so
are the names BigQuery gives a meaning of its own (``INFORMATION_SCHEMA`` as a
dataset or table, the legacy meta-tables ``__TABLES__``..., the column prefixes
it reserves), in any case.
"""

from __future__ import annotations

import re

from transforms.model.naming import (
    BIGQUERY_RESERVED_DATASETS,
    BIGQUERY_RESERVED_TABLES,
    RESERVED_COLUMN_PREFIXES,
)

_PROJECT = re.compile(r"^(?:[a-z][a-z0-9.-]{0,61}[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_DATASET = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_TABLE = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")


# Beyond what snake_case can spell: the legacy meta-tables, for names from contracts.
_RESERVED_TABLES = BIGQUERY_RESERVED_TABLES | {
    "__tables__",
    "__tables_summary__",
    "__partitions_summary__",
}


class InvalidIdentifier(ValueError):
    """A name that must not reach SQL."""


def _checked(kind: str, pattern: re.Pattern[str], name: str) -> str:
    if not isinstance(name, str) or not pattern.match(name):
        raise InvalidIdentifier(f"invalid BigQuery {kind} name: {str(name)[:80]!r}")
    return name


def _unreserved(kind: str, name: str, reserved: bool) -> str:
    if reserved:
        raise InvalidIdentifier(f"{name[:80]!r} is a {kind} name BigQuery reserves")
    return name


def project_id(name: str) -> str:
    return _checked("project", _PROJECT, name)


def dataset_id(name: str) -> str:
    _checked("dataset", _DATASET, name)
    return _unreserved("dataset", name, name.lower() in BIGQUERY_RESERVED_DATASETS)


def table_id(name: str) -> str:
    _checked("table", _TABLE, name)
    return _unreserved("table", name, name.lower() in _RESERVED_TABLES)


def column(name: str) -> str:
    _checked("column", _COLUMN, name)
    return _unreserved("column", name, name.lower().startswith(RESERVED_COLUMN_PREFIXES))


def quoted_table(project: str, dataset: str, table: str) -> str:
    """`project.dataset.table`, each part validated first."""
    return f"`{project_id(project)}.{dataset_id(dataset)}.{table_id(table)}`"


def quoted_column(name: str) -> str:
    return f"`{column(name)}`"
