"""Schemathesis against /api/v1/openapi.json: generated requests, valid and not, against the real app.

Every answer must be documented (status, content type, body schema, headers), no input may cause a
5xx, and what the document says is invalid must be refused.  What the schema cannot say (a send_at
within a year, a client id this database can hold) is a documented 422, so "valid by the schema,
accepted" is not asserted.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from vestnik.shared import api_keys  # noqa: E402
from vestnik.shared.config import Settings  # noqa: E402
from vestnik.shared.db import make_engine, make_session_factory  # noqa: E402
from vestnik.webapp import create_app  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection]


@pytest.fixture
def api(pg_url):
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    app = create_app(Settings(secret_key="k" * 32, api_rate_per_min=100_000), session_factory=factory,
                     config={"TESTING": True})
    with factory() as s:
        _key, raw = api_keys.create(s, "schemathesis", "test")
        s.commit()
    app.config["TEST_API_KEY"] = raw
    yield app
    engine.dispose()


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_the_api_answers_as_its_document_says(api, mode):
    # Schemathesis' pytest plugin needs an older pytest; its strategies work the same driven by hypothesis.
    from hypothesis import given

    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", api)
    headers = {"Authorization": f"Bearer {api.config['TEST_API_KEY']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 5
    for operation in operations:
        strategy = operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode))

        @given(case=strategy)
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        run()
