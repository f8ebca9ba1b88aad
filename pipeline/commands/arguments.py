"""Command-line conventions every ``opentrack`` command shares: one spelling of each flag,
values from the environment, and one-line errors.

* Flags are Beam's ``--snake_case``; ``--kebab-case`` is accepted and rewritten before any
  parser sees it, so a flag is spelt one way in the help and in the README.
* Every option can come from ``OPENTRACK_<OPTION>`` (``OPENTRACK_BIGQUERY_ENDPOINT`` for
  ``--bigquery_endpoint``); the command line wins. ``eval "$(opentrack local up)"`` exports
  the local stack's endpoints under those names.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import NoReturn

ENV_PREFIX = "OPENTRACK_"
_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no", "")


def snake_flags(argv: Iterable[str]) -> list[str]:
    """``--kebab-case[=value]`` as ``--kebab_case[=value]``; values and positionals untouched."""
    spelt = []
    for arg in argv:
        if arg.startswith("--") and len(arg) > 2:
            name, sep, value = arg.partition("=")
            arg = "--" + name[2:].replace("-", "_") + sep + value
        spelt.append(arg)
    return spelt


def env_name(flag: str) -> str:
    """``--bigquery_endpoint`` -> ``OPENTRACK_BIGQUERY_ENDPOINT``."""
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def given(argv: Sequence[str], flag: str) -> bool:
    return any(arg == flag or arg.startswith(flag + "=") for arg in argv)


def with_environment(
    argv: Sequence[str],
    flags: Mapping[str, bool],
    environ: Mapping[str, str] | None = None,
    exclusive: Iterable[frozenset[str]] = (),
) -> list[str]:
    """``argv`` plus ``--flag=value`` for each ``OPENTRACK_<FLAG>`` set whose flag ``argv``
    lacks. ``flags`` maps each flag to whether it takes a value; a switch is added when
    its variable is true. A flag of a mutually exclusive set is not added when another
    member is given."""
    environ = os.environ if environ is None else environ
    taken = [flag for flag in flags if given(argv, flag)]
    blocked = {f for group in exclusive if group & set(taken) for f in group}
    added = []
    for flag, takes_value in flags.items():
        value = environ.get(env_name(flag))
        if value is None or flag in taken or flag in blocked:
            continue
        if takes_value:
            added.append(f"{flag}={value}")
        elif value.strip().lower() in _TRUE:
            added.append(flag)
        elif value.strip().lower() not in _FALSE:
            raise argparse.ArgumentTypeError(
                f"{env_name(flag)}={value}: expected true or false (it sets {flag})"
            )
    return [*argv, *added]


def parser_flags(parser: argparse.ArgumentParser) -> dict[str, bool]:
    """The long flags an argparse parser takes, and whether each takes a value."""
    flags = {}
    for action in parser._actions:  # noqa: SLF001 - argparse keeps no public list
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):  # noqa: SLF001
            continue
        for flag in action.option_strings:
            if flag.startswith("--"):
                flags[flag] = action.nargs != 0
    return flags


def _exclusive_groups(parser: argparse.ArgumentParser) -> list[frozenset[str]]:
    return [
        frozenset(f for action in group._group_actions for f in action.option_strings)  # noqa: SLF001
        for group in parser._mutually_exclusive_groups  # noqa: SLF001
    ]


def parse_with_environment(
    parser: argparse.ArgumentParser, argv: Sequence[str]
) -> argparse.Namespace:
    """Parse ``argv`` (either spelling) after adding the environment's values; a
    sub-command's own flags are filled after its name."""
    argv = snake_flags(argv)
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction) and argv and argv[0] in action.choices:  # noqa: SLF001
            sub = action.choices[argv[0]]
            rest = with_environment(argv[1:], parser_flags(sub), exclusive=_exclusive_groups(sub))
            return parser.parse_args([argv[0], *rest])
    filled = with_environment(argv, parser_flags(parser), exclusive=_exclusive_groups(parser))
    return parser.parse_args(filled)


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line (the flag and what is valid)
    and exit 2, instead of the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; `{self.prog} --help` lists every option\n")
