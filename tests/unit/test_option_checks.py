"""Options that are wrong or would do nothing stop the run at start-up, in one line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.commands import cli
from pipeline.graphs.options import (
    OpenTrackOptions,
    OptionError,
    refuse_unknown_arguments,
    table_settings,
)


def _options(*args: str) -> OpenTrackOptions:
    return PipelineOptions(list(args)).view_as(OpenTrackOptions)


def test_a_misspelt_option_is_refused_with_the_nearest_valid_one() -> None:
    with pytest.raises(OptionError, match=r"--sourc_name=x \(did you mean --source_name\?\)"):
        refuse_unknown_arguments(["--input=a.jsonl", "--sourc_name=x"])


def test_a_stray_positional_argument_is_refused() -> None:
    with pytest.raises(OptionError, match="unknown argument events.jsonl"):
        refuse_unknown_arguments(["--input", "a.jsonl", "events.jsonl"])


def test_options_of_ours_and_of_beam_and_dataflow_are_all_known() -> None:
    refuse_unknown_arguments(
        ["--input", "a.jsonl", "--source_name=Shop", "--runner=DataflowRunner",
         "--temp_location=gs://b/t", "--region=europe-west1", "--experiments=x",
         "--streaming", "--max_num_workers=3"]
    )  # fmt: skip


def test_a_value_argparse_refuses_is_one_line_not_a_usage_dump() -> None:
    with pytest.raises(OptionError, match=r"^argument --max_depth: invalid int value: 'x'$"):
        refuse_unknown_arguments(["--max_depth=x"])


@pytest.mark.parametrize("field", ["sent_at", "original_timestamp", "plan_started", "id"])
def test_a_partition_field_not_in_every_event_table_as_timestamp_is_refused(field: str) -> None:
    with pytest.raises(OptionError, match="can be partitioned on timestamp, received_at"):
        table_settings(_options(f"--partition_field={field}"))


@pytest.mark.parametrize("field", ["timestamp", "received_at", "loaded_at", "uuid_ts"])
def test_partition_fields_every_event_table_has_are_kept(field: str) -> None:
    assert table_settings(_options(f"--partition_field={field}")).partition_field == field


def test_clustering_on_a_column_the_model_never_makes_is_refused() -> None:
    with pytest.raises(OptionError, match="plan is not one of Segment's columns"):
        table_settings(_options("--clustering_fields=user_id, plan"))


@pytest.mark.parametrize("fields", ["user_id,event,name,category,id", "user_id,user_id"])
def test_more_than_four_or_repeated_clustering_columns_are_refused(fields: str) -> None:
    with pytest.raises(OptionError, match="at most 4 distinct columns"):
        table_settings(_options(f"--clustering_fields={fields}"))


def test_clustering_on_segments_columns_is_kept_in_order() -> None:
    settings = table_settings(_options("--clustering_fields=event, user_id"))
    assert settings.clustering_fields == ("event", "user_id")


def test_a_non_positive_partition_expiration_is_refused() -> None:
    with pytest.raises(OptionError, match="positive number of days"):
        table_settings(_options("--partition_expiration_days=0"))


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("--sourc_name=Shop", "unknown argument --sourc_name=Shop (did you mean --source_name?)"),
        ("--partition_field=nope", "--partition_field=nope: new tables can be partitioned on"),
    ],
)
def test_the_run_command_stops_before_running_with_one_line(
    argument: str, message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"type":"track","event":"E","userId":"u","messageId":"m"}\n')
    code = cli.main(
        ["run", f"--input={events}", "--bigquery_project=p",
         "--bigquery_endpoint=http://127.0.0.1:9", argument]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("opentrack run: error: ")
    assert message in line
    assert "counters:" not in captured.out


def test_run_help_lists_every_option_of_ours(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    OpenTrackOptions._add_argparse_args(parser)
    flags = [f for action in parser._actions for f in action.option_strings if f != "-h"]

    assert cli.main(["run", "--help"]) == 0

    shown = capsys.readouterr().out
    assert shown.startswith("usage: opentrack run")
    assert [flag for flag in flags if flag not in shown] == []
    assert "--runner" in shown and "--temp_location" in shown  # Beam's, named
