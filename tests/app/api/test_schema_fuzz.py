"""Schemathesis against the app's own OpenAPI schema, over real HTTP: no 5xx, no off-schema answer."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from benchmarks.servers import Server

EXAMPLES_PER_OPERATION = 40


def test_no_server_error_and_every_answer_fits_the_schema(tiny_model_dir):
    with Server(tiny_model_dir, {"ADMIN_TOKEN": "fuzz-token", "RELOAD_INTERVAL_S": "0"}) as server:
        url = server.url
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 9
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck)
            )
            def fuzz(case: schemathesis.Case) -> None:
                case.call_and_validate()

            fuzz()
