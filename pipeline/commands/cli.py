"""The ``opentrack`` command: dispatches to each sub-command and turns a failure into one
line on stderr (the traceback only with ``--verbose``).

Exit codes: 0 done, 1 the run or what it needs failed, 2 a usage error (nothing ran).
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Sequence

from pipeline.commands import backfill, local, preview, replay, run, schema
from pipeline.commands.arguments import OneLineParser, parse_with_environment, snake_flags
from pipeline.commands.preflight import first_line

COMMANDS: dict[str, str] = {
    "preview": "print the rows and dead letters events become (no cloud calls)",
    "run": "run the pipeline, batch (--input) or streaming (--streaming --subscription)",
    "backfill": "load --from..--to days of <prefix>/dt=YYYY-MM-DD/ files, idempotently",
    "replay": "re-feed dead letters (by reason, stage, time) to a file or a topic",
    "schema": "compare the warehouse with a contract file: schema check|plan|apply",
    "local": "start/stop the local stack of emulators: local up|down|status|topic",
}
# Commands that parse their own arguments (each with its own --help).
_OWN_PARSER: dict[str, Callable[[list[str]], int]] = {
    "run": run.main,
    "backfill": backfill.main,
    "replay": replay.main,
    "schema": schema.main,
    "local": local.main,
}


def _parser() -> OneLineParser:
    parser = OneLineParser(
        prog="opentrack",
        description="Segment-spec analytics events into BigQuery. `opentrack COMMAND --help` "
        "lists a command's options; --verbose shows a failure's traceback.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in COMMANDS.items():
        sub = commands.add_parser(name, help=text, add_help=name == "preview")
        if name == "preview":
            preview.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = snake_flags(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    argv = [arg for arg in argv if arg != "--verbose"]
    command = argv[0] if argv else ""
    if command != "local":  # the local stack logs its progress itself, at INFO
        level = logging.INFO if verbose else logging.WARNING
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
        # google.auth warns of no default project though every client here is given one
        logging.getLogger("google.auth._default").setLevel(logging.ERROR)
    try:
        if command in _OWN_PARSER:
            return _OWN_PARSER[command](argv[1:])
        return preview.main(parse_with_environment(_parser(), argv))
    except KeyboardInterrupt:
        print(f"opentrack {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, exit 1
        if verbose:
            traceback.print_exc()
        hint = "" if verbose else " (--verbose shows the traceback)"
        print(
            f"opentrack {command}: error: {type(error).__name__}: {first_line(error)}{hint}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
