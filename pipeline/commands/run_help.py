"""``opentrack run --help``: every option of ours, grouped, each with its default, and the
Beam options a run usually needs; ``--help_beam`` lists all of Beam's."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    WorkerOptions,
)

from pipeline.graphs.options import OpenTrackOptions

GROUPS: dict[str, tuple[str, ...]] = {
    "input": ("input", "subscription", "local_slice_mb"),
    "source": ("source_name", "source_attribute", "source_field"),
    "warehouse": (
        "bigquery_project", "bigquery_endpoint", "bigquery_storage_endpoint", "location",
        "request_timeout_seconds", "output_dir",
    ),
    "schema": (
        "auto_table_management", "partition_field", "clustering_fields",
        "partition_expiration_days", "max_columns", "contracts", "schema_cache_ttl_seconds",
    ),
    "write": ("write_method", "write_mode", "ignore_unknown_values", "skip_invalid_rows"),
    "streaming": (
        "dedup_window_seconds", "users_merge_interval_seconds", "schema_retry_delays",
        "schema_side_input", "mutation_batch_seconds", "rewrite_drain_seconds",
    ),
    "limits": ("max_event_bytes", "max_batch_bytes", "max_depth"),
}  # fmt: skip
# Beam's options a run of this pipeline usually sets, shown with Beam's own help.
BEAM_SHOWN = (
    "runner", "streaming", "project", "region", "temp_location", "job_name",
    "num_workers", "max_num_workers", "service_account_email",
)  # fmt: skip
USAGE = "opentrack run (--input PATTERN | --streaming --subscription S) [options]"
DESCRIPTION = (
    "Run the pipeline: a batch run on files (--input PATTERN) or a streaming run from "
    "Pub/Sub (--streaming --subscription projects/P/subscriptions/S), into BigQuery "
    "(--bigquery_project P) or, with --output_dir DIR, into JSON-lines files."
)
EPILOG = (
    "Flags are spelt --snake_case; --kebab-case is accepted too. Every option can also be "
    "set as OPENTRACK_<OPTION> (e.g. OPENTRACK_BIGQUERY_ENDPOINT); the command line wins. "
    "--verbose shows a failure's traceback. Every other Beam option is accepted: "
    "`opentrack run --help_beam` lists them."
)


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends each option's default unless its help already states one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text.lower() or action.nargs == 0 or action.required
                or action.default is argparse.SUPPRESS):  # fmt: skip
            return text
        shown = "none" if action.default in (None, "") else "%(default)s"
        return f"{text} (default: {shown})"


class _Router:
    """Stands in for a parser in ``_add_argparse_args``: each option goes to its group."""

    def __init__(self, groups: dict[str, Any], fallback: Any) -> None:
        self._by_dest = {dest: groups[title] for title, dests in GROUPS.items() for dest in dests}
        self._fallback = fallback

    def add_argument(self, *flags: str, **kwargs: Any) -> argparse.Action:
        dest = kwargs.get("dest") or flags[0].lstrip("-").replace("-", "_")
        return self._by_dest.get(dest, self._fallback).add_argument(*flags, **kwargs)


def help_parser(
    prog: str = "opentrack run",
    usage: str = USAGE,
    description: str = DESCRIPTION,
    own: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.ArgumentParser:
    """The run's options, grouped; ``own`` adds a command's own flags first (backfill)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=usage,
        description=description,
        epilog=EPILOG,
        formatter_class=DefaultsFormatter,
    )
    if own is not None:
        own(parser)
    groups = {title: parser.add_argument_group(f"{title} options") for title in GROUPS}
    other = parser.add_argument_group("other options")
    OpenTrackOptions._add_argparse_args(_Router(groups, other))  # noqa: SLF001 - Beam's hook
    beam = argparse.ArgumentParser(add_help=False)
    for options in (StandardOptions, GoogleCloudOptions, WorkerOptions):
        options._add_argparse_args(beam)  # noqa: SLF001
    shown = parser.add_argument_group("Beam options (a few; --help_beam lists all)")
    for action in beam._actions:  # noqa: SLF001 - argparse keeps no public list
        if action.dest in BEAM_SHOWN and action.option_strings:
            flags = [f for f in action.option_strings if "-" not in f.lstrip("-")]
            kwargs: dict[str, Any] = {"dest": action.dest, "help": action.help}
            if action.nargs == 0:
                kwargs["action"] = "store_true"
            else:
                kwargs.update(default=action.default, choices=action.choices)
            shown.add_argument(*flags, **kwargs)
    parser.add_argument("--help_beam", action="store_true", help="list every Beam option")
    parser.add_argument("--verbose", action="store_true", help="show a failure's traceback")
    return parser


def help_text() -> str:
    return help_parser().format_help()


def beam_help_text() -> str:
    """Every option of every Beam options class, as Beam registers them."""
    parser = argparse.ArgumentParser(
        prog="opentrack run", add_help=False, conflict_handler="resolve"
    )
    seen: set[type] = set()
    pending = list(PipelineOptions.__subclasses__())
    while pending:
        cls = pending.pop(0)
        pending.extend(cls.__subclasses__())
        if cls in seen or cls is OpenTrackOptions or not cls.__module__.startswith("apache_beam"):
            continue
        seen.add(cls)
        if "_add_argparse_args" in cls.__dict__:
            group = parser.add_argument_group(cls.__name__)
            # Beam's registration hook; a group takes add_argument like the parser it declares.
            cls._add_argparse_args(group)  # type: ignore[arg-type]
    return parser.format_help()
