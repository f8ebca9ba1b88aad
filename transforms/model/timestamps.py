"""ISO-8601 timestamps: strict parsing, one canonical text form, Segment's skew fix.

BigQuery's TIMESTAMP holds microseconds in UTC from year 1 to 9999, the same
range as Python's ``datetime``. Every timestamp this product writes is the
canonical ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` so that equal instants compare equal
as text (dedup, idempotent reruns) whatever offset the client used.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

_DIGITS = frozenset("0123456789")
# A UTC text in the shape clients nearly always send; its canonical form is the
# same text with the fraction padded to six digits (no re-formatting needed).
_PLAIN_UTC = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.([0-9]{1,6}))?[Zz]"
)


class TimestampError(ValueError):
    """A value that should be a timestamp is not one BigQuery can store."""


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO-8601 date or date-time; offset-less values are taken as UTC.

    Raises ``TimestampError`` for anything else (numbers, free text, hour 24,
    out-of-range years). Fractions beyond microseconds are truncated.
    """
    if not isinstance(text, str) or not 10 <= len(text) <= 64:
        raise TimestampError(f"not an ISO-8601 timestamp: {str(text)[:64]!r}")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        if text[-1] != "z":
            raise TimestampError(f"not an ISO-8601 timestamp: {text!r}") from exc
        # RFC 3339 allows a lower-case zone designator; fromisoformat does not.
        return parse_timestamp(text[:-1] + "Z")
    if parsed.tzinfo is UTC:
        return parsed
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:
        raise TimestampError(f"timestamp out of range: {text!r}") from exc


def looks_like_timestamp(text: str) -> bool:
    """Cheap shape test (``YYYY-MM-DD[T ]HH:MM``) run before the real parse.

    Property strings are only typed TIMESTAMP when they carry a time of day;
    a bare date such as ``2024-01-31`` stays a STRING, so a column of dates or
    of codes that look like dates never flips type.
    """
    return (
        16 <= len(text) <= 64
        and text[4] == "-"
        and text[7] == "-"
        and text[10] in "Tt "
        and text[13] == ":"
        and text[0] in _DIGITS
    )


def format_timestamp(moment: datetime) -> str:
    """Canonical UTC text of an aware datetime."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # isoformat() goes through C printf for every field and asks the zone for an
    # offset we then cut off; events of a run share few days, so the date text is
    # remembered and the clock is joined from ready-made two-digit texts.
    ordinal = moment.toordinal()
    day = _DAY_TEXT.get(ordinal)
    if day is None:
        if len(_DAY_TEXT) >= _DAY_TEXT_LIMIT:  # hostile dates must not grow it forever
            _DAY_TEXT.clear()
        day = _DAY_TEXT[ordinal] = moment.date().isoformat() + "T"
    return (
        f"{day}{_TWO_DIGITS[moment.hour]}:{_TWO_DIGITS[moment.minute]}:"
        f"{_TWO_DIGITS[moment.second]}.{moment.microsecond:06d}Z"
    )


_DAY_TEXT: dict[int, str] = {}  # proleptic ordinal -> "YYYY-MM-DDT"
_DAY_TEXT_LIMIT = 10_000
_TWO_DIGITS = tuple(f"{number:02d}" for number in range(60))


# Formatting is one of the dearest steps of the chain, and a file bundle shares
# one receive time: its text is remembered.
receive_time_text = lru_cache(maxsize=16)(format_timestamp)


def timestamp_text(text: str, moment: datetime) -> str:
    """Canonical text of ``moment``, which ``parse_timestamp`` made from ``text``.

    A plain UTC text is padded instead of formatted again: same result, a third
    of the cost.
    """
    if (  # JavaScript's toISOString(), by far the most common: YYYY-MM-DDTHH:MM:SS.fffZ
        len(text) == 24
        and text[23] == "Z"
        and text[19] == "."
        and text[10] == "T"
        and text[4] == "-"
        and text[7] == "-"
        and text[13] == ":"
        and text[16] == ":"
    ):
        return text[:23] + "000Z"
    plain = _PLAIN_UTC.fullmatch(text)
    if plain is None:
        return format_timestamp(moment)
    return f"{text[:19]}.{plain.group(1) or '':0<6}Z"


def canonical_timestamp(text: str) -> str | None:
    """The canonical form of a timestamp-looking string, or None if it is not one."""
    if not looks_like_timestamp(text):
        return None
    try:
        return timestamp_text(text, parse_timestamp(text))
    except (TimestampError, OverflowError):
        return None


def skew_corrected(
    received_at: datetime, sent_at: datetime | None, original: datetime | None
) -> datetime:
    """Segment's ``timestamp``: ``received_at - (sent_at - original_timestamp)``.

    Without ``sentAt`` the client's own timestamp is used as is; without any
    client timestamp the receive time stands in. Raises ``TimestampError`` if
    the correction leaves BigQuery's range.
    """
    if original is None:
        return received_at
    if sent_at is None:
        return original
    try:
        return received_at - (sent_at - original)
    except OverflowError as exc:
        raise TimestampError("clock-skew correction leaves the TIMESTAMP range") from exc
