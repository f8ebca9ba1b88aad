"""Shared fixtures: pipelines on Beam's in-process runner, fixed clocks, sample data."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from pipeline.commands.run import LOCAL_BATCH_RUNNER

REPO = Path(__file__).resolve().parent.parent
SAMPLE_EVENTS = REPO / "pipeline" / "samples" / "events.jsonl"
RECEIVED = datetime(2026, 11, 5, 12, 0, 0, tzinfo=UTC)


def make_test_pipeline(*args: str) -> TestPipeline:
    """A TestPipeline on the FnApiRunner (what DirectRunner falls back to offline)."""
    return TestPipeline(
        runner=LOCAL_BATCH_RUNNER, options=PipelineOptions(list(args)), blocking=True
    )


@pytest.fixture
def sample_events_path() -> Path:
    return SAMPLE_EVENTS
