"""Property-based fuzzing of the sync API from its own OpenAPI spec (schemathesis), over real HTTP
against the sandbox and a real SQLite sync database: valid and invalid inputs alike, no answer is a
5xx, and every answer matches the schema the spec documents."""

import hypothesis
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from .on_demand_helpers import api_fixture, api_tokens_fixture  # noqa: F401 (fixtures)

EXAMPLES_PER_OPERATION = 12
"""Per operation and generation mode: ~10 operations x 2 modes x 12 stays well under 30 s."""


def test_fuzzing_the_api_finds_no_server_errors(api, sandbox):
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    org = sandbox.organizations[0]
    auth = {"Authorization": f"Bearer {api.token_of[org.id]}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis.settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            def no_server_error(case):
                case.call_and_validate(
                    base_url=api.url,
                    headers=auth,
                    checks=[not_a_server_error, response_schema_conformance],
                )

            no_server_error()
