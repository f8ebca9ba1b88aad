"""Every flag of the pipeline, in one PipelineOptions subclass (each with help).

The Flex Template's metadata.json mirrors this class; a test keeps them equal.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.chain import ModelConfig
from transforms.route import DEFAULT_SOURCE, DEFAULT_SOURCE_ATTRIBUTE, SourceConfig
from transforms.validate import Limits

_DEFAULT_LIMITS = Limits()


class OpenTrackOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:  # noqa: ANN001 - Beam's signature
        parser.add_argument(
            "--input",
            help="File pattern of newline-delimited JSON events to load (local path or "
            "gs://; .jsonl or .jsonl.gz). Segment batch envelopes are expanded.",
        )
        parser.add_argument(
            "--output_dir",
            help="Write the rows and dead letters as JSON lines under this directory "
            "(one file set per dataset.table) instead of loading them into BigQuery.",
        )
        parser.add_argument(
            "--source_name",
            default=DEFAULT_SOURCE,
            help="Source of events that name none; its snake_case is the dataset "
            f"(default {DEFAULT_SOURCE!r}).",
        )
        parser.add_argument(
            "--source_attribute",
            default=DEFAULT_SOURCE_ATTRIBUTE,
            help="Pub/Sub message attribute holding the source name; it wins over "
            f"--source_field (default {DEFAULT_SOURCE_ATTRIBUTE!r}; empty to ignore).",
        )
        parser.add_argument(
            "--source_field",
            default=None,
            help="Dotted path of an event field holding the source name, e.g. "
            "context.source (default: none).",
        )
        parser.add_argument(
            "--max_event_bytes",
            type=int,
            default=_DEFAULT_LIMITS.max_event_bytes,
            help="Largest single event accepted, in bytes (Segment: 32 KiB).",
        )
        parser.add_argument(
            "--max_batch_bytes",
            type=int,
            default=_DEFAULT_LIMITS.max_batch_bytes,
            help="Largest batch envelope accepted, in bytes (Segment: 500 KiB).",
        )
        parser.add_argument(
            "--max_depth",
            type=int,
            default=_DEFAULT_LIMITS.max_depth,
            help="Deepest nesting of objects/arrays accepted in an event.",
        )


def model_config(options: OpenTrackOptions) -> ModelConfig:
    """The event model's configuration from the pipeline options."""
    return ModelConfig(
        limits=Limits(
            max_event_bytes=options.max_event_bytes,
            max_batch_bytes=options.max_batch_bytes,
            max_depth=options.max_depth,
        ),
        sources=SourceConfig(
            default_source=options.source_name,
            source_attribute=options.source_attribute or None,
            source_field=options.source_field or None,
        ),
    )
