"""Segment-compatible names for BigQuery datasets, tables and columns.

Segment's warehouses run every collection and property name through
``github.com/segmentio/go-snakecase``; this module reimplements its current
algorithm and then enforces BigQuery's identifier rules, so every name it
returns is valid in DDL (it is still quoted there).

snake_case (Segment's rules):

1. Only ASCII letters and digits make words; every other character (space,
   punctuation, ``_``, non-ASCII letters, emoji) separates words.
2. A leading run of lower-case letters, digits and inner underscores
   followed by a letter or digit is kept as is (``order_id``, ``sample2``);
   leading underscores are dropped (``_private`` -> ``private``).
3. After that, a word is a run of capitals/digits followed by a run of
   lower-case letters/digits, lower-cased, joined by ``_``:
   ``firstName`` -> ``first_name``, ``AB Test Variant`` -> ``ab_test_variant``,
   ``userID`` -> ``user_id``, ``Product-Added!`` -> ``product_added``,
   ``Item (Sale) Added`` -> ``item_sale_added``. Acronyms are not split:
   ``HTTPServer`` -> ``httpserver``; ``iOS`` -> ``i_os``.
4. A capital right after a leading run without lower-case letters (``3D``),
   or after an underscore and digits (``v_2Beta``), is glued on:
   ``3D Secure`` -> ``3d_secure``, ``v_2Beta`` -> ``v_2beta``.

Nested keys are named as the snake_case of ``parent + "_" + key``:
``context.device.type`` -> ``context_device_type``.

Where the specification's prose and go-snakecase could disagree (acronyms kept
whole, ``sample2Text`` -> ``sample2_text``, non-ASCII letters dropped),
Segment's algorithm wins.

BigQuery limits, applied after snake_case (snake_case never starts a name
with ``_``, so BigQuery's reserved ``_PARTITION``/``_TABLE_``... prefixes cannot
occur, and names this module invents with a leading ``_`` never collide with
a natural one):

* columns: a key with no ASCII letter or digit (``"名前"``, ``"!!!"``, ``""``)
  is named by 8 hex digits of its SHA-256: ``_1a2b3c4d`` at top level,
  ``<parent>_1a2b3c4d`` when nested, so its value is kept under a stable name;
  a leading digit gets a ``_`` prefix (``3d`` -> ``_3d``); over 300 characters
  the name is cut to 291 plus ``_`` and the hash of the full snake_case name.
* tables: leading digits are allowed (BigQuery allows them, Segment keeps
  them); an empty slug becomes ``_`` + hash; a slug that is one of the fixed
  tables (``tracks``, ``identifies``, ``users``, ``pages``, ``screens``,
  ``groups``, ``aliases``) or ends in ``_view`` (reserved for the dedup
  views) or that BigQuery gives a meaning of its own (``information_schema``,
  which names the metadata views ``<dataset>.INFORMATION_SCHEMA.*``) gets the
  suffix ``_event``; names stay under 1024 characters including a ``_view``
  suffix. BigQuery's legacy meta-tables (``__TABLES__``, ``__TABLES_SUMMARY__``,
  ``__PARTITIONS_SUMMARY__``) and decorated names (``$``, ``@``, ``*``) cannot
  occur: snake_case never starts with ``_`` and keeps only ``[a-z0-9_]``.
* datasets: snake_case of the source name; empty is an error (the event
  cannot be routed); ``information_schema`` (BigQuery's metadata views: a
  dataset of that name takes loads, but its tables cannot be queried nor its
  views made) gets the suffix ``_source``; over 1024 characters it is cut with
  a hash. A leading ``_`` (a hidden dataset) cannot occur.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

MAX_COLUMN_LENGTH: Final = 300
MAX_TABLE_LENGTH: Final = 1024 - len("_view")
MAX_DATASET_LENGTH: Final = 1024
HASH_LENGTH: Final = 8

FIXED_TABLES: Final = frozenset(
    {"tracks", "identifies", "users", "pages", "screens", "groups", "aliases"}
)
DEAD_LETTER_TABLE: Final = "_opentrack_dead_letters"
RESERVED_TABLE_SUFFIX: Final = "_event"
RESERVED_DATASET_SUFFIX: Final = "_source"
# Names BigQuery gives a meaning of its own, as snake_case can spell them.
BIGQUERY_RESERVED_TABLES: Final = frozenset({"information_schema"})
BIGQUERY_RESERVED_DATASETS: Final = frozenset({"information_schema"})
VIEW_SUFFIX: Final = "_view"

# BigQuery rejects column names starting with these (case-insensitively).
RESERVED_COLUMN_PREFIXES: Final = (
    "_partition",
    "_table_",
    "_file_",
    "_row_timestamp",
    "__root__",
    "_colidentifier",
    "_change_sequence_number",
    "_change_type",
    "_change_timestamp",
)

_CLEAN_PREFIX = re.compile(r"(?:[a-z0-9](?:[a-z0-9]|_(?=[a-z0-9]))*)?")
_GLUED_WORD = re.compile(r"[A-Z0-9]*[a-z0-9]*")
_WORD = re.compile(r"[A-Z0-9]+[a-z0-9]*|[a-z0-9]+")
_LOWER = re.compile(r"[a-z]")
_CACHE_LIMIT: Final = 200_000


def snake_case(text: str) -> str:
    """Segment's go-snakecase: the name its warehouses give ``text``."""
    idx = _CLEAN_PREFIX.match(text).end()  # type: ignore[union-attr]
    if idx == len(text):
        return text
    head = text[:idx]
    if "A" <= text[idx] <= "Z":
        last_part = head.rpartition("_")[2] if "_" in head else None
        if not _LOWER.search(head) or (last_part is not None and not _LOWER.search(last_part)):
            glued = _GLUED_WORD.match(text, idx).end()  # type: ignore[union-attr]
            head += text[idx:glued].lower()
            idx = glued
    words = _WORD.findall(text, idx)
    if head:
        words.insert(0, head)
    return "_".join(words).lower()


def short_hash(text: str) -> str:
    """Stable 8-hex-digit digest used to keep truncated or empty names unique."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_LENGTH]


def _truncate(name: str, limit: int, hashed: str | None = None) -> str:
    """``name`` cut to ``limit`` with a hash of ``hashed`` (default ``name``) at the end."""
    if len(name) <= limit:
        return name
    return f"{name[: limit - HASH_LENGTH - 1]}_{short_hash(hashed or name)}"


def column_name(path: str) -> str:
    """BigQuery column for a (possibly ``_``-joined) property path."""
    snake = snake_case(path)
    if not snake:
        return f"_{short_hash(path)}"
    name = "_" + snake if "0" <= snake[0] <= "9" else snake
    return _truncate(name, MAX_COLUMN_LENGTH, snake)


def table_name(event: str) -> str:
    """BigQuery table for a track event name (``Order Completed`` -> ``order_completed``)."""
    slug = snake_case(event)
    if not slug:
        return f"_{short_hash(event)}"
    slug = _truncate(slug, MAX_TABLE_LENGTH - len(RESERVED_TABLE_SUFFIX))
    if slug in FIXED_TABLES or slug in BIGQUERY_RESERVED_TABLES or slug.endswith(VIEW_SUFFIX):
        slug += RESERVED_TABLE_SUFFIX
    return slug


def dataset_name(source: str) -> str:
    """BigQuery dataset for a source name; raises ``ValueError`` if it has no usable letters."""
    slug = snake_case(source)
    if not slug:
        raise ValueError(f"source name {source[:80]!r} has no ASCII letters or digits")
    if slug in BIGQUERY_RESERVED_DATASETS:
        return slug + RESERVED_DATASET_SUFFIX
    return _truncate(slug, MAX_DATASET_LENGTH)


class NamingConvention:
    """Memoizing front for the functions above, used on the hot path.

    Property names repeat across events, so names are cached per parent
    column; the cache is bounded so hostile input cannot grow it forever.
    """

    def __init__(self, cache_limit: int = _CACHE_LIMIT) -> None:
        self._cache_limit = cache_limit
        # parent column -> {key: column}; read directly by the flattener (hot path).
        self.columns_under: dict[str, dict[str, str]] = {}
        self._tables: dict[str, str] = {}
        self._size = 0

    def children(self, parent: str) -> dict[str, str]:
        """The cache of names under ``parent`` (read-only for callers)."""
        names = self.columns_under.get(parent)
        if names is None:
            names = self.columns_under[parent] = {}
        return names

    def child_column(self, parent: str, key: str) -> str:
        """Column for ``key`` nested under the column ``parent`` ('' for top level)."""
        children = self.columns_under.get(parent)
        if children is None:
            children = self.columns_under[parent] = {}
        name = children.get(key)
        if name is None:
            if parent and not snake_case(key):
                name = _truncate(f"{parent}_{short_hash(key)}", MAX_COLUMN_LENGTH)
            else:
                name = column_name(f"{parent}_{key}" if parent else key)
            self._remember()
            children[key] = name
        return name

    def table(self, event: str) -> str:
        name = self._tables.get(event)
        if name is None:
            name = table_name(event)
            self._remember()
            self._tables[event] = name
        return name

    def _remember(self) -> None:
        self._size += 1
        if self._size > self._cache_limit:
            self.columns_under.clear()
            self._tables.clear()
            self._size = 0
