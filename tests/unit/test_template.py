"""The Dataflow Flex Template: metadata.json mirrors OpenTrackOptions, its regexes
agree with the code that parses the values, templates/main.py builds both graphs
without running them, the image pins setup.py's Beam, and the docs launch with
real parameter names only."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import logging
import re
import shlex
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import apache_beam as beam
import pytest
import yaml
from apache_beam.io.filesystem import FileMetadata, MatchResult
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.gcp.pubsub import parse_subscription
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline.graphs.options import OpenTrackOptions
from pipeline.warehouse import identifiers

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"
SCHEDULER = TEMPLATES / "scheduler" / "backfill-daily.sh"
TEST_PROJECT = "test-project"
# Beam refuses the project "p" of projects/p/subscriptions/s (its project-id check).
SUBSCRIPTION = f"projects/{TEST_PROJECT}/subscriptions/s"


def _option_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    OpenTrackOptions._add_argparse_args(parser)
    return parser


OPTIONS: dict[str, argparse.Action] = {a.dest: a for a in _option_parser()._actions}
METADATA: dict[str, Any] = json.loads((TEMPLATES / "metadata.json").read_text())
PARAMETERS: dict[str, dict[str, Any]] = {p["name"]: p for p in METADATA["parameters"]}


def _load_main() -> ModuleType:
    spec = importlib.util.spec_from_file_location("opentrack_template_main", TEMPLATES / "main.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAIN = _load_main()


# (a) metadata.json <-> OpenTrackOptions, both ways


def test_every_option_is_a_parameter_and_no_parameter_is_invented() -> None:
    names = [p["name"] for p in METADATA["parameters"]]
    assert len(names) == len(set(names)), "a parameter is declared twice"
    assert set(names) - set(OPTIONS) == set(), "parameters that are no option"
    assert set(OPTIONS) - set(names) == set(), "options missing from metadata.json"


# (b) labels, help and optionality


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_parameter_carries_the_option_help_a_label_and_optionality(name: str) -> None:
    parameter, option = PARAMETERS[name], OPTIONS[name]
    assert METADATA["name"].strip() and METADATA["description"].strip()
    assert parameter["label"].strip()
    assert option.help and parameter["helpText"].startswith(option.help), (
        "helpText must start with the option's help (a template note may follow)"
    )
    assert isinstance(parameter["isOptional"], bool)
    if not parameter["isOptional"]:
        assert option.default is None, "a parameter with a default cannot be required"


def test_mode_specific_sources_are_optional() -> None:
    # Batch needs input, streaming needs subscription: neither is required alone.
    assert PARAMETERS["input"]["isOptional"] and PARAMETERS["subscription"]["isOptional"]


# (c) regexes: accept defaults and examples (which the options themselves parse),
# refuse garbage


EXAMPLES: dict[str, tuple[list[str], list[str]]] = {
    "input": (
        [
            "gs://bucket/events/dt=2026-11-01/*.jsonl*",
            "gs://my.bucket_1/a/b.jsonl.gz",
            "gs://bucket/events/dt=2026-11-01/*.jsonl*,gs://bucket/events/dt=2026-11-02/*.jsonl*",
        ],
        [
            "/tmp/events.jsonl",
            "s3://bucket/a.jsonl",
            "gs://bucket",
            "gs://Bucket/a",
            "gs://bucket/a,",
            "",
        ],
    ),
    "subscription": (
        [SUBSCRIPTION, "projects/example.com:my-proj/subscriptions/events.v1"],
        ["projects/p/subscriptions/s", "projects/test-project/topics/t", "test-project/s", ""],
    ),
    "dedup_window_seconds": (["86400", "0.5"], ["-1", "1e3", "24h", ""]),
    "users_merge_interval_seconds": (["60", "2.5"], ["-5", "one", ""]),
    "schema_retry_delays": (["5,30", "0", "1.5,10,60"], ["5,", ",5", "5;30", "five", ""]),
    "schema_side_input": (["true", "false"], ["yes", "TRUE", "1", ""]),
    "mutation_batch_seconds": (["1", "0.25"], ["fast", ""]),
    "rewrite_drain_seconds": (["2", "0"], ["-2", ""]),
    "output_dir": (["gs://bucket/out", "gs://bucket/out/run-1/"], ["/tmp/out", "out", "gs://"]),
    "source_field": (
        ["context.source", "properties.app_name"],
        ["context..source", ".source", "a b"],
    ),
    "max_event_bytes": (["32768", "1"], ["0", "-1", "32KiB", "1.5"]),
    "max_batch_bytes": (["512000"], ["0", "500k"]),
    "max_depth": (["32", "64"], ["0", "deep"]),
    "bigquery_project": (
        [TEST_PROJECT, "example.com:my-project"],
        ["Test-Project", "my_project", "p", "test-project-", ""],
    ),
    "bigquery_endpoint": (
        ["http://127.0.0.1:9050", "https://bigquery.googleapis.com/", "http://localhost:9050/"],
        ["127.0.0.1:9050", "ftp://host", "http://", "", "http://bigquery.example.com:9050"],
    ),
    "bigquery_storage_endpoint": (
        ["127.0.0.1:9060", "bigquerystorage.googleapis.com:443"],
        ["http://127.0.0.1:9060", "127.0.0.1", "host:port", ""],
    ),
    "auto_table_management": (["true", "false"], ["on", ""]),
    "location": (
        ["US", "EU", "us", "europe-west1", "northamerica-northeast1"],
        ["Europe", "us central1", ""],
    ),
    "partition_field": (["timestamp", "received_at", "_3rd"], ["3rd", "received-at", ""]),
    "clustering_fields": (
        ["", "event", "user_id,event,context_ip"],
        ["user_id,", "user id", ",event"],
    ),
    "partition_expiration_days": (["90", "1"], ["0", "-30", "ninety"]),
    "max_columns": (["10000", "500", "25"], ["0", "10001", "-5", "many"]),
    "contracts": (
        ["gs://acme-config/contracts/warehouse.yaml", "gs://acme-config/c.yml"],
        ["contracts.yaml", "gs://acme-config/contracts.json", "/etc/c.yaml"],
    ),
    "schema_cache_ttl_seconds": (["300", "0.5"], ["5m", ""]),
    "local_slice_mb": (["128", "0", "0.5"], ["-1", "1g", ""]),
    "request_timeout_seconds": (["60", "2.5", "0.5"], ["0", "0.0", "-1", "1m", ""]),
    "write_method": (
        ["STREAMING_INSERTS", "FILE_LOADS", "STORAGE_WRITE_API"],
        ["streaming_inserts", "storage_write_api", ""],
    ),
    "write_mode": (["append", "insert_missing_by_id"], ["APPEND", "upsert", ""]),
    "ignore_unknown_values": (["true", "false"], ["True", ""]),
    "skip_invalid_rows": (["true"], ["false", ""]),
}
WITH_REGEXES = sorted(name for name, p in PARAMETERS.items() if p.get("regexes"))


def _accepted(name: str, value: str) -> bool:
    """Dataflow requires a value to match every regex of its parameter."""
    return all(re.fullmatch(pattern, value) for pattern in PARAMETERS[name]["regexes"])


def _as_parameter(value: Any) -> str:
    """How a default reads as a template parameter value."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_every_regex_has_examples() -> None:
    assert set(WITH_REGEXES) == set(EXAMPLES)


@pytest.mark.parametrize("name", WITH_REGEXES)
def test_regex_accepts_the_default_and_examples_and_refuses_garbage(name: str) -> None:
    good, bad = EXAMPLES[name]
    default = OPTIONS[name].default
    if default is not None:
        assert _accepted(name, _as_parameter(default)), f"default {default!r} refused"
    for value in good:
        assert _accepted(name, value), f"{value!r} refused"
        _option_parser().parse_args([f"--{name}={value}"])  # the option takes it too
    for value in [*bad, "x\ny", "$(touch /tmp/x)"]:
        assert not _accepted(name, value), f"{value!r} accepted"


@pytest.mark.parametrize("name", ["write_method", "write_mode"])
def test_choice_regexes_accept_exactly_the_choices(name: str) -> None:
    for choice in OPTIONS[name].choices:
        assert _accepted(name, choice)
    assert not _accepted(name, "|".join(OPTIONS[name].choices))


def _beam_accepts_subscription(value: str) -> bool:
    try:
        parse_subscription(value)
    except ValueError:
        return False
    return True


def test_subscription_regex_agrees_with_beams_parser() -> None:
    good, bad = EXAMPLES["subscription"]
    for value in good + bad:
        assert _accepted("subscription", value) == _beam_accepts_subscription(value), value


def _warehouse_accepts(check: Any, value: str) -> bool:
    try:
        check(value)
    except identifiers.InvalidIdentifier:
        return False
    return True


def test_project_and_column_regexes_agree_with_the_identifier_rules() -> None:
    good, bad = EXAMPLES["bigquery_project"]
    for value in good + bad:
        assert _accepted("bigquery_project", value) == _warehouse_accepts(
            identifiers.project_id, value
        )
    good, bad = EXAMPLES["partition_field"]
    for value in good + bad:
        assert _accepted("partition_field", value) == _warehouse_accepts(identifiers.column, value)
    for value in ["event", "user_id,event,context_ip"]:
        assert all(_warehouse_accepts(identifiers.column, c) for c in value.split(","))


# (d) templates/main.py builds the graphs without running them


@pytest.fixture
def gcs_files(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every gs:// pattern matches one file: ReadFromText checks its pattern while
    the graph is built, and unit tests do not reach Cloud Storage."""
    asked: list[str] = []

    def match(patterns: list[str], limits: list[int] | None = None) -> list[MatchResult]:
        asked.extend(patterns)
        return [MatchResult(p, [FileMetadata(p.replace("*", "x"), 100)]) for p in patterns]

    monkeypatch.setattr(FileSystems, "match", staticmethod(match))
    return asked


def _top_level_labels(pipeline: beam.Pipeline) -> set[str]:
    transforms = pipeline.to_runner_api().components.transforms.values()
    return {t.unique_name for t in transforms if "/" not in t.unique_name}


BATCH_STEPS = {
    "ReadFiles",
    "LinesToMessages",
    "EventModel",
    "ApplySchemas",
    "FitRows",
    "MergeUsers",
}
STREAMING_STEPS = {
    "ReadPubSub",
    "ToMessages",
    "EventModel",
    "SyncSchemas",
    "UsersMicroBatches",
    "MergeUsers",
    "WriteRows",
    "WriteDeadLetters",
}


def test_builds_the_batch_graph_without_running_it(gcs_files: list[str]) -> None:
    pattern = "gs://b/dt=2026-11-01/*.jsonl"
    pipeline = MAIN.build([f"--input={pattern}", f"--bigquery_project={TEST_PROJECT}"])
    labels = _top_level_labels(pipeline)
    assert BATCH_STEPS | {"WriteRows", "WriteDeadLetters"} <= labels
    assert "ReadPubSub" not in labels
    assert not pipeline.options.view_as(StandardOptions).streaming
    assert gcs_files == [pattern]


def test_builds_the_backfill_graph_of_the_scheduled_launch(gcs_files: list[str]) -> None:
    pipeline = MAIN.build(
        [
            "--input=gs://bucket/events/dt=2026-11-01/*.jsonl*",
            "--write_mode=insert_missing_by_id",
            f"--bigquery_project={TEST_PROJECT}",
        ]
    )
    labels = _top_level_labels(pipeline)
    assert BATCH_STEPS | {"InsertMissingById", "InsertMissingDeadLetters"} <= labels
    assert "WriteRows" not in labels


@pytest.mark.parametrize(
    "mode",
    [["--streaming"], ["--streaming=true"], []],
    ids=["flag", "flag=true", "from-subscription"],
)
def test_builds_the_streaming_graph_without_running_it(mode: list[str]) -> None:
    pipeline = MAIN.build(
        [*mode, f"--subscription={SUBSCRIPTION}", f"--bigquery_project={TEST_PROJECT}"]
    )
    labels = _top_level_labels(pipeline)
    assert STREAMING_STEPS <= labels
    assert "ReadFiles" not in labels
    assert pipeline.options.view_as(StandardOptions).streaming


def test_streaming_graph_on_dataflow_has_the_schema_side_input() -> None:
    # Dataflow's default (schema_side_input unset, runner not Direct); forced here
    # because the graph is built on a local runner.
    args = [f"--subscription={SUBSCRIPTION}", f"--bigquery_project={TEST_PROJECT}"]
    with_side = _top_level_labels(MAIN.build([*args, "--schema_side_input=true"]))
    without = _top_level_labels(MAIN.build(args))
    assert {"SchemaRefresh", "LoadSchemas", "LatestSchemas"} <= with_side - without


def test_streaming_false_keeps_the_batch_graph(gcs_files: list[str]) -> None:
    argv = [
        "--streaming=false",
        "--input=gs://bucket/a/*.jsonl",
        f"--bigquery_project={TEST_PROJECT}",
    ]
    pipeline = MAIN.build(argv)
    assert "ReadFiles" in _top_level_labels(pipeline)
    assert not pipeline.options.view_as(StandardOptions).streaming


@pytest.mark.parametrize(
    "argv",
    [
        [],
        [f"--bigquery_project={TEST_PROJECT}"],
        ["--input=gs://bucket/a/*.jsonl", f"--subscription={SUBSCRIPTION}"],
        ["--streaming=maybe", f"--subscription={SUBSCRIPTION}"],
    ],
)
def test_refuses_launches_without_exactly_one_source(argv: list[str]) -> None:
    with pytest.raises(ValueError):
        MAIN.template_args(argv)


def test_submits_to_dataflow_unless_a_runner_is_named() -> None:
    assert MAIN.with_template_runner(["--input=gs://bucket/a"])[-1] == "--runner=DataflowRunner"
    named = ["--runner=FlinkRunner", "--input=gs://bucket/a"]
    assert MAIN.with_template_runner(named) == named


@pytest.mark.parametrize(
    ("extra", "warned"),
    [([], True), (["--sdk_container_image=REGION-docker.pkg.dev/p/r/opentrack:1"], False)],
)
def test_warns_when_dataflow_workers_would_lack_the_package(
    extra: list[str], warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    options = PipelineOptions(["--runner=DataflowRunner", *extra])
    with caplog.at_level(logging.WARNING):
        MAIN._warn_without_worker_code(options)
    assert ("sdk_container_image" in caplog.text) == warned


# (e) the image runs setup.py's Beam


def _setup_requirement(package: str) -> str:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "INSTALL_REQUIRES" for t in node.targets
        ):
            for requirement in ast.literal_eval(node.value):
                if re.match(rf"{re.escape(package)}(\[|=)", requirement):
                    return requirement.split("==", 1)[1]
    raise AssertionError(f"{package} is not pinned in setup.py")


def test_dockerfile_beam_image_is_setup_py_beam() -> None:
    dockerfile = (TEMPLATES / "Dockerfile").read_text()
    images = re.findall(
        r"^FROM\s+apache/beam_python(\d)\.(\d+)_sdk:(\S+)\s*$", dockerfile, re.MULTILINE
    )
    assert len(images) == 1, "exactly one FROM apache/beam_pythonX.Y_sdk:<version>"
    major, minor, tag = images[0]
    beam_version = _setup_requirement("apache-beam")
    assert tag == beam_version
    assert f"apache-beam=={beam_version}\n" in (REPO / "constraints.txt").read_text()
    launcher = re.search(r"python(\d)(\d+)-template-launcher-base", dockerfile)
    assert launcher and launcher.groups() == (major, minor), "launcher and SDK Python differ"


def test_dockerfile_wires_the_launcher_to_main_py() -> None:
    dockerfile = (TEMPLATES / "Dockerfile").read_text()
    workdir = re.findall(r"^WORKDIR\s+(\S+)", dockerfile, re.MULTILINE)[-1]
    py_file = re.search(r"^ENV\s+FLEX_TEMPLATE_PYTHON_PY_FILE=(\S+)", dockerfile, re.MULTILINE)
    assert py_file and py_file.group(1) == f"{workdir}/templates/main.py"
    assert re.search(
        r"^COPY\s+templates/main\.py\s+templates/main\.py\s*$", dockerfile, re.MULTILINE
    )
    assert re.search(r"pip install --no-cache-dir -c constraints\.txt \.", dockerfile)
    assert re.search(r'^ENTRYPOINT\s+\["/opt/apache/beam/boot"\]\s*$', dockerfile, re.MULTILINE)


# (f) the docs launch with metadata.json's names only


def _gcloud_dict_keys(value: str) -> list[str]:
    """Keys of a gcloud dict flag value (``gcloud topic escaping``: ``^D^`` sets the delimiter)."""
    delimiter = ","
    custom = re.match(r"\^([^^]+)\^", value)
    if custom:
        delimiter, value = custom.group(1), value[custom.end() :]
    items = value.split(delimiter)
    assert all("=" in item for item in items), f"bad --parameters value {value!r}"
    return [item.split("=", 1)[0] for item in items]


def _readme_parameter_names() -> list[str]:
    readme = (TEMPLATES / "README.md").read_text()
    names: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", readme, re.DOTALL):
        tokens = shlex.split(block.replace("\\\n", " "), comments=True)
        for index, token in enumerate(tokens):
            if token.startswith("--parameters="):
                names += _gcloud_dict_keys(token.split("=", 1)[1])
            elif token == "--parameters":
                names += _gcloud_dict_keys(tokens[index + 1])
    return names


def test_readme_launches_use_only_template_parameters() -> None:
    names = _readme_parameter_names()
    assert {"subscription", "input", "write_mode", "bigquery_project"} <= set(names)
    assert set(names) <= set(PARAMETERS)


def _scheduled_launch() -> dict[str, Any]:
    script = SCHEDULER.read_text()
    source = re.search(r"<<'YAML'\n(.*?)\nYAML\n", script, re.DOTALL)
    assert source, "the workflow source heredoc"
    workflow = yaml.safe_load(source.group(1))
    for step in workflow["main"]["steps"]:
        for body in step.values():
            if body.get("call") == "http.post" and "flexTemplates:launch" in body["args"]["url"]:
                return body["args"]["body"]["launchParameter"]
    raise AssertionError("no flexTemplates:launch call in the workflow")


def test_scheduled_backfill_launches_yesterday_idempotently_with_template_parameters() -> None:
    launch = _scheduled_launch()
    parameters = launch["parameters"]
    assert set(parameters) <= set(PARAMETERS)
    assert parameters["write_mode"] == "insert_missing_by_id"
    assert '"dt=" + day + "/*.jsonl*"' in parameters["input"]
    assert "time.format(sys.now() - 86400)" in SCHEDULER.read_text()
    assert launch["environment"]["sdkContainerImage"], "workers need the template image"


def test_scheduler_script_is_valid_bash() -> None:
    checked = subprocess.run(
        ["bash", "-n", str(SCHEDULER)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
