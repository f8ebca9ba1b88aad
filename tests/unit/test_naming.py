"""Golden tests for ``transforms.model.naming``.

Every expected value below was worked out by hand from the naming rules, not
copied from the module's output:

* Segment's current go-snakecase (github.com/segmentio/go-snakecase,
  ``snake.go``): only ASCII letters/digits make words and everything else
  (non-ASCII included) separates. A leading clean prefix of ``[a-z0-9]`` and
  inner underscores followed by ``[a-z0-9]`` is kept as is (a leading ``_``
  always ends it, so leading underscores are dropped); if that is the whole
  input it is returned unchanged. If the prefix stops at a capital and has no
  lower-case letter, or has an underscore with no lower-case letter after the
  last one, the next run of ``[A-Z0-9]`` (lower-cased) and ``[a-z0-9]`` is
  glued on without ``_`` (``3D`` -> ``3d``, ``v_2Beta`` -> ``v_2beta``). After
  that, every word is a run of ``[A-Z0-9]`` followed by a run of ``[a-z0-9]``,
  lower-cased, joined by ``_``.
* BigQuery rules from the module docstring: column fallback ``_`` + hash for
  empty names (``<parent>_`` + hash of the key when nested), ``_`` before a
  leading digit, 300-character column limit with ``_`` + 8-hex SHA-256 of the
  full snake_case name; snake_case never starts with ``_``, so reserved
  column prefixes cannot occur; table suffix ``_event`` for fixed tables and
  ``*_view``, table names at most 1019 characters; ``dataset_name`` rejects
  names without ASCII letters or digits.

Covered: the issue's examples, every upstream go-snakecase sample, unicode,
digits, acronyms, punctuation-only and empty names, reserved tables and
column prefixes, overlong names, whitespace, names that collapse onto the same
column, ``NamingConvention`` (nesting and caching) and the invariants that
every returned column and table name is a valid BigQuery identifier.
"""

from __future__ import annotations

import hashlib
import re

import pytest

from transforms.model import naming
from transforms.model.naming import (
    NamingConvention,
    column_name,
    dataset_name,
    snake_case,
    table_name,
)

COLUMN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,299}")
TABLE_RE = re.compile(r"[A-Za-z0-9_]{1,1019}")
HASH_SUFFIX_RE = re.compile(r"_[0-9a-f]{8}")


def sha8(text: str) -> str:
    """First 8 hex digits of SHA-256(text), computed independently of the module."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


# SHA-256 of the empty string is the well-known e3b0c442 98fc1c14...
EMPTY_HASH = "e3b0c442"


# ---------------------------------------------------------------------------
# Examples from the issue
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("firstName", "first_name", id="camel-case"),
        pytest.param("context.device.type", "context_device_type", id="dotted-path"),
        pytest.param("AB Test Variant", "ab_test_variant", id="acronym-then-words"),
    ],
)
def test_issue_column_examples(path: str, expected: str) -> None:
    assert column_name(path) == expected


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param("Order Completed", "order_completed", id="two-words"),
        pytest.param("Product-Added!", "product_added", id="dash-and-bang"),
        pytest.param("Item (Sale) Added", "item_sale_added", id="parentheses"),
    ],
)
def test_issue_table_examples(event: str, expected: str) -> None:
    assert table_name(event) == expected


def test_issue_dataset_example() -> None:
    assert dataset_name("Production Site") == "production_site"


@pytest.mark.parametrize(
    "source", ["INFORMATION_SCHEMA", "information_schema", "Information Schema"]
)
def test_a_source_named_like_bigquerys_metadata_views_gets_a_dataset_of_its_own(
    source: str,
) -> None:
    assert dataset_name(source) == "information_schema_source"


@pytest.mark.parametrize(
    "event", ["INFORMATION_SCHEMA", "Information Schema", "information_schema"]
)
def test_an_event_named_like_bigquerys_metadata_views_gets_the_event_suffix(event: str) -> None:
    assert table_name(event) == "information_schema_event"


@pytest.mark.parametrize("event", ["__TABLES__", "__TABLES_SUMMARY__", "__PARTITIONS_SUMMARY__"])
def test_bigquerys_legacy_meta_table_names_cannot_be_spelt(event: str) -> None:
    name = table_name(event)
    assert not name.startswith("_") and name.upper() != event


# ---------------------------------------------------------------------------
# go-snakecase upstream samples (snake_test.go)
# ---------------------------------------------------------------------------

UPSTREAM_SAMPLES = [
    pytest.param("sample text", "sample_text", id="space"),
    pytest.param("sample-text", "sample_text", id="dash"),
    pytest.param("sample_text", "sample_text", id="already-snake"),
    pytest.param("sample___text", "sample_text", id="triple-underscore"),
    pytest.param("sampleText", "sample_text", id="camel"),
    pytest.param(
        "inviteYourCustomersAddInvites",
        "invite_your_customers_add_invites",
        id="long-camel",
    ),
    pytest.param("sample 2 Text", "sample_2_text", id="digit-word"),
    pytest.param("   sample   2    Text   ", "sample_2_text", id="padded-spaces"),
    pytest.param("   $#$sample   2    Text   ", "sample_2_text", id="leading-symbols"),
    pytest.param("SAMPLE 2 TEXT", "sample_2_text", id="all-caps"),
    pytest.param("___$$Base64Encode", "base64_encode", id="base64-encode"),
    pytest.param("FOO:BAR$BAZ", "foo_bar_baz", id="colon-dollar"),
    pytest.param("FOO#BAR#BAZ", "foo_bar_baz", id="hashes"),
    pytest.param("something.com", "something_com", id="dot-com"),
    pytest.param("$something%", "something", id="dollar-percent"),
    pytest.param("•¶§ƒ˚foo˙∆˚¬", "foo", id="non-ascii-symbols"),
    pytest.param("CStringRef", "cstring_ref", id="leading-acronym-glued"),
]


@pytest.mark.parametrize(("text", "expected"), UPSTREAM_SAMPLES)
def test_upstream_samples_snake_case(text: str, expected: str) -> None:
    assert snake_case(text) == expected


@pytest.mark.parametrize(("text", "expected"), UPSTREAM_SAMPLES)
def test_upstream_samples_column_name(text: str, expected: str) -> None:
    # None of the samples starts with a digit or a reserved prefix, so the
    # column is the snake_case name unchanged.
    assert column_name(text) == expected


# ---------------------------------------------------------------------------
# snake_case details: clean prefix, leading underscores, glued capitals, acronyms
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("_private", "private", id="single-leading-underscore-dropped"),
        pytest.param("__x", "x", id="double-leading-underscore-dropped"),
        pytest.param("_Private", "private", id="underscore-before-capital-dropped"),
        pytest.param("_3d", "3d", id="underscore-before-digit-dropped"),
        pytest.param("name_", "name", id="trailing-underscore"),
        pytest.param("_name_", "name", id="both-sides-underscore"),
        # Digits stay in the clean prefix; a capital after a prefix that has
        # a lower-case letter (and no underscore) starts a new word.
        pytest.param("sample2Text", "sample2_text", id="digit-stays-before-capital"),
        pytest.param("ipv4Address", "ipv4_address", id="ipv4-address"),
        pytest.param("area51Code", "area51_code", id="digits-stay-in-prefix"),
        pytest.param("sample2!", "sample2", id="digit-before-separator"),
        pytest.param("sample2 text", "sample2_text", id="digit-before-space"),
        pytest.param("sample2", "sample2", id="clean-digit-suffix-kept"),
        pytest.param("2024 Sale", "2024_sale", id="leading-year"),
        # A capital right after a prefix with no lower-case letter, or with no
        # lower-case letter since its last underscore, is glued on.
        pytest.param("3D Secure", "3d_secure", id="digit-then-capital-glued"),
        pytest.param("a_1B", "a_1b", id="underscore-digit-capital-glued"),
        pytest.param("v_2Beta", "v_2beta", id="underscore-digit-word-glued"),
        pytest.param("ab_cD", "ab_c_d", id="lower-after-underscore-not-glued"),
        pytest.param("HTTPServer", "httpserver", id="acronym-not-split"),
        pytest.param("XMLHttpRequest", "xmlhttp_request", id="acronym-then-camel"),
        pytest.param("getHTTPResponseCode", "get_httpresponse_code", id="inner-acronym"),
        pytest.param("HTML5Video", "html5video", id="acronym-with-digit"),
        pytest.param("Base64Encode", "base64_encode", id="digit-inside-word"),
        pytest.param("userID", "user_id", id="trailing-acronym"),
        pytest.param("userIDs", "user_ids", id="plural-acronym"),
        pytest.param("iOS", "i_os", id="ios"),
        pytest.param("IOS", "ios", id="ios-caps"),
        pytest.param("ABTest", "abtest", id="acronym-glued-to-word"),
    ],
)
def test_snake_case_rules(text: str, expected: str) -> None:
    assert snake_case(text) == expected


# ---------------------------------------------------------------------------
# Columns
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("café", "caf", id="accent-dropped"),
        pytest.param("Café Latte", "caf_latte", id="accent-then-word"),
        pytest.param("naïve user", "na_ve_user", id="accent-splits-word"),
        pytest.param("Größe", "gr_e", id="umlaut-and-eszett"),
        pytest.param("São Paulo", "s_o_paulo", id="tilde"),
        pytest.param("Ünïcödé Name", "n_c_d_name", id="many-accents"),
        pytest.param("user名前", "user", id="ascii-then-cjk"),
        pytest.param("名前Name", "name", id="cjk-then-ascii"),
        pytest.param("emoji🎉Count", "emoji_count", id="emoji-separator"),
        pytest.param("price€", "price", id="currency-sign"),
        pytest.param("\u212aelvin", "elvin", id="kelvin-sign-is-not-k"),
        pytest.param("x²", "x", id="superscript-digit-dropped"),
        pytest.param("\x00name\x00", "name", id="nul-bytes"),
    ],
)
def test_column_unicode(path: str, expected: str) -> None:
    assert column_name(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("名前", id="cjk-only"),
        pytest.param("🎉🎉", id="emoji-only"),
        pytest.param("ＡＢＣ", id="fullwidth-letters"),
        pytest.param("١٢٣", id="arabic-indic-digits"),
        pytest.param("!!!", id="punctuation-only"),
        pytest.param("___", id="underscores-only"),
        pytest.param("_", id="single-underscore"),
        pytest.param("   ", id="spaces-only"),
        pytest.param("\t\r\n", id="control-whitespace-only"),
    ],
)
def test_column_without_ascii_words_gets_hash(path: str) -> None:
    assert column_name(path) == "_" + sha8(path)


def test_empty_column_gets_hash_of_empty_string() -> None:
    assert column_name("") == "_" + EMPTY_HASH


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("3rd Party", "_3rd_party", id="leading-digit-word"),
        pytest.param("3D Secure", "_3d_secure", id="digit-glued-to-capital"),
        pytest.param("123", "_123", id="digits-only"),
        pytest.param("0", "_0", id="zero"),
        pytest.param("2Fast", "_2fast", id="digit-capital-lower"),
        pytest.param("version 2", "version_2", id="trailing-digit-word"),
        pytest.param("v2", "v2", id="clean-with-digit"),
        pytest.param("Version2", "version2", id="capitalised-with-digit"),
        pytest.param("item2Name", "item2_name", id="digit-stays-in-prefix"),
        # "_2Fast": the leading "_" is dropped, "2Fast" is one word "2fast",
        # which then gets the leading-digit "_".
        pytest.param("_2Fast", "_2fast", id="underscore-dropped-then-digit-prefixed"),
    ],
)
def test_column_digits(path: str, expected: str) -> None:
    assert column_name(path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("_PARTITIONTIME", "partitiontime", id="partitiontime-caps"),
        pytest.param("_partitiontime", "partitiontime", id="partitiontime"),
        pytest.param("_partition", "partition", id="partition"),
        pytest.param("_partition Date", "partition_date", id="partition-then-word"),
        pytest.param("_table_suffix", "table_suffix", id="table-suffix"),
        pytest.param("_file_name", "file_name", id="file-name"),
        pytest.param("_row_timestamp", "row_timestamp", id="row-timestamp"),
        pytest.param("_colidentifier", "colidentifier", id="colidentifier"),
        pytest.param("_change_type", "change_type", id="change-type"),
        pytest.param(
            "_change_sequence_number", "change_sequence_number", id="change-sequence-number"
        ),
        pytest.param("_change_timestamp", "change_timestamp", id="change-timestamp"),
        pytest.param("__root__", "root", id="root"),
        # Leading underscores go whether or not the name is reserved.
        pytest.param("_table", "table", id="table-without-trailing-underscore"),
        pytest.param("_files", "files", id="files-not-file-underscore"),
        pytest.param("_changed", "changed", id="changed"),
    ],
)
def test_column_leading_underscores_dropped_so_no_reserved_prefix(path: str, expected: str) -> None:
    assert column_name(path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("  first name  ", "first_name", id="padded"),
        pytest.param("first  name", "first_name", id="double-space"),
        pytest.param("first\tname", "first_name", id="tab"),
        pytest.param("first\nName", "first_name", id="newline"),
        pytest.param("\tFirst\r\nName\t", "first_name", id="crlf-and-tabs"),
        pytest.param("first\u00a0name", "first_name", id="no-break-space"),
        pytest.param("first\u3000name", "first_name", id="ideographic-space"),
    ],
)
def test_column_whitespace(path: str, expected: str) -> None:
    assert column_name(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("userId", id="camel"),
        pytest.param("user_id", id="snake"),
        pytest.param("User ID", id="title-with-acronym"),
        pytest.param("UserId", id="pascal"),
        pytest.param("USER_ID", id="screaming-snake"),
        pytest.param("user-id", id="kebab"),
        pytest.param("user.id", id="dotted"),
        pytest.param("user__id", id="double-underscore"),
        pytest.param("  user   ID ", id="padded"),
    ],
)
def test_case_and_punctuation_variants_share_a_column(path: str) -> None:
    assert column_name(path) == "user_id"


def test_column_of_exactly_300_chars_is_kept() -> None:
    name = "a" * 300
    assert column_name(name) == name


def test_column_of_301_chars_is_truncated() -> None:
    name = "a" * 301
    assert column_name(name) == "a" * 291 + "_" + sha8(name)


def test_400_char_column_is_truncated_to_300_with_hash() -> None:
    name = "a" * 400  # already snake_case, so it is its own snake_case name
    result = column_name(name)
    assert len(result) == 300
    assert HASH_SUFFIX_RE.fullmatch(result[-9:])
    assert result == "a" * 291 + "_" + sha8(name)


def test_truncated_column_hash_is_of_the_snake_case_name() -> None:
    # The hash is the SHA-256 of the full snake_case name, not of the original
    # ("AbAb..." snake_cases to "ab_ab_...", 599 characters).
    original = "Ab" * 200
    snake = "_".join(["ab"] * 200)
    assert column_name(original) == snake[:291] + "_" + sha8(snake)


def test_long_case_variants_share_a_truncated_column() -> None:
    # "userIdExtraExtra..." and "user_id_extra_extra..." have the same
    # snake_case name, so they must stay one column after truncation too.
    snake = "user_id" + "_extra" * 100
    expected = snake[:291] + "_" + sha8(snake)
    assert column_name("userId" + "Extra" * 100) == expected
    assert column_name(snake) == expected


def test_400_digit_column_keeps_underscore_and_length() -> None:
    result = column_name("1" * 400)
    assert len(result) == 300
    assert result.startswith("_" + "1" * 290)
    assert HASH_SUFFIX_RE.fullmatch(result[-9:])


def test_truncated_leading_digit_column_hash_is_of_the_snake_case_name() -> None:
    # snake_case("1" * 400) is "1" * 400; the leading-digit "_" is not part of
    # the snake_case name, so the hash is of the 400 digits.
    assert column_name("1" * 400) == "_" + "1" * 290 + "_" + sha8("1" * 400)


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param("Tracks", "tracks_event", id="tracks"),
        pytest.param("identifies", "identifies_event", id="identifies"),
        pytest.param("users", "users_event", id="users"),
        pytest.param("USERS", "users_event", id="users-caps"),
        pytest.param("Pages", "pages_event", id="pages"),
        pytest.param("Screens", "screens_event", id="screens"),
        pytest.param("Groups", "groups_event", id="groups"),
        pytest.param("ALIASES", "aliases_event", id="aliases-caps"),
        pytest.param("Order View", "order_view_event", id="ends-in-view"),
        pytest.param("order_view", "order_view_event", id="ends-in-view-snake"),
        pytest.param("Tracks View", "tracks_view_event", id="fixed-table-view"),
        pytest.param("_users", "users_event", id="leading-underscore-fixed-table"),
    ],
)
def test_table_reserved_names_get_event_suffix(event: str, expected: str) -> None:
    assert table_name(event) == expected


def test_event_named_like_dead_letter_table_cannot_collide() -> None:
    # snake_case drops the leading "_", so the dead-letter table is never
    # produced and needs no "_event" suffix.
    assert naming.DEAD_LETTER_TABLE not in naming.FIXED_TABLES
    assert table_name(naming.DEAD_LETTER_TABLE) == "opentrack_dead_letters"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param("Track", "track", id="singular-track"),
        pytest.param("Page", "page", id="singular-page"),
        pytest.param("View", "view", id="view-alone"),
        pytest.param("Order Viewed", "order_viewed", id="viewed"),
        pytest.param("Preview", "preview", id="preview"),
        pytest.param(
            "opentrack_dead_letters", "opentrack_dead_letters", id="no-leading-underscore"
        ),
        pytest.param("_opentrack_dead_letters", "opentrack_dead_letters", id="dead-letter-name"),
        pytest.param(
            "_opentrack dead letters", "opentrack_dead_letters", id="dead-letter-name-spaced"
        ),
        pytest.param("_view", "view", id="underscore-view-is-plain-view"),
        pytest.param("_OpenTrack_Dead_Letters", "open_track_dead_letters", id="camel-dead-letter"),
        pytest.param("3D Secure", "3d_secure", id="leading-digit-kept"),
        pytest.param("2024 Sale", "2024_sale", id="leading-year"),
        pytest.param("1", "1", id="single-digit"),
        pytest.param("iOS App Opened", "i_os_app_opened", id="ios"),
        pytest.param("café Visited", "caf_visited", id="accent"),
        pytest.param("\tSignup\nStarted ", "signup_started", id="whitespace"),
    ],
)
def test_table_names(event: str, expected: str) -> None:
    assert table_name(event) == expected


@pytest.mark.parametrize(
    "event",
    [
        pytest.param("!!!", id="punctuation-only"),
        pytest.param("名前", id="cjk-only"),
        pytest.param("🛒✅", id="emoji-only"),
    ],
)
def test_table_without_ascii_words_gets_hash(event: str) -> None:
    assert table_name(event) == "_" + sha8(event)


def test_empty_table_gets_hash_of_empty_string() -> None:
    assert table_name("") == "_" + EMPTY_HASH


def test_2000_char_table_name_fits() -> None:
    result = table_name("a" * 2000)
    assert len(result) <= 1019
    assert TABLE_RE.fullmatch(result)
    assert result.startswith("a" * 1000)


def test_overlong_view_table_does_not_end_in_view() -> None:
    result = table_name("x" * 2000 + " View")
    assert len(result) <= 1019
    assert not result.endswith("_view")


# ---------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("Production Site", "production_site", id="two-words"),
        pytest.param("iOS App (prod)", "i_os_app_prod", id="ios-prod"),
        pytest.param("3rd Party Source", "3rd_party_source", id="leading-digit"),
        pytest.param("  staging-site ", "staging_site", id="padded-kebab"),
    ],
)
def test_dataset_names(source: str, expected: str) -> None:
    assert dataset_name(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("", id="empty"),
        pytest.param("!!!", id="punctuation-only"),
        pytest.param("名前", id="cjk-only"),
        pytest.param("🎉🎉", id="emoji-only"),
        pytest.param("   ", id="spaces-only"),
        pytest.param("___", id="underscores-only"),
    ],
)
def test_dataset_without_ascii_words_is_rejected(source: str) -> None:
    with pytest.raises(ValueError):
        dataset_name(source)


def test_overlong_dataset_is_cut_to_1024() -> None:
    result = dataset_name("a" * 2000)
    assert len(result) == 1024
    assert HASH_SUFFIX_RE.fullmatch(result[-9:])
    assert result == "a" * 1015 + "_" + sha8("a" * 2000)


# ---------------------------------------------------------------------------
# NamingConvention
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parent", "key", "expected"),
    [
        pytest.param("", "firstName", "first_name", id="top-level"),
        pytest.param("context", "userAgent", "context_user_agent", id="context-user-agent"),
        pytest.param("context_device", "type", "context_device_type", id="context-device-type"),
        pytest.param("properties", "$price", "properties_price", id="symbol-key"),
        pytest.param("properties", "2fast", "properties_2fast", id="digit-key-clean"),
        # "properties_3D": the clean prefix "properties_3" has no lower-case
        # letter since its last underscore, so "D" is glued on.
        pytest.param("properties", "3D", "properties_3d", id="digit-capital-key-glued"),
        pytest.param("properties", "_private", "properties_private", id="underscore-key"),
        pytest.param("", "3D", "_3d", id="top-level-leading-digit"),
        pytest.param("", "_partitiontime", "partitiontime", id="top-level-reserved"),
        pytest.param("_partition", "time", "partition_time", id="reserved-after-join"),
        # Keys without ASCII words: hash of the key, under the parent if any.
        pytest.param("", "名前", "_" + sha8("名前"), id="top-level-cjk-key"),
        pytest.param("properties", "名前", "properties_" + sha8("名前"), id="cjk-key"),
        pytest.param("properties", "!!!", "properties_" + sha8("!!!"), id="punctuation-key"),
        pytest.param("properties", "_", "properties_" + sha8("_"), id="underscore-only-key"),
        pytest.param("properties", "", "properties_" + EMPTY_HASH, id="empty-key"),
    ],
)
def test_child_column(parent: str, key: str, expected: str) -> None:
    assert NamingConvention().child_column(parent, key) == expected


def test_child_column_hash_key_under_long_parent_is_truncated() -> None:
    parent = "p" * 300
    full = parent + "_" + sha8("名前")
    assert NamingConvention().child_column(parent, "名前") == full[:291] + "_" + sha8(full)


def test_child_column_chain_matches_dotted_path() -> None:
    names = NamingConvention()
    context = names.child_column("", "context")
    device = names.child_column(context, "device")
    assert (context, device) == ("context", "context_device")
    assert names.child_column(device, "type") == column_name("context.device.type")


def test_results_are_cached() -> None:
    names = NamingConvention()
    first = names.child_column("context", "userAgent")
    assert names.children("context") == {"userAgent": "context_user_agent"}
    assert names.child_column("context", "userAgent") == first == "context_user_agent"
    assert names.table("Order Completed") == "order_completed"
    assert names.table("Order Completed") == "order_completed"


# (key, top-level column, column under the parent "context")
COLUMN_KEYS = [
    ("firstName", "first_name", "context_first_name"),
    ("lastName", "last_name", "context_last_name"),
    ("userID", "user_id", "context_user_id"),
    ("iOS", "i_os", "context_i_os"),
    ("3D", "_3d", "context_3d"),
    ("AB Test", "ab_test", "context_ab_test"),
    ("café", "caf", "context_caf"),
    ("_file_name", "file_name", "context_file_name"),
]
TABLE_EVENTS = [
    ("Order Completed", "order_completed"),
    ("Tracks", "tracks_event"),
    ("Order View", "order_view_event"),
    ("3D Secure", "3d_secure"),
    ("Product-Added!", "product_added"),
]


def test_cache_stays_correct_past_its_limit() -> None:
    names = NamingConvention(cache_limit=3)
    for _ in range(3):
        for key, top_level, nested in COLUMN_KEYS:
            assert names.child_column("", key) == top_level
            assert names.child_column("context", key) == nested
        for event, expected in TABLE_EVENTS:
            assert names.table(event) == expected
    # The cache is bounded: far fewer entries than the keys named.
    assert len(names.children("")) <= 3 + 1


# ---------------------------------------------------------------------------
# Invariants over hostile input
# ---------------------------------------------------------------------------

HOSTILE = [
    "",
    " ",
    "_",
    "__",
    "!!!",
    "\x00",
    "\t\n\r",
    "\ud800",
    "名前",
    "🎉",
    "ＡＢＣ",
    "0",
    "9lives",
    "_2Fast",
    "a_1B",
    "_partitiontime",
    "_PARTITIONTIME",
    "_TABLE_SUFFIX",
    "_table_x",
    "_file_",
    "__root__",
    "__ROOT__x",
    "_row_timestamp",
    "_colidentifier",
    "_change_sequence_number",
    "_change_type",
    "_change_timestamp",
    "tracks",
    "users_view",
    "_opentrack_dead_letters",
    "x" * 299,
    "x" * 300,
    "x" * 301,
    "A" * 5000,
    "1" * 5000,
    "_" * 400,
    "_1" * 400,
    "a_" * 400,
    "_partition" * 40,
    "Ab" * 1000,
    "x" * 2000 + "_view",
    "".join(chr(c) for c in range(0x300)),
    "•¶§ƒ˚foo˙∆˚¬",
]


def _hostile_id(text: str) -> str:
    return f"{ascii(text[:12])}-len{len(text)}"


def _assert_valid_column(name: str) -> None:
    assert COLUMN_RE.fullmatch(name), name
    assert not name.lower().startswith(naming.RESERVED_COLUMN_PREFIXES), name


@pytest.mark.parametrize("text", HOSTILE, ids=_hostile_id)
def test_hostile_snake_case_never_starts_with_underscore(text: str) -> None:
    assert not snake_case(text).startswith("_")


@pytest.mark.parametrize("text", HOSTILE, ids=_hostile_id)
def test_hostile_column_names_are_valid(text: str) -> None:
    _assert_valid_column(column_name(text))


@pytest.mark.parametrize("text", HOSTILE, ids=_hostile_id)
def test_hostile_nested_column_names_are_valid(text: str) -> None:
    names = NamingConvention()
    for parent in ("", "properties", "context_device", column_name("x" * 400)):
        _assert_valid_column(names.child_column(parent, text))


@pytest.mark.parametrize("text", HOSTILE, ids=_hostile_id)
def test_hostile_table_names_are_valid(text: str) -> None:
    name = table_name(text)
    assert TABLE_RE.fullmatch(name), name
    assert name not in naming.FIXED_TABLES
    assert name != naming.DEAD_LETTER_TABLE
    assert not name.endswith("_view")
