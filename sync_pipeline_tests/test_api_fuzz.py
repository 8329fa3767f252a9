"""Property-based fuzzing of the sync API from its own OpenAPI spec (schemathesis), over real HTTP
against the sandbox and a real SQLite sync database: valid and invalid inputs alike, with a
service token, a CRM user's access token, and tokens the API must refuse (expired, wrongly
signed, for another audience); no answer is a 5xx, and every answer matches the schema the spec
documents."""

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from .auth_helpers import a_member
from .on_demand_helpers import (  # noqa: F401 (fixtures)
    api_fixture,
    api_tokens_fixture,
)

EXAMPLES_PER_OPERATION = 12
"""Per operation and generation mode: ~10 operations x 2 modes x 12 stays well under 30 s."""
REFUSED_EXAMPLES = 4
"""A refused token is refused before anything else is read: a few examples each suffice."""


def fuzz(api, token: str, modes, examples: int) -> set[int]:
    """Every operation, `examples` cases per mode; the statuses answered."""
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    auth = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    statuses = set()

    for operation in operations:
        for mode in modes:

            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis.settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            def no_server_error(case):
                response = case.call_and_validate(
                    base_url=api.url,
                    headers=auth,
                    checks=[not_a_server_error, response_schema_conformance],
                )
                statuses.add(response.status_code)

            no_server_error()
    return statuses


def test_fuzzing_the_api_finds_no_server_errors(api, sandbox):
    org = sandbox.organizations[0]
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    assert {200, 202} <= fuzz(api, api.token_of[org.id], modes, EXAMPLES_PER_OPERATION)


def test_fuzzing_as_a_crm_user_finds_no_server_errors(api, sandbox, supabase_auth):
    user = a_member(sandbox, sandbox.organizations[0])
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    token = supabase_auth.token(user, signed_with="key")
    assert {200, 202} <= fuzz(api, token, modes, EXAMPLES_PER_OPERATION)


@pytest.mark.parametrize("refused", ["expired", "wrongly signed", "another audience"])
def test_fuzzing_with_refused_tokens_finds_only_refusals(api, sandbox, supabase_auth, refused):
    user = a_member(sandbox, sandbox.organizations[0])
    token = {
        "expired": lambda: supabase_auth.token(user, expires_in=-60),
        "wrongly signed": lambda: supabase_auth.token(user, key="x" * 48),
        "another audience": lambda: supabase_auth.token(user, aud="anon"),
    }[refused]()
    # 401, or 422 where the request is malformed before the token is read (FastAPI validates
    # headers, query and body together with the credentials).
    statuses = fuzz(api, token, (GenerationMode.POSITIVE,), REFUSED_EXAMPLES)
    assert 401 in statuses and statuses <= {401, 422}, statuses
