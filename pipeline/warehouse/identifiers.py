"""Validate and quote every identifier that reaches SQL or DDL.

Table and column names come from user data. They are produced by
``transforms.naming`` and so already safe, but this module does not trust
that: anything outside BigQuery's rules is refused before it is quoted.
"""

from __future__ import annotations

import re

_PROJECT = re.compile(r"^(?:[a-z][a-z0-9.-]{0,61}[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_DATASET = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_TABLE = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")


class InvalidIdentifier(ValueError):
    """A name that must not reach SQL."""


def _checked(kind: str, pattern: re.Pattern[str], name: str) -> str:
    if not isinstance(name, str) or not pattern.match(name):
        raise InvalidIdentifier(f"invalid BigQuery {kind} name: {str(name)[:80]!r}")
    return name


def project_id(name: str) -> str:
    return _checked("project", _PROJECT, name)


def dataset_id(name: str) -> str:
    return _checked("dataset", _DATASET, name)


def table_id(name: str) -> str:
    return _checked("table", _TABLE, name)


def column(name: str) -> str:
    return _checked("column", _COLUMN, name)


def quoted_table(project: str, dataset: str, table: str) -> str:
    """`project.dataset.table`, each part validated first."""
    return f"`{project_id(project)}.{dataset_id(dataset)}.{table_id(table)}`"


def quoted_column(name: str) -> str:
    return f"`{column(name)}`"
