"""Golden tests for transforms.model.normalize: one event -> Segment's warehouse rows.

Every expected row and schema below is written by hand from the docstring of
transforms.model.normalize (and the timestamp/naming rules it refers to), never
copied from the code's output.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from transforms.model.deadletter import EventRejected, Reason
from transforms.model.naming import NamingConvention
from transforms.model.normalize import TableRow, normalize_event
from transforms.model.validate import validate_event

S, I, F, B, T = "STRING", "INTEGER", "FLOAT", "BOOLEAN", "TIMESTAMP"

DATASET = "shop"
RECEIVED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)  # the pipeline's receive time
R = "2024-05-01T12:00:00.000000Z"  # RECEIVED, canonical
LOADED = "2024-05-01T12:00:05.000000Z"  # uuid_ts and loaded_at


def normalize(
    ev: dict[str, Any],
    dropped: list[str] | None = None,
    received_at: datetime = RECEIVED,
) -> list[TableRow]:
    return normalize_event(
        validate_event(ev),
        dataset=DATASET,
        received_at=received_at,
        loaded_at=LOADED,
        naming=NamingConvention(),
        dropped=dropped,
    )


def only_row(ev: dict[str, Any], dropped: list[str] | None = None) -> TableRow:
    """The row of the event's own table (the first one)."""
    return normalize(ev, dropped)[0]


# --------------------------------------------------------------------------- goldens per call


def test_track_golden() -> None:
    ev = {
        "type": "track",
        "messageId": "m-1",
        "userId": "u1",
        "anonymousId": "a1",
        "event": "Order Completed",
        "sentAt": "2024-05-01T11:00:00Z",
        "timestamp": "2024-05-01T10:59:50Z",
        "context": {"ip": "1.2.3.4", "device": {"type": "ios"}},
        "properties": {"revenue": 9.5, "currency": "EUR", "count": 2, "coupon": True},
    }
    tracks_row = {
        "id": "m-1",
        "anonymous_id": "a1",
        "user_id": "u1",
        "received_at": "2024-05-01T12:00:00.000000Z",
        "sent_at": "2024-05-01T11:00:00.000000Z",
        "original_timestamp": "2024-05-01T10:59:50.000000Z",
        # 12:00:00 - (11:00:00 - 10:59:50) = 11:59:50
        "timestamp": "2024-05-01T11:59:50.000000Z",
        "uuid_ts": LOADED,
        "loaded_at": LOADED,
        "context_ip": "1.2.3.4",
        "context_device_type": "ios",
        "event": "order_completed",
        "event_text": "Order Completed",
    }
    tracks_schema = {
        "id": S,
        "anonymous_id": S,
        "user_id": S,
        "received_at": T,
        "sent_at": T,
        "original_timestamp": T,
        "timestamp": T,
        "uuid_ts": T,
        "loaded_at": T,
        "context_ip": S,
        "context_device_type": S,
        "event": S,
        "event_text": S,
    }
    event_row = {**tracks_row, "revenue": 9.5, "currency": "EUR", "count": 2, "coupon": True}
    event_schema = {**tracks_schema, "revenue": F, "currency": S, "count": I, "coupon": B}

    assert normalize(ev) == [
        TableRow(DATASET, "order_completed", event_row, event_schema),
        TableRow(DATASET, "tracks", tracks_row, tracks_schema),
    ]


def test_track_without_properties_gives_equal_rows() -> None:
    ev = {"type": "track", "messageId": "m-1", "anonymousId": "a1", "event": "Signed Up"}
    row = {
        "id": "m-1",
        "anonymous_id": "a1",
        "received_at": R,
        "timestamp": R,
        "uuid_ts": LOADED,
        "loaded_at": LOADED,
        "event": "signed_up",
        "event_text": "Signed Up",
    }
    schema = {
        "id": S,
        "anonymous_id": S,
        "received_at": T,
        "timestamp": T,
        "uuid_ts": T,
        "loaded_at": T,
        "event": S,
        "event_text": S,
    }
    assert normalize(ev) == [
        TableRow(DATASET, "signed_up", row, schema),
        TableRow(DATASET, "tracks", row, schema),
    ]


def test_identify_golden() -> None:
    ev = {
        "type": "identify",
        "messageId": "m-2",
        "userId": "u1",
        "anonymousId": "a1",
        "timestamp": "2024-05-01T10:59:50Z",
        "context": {"locale": "fr-FR"},
        "traits": {
            "email": "ann@example.com",
            "plan": "pro",
            "logins": 3,
            "address": {"city": "Paris"},
        },
    }
    identifies_row = {
        "id": "m-2",
        "anonymous_id": "a1",
        "user_id": "u1",
        "received_at": R,
        "original_timestamp": "2024-05-01T10:59:50.000000Z",
        "timestamp": "2024-05-01T10:59:50.000000Z",  # no sentAt: the client's timestamp
        "uuid_ts": LOADED,
        "loaded_at": LOADED,
        "context_locale": "fr-FR",
        "email": "ann@example.com",
        "plan": "pro",
        "logins": 3,
        "address_city": "Paris",
    }
    identifies_schema = {
        "id": S,
        "anonymous_id": S,
        "user_id": S,
        "received_at": T,
        "original_timestamp": T,
        "timestamp": T,
        "uuid_ts": T,
        "loaded_at": T,
        "context_locale": S,
        "email": S,
        "plan": S,
        "logins": I,
        "address_city": S,
    }
    users_row = {
        "id": "u1",
        "received_at": R,
        "timestamp": "2024-05-01T10:59:50.000000Z",  # orders updates of the same user
        "uuid_ts": LOADED,
        "loaded_at": LOADED,
        "email": "ann@example.com",
        "plan": "pro",
        "logins": 3,
        "address_city": "Paris",
    }
    users_schema = {
        "id": S,
        "received_at": T,
        "timestamp": T,
        "uuid_ts": T,
        "loaded_at": T,
        "email": S,
        "plan": S,
        "logins": I,
        "address_city": S,
    }
    assert normalize(ev) == [
        TableRow(DATASET, "identifies", identifies_row, identifies_schema),
        TableRow(DATASET, "users", users_row, users_schema),
    ]


def test_identify_with_only_anonymous_id_has_no_users_row() -> None:
    ev = {"type": "identify", "messageId": "m-3", "anonymousId": "a1", "traits": {"plan": "free"}}
    row = {
        "id": "m-3",
        "anonymous_id": "a1",
        "received_at": R,
        "timestamp": R,
        "uuid_ts": LOADED,
        "loaded_at": LOADED,
        "plan": "free",
    }
    schema = {
        "id": S,
        "anonymous_id": S,
        "received_at": T,
        "timestamp": T,
        "uuid_ts": T,
        "loaded_at": T,
        "plan": S,
    }
    assert normalize(ev) == [TableRow(DATASET, "identifies", row, schema)]


def test_page_golden() -> None:
    ev = {
        "type": "page",
        "messageId": "m-4",
        "anonymousId": "a1",
        "name": "Pricing",
        "category": "Docs",
        "sentAt": "2024-05-01T12:30:00Z",
        "timestamp": "2024-05-01T12:29:00Z",
        "properties": {
            "url": "https://example.com/pricing",
            "path": "/pricing",
            "title": "Pricing - Example",
        },
    }
    row = {
        "id": "m-4",
        "anonymous_id": "a1",
        "received_at": R,
        "sent_at": "2024-05-01T12:30:00.000000Z",
        "original_timestamp": "2024-05-01T12:29:00.000000Z",
        # client clock 30 min ahead: 12:00:00 - (12:30:00 - 12:29:00) = 11:59:00
        "timestamp": "2024-05-01T11:59:00.000000Z",
        "uuid_ts": LOADED,
        "loaded_at": LOADED,
        "name": "Pricing",
        "category": "Docs",
        "url": "https://example.com/pricing",
        "path": "/pricing",
        "title": "Pricing - Example",
    }
    schema = {
        "id": S,
        "anonymous_id": S,
        "received_at": T,
        "sent_at": T,
        "original_timestamp": T,
        "timestamp": T,
        "uuid_ts": T,
        "loaded_at": T,
        "name": S,
        "category": S,
        "url": S,
        "path": S,
        "title": S,
    }
    assert normalize(ev) == [TableRow(DATASET, "pages", row, schema)]


def test_screen_golden() -> None:
    ev = {
        "type": "screen",
        "messageId": "m-5",
        "userId": "u1",
        "name": "Home",
        "properties": {"variant": "b", "load_ms": 120},
    }
    row = {
        "id": "m-5",
        "user_id": "u1",
        "received_at": R,
        "timestamp": R,
        "uuid_ts": LOADED,
        "loaded_at": LOADED,
        "name": "Home",
        "variant": "b",
        "load_ms": 120,
    }
    schema = {
        "id": S,
        "user_id": S,
        "received_at": T,
        "timestamp": T,
        "uuid_ts": T,
        "loaded_at": T,
        "name": S,
        "variant": S,
        "load_ms": I,
    }
    assert normalize(ev) == [TableRow(DATASET, "screens", row, schema)]


def test_group_golden() -> None:
    ev = {
        "type": "group",
        "messageId": "m-6",
        "userId": "u1",
        "groupId": "g1",
        "traits": {"name": "Acme", "employees": 42},
    }
    row = {
        "id": "m-6",
        "user_id": "u1",
        "received_at": R,
        "timestamp": R,
        "uuid_ts": LOADED,
        "loaded_at": LOADED,
        "group_id": "g1",
        "name": "Acme",
        "employees": 42,
    }
    schema = {
        "id": S,
        "user_id": S,
        "received_at": T,
        "timestamp": T,
        "uuid_ts": T,
        "loaded_at": T,
        "group_id": S,
        "name": S,
        "employees": I,
    }
    assert normalize(ev) == [TableRow(DATASET, "groups", row, schema)]


def test_alias_golden() -> None:
    ev = {"type": "alias", "messageId": "m-7", "userId": "u2", "previousId": "a1"}
    row = {
        "id": "m-7",
        "user_id": "u2",
        "received_at": R,
        "timestamp": R,
        "uuid_ts": LOADED,
        "loaded_at": LOADED,
        "previous_id": "a1",
    }
    schema = {
        "id": S,
        "user_id": S,
        "received_at": T,
        "timestamp": T,
        "uuid_ts": T,
        "loaded_at": T,
        "previous_id": S,
    }
    assert normalize(ev) == [TableRow(DATASET, "aliases", row, schema)]


@pytest.mark.parametrize(
    ("name", "table"),
    [
        pytest.param("Order Completed", "order_completed", id="spaces"),
        pytest.param("Product-Added!", "product_added", id="punctuation"),
        pytest.param("signupCompleted", "signup_completed", id="camel"),
        pytest.param("tracks", "tracks_event", id="fixed-table-name"),
        pytest.param("Pages View", "pages_view_event", id="view-suffix"),
    ],
)
def test_track_table_is_event_slug(name: str, table: str) -> None:
    ev = {"type": "track", "messageId": "m-1", "userId": "u1", "event": name}
    event_row, tracks_row = normalize(ev)
    assert (event_row.table, tracks_row.table) == (table, "tracks")
    assert event_row.row["event"] == table
    assert event_row.row["event_text"] == name


# --------------------------------------------------------------------------- timestamps

TIMESTAMP_COLUMNS = ("received_at", "sent_at", "original_timestamp", "timestamp")


@pytest.mark.parametrize(
    ("fields", "received_at", "expected"),
    [
        pytest.param(
            {"sentAt": "2024-05-01T11:00:00Z", "timestamp": "2024-05-01T10:59:50Z"},
            RECEIVED,
            {
                "received_at": R,
                "sent_at": "2024-05-01T11:00:00.000000Z",
                "original_timestamp": "2024-05-01T10:59:50.000000Z",
                "timestamp": "2024-05-01T11:59:50.000000Z",
            },
            id="skew-client-behind",
        ),
        pytest.param(
            {"sentAt": "2024-05-01T12:30:00Z", "timestamp": "2024-05-01T12:29:00Z"},
            RECEIVED,
            {
                "received_at": R,
                "sent_at": "2024-05-01T12:30:00.000000Z",
                "original_timestamp": "2024-05-01T12:29:00.000000Z",
                "timestamp": "2024-05-01T11:59:00.000000Z",
            },
            id="skew-client-ahead",
        ),
        pytest.param(
            {
                "sentAt": "2024-05-01T11:00:00.500Z",
                "originalTimestamp": "2024-05-01T10:59:59.250Z",
            },
            RECEIVED,
            {
                "received_at": R,
                "sent_at": "2024-05-01T11:00:00.500000Z",
                "original_timestamp": "2024-05-01T10:59:59.250000Z",
                "timestamp": "2024-05-01T11:59:58.750000Z",  # 12:00:00 - 1.25 s
            },
            id="skew-fractional-seconds",
        ),
        pytest.param(
            {"sentAt": "2024-05-01T13:00:00+02:00", "timestamp": "2024-05-01T05:59:50-05:00"},
            RECEIVED,
            {
                "received_at": R,
                "sent_at": "2024-05-01T11:00:00.000000Z",
                "original_timestamp": "2024-05-01T10:59:50.000000Z",
                "timestamp": "2024-05-01T11:59:50.000000Z",
            },
            id="skew-with-offsets",
        ),
        pytest.param(
            {"timestamp": "2024-05-01T10:59:50Z"},
            RECEIVED,
            {
                "received_at": R,
                "original_timestamp": "2024-05-01T10:59:50.000000Z",
                "timestamp": "2024-05-01T10:59:50.000000Z",
            },
            id="no-sentAt-uses-client-timestamp",
        ),
        pytest.param(
            {"sentAt": "2024-05-01T11:00:00Z"},
            RECEIVED,
            {"received_at": R, "sent_at": "2024-05-01T11:00:00.000000Z", "timestamp": R},
            id="no-timestamp-uses-received_at",
        ),
        pytest.param({}, RECEIVED, {"received_at": R, "timestamp": R}, id="no-client-times"),
        pytest.param(
            {
                "receivedAt": "2024-05-01T13:00:00Z",
                "sentAt": "2024-05-01T11:00:00Z",
                "timestamp": "2024-05-01T10:59:50Z",
            },
            RECEIVED,
            {
                "received_at": "2024-05-01T13:00:00.000000Z",
                "sent_at": "2024-05-01T11:00:00.000000Z",
                "original_timestamp": "2024-05-01T10:59:50.000000Z",
                "timestamp": "2024-05-01T12:59:50.000000Z",
            },
            id="payload-receivedAt-overrides-pipeline-time",
        ),
        pytest.param(
            {"receivedAt": "2024-05-01T13:00:00Z"},
            RECEIVED,
            {
                "received_at": "2024-05-01T13:00:00.000000Z",
                "timestamp": "2024-05-01T13:00:00.000000Z",
            },
            id="payload-receivedAt-alone",
        ),
        pytest.param(
            {
                "originalTimestamp": "2024-05-01T10:59:50Z",
                "timestamp": "2024-05-01T09:00:00Z",
                "sentAt": "2024-05-01T11:00:00Z",
            },
            RECEIVED,
            {
                "received_at": R,
                "sent_at": "2024-05-01T11:00:00.000000Z",
                "original_timestamp": "2024-05-01T10:59:50.000000Z",
                "timestamp": "2024-05-01T11:59:50.000000Z",
            },
            id="originalTimestamp-wins-over-timestamp",
        ),
        pytest.param(
            {},
            datetime(2024, 5, 2, 0, 0, 0, tzinfo=timezone(timedelta(hours=2))),
            {
                "received_at": "2024-05-01T22:00:00.000000Z",
                "timestamp": "2024-05-01T22:00:00.000000Z",
            },
            id="pipeline-time-with-offset-written-in-utc",
        ),
    ],
)
def test_timestamp_columns(
    fields: dict[str, Any], received_at: datetime, expected: dict[str, str]
) -> None:
    ev = {"type": "track", "messageId": "m-1", "userId": "u1", "event": "E", **fields}
    for table_row in normalize(ev, received_at=received_at):
        got = {k: v for k, v in table_row.row.items() if k in TIMESTAMP_COLUMNS}
        assert got == expected, table_row.table
        assert {k: table_row.schema[k] for k in got} == {k: T for k in expected}


def test_skew_correction_out_of_range_is_invalid_timestamp() -> None:
    ev = {
        "type": "track",
        "messageId": "m-1",
        "userId": "u1",
        "event": "E",
        "sentAt": "9999-12-31T00:00:00Z",
        "timestamp": "0001-01-02T00:00:00Z",
    }
    with pytest.raises(EventRejected) as caught:
        normalize(ev)
    assert caught.value.reason == Reason.INVALID_TIMESTAMP


# --------------------------------------------------------------------------- flattening

TRACK_STANDARD = {
    "id",
    "anonymous_id",
    "user_id",
    "received_at",
    "sent_at",
    "original_timestamp",
    "timestamp",
    "uuid_ts",
    "loaded_at",
    "event",
    "event_text",
}


def property_columns(table_row: TableRow) -> tuple[dict[str, Any], dict[str, str]]:
    """The row's columns other than the standard and context ones, with their types."""
    names = [c for c in table_row.row if c not in TRACK_STANDARD and not c.startswith("context_")]
    return {c: table_row.row[c] for c in names}, {c: table_row.schema[c] for c in names}


def test_flattening_rules() -> None:
    dropped: list[str] = []
    ev = {
        "type": "track",
        "messageId": "m-1",
        "userId": "u1",
        "event": "E",
        "properties": {
            "a": {"b": {"c": 1}},
            "tags": ["x", "y"],
            "items": [{"sku": "s1", "qty": 2}],
            "nothing": [],
            "gone": None,
            "empty": {},
            "n": {"x": None, "y": {}},
            "blank": "",
            "when": "2024-05-01T10:00:00+02:00",
            "day": "2024-01-31",
            "big": 2**63,
            "ratio": 0.25,
            "flag": False,
            "firstName": "Ann",
            "Plan Type": "pro",
        },
    }
    row, schema = property_columns(only_row(ev, dropped))
    assert row == {
        "a_b_c": 1,
        "tags": '["x","y"]',
        "items": '[{"sku":"s1","qty":2}]',
        "nothing": "[]",
        "blank": "",
        "when": "2024-05-01T08:00:00.000000Z",
        "day": "2024-01-31",
        "big": "9223372036854775808",  # past INT64: its digits, not a rounded double
        "ratio": 0.25,
        "flag": False,
        "first_name": "Ann",
        "plan_type": "pro",
    }
    assert schema == {
        "a_b_c": I,
        "tags": S,
        "items": S,
        "nothing": S,
        "blank": S,
        "when": T,
        "day": S,
        "big": S,
        "ratio": F,
        "flag": B,
        "first_name": S,
        "plan_type": S,
    }
    assert type(row["big"]) is str
    assert type(row["flag"]) is bool
    assert dropped == []


def test_context_flattening() -> None:
    ev = {
        "type": "track",
        "messageId": "m-1",
        "userId": "u1",
        "event": "E",
        "context": {
            "ip": "1.2.3.4",
            "userAgent": "Mozilla/5.0",
            "device": {"type": "ios", "id": "d1"},
            "library": {"name": "analytics.js", "version": "2.0"},
            "traits": {"email": "x@example.com"},
            "campaign": {"name": "spring", "source": "news"},
            "screen": {"width": 390, "density": 2.5},
            "active": True,
            "empty": {},
            "gone": None,
        },
    }
    for table_row in normalize(ev):
        context = {c: v for c, v in table_row.row.items() if c.startswith("context_")}
        assert context == {
            "context_ip": "1.2.3.4",
            "context_user_agent": "Mozilla/5.0",
            "context_device_type": "ios",
            "context_device_id": "d1",
            "context_library_name": "analytics.js",
            "context_library_version": "2.0",
            "context_traits_email": "x@example.com",
            "context_campaign_name": "spring",
            "context_campaign_source": "news",
            "context_screen_width": 390,
            "context_screen_density": 2.5,
            "context_active": True,
        }
        assert {c: table_row.schema[c] for c in context} == {
            "context_ip": S,
            "context_user_agent": S,
            "context_device_type": S,
            "context_device_id": S,
            "context_library_name": S,
            "context_library_version": S,
            "context_traits_email": S,
            "context_campaign_name": S,
            "context_campaign_source": S,
            "context_screen_width": I,
            "context_screen_density": F,
            "context_active": B,
        }


# --------------------------------------------------------------------------- reserved collisions

COLLISION_EVENTS: dict[str, dict[str, Any]] = {
    "track": {
        "type": "track",
        "messageId": "m-1",
        "userId": "u1",
        "anonymousId": "a1",
        "event": "Clicked",
        "context": {"ip": "1.2.3.4"},
    },
    "identify": {
        "type": "identify",
        "messageId": "m-2",
        "userId": "u1",
        "anonymousId": "a1",
        "context": {"ip": "1.2.3.4"},
    },
    "page": {
        "type": "page",
        "messageId": "m-4",
        "userId": "u1",
        "name": "Pricing",
        "category": "Docs",
    },
    "group": {"type": "group", "messageId": "m-6", "userId": "u1", "groupId": "g1"},
}
COLLISION_BASE_ROWS: dict[str, dict[str, tuple[Any, str]]] = {
    "track": {
        "id": ("m-1", S),
        "anonymous_id": ("a1", S),
        "user_id": ("u1", S),
        "received_at": (R, T),
        "timestamp": (R, T),
        "uuid_ts": (LOADED, T),
        "loaded_at": (LOADED, T),
        "context_ip": ("1.2.3.4", S),
        "event": ("clicked", S),
        "event_text": ("Clicked", S),
    },
    "identify": {
        "id": ("m-2", S),
        "anonymous_id": ("a1", S),
        "user_id": ("u1", S),
        "received_at": (R, T),
        "timestamp": (R, T),
        "uuid_ts": (LOADED, T),
        "loaded_at": (LOADED, T),
        "context_ip": ("1.2.3.4", S),
    },
    "page": {
        "id": ("m-4", S),
        "user_id": ("u1", S),
        "received_at": (R, T),
        "timestamp": (R, T),
        "uuid_ts": (LOADED, T),
        "loaded_at": (LOADED, T),
        "name": ("Pricing", S),
        "category": ("Docs", S),
    },
    "group": {
        "id": ("m-6", S),
        "user_id": ("u1", S),
        "received_at": (R, T),
        "timestamp": (R, T),
        "uuid_ts": (LOADED, T),
        "loaded_at": (LOADED, T),
        "group_id": ("g1", S),
    },
}
FIELDS_KEY = {"track": "properties", "identify": "traits", "page": "properties", "group": "traits"}


@pytest.mark.parametrize(
    ("call", "fields", "extra"),
    [
        pytest.param(
            "track", {"id": "other"}, {"properties_id": ("other", S)}, id="prop-id-differs"
        ),
        pytest.param("track", {"id": "m-1"}, {}, id="prop-id-equal-skipped"),
        pytest.param("track", {"userId": "u1"}, {}, id="prop-userId-equal-skipped"),
        pytest.param(
            "track", {"userId": "u9"}, {"properties_user_id": ("u9", S)}, id="prop-userId-differs"
        ),
        pytest.param("track", {"anonymousId": "a1"}, {}, id="prop-anonymousId-equal-skipped"),
        pytest.param(
            "track",
            {"context_ip": "5.6.7.8"},
            {"properties_context_ip": ("5.6.7.8", S)},
            id="prop-context_ip-differs",
        ),
        pytest.param("track", {"context_ip": "1.2.3.4"}, {}, id="prop-context_ip-equal-skipped"),
        pytest.param(
            "track",
            {"context": {"ip": "9.9.9.9"}},
            {"properties_context_ip": ("9.9.9.9", S)},
            id="prop-nested-context-ip",
        ),
        pytest.param(
            "track",
            {"context_locale": "fr"},
            {"properties_context_locale": ("fr", S)},
            id="prop-context-prefix-without-context-column",
        ),
        pytest.param(
            "track", {"event": "Other"}, {"properties_event": ("Other", S)}, id="prop-event-differs"
        ),
        pytest.param("track", {"event_text": "Clicked"}, {}, id="prop-event_text-equal-skipped"),
        pytest.param(
            "track",
            {"sent_at": "whenever"},
            {"properties_sent_at": ("whenever", S)},
            id="prop-absent-reserved-sent_at",
        ),
        pytest.param(
            "track",
            {"timestamp": "2024-05-01T14:00:00+02:00"},
            {},
            id="prop-timestamp-same-instant-skipped",
        ),
        pytest.param(
            "track",
            {"timestamp": "2024-05-01T09:00:00Z"},
            {"properties_timestamp": ("2024-05-01T09:00:00.000000Z", T)},
            id="prop-timestamp-differs",
        ),
        pytest.param(
            "track",
            {"received_at": 5},
            {"properties_received_at": (5, I)},
            id="prop-received_at-number",
        ),
        pytest.param(
            "track", {"loaded_at": "x"}, {"properties_loaded_at": ("x", S)}, id="prop-loaded_at"
        ),
        pytest.param(
            "track", {"name": "x"}, {"name": ("x", S)}, id="prop-name-not-reserved-for-track"
        ),
        pytest.param("identify", {"id": "t-9"}, {"traits_id": ("t-9", S)}, id="trait-id"),
        pytest.param("identify", {"userId": "u1"}, {}, id="trait-userId-equal-skipped"),
        pytest.param(
            "identify",
            {"anonymous_id": "a2"},
            {"traits_anonymous_id": ("a2", S)},
            id="trait-anonymous_id-differs",
        ),
        pytest.param(
            "identify",
            {"context_ip": "5.6.7.8"},
            {"traits_context_ip": ("5.6.7.8", S)},
            id="trait-context_ip-differs",
        ),
        pytest.param(
            "page",
            {"name": "Other"},
            {"properties_name": ("Other", S)},
            id="page-prop-name-differs",
        ),
        pytest.param("page", {"category": "Docs"}, {}, id="page-prop-category-equal-skipped"),
        pytest.param("page", {"url": "/x"}, {"url": ("/x", S)}, id="page-prop-plain"),
        pytest.param(
            "group", {"group_id": "g2"}, {"traits_group_id": ("g2", S)}, id="group-trait-group_id"
        ),
        pytest.param("group", {"groupId": "g1"}, {}, id="group-trait-groupId-equal-skipped"),
    ],
)
def test_reserved_collisions(
    call: str, fields: dict[str, Any], extra: dict[str, tuple[Any, str]]
) -> None:
    ev = {**COLLISION_EVENTS[call], FIELDS_KEY[call]: fields}
    expected = {**COLLISION_BASE_ROWS[call], **extra}
    dropped: list[str] = []
    table_row = only_row(ev, dropped)
    assert table_row.row == {c: value for c, (value, _) in expected.items()}
    assert table_row.schema == {c: kind for c, (_, kind) in expected.items()}
    assert dropped == []


def test_trait_id_does_not_replace_users_id() -> None:
    ev = {**COLLISION_EVENTS["identify"], "traits": {"id": "t-9"}}
    identifies, users = normalize(ev)
    assert identifies.row["id"] == "m-2"
    assert identifies.row["traits_id"] == "t-9"
    assert users.table == "users"
    assert users.row["id"] == "u1"


# --------------------------------------------------------------------------- same-column keys


@pytest.mark.parametrize(
    ("properties", "extra", "dropped"),
    [
        pytest.param(
            {"userName": "ann", "user_name": "bob"},
            {"user_name": ("ann", S)},
            ["user_name"],
            id="camel-first",
        ),
        pytest.param(
            {"user_name": "bob", "userName": "ann"},
            {"user_name": ("bob", S)},
            ["user_name"],
            id="snake-first",
        ),
        pytest.param({"a": {"b": 1}, "a_b": 2}, {"a_b": (1, I)}, ["a_b"], id="nested-then-flat"),
        pytest.param(
            {"First Name": "x", "firstName": "y", "first_name": "z"},
            {"first_name": ("x", S)},
            ["first_name", "first_name"],
            id="three-spellings",
        ),
    ],
)
def test_first_key_wins_and_others_are_dropped(
    properties: dict[str, Any], extra: dict[str, tuple[Any, str]], dropped: list[str]
) -> None:
    ev = {**COLLISION_EVENTS["track"], "properties": properties}
    expected = {**COLLISION_BASE_ROWS["track"], **extra}
    got_dropped: list[str] = []
    table_row = only_row(ev, got_dropped)
    assert table_row.row == {c: value for c, (value, _) in expected.items()}
    assert table_row.schema == {c: kind for c, (_, kind) in expected.items()}
    assert got_dropped == dropped
