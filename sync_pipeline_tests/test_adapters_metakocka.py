"""MetakockaClient: the error mapping as a pure table, then everything else over real HTTP.

The integration tests run against the sandbox Metakocka on loopback, with its fault injector
producing the failures the real service and its proxies produce. Waits and timeouts are short
(read/write timeout 0.5 s against 1 s stalls, retry waits of at most 50 ms).
"""

import json
import math
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests

from sync_pipeline.adapters.errors import (
    AmbiguousWriteError,
    AuthError,
    DuplicateExternalIdError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    SyncError,
    TransientError,
)
from sync_pipeline.adapters.retry import RetryPolicy
from sync_pipeline.metakocka.client import MetakockaClient, as_list, mk_timestamp, parse_answer

FAST = RetryPolicy(initial_wait_s=0.01, max_wait_s=0.05)
ONE_SHOT = RetryPolicy(max_attempts=1)
SECRET = "mk-secret-do-not-log-0123"

# -- the mapping table, as pure logic --------------------------------------------------------


def answer(**fields) -> str:
    return json.dumps(fields)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (answer(opr_code="1", opr_desc="Unknown internal server error"), TransientError),
        (answer(opr_code="2", opr_desc="Paramether 'doc_type' is missing"), RejectedError),
        (answer(opr_code="3", opr_desc="Invalid value for secret_key and company_id"), AuthError),
        (answer(opr_code="4", opr_desc="IP address '1.2.3.4' is not allowed"), AuthError),
        (answer(opr_code="5", opr_desc="Quote exceeds"), RateLimitedError),
        (answer(opr_code="6", opr_code_app="12", opr_desc_app="Status is locked"), RejectedError),
        (answer(opr_code="6", opr_desc="Cannot find document sales_order"), NotFoundError),
        # Not found is undocumented: both codes occur (metakocka-api.md section 6)
        (answer(opr_code="2", opr_desc="Cannot find document sales_order"), NotFoundError),
        # ... but a product or partner the request names is a refused write, not a missing doc
        (
            answer(opr_code="2", opr_desc="Product with code art400 not found - unit must be set"),
            RejectedError,
        ),
        (answer(opr_code="2", opr_desc="Cannot find partner with mk_id 16"), RejectedError),
        (answer(opr_code="99", opr_desc="new code"), RejectedError),
        ("<html><body>502 Bad Gateway</body></html>", MalformedResponseError),
        ('{"opr_code":"0","mk_id":"16', MalformedResponseError),
        (answer(result=[]), MalformedResponseError),
    ],
)
def test_answer_mapping_on_reads(body, expected):
    with pytest.raises(SyncError) as raised:
        parse_answer("get_document", 200, body)
    assert type(raised.value) is expected


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "expected"),
    [
        (502, "<html>Bad Gateway</html>", None, TransientError),
        (503, "<html>Unavailable</html>", 3.0, RateLimitedError),
        (429, '{"message":"Too Many Requests"}', 2.0, RateLimitedError),
        (404, "<html>Not Found</html>", None, RejectedError),
    ],
)
def test_http_status_mapping(status, body, retry_after, expected):
    with pytest.raises(SyncError) as raised:
        parse_answer("search", status, body, retry_after=retry_after)
    assert type(raised.value) is expected
    assert getattr(raised.value, "retry_after", None) == retry_after


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (502, "<html>Bad Gateway</html>", AmbiguousWriteError),
        (503, "<html>Unavailable</html>", AmbiguousWriteError),
        (200, '{"opr_code":"0","mk_id":"16', AmbiguousWriteError),
        (200, answer(opr_code="1", opr_desc="Unknown internal server error"), TransientError),
        (200, answer(opr_code="5", opr_desc="Quote exceeds"), RateLimitedError),
        (429, "{}", RateLimitedError),
        (200, answer(opr_code="2", opr_desc="Product with code x not found"), RejectedError),
    ],
)
def test_create_mapping_separates_unknown_outcomes_from_definite_failures(status, body, expected):
    with pytest.raises(SyncError) as raised:
        parse_answer("put_document", status, body, creates=True, retry_after=1.0)
    assert type(raised.value) is expected


@pytest.mark.parametrize(
    "duplicates",
    [
        [{"count_code": "PP-1", "mk_id": "400000000159"}, {"count_code": "PP-2", "mk_id": "42"}],
        {"count_code": "PP-1", "mk_id": "400000000159"},
    ],
    ids=["list", "bare-object"],
)
def test_duplicate_check_answer_carries_existing_ids(duplicates):
    body = answer(
        opr_code="6",
        opr_code_app="7",
        opr_desc_app="Documents with some buyer order already exist",
        duplicate_doc_list=duplicates,
    )
    with pytest.raises(DuplicateExternalIdError) as raised:
        parse_answer("put_document", 200, body, creates=True)
    assert raised.value.existing_ids == [d["mk_id"] for d in as_list(duplicates)]
    assert raised.value.error_type == "rejected"


def test_answer_texts_are_redacted():
    body = answer(opr_code="2", opr_desc=f'bad request {{"secret_key": "{SECRET}"}}')
    with pytest.raises(RejectedError) as raised:
        parse_answer("search", 200, body, secrets=[SECRET])
    assert SECRET not in str(raised.value)
    assert SECRET not in repr(raised.value.details)


def test_mk_timestamp_uses_ljubljana_offsets():
    assert mk_timestamp(datetime(2026, 1, 15, 11, 0, tzinfo=UTC)) == "2026-01-15T12:00:00+01:00"
    assert mk_timestamp(datetime(2026, 7, 15, 11, 0, tzinfo=UTC)) == "2026-07-15T13:00:00+02:00"
    with pytest.raises(ValueError):
        mk_timestamp(datetime(2026, 1, 15, 11, 0))


# -- over HTTP against the sandbox -----------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    from sync_pipeline.sandbox.runner import start_sandbox

    box = start_sandbox(tmp_path_factory.mktemp("mk-sandbox"), documents_per_org=20, reset=True)
    yield box
    box.stop()


@pytest.fixture(autouse=True)
def no_faults(request):
    if "sandbox" not in request.fixturenames:
        yield
        return
    box = request.getfixturevalue("sandbox")
    box.configure_faults("metakocka", {"seed": 0})
    yield
    box.configure_faults("metakocka", {"seed": 0})


@pytest.fixture
def org(sandbox):
    return sandbox.organizations[0]


def client_for(sandbox, org, **overrides) -> MetakockaClient:
    options = {
        "read_timeout_s": 0.5,
        "write_timeout_s": 0.5,
        "connect_timeout_s": 0.5,
        "retry_policy": FAST,
    }
    return MetakockaClient(
        sandbox.metakocka_url,
        org.metakocka_company_id,
        org.metakocka_secret_key,
        **(options | overrides),
    )


def faults(sandbox, *rules, **spec):
    sandbox.configure_faults("metakocka", {"seed": 1, **spec, "rules": list(rules)})


def order(buyer_order: str | None = None, **extra) -> dict:
    """A small valid sales order, with a unique buyer_order unless one is given."""
    return {
        "doc_type": "sales_order",
        "doc_date": "2026-03-02+01:00",
        "buyer_order": buyer_order or f"T{uuid.uuid4().hex[:20]}",
        "partner": {"customer": "Test d.o.o.", "country": "Slovenia", "post_number": "1000"},
        "product_list": [
            {
                "code": "TEST-1",
                "name": "Test",
                "unit": "kos",
                "amount": "2",
                "price": "10.5",
                "tax": "220",
            }
        ],
        **extra,
    }


def wait_until_idle(sandbox, timeout_s: float = 5.0) -> None:
    """Wait until the sandbox has no request in flight (reported by its admin endpoint)."""
    deadline = time.monotonic() + timeout_s
    while requests.get(sandbox.metakocka_url + "/_sandbox/faults").json()["in_flight"]:
        assert time.monotonic() < deadline, "sandbox requests still in flight"
        time.sleep(0.05)


def stored_with(sandbox, org, buyer_order: str) -> list[dict]:
    docs = sandbox.metakocka_state.documents(org.metakocka_company_id)
    return [doc for doc in docs if doc.get("buyer_order") == buyer_order]


def test_search_pages_through_every_document(sandbox, org):
    client = client_for(sandbox, org)
    existing = sum(
        1
        for doc in sandbox.metakocka_state.documents(org.metakocka_company_id)
        if doc["doc_type"] == "sales_order"
    )
    for _ in range(max(0, 250 - existing)):
        client.create_document(order())
    expected = [
        doc["mk_id"]
        for doc in sandbox.metakocka_state.documents(org.metakocka_company_id)
        if doc["doc_type"] == "sales_order"
    ]
    assert len(expected) >= 250

    found = [doc["mk_id"] for doc in client.search("sales_order")]

    assert found == expected
    pages = client.stats.snapshot()["calls"]["metakocka search"]
    assert pages == math.ceil(len(expected) / 100)
    assert all("product_list" in doc for doc in client.search("sales_order", page_size=50))


def test_search_tolerates_metakocka_wire_quirks(sandbox, org):
    """Bare one-element lists, Slovenian decimals and a wrong echoed limit (api §3, §7)."""
    client = client_for(sandbox, org)
    ref = f"Q{uuid.uuid4().hex[:12]}"
    client.create_document(order(ref))
    response = requests.post(sandbox.metakocka_url + "/_sandbox/quirks", json={"enabled": True})
    response.raise_for_status()
    try:
        found = client.find_by_external_ref("sales_order", ref)
        ids = [doc["mk_id"] for doc in client.search("sales_order", page_size=30)]
    finally:
        requests.post(sandbox.metakocka_url + "/_sandbox/quirks", json={"enabled": False})
    assert [doc["buyer_order"] for doc in found] == [ref]
    assert (
        len(ids)
        == len(set(ids))
        == sum(
            1
            for doc in sandbox.metakocka_state.documents(org.metakocka_company_id)
            if doc["doc_type"] == "sales_order"
        )
    )


def test_search_changed_filters_by_last_change(sandbox, org):
    client = client_for(sandbox, org)
    before = datetime.now(UTC) - timedelta(seconds=2)
    created = client.create_document(order())
    changed = [doc["mk_id"] for doc in client.search_changed("sales_order", before)]
    assert created["mk_id"] in changed
    future = datetime.now(UTC) + timedelta(hours=1)
    assert list(client.search_changed("sales_order", future)) == []


@pytest.mark.parametrize("not_found_code", ["2", "6"])
def test_get_document_and_not_found(sandbox, org, not_found_code):
    """Metakocka answers a missing document with opr_code 2 or 6 (undocumented, both occur):
    either is "not found", so a deletion is confirmed and a look-up ends, rather than failing
    for ever as a refused request."""
    requests.post(
        f"{sandbox.metakocka_url}/_sandbox/not_found_code",
        json={"opr_code": not_found_code},
        timeout=10,
    ).raise_for_status()
    client = client_for(sandbox, org)
    created = client.create_document(order())
    doc = client.get_document("sales_order", created["mk_id"])
    assert doc["mk_id"] == created["mk_id"] and doc["count_code"] == created["count_code"]
    with pytest.raises(NotFoundError):
        client.get_document("sales_order", "999999999999")
    assert client.delete_document("sales_order", created["mk_id"]) is True
    assert client.delete_document("sales_order", created["mk_id"]) is False  # already gone


def test_find_by_external_ref_compares_exactly(sandbox, org):
    client = client_for(sandbox, org)
    ref = f"X{uuid.uuid4().hex[:12]}"
    wanted = client.create_document(order(ref))
    client.create_document(order(ref + "-2"))
    client.create_document(order(ref.lower()))
    assert [doc["mk_id"] for doc in client.find_by_external_ref("sales_order", ref)] == [
        wanted["mk_id"]
    ]
    assert client.find_by_external_ref("sales_order", f"none-{uuid.uuid4().hex[:8]}") == []


READ_FAULTS = [
    ("opr_code_1", {}, TransientError),
    ("opr_code_5", {}, RateLimitedError),
    ("rate_limit_429", {"retry_after_s": 2}, RateLimitedError),
    ("timeout_after_commit", {"delay_s": 1.0}, TransientError),
    ("connection_reset", {}, TransientError),
    ("malformed_body", {}, MalformedResponseError),
    ("slow", {"delay_s": 1.0}, TransientError),
]


@pytest.mark.parametrize(("fault", "options", "expected"), READ_FAULTS, ids=lambda v: str(v))
def test_read_faults_map_to_typed_errors_and_are_retried(sandbox, org, fault, options, expected):
    client = client_for(sandbox, org)
    created = client.create_document(order())
    rule = {"fault": fault, "endpoints": ["get_document"], "count": 1, **options}

    faults(sandbox, rule)
    with pytest.raises(SyncError) as raised:
        client_for(sandbox, org, retry_policy=ONE_SHOT).get_document(
            "sales_order", created["mk_id"]
        )
    assert type(raised.value) is expected
    if fault == "rate_limit_429":
        assert raised.value.retry_after == 2

    if fault != "rate_limit_429":  # (its retry would really wait the 2 s it asks for)
        faults(sandbox, rule)
        assert client.get_document("sales_order", created["mk_id"])["mk_id"] == created["mk_id"]
        assert client.stats.snapshot()["retries"] == {"metakocka get_document": 1}


def test_html_5xx_pages_are_transient_and_retry_after_on_503_is_kept(sandbox, org):
    """The sandbox alternates a 502 and a 503 carrying Retry-After."""
    client = client_for(sandbox, org, retry_policy=ONE_SHOT)
    faults(sandbox, {"fault": "error_5xx_html", "endpoints": ["search"], "retry_after_s": 3})
    errors = []
    for _ in range(2):
        with pytest.raises(TransientError) as raised:
            list(client.search("sales_order"))
        errors.append(raised.value)
    assert {type(e) for e in errors} == {TransientError, RateLimitedError}
    assert [e.retry_after for e in errors if isinstance(e, RateLimitedError)] == [3]


def test_rate_limit_retry_after_is_honoured(sandbox, org):
    client = client_for(sandbox, org)
    faults(
        sandbox,
        {"fault": "rate_limit_429", "endpoints": ["search"], "count": 1, "retry_after_s": 1},
    )
    assert list(client.search("sales_order", page_size=5))
    (event,) = client.stats.recent_retries()
    assert event.call == "metakocka search" and event.error_type == "rate_limited"
    assert event.wait_s >= 1.0


def test_retries_give_up_with_the_typed_error(sandbox, org):
    client = client_for(sandbox, org)
    faults(sandbox, {"fault": "opr_code_1", "endpoints": ["search"]})
    with pytest.raises(TransientError):
        list(client.search("sales_order"))
    snapshot = client.stats.snapshot()
    assert snapshot["calls"]["metakocka search"] == FAST.max_attempts
    assert snapshot["retries"]["metakocka search"] == FAST.max_attempts - 1


CREATE_FAULTS = [
    ("error_5xx_html", {}, AmbiguousWriteError),
    ("timeout_after_commit", {"delay_s": 1.0}, AmbiguousWriteError),
    ("connection_reset", {}, AmbiguousWriteError),
    ("malformed_body", {}, AmbiguousWriteError),
    ("opr_code_1", {}, TransientError),
    ("opr_code_5", {}, RateLimitedError),
    ("rate_limit_429", {}, RateLimitedError),
]


@pytest.mark.parametrize(("fault", "options", "expected"), CREATE_FAULTS, ids=lambda v: str(v))
def test_create_is_sent_once_and_reports_an_unknown_outcome(sandbox, org, fault, options, expected):
    client = client_for(sandbox, org)
    payload = order()
    faults(sandbox, {"fault": fault, "endpoints": ["put_document"], "count": 1, **options})
    with pytest.raises(SyncError) as raised:
        client.create_document(payload)
    assert type(raised.value) is expected
    assert client.stats.snapshot()["calls"] == {"metakocka put_document": 1}


def test_create_that_cannot_connect_is_not_ambiguous():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = MetakockaClient(f"http://127.0.0.1:{port}", "16", SECRET, retry_policy=FAST)
    with pytest.raises(TransientError) as raised:
        client.create_document(order())
    assert type(raised.value) is TransientError
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize(("fault", "options", "_"), CREATE_FAULTS, ids=lambda v: str(v))
def test_exactly_once_create_survives_every_fault_with_one_document(
    sandbox, org, fault, options, _
):
    client = client_for(sandbox, org)
    payload = order()
    ref = payload["buyer_order"]
    faults(sandbox, {"fault": fault, "endpoints": ["put_document"], "count": 1, **options})

    document, _created = client.create_document_exactly_once(payload, external_ref=ref)

    (stored,) = stored_with(sandbox, org, ref)
    assert document["mk_id"] == stored["mk_id"]
    assert document["count_code"] == stored["count_code"]


def test_timeout_after_commit_returns_the_document_of_the_first_attempt(sandbox, org):
    client = client_for(sandbox, org)
    payload = order()
    ref = payload["buyer_order"]
    rule = {
        "fault": "timeout_after_commit",
        "endpoints": ["put_document"],
        "count": 1,
        "delay_s": 1.0,
    }
    faults(sandbox, rule)

    document, created = client.create_document_exactly_once(payload, external_ref=ref)

    (stored,) = stored_with(sandbox, org, ref)
    assert document["mk_id"] == stored["mk_id"]
    assert created is False  # found by the lookup, not confirmed by an answer
    calls = client.stats.snapshot()["calls"]
    assert calls["metakocka put_document"] == 1
    assert calls["metakocka search"] == 2  # before the create, and after the timeout


def test_exactly_once_finds_an_existing_document_without_writing(sandbox, org):
    client = client_for(sandbox, org)
    payload = order()
    first = client.create_document(payload)
    document, created = client.create_document_exactly_once(
        payload, external_ref=payload["buyer_order"]
    )
    assert (document["mk_id"], created) == (first["mk_id"], False)
    assert client.stats.snapshot()["calls"]["metakocka put_document"] == 1


def test_exactly_once_creates_when_absent(sandbox, org):
    client = client_for(sandbox, org)
    payload = order()
    document, created = client.create_document_exactly_once(
        payload, external_ref=payload["buyer_order"]
    )
    assert created is True
    assert [d["mk_id"] for d in stored_with(sandbox, org, payload["buyer_order"])] == [
        document["mk_id"]
    ]


def test_exactly_once_survives_a_failing_lookup(sandbox, org):
    client = client_for(sandbox, org)
    payload = order()
    faults(
        sandbox,
        {"fault": "connection_reset", "endpoints": ["search"], "count": 2},
        {
            "fault": "timeout_after_commit",
            "endpoints": ["put_document"],
            "count": 1,
            "delay_s": 1.0,
        },
    )
    client.create_document_exactly_once(payload, external_ref=payload["buyer_order"])
    assert len(stored_with(sandbox, org, payload["buyer_order"])) == 1


@pytest.fixture
def duplicate_check(sandbox, org):
    url = sandbox.metakocka_url + "/_sandbox/duplicate_check"
    body = {"company_id": org.metakocka_company_id}
    requests.post(url, json={**body, "enabled": True}).raise_for_status()
    yield
    requests.post(url, json={**body, "enabled": False}).raise_for_status()


def test_duplicate_check_answer_names_the_existing_document(sandbox, org, duplicate_check):
    client = client_for(sandbox, org)
    payload = order()
    first = client.create_document(payload)
    with pytest.raises(DuplicateExternalIdError) as raised:
        client.create_document(payload)
    assert raised.value.existing_ids == [first["mk_id"]]


def test_exactly_once_answers_a_duplicate_refusal_with_the_existing_document(
    sandbox, org, duplicate_check
):
    """Another writer creates the document between our lookup and our create."""
    payload = order()
    rival = client_for(sandbox, org)

    class RacedClient(MetakockaClient):
        def find_by_external_ref(self, doc_type, buyer_order):
            found = super().find_by_external_ref(doc_type, buyer_order)
            if not found:
                rival.create_document(payload)
            return found

    client = RacedClient(
        sandbox.metakocka_url,
        org.metakocka_company_id,
        org.metakocka_secret_key,
        retry_policy=FAST,
    )
    document, created = client.create_document_exactly_once(
        payload, external_ref=payload["buyer_order"]
    )
    (stored,) = stored_with(sandbox, org, payload["buyer_order"])
    assert (document["mk_id"], created) == (stored["mk_id"], False)


def test_auth_failure_never_shows_the_secret(sandbox, org):
    client = MetakockaClient(
        sandbox.metakocka_url, org.metakocka_company_id, SECRET, retry_policy=FAST
    )
    with pytest.raises(AuthError) as raised:
        client.get_document("sales_order", "1")
    error = raised.value
    assert error.error_type == "auth"
    for text in (str(error), repr(error), repr(error.details), repr(client)):
        assert SECRET not in text
        assert org.metakocka_secret_key not in text
    assert client.stats.snapshot()["calls"] == {"metakocka get_document": 1}  # not retried


def test_replace_is_retried_and_rewrites_the_document(sandbox, org):
    client = client_for(sandbox, org)
    payload = order()
    created = client.create_document(payload)
    faults(sandbox, {"fault": "connection_reset", "endpoints": ["put_document"], "count": 1})
    client.replace_document(created["mk_id"], {**payload, "title": "replaced"})
    (stored,) = stored_with(sandbox, org, payload["buyer_order"])
    assert stored["mk_id"] == created["mk_id"] and stored["title"] == "replaced"


def test_update_and_delete(sandbox, org):
    client = client_for(sandbox, org)
    created = client.create_document(order())
    client.update_document(
        {"doc_type": "sales_order", "mk_id": created["mk_id"], "notes": "updated"}
    )
    assert client.get_document("sales_order", created["mk_id"])["notes"] == "updated"
    with pytest.raises(ValueError):
        client.update_document({"doc_type": "sales_order", "mk_id": "1", "product_add": []})
    assert client.delete_document("sales_order", created["mk_id"]) is True
    assert client.delete_document("sales_order", created["mk_id"]) is False


def test_client_side_limit_keeps_requests_within_the_company_allowance(sandbox, org):
    """The sandbox refuses (opr_code 5) a third concurrent request; the client never sends one."""
    created = client_for(sandbox, org).create_document(order())
    faults(sandbox, max_concurrent=2, latency_ms=100)
    wait_until_idle(sandbox)  # stalled requests of earlier tests still hold server slots

    def fetch_all(client: MetakockaClient) -> list:
        def fetch(_):
            try:
                return client.get_document("sales_order", created["mk_id"])
            except RateLimitedError as exc:
                return exc

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(fetch, range(8)))

    bounded = fetch_all(client_for(sandbox, org, retry_policy=ONE_SHOT))
    assert not [r for r in bounded if isinstance(r, Exception)]
    unbounded = fetch_all(
        client_for(sandbox, org, retry_policy=ONE_SHOT, max_concurrent_requests=8)
    )
    assert [r for r in unbounded if isinstance(r, RateLimitedError)]  # the limit is real


def test_a_create_known_absent_is_sent_without_a_lookup(sandbox, org):
    client = client_for(sandbox, org)
    payload = order()
    document, created = client.create_document_exactly_once(
        payload, external_ref=payload["buyer_order"], known_absent=True
    )
    assert created is True
    assert client.stats.snapshot()["calls"] == {"metakocka put_document": 1}
    assert [d["mk_id"] for d in stored_with(sandbox, org, payload["buyer_order"])] == [
        document["mk_id"]
    ]


def test_a_create_known_absent_still_looks_up_before_it_is_sent_again(sandbox, org):
    client = client_for(sandbox, org)
    payload = order()
    ref = payload["buyer_order"]
    faults(
        sandbox,
        {"fault": "timeout_after_commit", "endpoints": ["put_document"], "count": 1, "delay_s": 1},
    )
    document, created = client.create_document_exactly_once(
        payload, external_ref=ref, known_absent=True
    )
    (stored,) = stored_with(sandbox, org, ref)
    assert (document["mk_id"], created) == (stored["mk_id"], False)  # found, not sent twice
    calls = client.stats.snapshot()["calls"]
    assert calls == {"metakocka put_document": 1, "metakocka search": 1}
