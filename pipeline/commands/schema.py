"""``opentrack schema check|plan|apply --contracts FILE``: declared tables vs the live warehouse.

* ``check`` reports every drift of the warehouse from the contract, grouped by dataset
  and table, like a migration tool's status;
* ``plan`` numbers what ``apply`` would do: the safe changes, and the refused ones each
  with the reason;
* ``apply`` makes the safe changes, leaves the refused ones, then checks again and
  prints the result.

Exit codes: 0 in line (check), nothing refused (plan), in line afterwards (apply);
1 drift (check), something refused (plan), drift left after apply (the refused
changes); 2 error: an invalid contract, an unreachable endpoint or missing
credentials, or a change BigQuery refused during apply.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TextIO

import google.auth
from google.api_core.exceptions import GoogleAPIError
from google.auth.exceptions import GoogleAuthError
from google.cloud import bigquery
from requests.exceptions import RequestException

from pipeline.commands.arguments import OneLineParser, parse_with_environment
from pipeline.commands.preflight import first_line, local_stack_hint
from pipeline.warehouse import identifiers
from pipeline.warehouse.client import make_client
from pipeline.warehouse.contracts import (
    Contract,
    ContractError,
    Drift,
    Step,
    Warehouse,
    diff,
    has_refusals,
    load_contract,
    plan,
)
from pipeline.warehouse.contracts.apply import apply_contract, probe, read_warehouse

OK, DRIFT, ERROR = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="opentrack schema",
        description="Check the live BigQuery warehouse against a contract file, plan and apply "
        "the safe changes.",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    helps = {
        "check": "report drift from the contract (exit 1 on drift)",
        "plan": "number what apply would do, safe and refused (exit 1 when something is refused)",
        "apply": "make the safe changes, refuse the unsafe ones, then check again",
    }
    for action, text in helps.items():
        sub = actions.add_parser(action, help=text, description=text)
        sub.add_argument("--contracts", required=True, help="the contract file (YAML)")
        sub.add_argument(
            "--bigquery_project",
            default=None,
            help="project of the datasets (default: the project of the default credentials)",
        )
        sub.add_argument(
            "--bigquery_endpoint",
            default=None,
            help="BigQuery API endpoint (emulator, private endpoint)",
        )
    return parser


# --- reports (pure) ------------------------------------------------------------------


def _objects(contract: Contract) -> list[tuple[str, str | None]]:
    objects: list[tuple[str, str | None]] = []
    for dataset in contract.datasets:
        objects.append((dataset.name, None))
        objects += [(dataset.name, table.name) for table in dataset.tables]
    return objects


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def render_check(contract: Contract, project: str, drifts: Sequence[Drift]) -> str:
    """Every declared dataset and table, ``ok`` or its drifts, then a one-line verdict."""
    objects = _objects(contract)
    tables = len(objects) - len(contract.datasets)
    heading = (
        f"Checking {contract.source} against project {project}: "
        f"{_count(len(contract.datasets), 'dataset')}, {_count(tables, 'table')}"
    )
    lines = [heading]
    by_object: dict[tuple[str, str | None], list[Drift]] = {}
    for drift in drifts:
        by_object.setdefault((drift.dataset, drift.table), []).append(drift)
    labels = [f"    {d}.{t}" if t else f"  {d}" for d, t in objects]
    width = max(len(label) for label in labels) + 2
    for (dataset, table), label in zip(objects, labels, strict=True):
        found = by_object.get((dataset, table), [])
        if not found:
            lines.append(f"{label:<{width}}ok")
            continue
        lines.append(f"{label:<{width}}{_count(len(found), 'drift')}")
        for drift in found:
            lines.append(f"        {drift.kind:<28} {drift.describe()}")
    if not drifts:
        lines.append("OK: the warehouse matches the contract")
    else:
        kinds = Counter(d.kind for d in drifts)
        summary = ", ".join(f"{kind} {count}" for kind, count in kinds.items())
        lines.append(
            f"DRIFT: {_count(len(drifts), 'drift')} in {len(by_object)} of "
            f"{_count(len(objects), 'object')} ({summary})"
        )
    return "\n".join(lines)


def render_plan(contract: Contract, project: str, steps: Sequence[Step]) -> str:
    """The numbered plan: safe changes, and refusals with their reason, in apply's order."""
    safe = sum(1 for s in steps if s.safe)
    refused = len(steps) - safe
    lines = [
        f"Plan for {contract.source} against project {project}: {safe} to apply, {refused} refused"
    ]
    width = len(str(len(steps)))
    for number, step in enumerate(steps, start=1):
        lines.append(f"  {number:>{width}}. {step.render()}")
    if not steps:
        lines.append("  nothing to do: the warehouse matches the contract")
    return "\n".join(lines)


# --- the commands --------------------------------------------------------------------


def _check(
    client: bigquery.Client, project: str, contract: Contract, warehouse: Warehouse, out: TextIO
) -> int:
    drifts = diff(contract, warehouse)
    print(render_check(contract, project, drifts), file=out)
    return DRIFT if drifts else OK


def _plan(
    client: bigquery.Client, project: str, contract: Contract, warehouse: Warehouse, out: TextIO
) -> int:
    steps = plan(diff(contract, warehouse))
    print(render_plan(contract, project, steps), file=out)
    return DRIFT if has_refusals(steps) else OK


def _apply(
    client: bigquery.Client, project: str, contract: Contract, warehouse: Warehouse, out: TextIO
) -> int:
    steps = plan(diff(contract, warehouse))
    print(render_plan(contract, project, steps), file=out)
    safe = sum(1 for s in steps if s.safe)
    print(f"\nApplying {safe} safe changes; refused ones are left as they are:", file=out)
    if not safe:
        print("  nothing to apply", file=out)
        result = None
    else:
        result = apply_contract(
            client, project, contract, emit=lambda line: print(line, file=out, flush=True)
        )
    print("\nCheck after apply:", file=out)
    drifts = diff(contract, read_warehouse(client, project, contract))
    print(render_check(contract, project, drifts), file=out)
    if result is not None and result.failed:
        print(f"ERROR: {len(result.failed)} change(s) failed, see FAILED above", file=out)
        return ERROR
    return DRIFT if drifts else OK


_COMMANDS: dict[str, Callable[[bigquery.Client, str, Contract, Warehouse, TextIO], int]] = {
    "check": _check,
    "plan": _plan,
    "apply": _apply,
}


def _project(explicit: str | None) -> str:
    """``--bigquery_project``, else the project of the default credentials."""
    project = explicit or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        _, project = google.auth.default()
    if not project:
        raise GoogleAuthError("no project: pass --bigquery_project")
    return identifiers.project_id(project)


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = parse_with_environment(build_parser(), sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2, already printed)
        return int(exit_.code or 0)
    try:
        contract = load_contract(args.contracts)
    except ContractError as error:
        print(f"error: invalid contract ({len(error.problems)} problems):\n{error}", file=err)
        return ERROR
    endpoint = args.bigquery_endpoint or "the default BigQuery endpoint"
    client = None
    try:
        project = _project(args.bigquery_project)
        client = make_client(project, args.bigquery_endpoint)
        probe(client, project, contract.datasets[0].name)
        warehouse = read_warehouse(client, project, contract)
        return _COMMANDS[args.action](client, project, contract, warehouse, out)
    except identifiers.InvalidIdentifier as error:
        print(f"error: {error}", file=err)
        return ERROR
    except (GoogleAPIError, GoogleAuthError, RequestException, OSError) as error:
        hint = "" if args.bigquery_endpoint else f"; {local_stack_hint()}"
        print(f"error: cannot use BigQuery at {endpoint}: {first_line(error)}{hint}", file=err)
        return ERROR
    finally:
        if client is not None:
            client.close()


if __name__ == "__main__":
    raise SystemExit(main())
