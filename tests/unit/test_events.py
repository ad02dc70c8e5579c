"""The event registry's own rules (shared/events.py), beyond the corpus of test_registry.py.

What ``make mutate`` found unpinned: NUL refusal in event data, the data size limit, recipients
given in odd shapes, the words of each problem, the send_at window at its edges, aliases, "did
you mean", the registered descriptions and the category a broadcast chooses.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vestnik.shared import events, wire
from vestnik.shared.errors import EventValidationError, UnknownEventType
from vestnik.shared.events import (
    LIMITS,
    canonical_event_type,
    category_of,
    close_matches,
    get_event_type,
    parse_send_at,
    problems_of,
    recipients_problems,
    send_at_problems,
    validate_event,
)
from vestnik.shared.models import Category

CANCELLED = {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00"}
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def problems(event_type, data, **kwargs) -> list[str]:
    with pytest.raises(EventValidationError) as caught:
        validate_event(event_type, data, **kwargs)
    assert caught.value.event_type == event_type
    return caught.value.problems


def test_a_valid_event_returns_its_type():
    assert validate_event("lesson_cancelled", CANCELLED, recipients=["1"]).name == "lesson_cancelled"
    assert validate_event("lesson_cancelled", CANCELLED, recipients=("1", "2")).name == "lesson_cancelled"
    assert validate_event("lesson_cancelled", CANCELLED, recipients=(r for r in ["1"])).name == "lesson_cancelled"


def test_nul_and_lone_surrogates_in_event_data_are_refused_by_path():
    assert problems("lesson_cancelled", {**CANCELLED, "reason": "a\x00b"}) == [
        "data.reason: contains a NUL character or a lone surrogate (not storable)"]
    assert problems("mass_broadcast", {"template_code": "A", "category": "service", "extra": ["ok", "\ud800"]},
                    recipients=["1"]) == [
        "data.extra[1]: contains a NUL character or a lone surrogate (not storable)"]


def test_data_larger_than_the_limit_is_refused_once_it_is_otherwise_valid():
    big = {"template_code": "A", "category": "service", "text": "x" * LIMITS["data_max_bytes"]}
    assert problems("mass_broadcast", big, recipients=["1"]) == [
        f"data: larger than {LIMITS['data_max_bytes']} bytes as JSON"]
    fits = {"template_code": "A", "category": "service"}
    fits["text"] = "x" * (LIMITS["data_max_bytes"] - len(json.dumps({**fits, "text": ""}).encode()))
    assert validate_event("mass_broadcast", fits, recipients=["1"]).name == "mass_broadcast"
    # Counted in UTF-8 bytes, not characters: two bytes each.
    cyrillic = {**fits, "text": "ж" * (len(fits["text"]) // 2 + 1)}
    assert problems("mass_broadcast", cyrillic, recipients=["1"]) == [
        f"data: larger than {LIMITS['data_max_bytes']} bytes as JSON"]
    # A bad field is reported alone: the size check would only repeat that something is wrong.
    assert problems("mass_broadcast", {**big, "category": "spam"}, recipients=["1"]) == [
        "data.category: must be one of service, marketing"]


def test_data_that_is_not_an_object_and_bad_recipients_are_both_reported():
    assert problems("lesson_cancelled", ["x"], recipients=[]) == [
        "data: must be an object", "recipients: at least one client id is required"]
    assert problems("lesson_cancelled", {"starts_at": "2026-11-25T16:00:00+03:00"}, recipients=5) == [
        "data.lesson_title: required", "recipients: must be a list of client ids, got int"]


@pytest.mark.parametrize(("recipients", "expected"), [
    ("1", "recipients: must be a list of client ids, got str"),
    (b"1", "recipients: must be a list of client ids, got bytes"),
    ({"1": 1}, "recipients: must be a list of client ids, got dict"),
    (None, "recipients: must be a list of client ids, got NoneType"),
])
def test_recipients_of_the_wrong_shape_are_named(recipients, expected):
    assert recipients_problems(get_event_type("lesson_cancelled"), recipients, {}) == [expected]


def test_no_recipients_is_allowed_only_where_the_data_targets_instead():
    broadcast = get_event_type("mass_broadcast")
    assert recipients_problems(broadcast, [], {"targeting": {"groups": ["A"]}}) == []
    assert recipients_problems(broadcast, [], {}) == [
        "recipients: at least one client id is required (or data.targeting)"]
    assert recipients_problems(broadcast, [], {"targeting": None}) == [
        "recipients: at least one client id is required (or data.targeting)"]
    assert recipients_problems(get_event_type("lesson_cancelled"), [], {"targeting": {"groups": ["A"]}}) == [
        "recipients: at least one client id is required"]


def test_a_bad_recipient_is_named_by_its_position_with_the_other_problems():
    found = recipients_problems(get_event_type("lesson_cancelled"), ["1", "", "x" * 65], {})
    assert [p.split(":")[0] for p in found] == ["recipients[1]", "recipients[2]"]
    found = recipients_problems(get_event_type("mass_broadcast"), [], {"targeting": None})
    assert len(found) == 1


class Child(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


class Parent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    child: Child
    pair: list[int] = Field(min_length=2, max_length=3)
    one: list[int] = Field(min_length=1)
    mapping: dict[str, int]


def words(data) -> list[str]:
    try:
        Parent.model_validate(data)
    except ValidationError as exc:
        return problems_of(exc, "data", Parent)
    return []


def test_each_kind_of_problem_in_its_own_words():
    good = {"child": {"name": "a"}, "pair": [1, 2], "one": [1], "mapping": {}}
    assert words(good) == []
    assert words({**good, "child": 5}) == ["data.child: must be an object"]
    assert words({**good, "mapping": 5}) == ["data.mapping: must be an object"]
    assert words({**good, "pair": 5}) == ["data.pair: must be a list"]
    assert words({**good, "pair": [1]}) == ["data.pair: at least 2 items"]
    assert words({**good, "one": []}) == ["data.one: at least 1 item"]
    assert words({**good, "pair": [1, 2, 3, 4]}) == ["data.pair: at most 3 items"]
    assert words({k: v for k, v in good.items() if k != "child"}) == ["data.child: required"]
    assert words({**good, "extra": 1}) == ["data.extra: unknown field (declared: child, mapping, one, pair)"]
    assert words({**good, "child": {"name": "a", "age": 3}}) == [
        "data.child.age: unknown field (declared: name)"]
    assert words({**good, "pair": [1, "x"]}) == [
        "data.pair[1]: Input should be a valid integer, unable to parse string as an integer"]


def test_without_the_model_an_unknown_field_lists_nothing_declared():
    try:
        Parent.model_validate({"child": {"name": "a"}, "pair": [1, 2], "one": [1], "mapping": {}, "x": 1})
    except ValidationError as exc:
        assert problems_of(exc, "") == ["x: unknown field (declared: none)"]
        assert "https://" not in str(problems_of(exc, "data", Parent))


def test_an_unknown_event_type_suggests_close_names():
    with pytest.raises(UnknownEventType) as caught:
        get_event_type("lesson_canceled")
    assert (caught.value.event_type, caught.value.close) == ("lesson_canceled", ["lesson_cancelled"])
    assert str(caught.value) == ("invalid 'lesson_canceled' event: unknown event type 'lesson_canceled' "
                                 "(did you mean 'lesson_cancelled'?)")
    assert close_matches("lesson_cancelled_x") == ["lesson_cancelled"]
    assert close_matches("payment") == []  # not close enough (cutoff 0.85)
    assert close_matches(5) == [] and close_matches(None) == []
    assert len(close_matches("booking_c")) <= 3


def test_aliases_map_to_the_new_name_and_anything_else_is_kept():
    assert canonical_event_type("lesson_scheduled") == "lesson_reminder"
    assert get_event_type("lesson_scheduled").name == "lesson_reminder"
    assert canonical_event_type("lesson_cancelled") == "lesson_cancelled"
    assert canonical_event_type(["lesson_scheduled"]) == ["lesson_scheduled"]  # not hashable: kept, not looked up
    assert canonical_event_type(5) == 5


def test_registration_keeps_the_name_category_docstring_template_and_targets():
    spec = get_event_type("lesson_cancelled")
    assert (spec.name, spec.category, spec.description, spec.template_code, spec.targets_field) == (
        "lesson_cancelled", Category.service, "A lesson was cancelled.", "LESSON_CANCELLED", None)
    assert spec.model is events.LessonCancelled
    broadcast = get_event_type("mass_broadcast")
    assert broadcast.targets_field == "targeting" and broadcast.template_code is None
    # A docstring over several lines is one line of text.
    assert get_event_type("lesson_reminder").description == (
        "A lesson was scheduled for these clients (or they enrolled): reminders are planned before it. "
        "Formerly ``lesson_scheduled`` (still accepted, stored as ``lesson_reminder``).")

    @events.event("test_undocumented", Category.marketing, template_code="T", targets_field="who")
    class Undocumented(events.EventData):
        pass

    try:
        spec = get_event_type("test_undocumented")
        assert (spec.name, spec.category, spec.description, spec.template_code, spec.targets_field) == (
            "test_undocumented", Category.marketing, "", "T", "who")
        assert spec.model is Undocumented
    finally:
        events._REGISTRY.pop("test_undocumented")


def test_a_broadcast_chooses_its_category_and_other_events_have_their_own():
    assert category_of("mass_broadcast", {"category": "marketing"}) is Category.marketing
    assert category_of("mass_broadcast", {}) is Category.service
    assert category_of("lesson_cancelled", {"category": "marketing"}) is Category.service


def test_example_data_and_variables():
    spec = get_event_type("lesson_cancelled")
    assert spec.example_data() == {"lesson_title": "Робототехника", "starts_at": "2026-11-25T16:00:00+03:00",
                                   "reason": "болезнь преподавателя"}
    assert [f.name for f in spec.variables()][-3:] == ["lesson_title", "starts_at", "reason"]
    assert spec.variables()[: len(events.CLIENT_VARIABLES)] == events.CLIENT_VARIABLES


def test_send_at_within_thirty_days_back_and_366_ahead():
    assert send_at_problems(None) == []
    assert send_at_problems(NOW + timedelta(days=366), NOW) == []
    assert send_at_problems(NOW - timedelta(days=30), NOW) == []
    ahead = NOW + timedelta(days=366, seconds=1)
    assert send_at_problems(ahead, NOW) == [f"send_at: more than 366 days ahead ({ahead.isoformat()})"]
    behind = NOW - timedelta(days=30, seconds=1)
    assert send_at_problems(behind, NOW) == [
        f"send_at: more than 30 days in the past ({behind.isoformat()}); leave it out to send now"]
    assert send_at_problems(datetime(2026, 11, 30, 12, 0), NOW) == [
        "send_at: needs a time zone (an aware datetime or an ISO 8601 time with offset)"]
    assert send_at_problems(datetime.now(UTC) + timedelta(days=365)) == []  # now is the clock's by default
    assert send_at_problems(datetime.now(UTC) + timedelta(days=367)) != []


def test_send_at_is_read_from_iso_text_with_an_offset_or_z():
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    assert parse_send_at(soon.isoformat()) == (soon, [])
    assert parse_send_at(soon.strftime("%Y-%m-%dT%H:%M:%Sz")) == (soon, [])
    assert parse_send_at(soon.astimezone(timezone(timedelta(hours=3))).isoformat())[0] == soon
    assert parse_send_at(None) == (None, [])
    assert parse_send_at(soon) == (soon, [])
    assert parse_send_at("tomorrow") == (None, [f"send_at: {wire.TIMESTAMP.error}"])
    assert parse_send_at(5) == (None, [f"send_at: {wire.TIMESTAMP.error}"])
    far = "2200-01-01T00:00:00+00:00"
    value, found = parse_send_at(far)
    assert value == datetime(2200, 1, 1, tzinfo=UTC) and found[0].startswith("send_at: more than 366 days ahead")


def test_the_fields_each_event_declares_as_the_editor_and_the_docs_show_them():
    from vestnik.shared.events import Field as F

    assert get_event_type("lesson_cancelled").fields == (
        F("lesson_title", "str", True, (), "Робототехника", "the lesson's title"),
        F("starts_at", "datetime", True, (), "2026-11-25T16:00:00+03:00", "when the lesson was to start"),
        F("reason", "str", False, (), "болезнь преподавателя", "why it is cancelled"),
    )
    payment = {f.name: f for f in get_event_type("payment_success").fields}
    assert payment["amount"] == F("amount", "money", True, (), "4500.00", "")
    assert payment["method"] == F("method", "str", True, ("sbp", "manual"), "sbp", "sbp or manual")
    invoice = {f.name: f for f in get_event_type("invoice_created").fields}
    assert (invoice["payment_url"].type, invoice["due_date"].type, invoice["due_date"].required) == (
        "url", "date", False)
    broadcast = {f.name: f for f in get_event_type("mass_broadcast").fields}
    assert broadcast["category"].choices == ("service", "marketing")
    assert (broadcast["targeting"].type, broadcast["targeting"].example) == ("targeting", {"groups": ["Робототехника"]})
    assert broadcast["channels"].type == "list of channel" and broadcast["channels"].required is False


def test_a_field_of_no_declared_kind_is_shown_as_its_shape():
    class Loose(events.EventData):
        anything: dict
        many: list[int]
        nested: events.Targeting | None = None

    shown = {f.name: (f.type, f.required, f.example) for f in events.fields_of(Loose)}
    assert shown == {"anything": ("dict", True, None), "many": ("list of values", True, None),
                     "nested": ("targeting", False, None)}


def test_json_schemas_are_self_contained():
    schema = events.json_schema(events.MassBroadcast)
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text and '"title"' not in text
    assert schema["properties"]["targeting"]["anyOf"][0]["properties"]["groups"]["anyOf"][0]["maxItems"] == 200
    assert events.json_schema(list[int]) == {"items": {"type": "integer"}, "type": "array"}


def test_a_broadcast_may_target_instead_of_listing_recipients_whatever_else_is_wrong():
    good = {"template_code": "A", "category": "service", "targeting": {"groups": ["Робототехника"]}}
    assert validate_event("mass_broadcast", good, recipients=[]).name == "mass_broadcast"
    assert problems("mass_broadcast", ["x"], recipients=[]) == [
        "data: must be an object", "recipients: at least one client id is required (or data.targeting)"]


def test_a_send_at_given_as_a_datetime_is_checked_too():
    naive = datetime(2026, 11, 30, 12, 0)
    assert parse_send_at(naive) == (naive, [
        "send_at: needs a time zone (an aware datetime or an ISO 8601 time with offset)"])
