"""One event registry: the pydantic models, the JSON Schema document vestnik-client ships, one verdict."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.registry_corpus import client_cases, event_cases, key_cases, recipient_cases
from vestnik.shared import bounds
from vestnik.shared.client_record import ClientFields
from vestnik.shared.errors import EventValidationError
from vestnik.shared.events import (
    get_event_type,
    key_problems,
    problems_of,
    recipients_problems,
    registry_json,
    validate_event,
)
from vestnik.shared.wire import FORMATS, SCHEMA_KEYWORDS, YEAR_PATTERN
from vestnik_client.schema import problems, registry

SHIPPED = Path(__file__).resolve().parents[2] / "client" / "vestnik_client" / "registry.json"


def test_the_shipped_registry_is_generated_from_the_current_definitions():
    assert SHIPPED.read_text(encoding="utf-8") == registry_json(), (
        "client/vestnik_client/registry.json is stale: run "
        ".venv/bin/python -m vestnik.shared.events > client/vestnik_client/registry.json")


def _walk(node, where="$"):
    if isinstance(node, dict):
        for key, value in node.items():
            yield where, key, value
            if key in ("properties",):
                for name, sub in value.items():
                    yield from _walk(sub, f"{where}.{name}")
            elif key in ("examples", "default", "enum"):
                continue
            else:
                yield from _walk(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk(item, f"{where}[{i}]")


def test_every_schema_uses_only_the_keywords_the_client_and_sql_validators_implement():
    doc = json.loads(SHIPPED.read_text(encoding="utf-8"))
    schemas = {"recipients": doc["recipients"], "client": doc["client"], "client_id": doc["client_id"],
               "timestamp": doc["timestamp"], **{f"event {n}": e["data"] for n, e in doc["events"].items()}}
    for name, schema in schemas.items():
        for where, key, value in _walk(schema):
            assert key in SCHEMA_KEYWORDS, f"{name} {where}: {key!r} is not implemented by the validators"
            if key == "format":
                assert value in FORMATS, f"{name} {where}: format {value!r}"


def _service_event_problems(event_type, data):
    try:
        validate_event(event_type, data)
    except EventValidationError as exc:
        return set(exc.problems)
    return set()


def test_service_and_client_find_the_same_problems_in_every_field_of_every_event():
    doc = registry()
    cases = list(event_cases())
    assert len(cases) > 3000
    differ = []
    for event_type, data in cases:
        service = _service_event_problems(event_type, data)
        client = set(problems(doc["events"][event_type]["data"], data, "data")) if isinstance(data, dict) \
            else {"data: must be an object"}
        if service != client:
            differ.append((event_type, data, service, client))
    assert not differ, f"{len(differ)} cases differ, e.g. {differ[:3]}"


def test_service_and_client_find_the_same_problems_in_every_client_field():
    doc = registry()
    differ = []
    for fields in client_cases():
        try:
            ClientFields.model_validate(fields)
            service = set()
        except ValidationError as exc:
            service = set(problems_of(exc, "", ClientFields))
        client = set(problems(doc["client"], fields, ""))
        if service != client:
            differ.append((fields, service, client))
    assert not differ, f"{len(differ)} cases differ, e.g. {differ[:3]}"


def test_service_and_client_find_the_same_problems_in_recipients():
    doc = registry()
    spec = get_event_type("lesson_cancelled")
    differ = []
    for recipients in recipient_cases():
        if not isinstance(recipients, list) or not recipients:
            continue  # the envelope's own rules (one string, empty list) are checked by emit's tests
        service = set(recipients_problems(spec, recipients, {}))
        client = set(problems(doc["recipients"], recipients, "recipients"))
        if service != client:
            differ.append((recipients[:3], service, client))
    assert not differ, f"{len(differ)} cases differ, e.g. {differ[:3]}"


def test_service_and_client_agree_on_keys():
    differ = [(v, key_problems("key", v), problems(registry()["key"], v, "key"))
              for v in key_cases() if v is not None]
    assert not [d for d in differ if set(d[1]) != set(d[2])]


def test_the_year_pattern_admits_exactly_the_years_shared_bounds_allows():
    pattern = re.compile(f"^{YEAR_PATTERN}$")
    admitted = [year for year in range(10_000) if pattern.match(f"{year:04d}")]
    assert admitted == list(range(bounds.MIN_YEAR, bounds.MAX_YEAR + 1))


@pytest.mark.parametrize("value", ["2026-02-29T10:00:00+03:00", "0026-11-25T16:00:00+03:00", "2026-11-25T16:00:00",
                                   "2026-11-25T25:00:00Z", "20266-11-25T16:00:00Z",
                                   "2201-01-01T00:00:00Z"])
def test_impossible_or_absurd_times_are_refused_by_name(value):
    with pytest.raises(EventValidationError, match="data.starts_at: must be an ISO 8601 time"):
        validate_event("lesson_cancelled", {"lesson_title": "X", "starts_at": value})
