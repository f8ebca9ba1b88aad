"""Fast positional construction of the NamedTuples made once or more per event.

Calling a NamedTuple class runs its generated Python ``__new__``, a frame that
costs about as much as the tuple itself; ``tuple.__new__`` with the class
builds the same object in C, in half the time. Only for the hot path, where
the fields are always given in full and in order.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

Record = TypeVar("Record", bound=tuple[Any, ...])


def builder(record_type: type[Record]) -> Callable[[tuple[Any, ...]], Record]:
    """``builder(T)((a, b, c))`` is ``T(a, b, c)`` without the Python-level frame."""
    return partial(tuple.__new__, record_type)
