"""Which source (and so which dataset) an event belongs to.

One pipeline can serve several sources. Precedence, first match wins:
1. the message attribute named by ``source_attribute`` (Pub/Sub), if set;
2. the event field at the dotted path ``source_field`` (e.g. ``context.source``);
3. ``default_source`` from the pipeline options.
The dataset is the snake_case of the source name ("Production Site" ->
``production_site``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transforms.model.deadletter import EventRejected, Reason
from transforms.model.naming import dataset_name

DEFAULT_SOURCE = "opentrack"
DEFAULT_SOURCE_ATTRIBUTE = "source"


@dataclass(frozen=True)
class SourceConfig:
    default_source: str = DEFAULT_SOURCE
    source_attribute: str | None = DEFAULT_SOURCE_ATTRIBUTE
    source_field: str | None = None

    @property
    def field_path(self) -> tuple[str, ...]:
        return tuple(self.source_field.split(".")) if self.source_field else ()


def _lookup(event: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = event
    for key in path:
        if type(node) is not dict:
            return None
        node = node.get(key)
    return node


def resolve_source(
    event: Mapping[str, Any], attributes: Mapping[str, str] | None, config: SourceConfig
) -> str:
    """The source name of one event; raises ``EventRejected`` if one is given but unusable."""
    if attributes and config.source_attribute:
        value = attributes.get(config.source_attribute)
        if value:
            return value
    if config.source_field:
        value = _lookup(event, config.field_path)
        if value is not None:
            if type(value) is not str or not value.strip():
                raise EventRejected(
                    Reason.INVALID_SOURCE, f"{config.source_field} must be a non-empty string"
                )
            return value
    return config.default_source


class DatasetResolver:
    """Memoized source -> dataset, rejecting names that give no dataset."""

    def __init__(self) -> None:
        self._datasets: dict[str, str] = {}

    def __call__(self, source: str) -> str:
        dataset = self._datasets.get(source)
        if dataset is None:
            try:
                dataset = dataset_name(source)
            except ValueError as exc:
                raise EventRejected(Reason.INVALID_SOURCE, str(exc)) from exc
            if len(self._datasets) > 10_000:
                self._datasets.clear()
            self._datasets[source] = dataset
        return dataset
