"""The CLI a newcomer meets: every command's help lists its options, usage errors are one
line and exit 2, either flag spelling works, options come from the environment."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pipeline.commands import backfill, cli, demo, replay
from pipeline.commands import local as local_cli
from pipeline.commands import schema as schema_cli
from pipeline.commands.arguments import env_name, snake_flags, with_environment
from pipeline.graphs.options import OpenTrackOptions


def _code(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exit_:  # argparse's --help and usage errors
        return int(exit_.code or 0)


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return [f for action in parser._actions for f in action.option_strings if f.startswith("--")]


def _ours() -> list[str]:
    parser = argparse.ArgumentParser()
    OpenTrackOptions._add_argparse_args(parser)
    return _flags(parser)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "--help"], lambda: _ours()),
        (["backfill", "--help"], lambda: ["--from", "--to", "--input_prefix", *_ours()]),
        (["replay", "--help"], lambda: _flags(replay.build_parser())),
        (["preview", "--help"], lambda: ["--source_name", "--source_field", "--input", "--now",
                                         "--max_event_bytes", "--max_depth"]),
        (["local", "up", "--help"], lambda: ["--state_dir", "--project"]),
        (["local", "topic", "--help"], lambda: ["--state_dir"]),
    ],
)  # fmt: skip
def test_every_command_help_lists_its_options(
    argv: list[str], expected, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _code(argv) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"usage: opentrack {argv[0]}")
    assert [flag for flag in expected() if flag not in shown] == []


def test_schema_help_lists_each_action_and_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("check", "plan", "apply"):
        assert _code(["schema", action, "--help"]) == 0
        shown = capsys.readouterr().out
        for flag in ("--contracts", "--bigquery_project", "--bigquery_endpoint"):
            assert flag in shown
    assert schema_cli.build_parser().prog == "opentrack schema"


def test_run_help_groups_options_and_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert _code(["run", "--help"]) == 0
    shown = capsys.readouterr().out
    for group in ("input", "source", "warehouse", "schema", "write", "streaming", "limits"):
        assert f"\n{group} options:\n" in shown
    assert "Beam options" in shown and "--help_beam" in shown
    assert "(default: 32768)" in shown  # --max_event_bytes, from its declared default
    assert "OPENTRACK_<OPTION>" in shown


def test_help_beam_lists_beam_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert _code(["run", "--help_beam"]) == 0
    shown = capsys.readouterr().out
    for flag in ("--runner", "--temp_location", "--num_workers", "--experiments", "--sdk_location"):
        assert flag in shown


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["sideways"],
        ["run"],
        ["run", "--input=x.jsonl", "--sourc_name=Shop"],
        ["run", "--streaming"],
        ["run", "--input=x.jsonl", "--write_method=BULK"],
        ["backfill", "--from", "yesterday", "--to", "2026-01-02", "--input_prefix", "p"],
        ["backfill", "--to", "2026-01-02"],
        ["backfill", "--from", "2026-01-03", "--to", "2026-01-02", "--input_prefix", "p"],
        ["replay"],
        ["schema"],
        ["schema", "check"],
        ["local", "sideways"],
        ["preview", "--max_depth=deep"],
        ["preview", "--no_such_flag"],
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENTRACK_BIGQUERY_PROJECT", raising=False)
    assert _code(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("opentrack") and "error" in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_a_typo_names_the_flag_meant(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text("{}\n")
    assert _code(["run", f"--input={events}", f"--output_dir={tmp_path}", "--sourc-name=S"]) == 2
    assert "did you mean --source_name?" in capsys.readouterr().err


def test_input_that_matches_nothing_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "none-*.jsonl"
    assert _code(["run", f"--input={missing}", f"--output_dir={tmp_path}"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"opentrack run: error: --input={missing} matches no file: check the path "
        "(quote a pattern with *)"
    )


def test_a_runtime_failure_is_one_line_unless_verbose(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(argv: list[str]) -> int:
        raise RuntimeError("the disk is full\nand more detail")

    monkeypatch.setitem(cli._OWN_PARSER, "replay", broken)
    assert _code(["replay"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "opentrack replay: error: RuntimeError: the disk is full (--verbose shows the traceback)\n"
    )
    assert _code(["replay", "--verbose"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "the disk is full" in err


def test_kebab_and_snake_spellings_parse_alike(capsys: pytest.CaptureFixture[str]) -> None:
    assert snake_flags(["--source-name=A-B", "--max-depth", "3", "-h", "--", "x-y"]) == [
        "--source_name=A-B", "--max_depth", "3", "-h", "--", "x-y",
    ]  # fmt: skip
    assert (
        backfill._parse(["--input-prefix", "p", "--from", "2026-01-01", "--to", "2026-01-02"])[
            0
        ].input_prefix
        == "p"
    )


def test_options_come_from_the_environment_and_the_command_line_wins() -> None:
    flags = {"--bigquery_endpoint": True, "--streaming": False, "--input": True}
    environ = {
        "OPENTRACK_BIGQUERY_ENDPOINT": "http://127.0.0.1:1",
        "OPENTRACK_STREAMING": "true",
        "OPENTRACK_INPUT": "from-env.jsonl",
    }
    argv = with_environment(["--input=given.jsonl"], flags, environ)
    assert argv == ["--input=given.jsonl", "--bigquery_endpoint=http://127.0.0.1:1", "--streaming"]
    assert with_environment([], {"--streaming": False}, {"OPENTRACK_STREAMING": "no"}) == []
    with pytest.raises(argparse.ArgumentTypeError, match="OPENTRACK_STREAMING=maybe"):
        with_environment([], {"--streaming": False}, {"OPENTRACK_STREAMING": "maybe"})
    assert env_name("--bigquery_storage_endpoint") == "OPENTRACK_BIGQUERY_STORAGE_ENDPOINT"


def test_an_exclusive_flag_from_the_environment_yields_to_the_command_line() -> None:
    flags = {"--output": True, "--topic": True}
    environ = {"OPENTRACK_TOPIC": "projects/p/topics/t"}
    group = [frozenset(flags)]
    assert with_environment(["--output=x"], flags, environ, group) == ["--output=x"]
    assert with_environment([], flags, environ, group) == ["--topic=projects/p/topics/t"]


def test_preview_reads_its_options_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text('{"type":"track","event":"E","userId":"u","messageId":"m"}\n')
    monkeypatch.setenv("OPENTRACK_SOURCE_NAME", "From Env")
    assert _code(["preview", f"--input={events}"]) == 0
    assert '"dataset":"from_env"' in capsys.readouterr().out
    assert _code(["preview", f"--input={events}", "--source-name=Flag Wins"]) == 0
    assert '"dataset":"flag_wins"' in capsys.readouterr().out


def test_local_parser_takes_a_topic_name() -> None:
    args = local_cli._parser().parse_args(["topic", "events"])
    assert (args.action, args.name) == ("topic", "events")


def test_a_long_replay_says_how_far_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    rows = (replay.DeadLetterRow("{}", False, "s", key) for key in range(25_000))
    summary = replay.Summary()
    assert sum(1 for _ in replay.replayable(rows, summary)) == 25_000
    assert capsys.readouterr().err.splitlines() == [
        "replay: 10,000 dead letters read", "replay: 20,000 dead letters read",
    ]  # fmt: skip


def test_the_demo_reads_the_sample_events_the_package_ships() -> None:
    assert demo.SAMPLE_EVENTS.is_file(), demo.SAMPLE_EVENTS
