"""Schema contracts: declared datasets and tables, their drift, a migration plan, applying it.

A contract file (YAML, ``templates/contracts/example.yaml``) declares datasets and
their tables: columns (type, mode, description, nested RECORD fields), DAY/HOUR/
MONTH/YEAR partitioning on a TIMESTAMP/DATE/DATETIME column, retention, up to four
clustering columns, labels and a schema version. ``load_contract`` validates it
strictly and reports every problem at once (``file``); ``diff`` compares it to the
live warehouse (read by ``apply``) and ``plan`` sorts every drift into a safe change
or a refusal with the reason. Only ``apply`` talks to BigQuery (import it as
``pipeline.warehouse.contracts.apply``): every other rule is unit-tested without a server.

Modules: ``model`` (vocabulary and dataclasses), ``file`` (the contract file's
structure and loading), ``drift``, ``plan`` (steps and patches), ``apply``.

Choices (the specification, "Schema Consistency"):

* ``versioning: true`` adds the specification's ``created_at TIMESTAMP``, ``updated_at
  TIMESTAMP`` and ``version STRING`` (NULLABLE, so they can also be added to tables
  that have rows). The specification's fourth column, ``_partition_date DATE``, is *not* a
  column: BigQuery reserves every column name starting with ``_PARTITION`` (any case)
  and refuses the table; the emulator accepts it, so the loader refuses it itself.
  The partition date of a row is ``DATE(<partition column>)``: declare
  ``partitioning: {field: created_at}`` and filter on ``DATE(created_at)``, which
  prunes partitions (the specification's own query does this). Ingestion-time partitioning
  (whose ``_PARTITIONDATE`` pseudo-column would match the name) was rejected: it
  partitions by load time, so a backfill of old rows would land in today's
  partition and outlive its retention.
* Retention is partition expiration. ``7y`` is 7 x 365.25 days rounded up (2557
  days), so N years always covers N calendar years; ``90d`` or ``90`` are days;
  ``none`` (or no retention anywhere) keeps partitions forever. A dataset's
  ``retention`` is its tables' default and also set as the dataset's default
  partition expiration, so tables the pipeline creates there later get it too.
  Because BigQuery gives every new partitioned table of such a dataset that default,
  a partitioned table cannot say ``retention: none`` there (refused at load).
  Retention on an unpartitioned table is refused (there are no partitions to expire);
  "latest only" tables are simply unpartitioned.
* What the contract leaves out is not checked: a description or label it does not
  declare, labels others set (the pipeline's own), tables of its datasets it does
  not list. Extra *columns* of a declared table are drift (dropping them is refused).
* The schema version is the label ``schema_version`` (label values allow only
  ``[a-z0-9_-]``: ``"1.1"`` becomes ``1_1``). It is not the pipeline's
  ``opentrack_schema_version``, a counter the schema manager bumps at each change.
* Safe (applied): create datasets and tables; add NULLABLE/REPEATED columns, also
  inside RECORDs; relax REQUIRED -> NULLABLE; widen a top-level column in place along
  BigQuery's coercions (INT64 -> NUMERIC/BIGNUMERIC/FLOAT64, NUMERIC ->
  BIGNUMERIC/FLOAT64, BIGNUMERIC -> FLOAT64); set retention, clustering, labels and
  descriptions. Refused, with the reason: dropping, renaming, narrowing or any
  other type change, NULLABLE -> REQUIRED, anything to or from REPEATED, adding a
  REQUIRED column to an existing table, changing the partitioning of an existing
  table, moving a dataset. The emulator accepts some of these silently, so the
  planner never leaves them to the server.
"""

from pipeline.warehouse.contracts.drift import (
    CLUSTERING_DRIFT,
    DATASET_DESCRIPTION,
    DATASET_LABELS,
    DATASET_LOCATION,
    DATASET_RETENTION,
    DESCRIPTION_DRIFT,
    EXTRA_FIELD,
    FIELD_DESCRIPTION,
    LABELS_DRIFT,
    MISSING_DATASET,
    MISSING_FIELD,
    MISSING_TABLE,
    MODE_DRIFT,
    PARTITIONING_DRIFT,
    RENAMED_FIELD,
    RETENTION_DRIFT,
    TYPE_DRIFT,
    VERSION_DRIFT,
    Drift,
    diff,
    diff_dataset,
    diff_dataset_settings,
    diff_table,
)
from pipeline.warehouse.contracts.file import (
    ContractError,
    contract_from_data,
    load_contract,
    parse_contract,
)
from pipeline.warehouse.contracts.model import (
    CLUSTERING_TYPES,
    DAY_MS,
    DAYS_PER_YEAR,
    MAX_CLUSTERING,
    MAX_NESTING,
    MODES,
    NULLABLE,
    PARTITION_COLUMN_TYPES,
    PARTITION_TYPES,
    REPEATED,
    REQUIRED,
    RESERVED_PREFIXES,
    TYPES,
    VERSION_LABEL,
    VERSIONING_FIELDS,
    WIDENINGS,
    Contract,
    DatasetContract,
    Field,
    LiveDataset,
    LiveTable,
    Partitioning,
    TableContract,
    Warehouse,
    canonical_type,
    days_to_ms,
    parse_retention,
    render_days,
    version_label,
)
from pipeline.warehouse.contracts.plan import (
    DatasetPatch,
    Step,
    TablePatch,
    dataset_patch,
    has_refusals,
    plan,
    step_for,
    table_patch,
    widenings,
)

__all__ = [
    "CLUSTERING_DRIFT",
    "CLUSTERING_TYPES",
    "DATASET_DESCRIPTION",
    "DATASET_LABELS",
    "DATASET_LOCATION",
    "DATASET_RETENTION",
    "DAYS_PER_YEAR",
    "DAY_MS",
    "DESCRIPTION_DRIFT",
    "EXTRA_FIELD",
    "FIELD_DESCRIPTION",
    "LABELS_DRIFT",
    "MAX_CLUSTERING",
    "MAX_NESTING",
    "MISSING_DATASET",
    "MISSING_FIELD",
    "MISSING_TABLE",
    "MODES",
    "MODE_DRIFT",
    "NULLABLE",
    "PARTITIONING_DRIFT",
    "PARTITION_COLUMN_TYPES",
    "PARTITION_TYPES",
    "RENAMED_FIELD",
    "REPEATED",
    "REQUIRED",
    "RESERVED_PREFIXES",
    "RETENTION_DRIFT",
    "TYPES",
    "TYPE_DRIFT",
    "VERSIONING_FIELDS",
    "VERSION_DRIFT",
    "VERSION_LABEL",
    "WIDENINGS",
    "Contract",
    "ContractError",
    "DatasetContract",
    "DatasetPatch",
    "Drift",
    "Field",
    "LiveDataset",
    "LiveTable",
    "Partitioning",
    "Step",
    "TableContract",
    "TablePatch",
    "Warehouse",
    "canonical_type",
    "contract_from_data",
    "dataset_patch",
    "days_to_ms",
    "diff",
    "diff_dataset",
    "diff_dataset_settings",
    "diff_table",
    "has_refusals",
    "load_contract",
    "parse_contract",
    "parse_retention",
    "plan",
    "render_days",
    "step_for",
    "table_patch",
    "version_label",
    "widenings",
]
