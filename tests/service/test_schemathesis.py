"""Property-based run of the published OpenAPI schema against a real server: no input gives a 5xx, and
every documented response matches its schema. Bounded examples so it fits the CI budget.

The schema is taken from the app built with the same settings as the `live_service` fixture (building the
app loads nothing), so it is known at collection time; the requests go to the real uvicorn process.
"""
from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from service.app import create_app
from service.settings import Settings

schema = schemathesis.openapi.from_dict(create_app(Settings(max_query_terms=64)).openapi())


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, live_service):
    response = case.call(base_url=live_service, timeout=30)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
    assert response.status_code < 500, response.text
