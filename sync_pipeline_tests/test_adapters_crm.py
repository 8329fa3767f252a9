"""CrmClient: the HTTP error mapping as a pure table, then everything else over real HTTP.

The integration tests run against the sandbox CRM (a PostgREST subset) on loopback, with its
fault injector producing 5xx pages, 429s, dropped connections, cut-off bodies and stalls.
"""

import json
import uuid
from datetime import UTC, datetime

import pytest
import requests

from sync_pipeline.adapters.crm import IDS_PER_QUERY, CrmClient, error_for_response
from sync_pipeline.adapters.errors import (
    AuthError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    SyncError,
    TransientError,
)
from sync_pipeline.adapters.retry import RetryPolicy

FAST = RetryPolicy(initial_wait_s=0.01, max_wait_s=0.05)
ONE_SHOT = RetryPolicy(max_attempts=1)
SECRET = "crm-service-key-do-not-log-42"

# -- the mapping table, as pure logic --------------------------------------------------------


def pg_error(code: str, message: str) -> str:
    return json.dumps({"code": code, "message": message, "details": "d", "hint": "h"})


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "expected"),
    [
        (401, pg_error("PGRST301", "Invalid API key"), None, AuthError),
        (403, pg_error("42501", "permission denied"), None, AuthError),
        (404, pg_error("PGRST205", "Could not find the table"), None, NotFoundError),
        (409, pg_error("23505", "duplicate key value"), None, RejectedError),
        (400, pg_error("42703", "column does not exist"), None, RejectedError),
        (429, pg_error("429", "Too Many Requests"), 2.0, RateLimitedError),
        (500, pg_error("XX000", "internal error"), None, TransientError),
        (502, "<html>Bad Gateway</html>", None, TransientError),
        (503, "<html>Unavailable</html>", 4.0, RateLimitedError),
    ],
)
def test_status_mapping(status, body, retry_after, expected):
    error = error_for_response("GET sales_documents", status, body, retry_after=retry_after)
    assert type(error) is expected
    assert getattr(error, "retry_after", None) == retry_after


def test_postgrest_error_fields_go_to_details_redacted():
    body = json.dumps(
        {"code": "23505", "message": "dup", "details": f"apikey={SECRET}", "hint": None}
    )
    error = error_for_response("POST sales_documents", 409, body, secrets=[SECRET])
    assert error.details["code"] == "23505" and error.details["http_status"] == 409
    assert SECRET not in repr(error.details) and SECRET not in str(error)


def test_success_is_no_error():
    assert error_for_response("GET sales_documents", 206, "[]") is None


# -- over HTTP against the sandbox -----------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    from sync_pipeline.sandbox.runner import start_sandbox

    box = start_sandbox(tmp_path_factory.mktemp("crm-sandbox"), documents_per_org=250, reset=True)
    yield box
    box.stop()


@pytest.fixture(autouse=True)
def no_faults(request):
    if "sandbox" not in request.fixturenames:
        yield
        return
    box = request.getfixturevalue("sandbox")
    box.configure_faults("crm", {"seed": 0})
    yield
    box.configure_faults("crm", {"seed": 0})


@pytest.fixture
def org(sandbox):
    return sandbox.organizations[0]


def client_for(sandbox, org, **overrides) -> CrmClient:
    options = {"timeout_s": 0.5, "connect_timeout_s": 0.5, "retry_policy": FAST}
    return CrmClient(sandbox.crm_url, org.crm_api_key, **(options | overrides))


def faults(sandbox, *rules, **spec):
    sandbox.configure_faults("crm", {"seed": 1, **spec, "rules": list(rules)})


def document_row(org, **extra) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "organization_id": org.id,
        "document_type": "invoice",
        "document_number": f"INV-{uuid.uuid4().hex[:6]}",
        "document_date": "2026-03-02",
        "customer_name": "Test d.o.o.",
        "currency": "EUR",
        "subtotal_amount": 21.0,
        "tax_amount": 4.62,
        "total_amount": 25.62,
        "status": "sent",
        **extra,
    }


def item(description: str, **extra) -> dict:
    return {
        "description": description,
        "quantity": 1,
        "unit": "kos",
        "unit_price": 10.5,
        "discount_percent": 0,
        "tax_rate": 22,
        "total_amount": 10.5,
        **extra,
    }


def stored(sandbox, org) -> list[dict]:
    return sandbox.crm_state.documents(org.id)


def test_list_documents_pages_through_one_organization(sandbox, org):
    client = client_for(sandbox, org)
    for _ in range(250 - len(stored(sandbox, org))):
        client.upsert_document(document_row(org), [item("filler")])
    expected = [doc["id"] for doc in stored(sandbox, org)]
    assert len(expected) >= 250
    client = client_for(sandbox, org)  # fresh call counts

    listed = list(client.list_documents(org.id, page_size=100))

    assert [doc["id"] for doc in listed] == expected  # (updated_at, id) order, nothing else
    assert {doc["organization_id"] for doc in listed} == {org.id}
    assert all("sales_document_items" in doc for doc in listed)
    assert client.stats.snapshot()["calls"]["crm GET sales_documents"] == len(expected) // 100 + 1
    assert client.count_documents(org.id) == len(expected)


def test_list_documents_changed_since(sandbox, org):
    client = client_for(sandbox, org)
    since = datetime.now(UTC)  # the sandbox runs on this clock
    row = document_row(org)
    client.upsert_document(row, [item("new")])
    assert [doc["id"] for doc in client.list_documents(org.id, updated_since=since)] == [row["id"]]


def test_list_documents_by_ids_in_chunks(sandbox, org):
    client = client_for(sandbox, org)
    everything = [doc["id"] for doc in stored(sandbox, org)]
    wanted = everything[: IDS_PER_QUERY + 20]
    other_org = sandbox.organizations[1]
    foreign = [doc["id"] for doc in stored(sandbox, other_org)][:5]

    listed = list(client.list_documents(org.id, ids=wanted + foreign + wanted[:3]))

    assert sorted(doc["id"] for doc in listed) == sorted(wanted)  # never another tenant's rows
    assert client.stats.snapshot()["calls"]["crm GET sales_documents"] == 2


def test_get_document_is_scoped_by_organization(sandbox, org):
    client = client_for(sandbox, org)
    mine = stored(sandbox, org)[0]
    theirs = stored(sandbox, sandbox.organizations[1])[0]
    assert client.get_document(org.id, mine["id"])["id"] == mine["id"]
    assert client.get_document(org.id, theirs["id"]) is None
    assert client.get_document(org.id, str(uuid.uuid4())) is None


def test_upsert_is_idempotent(sandbox, org):
    client = client_for(sandbox, org)
    row, lines = document_row(org), [item("first"), item("second")]
    before = len(stored(sandbox, org))

    first = client.upsert_document(row, lines)
    again = client.upsert_document(row, lines)

    assert len(stored(sandbox, org)) == before + 1
    assert first["id"] == again["id"] == row["id"]
    saved = client.get_document(org.id, row["id"])
    assert sorted(i["description"] for i in saved["sales_document_items"]) == ["first", "second"]
    assert {i["id"] for i in first["sales_document_items"]} == {
        i["id"] for i in saved["sales_document_items"]
    }

    client.upsert_document({**row, "notes": "edited"}, [item("only")])
    saved = client.get_document(org.id, row["id"])
    assert saved["notes"] == "edited"
    assert [i["description"] for i in saved["sales_document_items"]] == ["only"]
    assert len(stored(sandbox, org)) == before + 1


@pytest.mark.parametrize("endpoint", ["POST sales_documents", "POST sales_document_items"])
def test_upsert_retried_after_commit_timeout_writes_once(sandbox, org, endpoint):
    client = client_for(sandbox, org)
    row, lines = document_row(org), [item("a"), item("b")]
    before = len(stored(sandbox, org))
    faults(
        sandbox,
        {"fault": "timeout_after_commit", "endpoints": [endpoint], "count": 1, "delay_s": 1.0},
    )

    client.upsert_document(row, lines)

    assert len(stored(sandbox, org)) == before + 1
    saved = client.get_document(org.id, row["id"])
    assert len(saved["sales_document_items"]) == 2
    assert client.stats.snapshot()["retries"] == {f"crm {endpoint}": 1}


def test_upsert_refuses_another_organizations_document(sandbox, org):
    client = client_for(sandbox, org)
    theirs = stored(sandbox, sandbox.organizations[1])[0]
    with pytest.raises(RejectedError):
        client.upsert_document(document_row(org, id=theirs["id"]), [item("x")])
    after = sandbox.crm_state.documents(sandbox.organizations[1].id)
    assert next(d for d in after if d["id"] == theirs["id"]) == theirs


def test_upsert_rejected_by_the_database(sandbox, org):
    client = client_for(sandbox, org)
    with pytest.raises(RejectedError) as raised:
        client.upsert_document(document_row(org, status="lost"), [])
    assert raised.value.details["http_status"] == 400
    assert raised.value.details["code"]  # the PostgREST error code is kept for the error log
    assert client.stats.snapshot()["retries"] == {}


FAULTS = [
    ("error_5xx_html", {}, (TransientError, RateLimitedError)),
    ("opr_code_1", {}, (TransientError,)),
    ("opr_code_5", {"retry_after_s": 2}, (RateLimitedError,)),
    ("rate_limit_429", {"retry_after_s": 2}, (RateLimitedError,)),
    ("timeout_after_commit", {"delay_s": 1.0}, (TransientError,)),
    ("connection_reset", {}, (TransientError,)),
    ("malformed_body", {}, (MalformedResponseError,)),
    ("slow", {"delay_s": 1.0}, (TransientError,)),
]


@pytest.mark.parametrize(("fault", "options", "expected"), FAULTS, ids=lambda v: str(v))
def test_faults_map_to_typed_errors(sandbox, org, fault, options, expected):
    faults(sandbox, {"fault": fault, "endpoints": ["GET sales_documents"], "count": 1, **options})
    with pytest.raises(SyncError) as raised:
        client_for(sandbox, org, retry_policy=ONE_SHOT).get_document(org.id, str(uuid.uuid4()))
    assert type(raised.value) in expected
    if isinstance(raised.value, RateLimitedError) and fault != "error_5xx_html":
        assert raised.value.retry_after == 2


@pytest.mark.parametrize(
    "fault", ["error_5xx_html", "opr_code_1", "connection_reset", "malformed_body", "slow"]
)
def test_faults_are_retried(sandbox, org, fault):
    client = client_for(sandbox, org)
    mine = stored(sandbox, org)[0]
    faults(
        sandbox,
        {
            "fault": fault,
            "endpoints": ["GET sales_documents"],
            "count": 2,
            "delay_s": 1.0,
            "retry_after_s": 0,
        },
    )
    assert client.get_document(org.id, mine["id"])["id"] == mine["id"]
    assert client.stats.snapshot()["retries"] == {"crm GET sales_documents": 2}


def test_retry_after_is_honoured(sandbox, org):
    client = client_for(sandbox, org)
    faults(
        sandbox,
        {
            "fault": "rate_limit_429",
            "endpoints": ["GET sales_documents"],
            "count": 1,
            "retry_after_s": 1,
        },
    )
    assert client.count_documents(org.id) == len(stored(sandbox, org))
    (event,) = client.stats.recent_retries()
    assert event.error_type == "rate_limited" and event.wait_s >= 1.0


def test_bad_key_is_an_auth_error_without_the_key(sandbox, org):
    client = CrmClient(sandbox.crm_url, SECRET, retry_policy=FAST)
    with pytest.raises(AuthError) as raised:
        client.count_documents(org.id)
    error = raised.value
    for text in (str(error), repr(error), repr(error.details), repr(client)):
        assert SECRET not in text
    assert client.stats.snapshot()["calls"] == {"crm GET sales_documents": 1}  # not retried


def test_every_query_is_scoped_by_organization(sandbox, org):
    """The sandbox counts document queries without an organization_id filter."""
    client = client_for(sandbox, org)
    requests.post(sandbox.crm_url + "/_sandbox/stats/reset").raise_for_status()
    list(client.list_documents(org.id, page_size=100))
    client.count_documents(org.id)
    client.get_document(org.id, str(uuid.uuid4()))
    client.upsert_document(document_row(org), [item("scoped")])
    sandbox_stats = requests.get(sandbox.crm_url + "/_sandbox/stats").json()
    assert sandbox_stats["queries_without_organization_filter"] == {}
