"""CrmClient: the HTTP error mapping as a pure table, then everything else over real HTTP.

The integration tests run against the sandbox CRM (PostgREST over the CRM's published schema)
on loopback, with its fault injector producing 5xx pages, 429s, dropped connections, cut-off
bodies and stalls. The failures the real CRM and Supabase would cause (max-rows, capped embeds,
lines replaced in two steps, offsets, tenancy) have their own module, test_crm_real_schema.py.
"""

import json
import math
import uuid
from datetime import UTC, datetime

import pytest
import requests

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
from sync_pipeline.crm.client import CrmClient, error_for_response
from sync_pipeline.crm.documents import CrmDocumentWrite
from sync_pipeline.crm.query import IDS_PER_QUERY
from sync_pipeline.crm.tenancy import CrmTenant

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
        (414, "414 Request-URI Too Large", None, RejectedError),
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
    options = {
        "timeout_s": 0.5,
        "connect_timeout_s": 0.5,
        "retry_policy": FAST,
        "tenants": [
            CrmTenant(o.id, o.integration_user_id, o.service_product_code)
            for o in sandbox.organizations
        ],
    }
    return CrmClient(sandbox.crm_url, org.crm_api_key, **(options | overrides))


def faults(sandbox, *rules, **spec):
    sandbox.configure_faults("crm", {"seed": 1, **spec, "rules": list(rules)})


def new_document(org, lines: list[str], **extra) -> CrmDocumentWrite:
    """A document created for the organization (owned by its integration user)."""
    doc_id = str(uuid.uuid4())
    header = {
        "id": doc_id,
        "user_id": org.integration_user_id,
        "organization_id": org.id,
        "document_type": "invoice",
        "document_number": f"INV-{uuid.uuid4().hex[:6]}",
        "document_date": "2026-03-02",
        "customer_name": "Test d.o.o.",
        "currency": "EUR",
        "tax_amount": "4.62",
        "total_amount": "25.62",
        "status": "sent",
        **extra,
    }
    return CrmDocumentWrite(doc_id, header, [line(doc_id, i, d) for i, d in enumerate(lines)], True)


def line(doc_id: str, position: int, description: str) -> dict:
    return {
        "id": str(uuid.uuid5(uuid.UUID(doc_id), str(position))),
        "document_id": doc_id,
        "description": description,
        "quantity": "1",
        "unit_price": "10.5",
        "tax_rate": "22",
        "tax_amount": "2.31",
        "total_amount": "12.81",
    }


def stored(sandbox, org) -> list[dict]:
    return sandbox.crm_state.documents(org.id)


def test_list_documents_pages_through_one_organization(sandbox, org):
    client = client_for(sandbox, org)
    expected = {doc["id"] for doc in stored(sandbox, org)}
    assert len(expected) >= 150

    listed = list(client.list_documents(org.id, page_size=100))

    assert {doc["id"] for doc in listed} == expected and len(listed) == len(expected)
    members = client.directory(org.id).tenancy().members
    assert {doc["organization_id"] for doc in listed} == {org.id, None}
    assert {doc["user_id"] for doc in listed if doc["organization_id"] is None} <= members
    for doc in listed:  # every line, whatever the order of the server's answer
        lines = {(i["id"], i["description"]) for i in doc["sales_document_items"]}
        assert lines == {(i["id"], i["description"]) for i in sandbox.crm_state.items_of(doc["id"])}
    calls = client.stats.snapshot()["calls"]
    # Per tenancy scope (the organization; its members' documents without one): keyset pages
    # until an empty one, then one for documents whose updated_at is NULL.
    by_org = sum(d["organization_id"] == org.id for d in listed)
    per_scope = [by_org, len(listed) - by_org]
    assert calls["crm GET sales_documents"] == sum(math.ceil(n / 100) + 2 for n in per_scope)


def test_list_documents_changed_since(sandbox, org):
    client = client_for(sandbox, org)
    since = datetime.now(UTC)  # the sandbox runs on this clock
    write = new_document(org, ["new"])
    client.write_documents(org.id, [write])
    changed = [doc["id"] for doc in client.list_documents(org.id, updated_since=since)]
    assert changed == [write.document_id]


def test_list_documents_by_ids_in_chunks(sandbox, org):
    client = client_for(sandbox, org)
    everything = [doc["id"] for doc in stored(sandbox, org)]
    wanted = everything[: IDS_PER_QUERY + 20]
    other_org = sandbox.organizations[1]
    foreign = [doc["id"] for doc in stored(sandbox, other_org)][:5]

    listed = list(client.list_documents(org.id, ids=wanted + foreign + wanted[:3]))

    assert sorted(doc["id"] for doc in listed) == sorted(wanted)  # never another tenant's rows
    scopes = len(client.directory(org.id).tenancy().scopes())
    assert client.stats.snapshot()["calls"]["crm GET sales_documents"] == 2 * scopes


def test_get_document_is_scoped_by_organization(sandbox, org):
    client = client_for(sandbox, org)
    mine = stored(sandbox, org)[0]
    theirs = stored(sandbox, sandbox.organizations[1])[0]
    assert client.get_document(org.id, mine["id"])["id"] == mine["id"]
    assert client.get_document(org.id, theirs["id"]) is None
    assert client.get_document(org.id, str(uuid.uuid4())) is None


def test_writing_a_document_twice_writes_it_once(sandbox, org):
    client = client_for(sandbox, org)
    write = new_document(org, ["first", "second"])
    before = len(stored(sandbox, org))

    client.write_documents(org.id, [write])
    client.write_documents(org.id, [write])  # a create already done becomes an update

    assert len(stored(sandbox, org)) == before + 1
    saved = client.get_document(org.id, write.document_id)
    assert sorted(i["description"] for i in saved["sales_document_items"]) == ["first", "second"]
    assert saved["user_id"] == org.integration_user_id

    changed = new_document(org, ["only"])
    update = CrmDocumentWrite(
        write.document_id,
        {"notes": "edited"},
        [line(write.document_id, 0, "only")],
        owner={"organization_id": org.id, "user_id": org.integration_user_id},
    )
    assert changed.document_id != update.document_id
    client.write_documents(org.id, [update])
    saved = client.get_document(org.id, write.document_id)
    assert saved["notes"] == "edited"
    assert [i["description"] for i in saved["sales_document_items"]] == ["only"]
    assert len(stored(sandbox, org)) == before + 1


@pytest.mark.parametrize("endpoint", ["POST sales_documents", "POST sales_document_items"])
def test_a_write_retried_after_a_commit_timeout_writes_once(sandbox, org, endpoint):
    client = client_for(sandbox, org)
    write = new_document(org, ["a", "b"])
    before = len(stored(sandbox, org))
    faults(
        sandbox,
        {"fault": "timeout_after_commit", "endpoints": [endpoint], "count": 1, "delay_s": 1.0},
    )

    client.write_documents(org.id, [write])

    assert len(stored(sandbox, org)) == before + 1
    saved = client.get_document(org.id, write.document_id)
    assert len(saved["sales_document_items"]) == 2
    assert client.stats.snapshot()["retries"] == {f"crm {endpoint}": 1}


def test_an_update_never_writes_another_organizations_document(sandbox, org):
    client = client_for(sandbox, org)
    theirs = stored(sandbox, sandbox.organizations[1])[0]
    update = CrmDocumentWrite(theirs["id"], {"notes": "not mine"}, [], owner=None)
    with pytest.raises(NotFoundError):
        client.write_documents(org.id, [update])
    pinned = CrmDocumentWrite(
        theirs["id"], {"notes": "not mine"}, [], owner={"organization_id": org.id}
    )
    with pytest.raises(NotFoundError, match="no longer the organization's"):
        client.write_documents(org.id, [pinned])
    after = sandbox.crm_state.document_with_items(theirs["id"])
    assert after == theirs


def test_a_batch_creates_and_updates_documents_with_exactly_their_lines(sandbox, org):
    client = client_for(sandbox, org)
    existing = next(d for d in stored(sandbox, org) if d["organization_id"] == org.id)
    created = new_document(org, ["x", "y"])
    updated = CrmDocumentWrite(
        existing["id"],
        {"notes": "batched"},
        [line(existing["id"], 0, "Widget")],
        owner={"organization_id": org.id, "user_id": existing["user_id"]},
    )
    client.write_documents(org.id, [created, updated])
    saved = client.get_document(org.id, existing["id"])
    assert saved["notes"] == "batched"
    assert [i["description"] for i in saved["sales_document_items"]] == ["Widget"]
    assert len(client.get_document(org.id, created.document_id)["sales_document_items"]) == 2


def test_a_write_the_database_refuses_is_rejected_and_not_retried(sandbox, org):
    client = client_for(sandbox, org)
    with pytest.raises(RejectedError) as raised:
        client.write_documents(org.id, [new_document(org, ["x"], status="canceled")])
    assert raised.value.details["http_status"] == 400
    assert raised.value.details["code"] == "23514"  # kept for the error log
    assert client.stats.snapshot()["retries"] == {}


def test_a_column_the_crm_lacks_is_refused_before_any_request(sandbox, org):
    client = client_for(sandbox, org)
    client.schema()
    calls = dict(client.stats.snapshot()["calls"])
    with pytest.raises(RejectedError, match="no column customer_tax_id"):
        client.write_documents(org.id, [new_document(org, ["x"], customer_tax_id="SI1")])
    assert client.stats.snapshot()["calls"] == calls


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
    client = client_for(sandbox, org, retry_policy=ONE_SHOT)
    client.directory(org.id).tenancy()  # read before the fault
    faults(sandbox, {"fault": fault, "endpoints": ["GET sales_documents"], "count": 1, **options})
    with pytest.raises(SyncError) as raised:
        client.get_document(org.id, str(uuid.uuid4()))
    assert type(raised.value) in expected
    if isinstance(raised.value, RateLimitedError) and fault != "error_5xx_html":
        assert raised.value.retry_after == 2


@pytest.mark.parametrize(
    "fault", ["error_5xx_html", "opr_code_1", "connection_reset", "malformed_body", "slow"]
)
def test_faults_are_retried(sandbox, org, fault):
    client = client_for(sandbox, org)
    mine = stored(sandbox, org)[0]
    client.directory(org.id).tenancy()
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
    mine = stored(sandbox, org)[0]
    client.directory(org.id).tenancy()
    faults(
        sandbox,
        {
            "fault": "rate_limit_429",
            "endpoints": ["GET sales_documents"],
            "count": 1,
            "retry_after_s": 1,
        },
    )
    assert client.get_document(org.id, mine["id"])["id"] == mine["id"]
    (event,) = client.stats.recent_retries()
    assert event.error_type == "rate_limited" and event.wait_s >= 1.0


def test_bad_key_is_an_auth_error_without_the_key(sandbox, org):
    client = CrmClient(sandbox.crm_url, SECRET, retry_policy=FAST)
    with pytest.raises(AuthError) as raised:
        client.schema()
    error = raised.value
    for text in (str(error), repr(error), repr(error.details), repr(client)):
        assert SECRET not in text
    assert client.stats.snapshot()["calls"] == {"crm GET /": 1}  # not retried


def test_every_query_is_scoped_by_organization_and_none_pages_by_offset(sandbox, org):
    """The sandbox counts document queries without an organization filter, and offsets."""
    client = client_for(sandbox, org)
    requests.post(sandbox.crm_url + "/_sandbox/stats/reset").raise_for_status()
    list(client.list_documents(org.id, page_size=100))
    client.get_document(org.id, str(uuid.uuid4()))
    write = new_document(org, ["scoped"])
    client.write_documents(org.id, [write])
    client.patch_document(org.id, write.document_id, {"status": "paid"})
    assert client.delete_document(org.id, write.document_id)
    sandbox_stats = requests.get(sandbox.crm_url + "/_sandbox/stats").json()
    assert sandbox_stats["queries_without_organization_filter"] == {}
    assert sandbox_stats["reads_with_offset"] == {}
