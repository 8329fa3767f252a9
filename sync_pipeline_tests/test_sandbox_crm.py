"""The sandbox CRM speaks PostgREST as fresh-crm.md describes it, over real HTTP.

One sandbox serves the whole module; tests that write use an organization id of their own, so
they never disturb the seeded data other tests read.
"""

from __future__ import annotations

import threading
import time
import uuid
from decimal import ROUND_HALF_UP, Decimal

import pytest
import requests

from sync_pipeline.sandbox.crm_store import CrmState
from sync_pipeline.sandbox.runner import start_sandbox

DOCS = "sales_documents"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with start_sandbox(tmp_path_factory.mktemp("crm"), documents_per_org=40) as sb:
        yield sb


@pytest.fixture(autouse=True)
def no_faults(sandbox):
    sandbox.configure_faults("crm", {})
    yield
    sandbox.configure_faults("crm", {})


@pytest.fixture
def api(sandbox):
    return Api(sandbox.crm_rest_url, sandbox.organizations[0].crm_api_key)


class Api:
    """A thin PostgREST caller: both auth headers on every request."""

    def __init__(self, base: str, key: str) -> None:
        self.base, self.session = base, requests.Session()
        self.session.headers.update({"apikey": key, "Authorization": f"Bearer {key}"})

    def get(self, table, params=None, headers=None, **kw):
        return self.session.get(
            f"{self.base}/{table}",
            params=params,
            headers=headers,
            timeout=kw.pop("timeout", 10),
            **kw,
        )

    def post(self, table, body, params=None, prefer=None, **kw):
        headers = {"Prefer": prefer} if prefer else None
        return self.session.post(
            f"{self.base}/{table}",
            json=body,
            params=params,
            headers=headers,
            timeout=kw.pop("timeout", 10),
            **kw,
        )

    def patch(self, table, params, body, prefer=None):
        return self.session.patch(
            f"{self.base}/{table}",
            params=params,
            json=body,
            headers={"Prefer": prefer} if prefer else None,
            timeout=10,
        )

    def delete(self, table, params, prefer=None):
        return self.session.delete(
            f"{self.base}/{table}",
            params=params,
            headers={"Prefer": prefer} if prefer else None,
            timeout=10,
        )


def new_doc(org_id: str, **extra) -> dict:
    return {
        "organization_id": org_id,
        "document_type": "invoice",
        "document_date": "2026-05-04",
        "customer_name": "Test d.o.o.",
        "status": "draft",
        **extra,
    }


def org_docs(sandbox, n=0):
    org = sandbox.organizations[n]
    return org, sandbox.crm_state.documents(org.id)


# -- auth ---------------------------------------------------------------------------------
def test_auth_needs_apikey_and_matching_bearer_and_never_echoes_the_key(sandbox):
    url = f"{sandbox.crm_rest_url}/{DOCS}"
    key = sandbox.organizations[0].crm_api_key
    other = sandbox.organizations[1].crm_api_key
    for headers in (
        {},
        {"apikey": key},
        {"Authorization": f"Bearer {key}"},
        {"apikey": key, "Authorization": f"Bearer {other}"},
        {"apikey": "not-a-key", "Authorization": "Bearer not-a-key"},
    ):
        r = requests.get(url, headers=headers, timeout=10)
        assert r.status_code == 401, headers
        assert r.json()["code"] == "PGRST301"
        assert key not in r.text and "not-a-key" not in r.text
    ok = requests.get(url, headers={"apikey": key, "Authorization": f"Bearer {key}"}, timeout=10)
    assert ok.status_code == 200


# -- reads --------------------------------------------------------------------------------
def test_every_filter_operator_selects_what_sql_would(sandbox, api):
    org, docs = org_docs(sandbox)
    totals = sorted(d["total_amount"] for d in docs)
    mid = totals[len(totals) // 2]
    some_ids = [d["id"] for d in docs[:3]]
    cases = {
        "eq": ({"total_amount": f"eq.{mid}"}, lambda d: d["total_amount"] == mid),
        "neq": ({"document_type": "neq.invoice"}, lambda d: d["document_type"] != "invoice"),
        "gt": ({"total_amount": f"gt.{mid}"}, lambda d: d["total_amount"] > mid),
        "gte": ({"total_amount": f"gte.{mid}"}, lambda d: d["total_amount"] >= mid),
        "lt": ({"total_amount": f"lt.{mid}"}, lambda d: d["total_amount"] < mid),
        "lte": ({"document_date": "lte.2026-01-01"}, lambda d: d["document_date"] <= "2026-01-01"),
        "in": ({"id": f"in.({','.join(some_ids)})"}, lambda d: d["id"] in some_ids),
        "is.null": ({"due_date": "is.null"}, lambda d: d["due_date"] is None),
        "not.is.null": ({"due_date": "not.is.null"}, lambda d: d["due_date"] is not None),
        "neq skips null": ({"notes": "neq.x"}, lambda d: d["notes"] is not None),
        "or": (
            {"or": "(document_type.eq.offer,and(total_amount.gt.1000,status.eq.paid))"},
            lambda d: (
                d["document_type"] == "offer"
                or (d["total_amount"] > 1000 and d["status"] == "paid")
            ),
        ),
        "ilike": (
            {"customer_name": "ilike.*D.O.O."},
            lambda d: d["customer_name"].lower().endswith("d.o.o."),
        ),
    }
    for name, (params, keep) in cases.items():
        r = api.get(DOCS, {"organization_id": f"eq.{org.id}", "select": "id", **params})
        assert r.status_code == 200, (name, r.text)
        assert {x["id"] for x in r.json()} == {d["id"] for d in docs if keep(d)}, name
        assert any(keep(d) for d in docs), f"case {name} selects nothing: a weak test"


def test_timestamp_filters_compare_instants_not_text(sandbox, api):
    org, docs = org_docs(sandbox)
    cut = sorted(d["updated_at"] for d in docs)[10]
    local = cut.replace("+00:00", "Z")  # same instant, other spelling
    r = api.get(
        DOCS, {"organization_id": f"eq.{org.id}", "updated_at": f"gt.{local}", "select": "id"}
    )
    assert {x["id"] for x in r.json()} == {d["id"] for d in docs if d["updated_at"] > cut}


def test_bad_queries_get_postgrest_errors(api):
    r = api.get(DOCS, {"nonsense": "eq.1"})
    assert (r.status_code, r.json()) == (
        400,
        {
            "code": "42703",
            "message": "column sales_documents.nonsense does not exist",
            "details": None,
            "hint": None,
        },
    )
    for params in (
        {"status": "equals.paid"},
        {"status": "paid"},
        {"id": "in.(a,b"},
        {"or": "document_type.eq.offer"},
        {"limit": "ten"},
    ):
        r = api.get(DOCS, params)
        assert (r.status_code, r.json()["code"]) == (400, "PGRST100"), params
    assert api.get(DOCS, {"id": "eq.not-a-uuid"}).json()["code"] == "22P02"
    assert api.get(DOCS, {"select": "id,nope"}).json()["code"] == "42703"
    assert api.get(DOCS, {"order": "nope.asc"}).json()["code"] == "42703"
    assert api.get("no_such_table").status_code == 404


def test_select_columns_and_embedded_lines(sandbox, api):
    org, docs = org_docs(sandbox)
    by_id = {d["id"]: d for d in docs}
    r = api.get(DOCS, {"organization_id": f"eq.{org.id}", "select": "id,updated_at"})
    assert all(set(row) == {"id", "updated_at"} for row in r.json())

    r = api.get(DOCS, {"organization_id": f"eq.{org.id}", "select": "*,sales_document_items(*)"})
    rows = r.json()
    assert len(rows) == len(docs)
    for row in rows:
        assert row == by_id[row["id"]]  # header and lines, numbers as JSON numbers
        assert all(isinstance(i["quantity"], int | float) for i in row["sales_document_items"])

    r = api.get(
        DOCS, {"id": f"eq.{docs[0]['id']}", "select": "id,lines:sales_document_items(id,quantity)"}
    )
    assert r.json() == [
        {
            "id": docs[0]["id"],
            "lines": [
                {"id": i["id"], "quantity": i["quantity"]} for i in docs[0]["sales_document_items"]
            ],
        }
    ]

    line = docs[0]["sales_document_items"][0]
    r = api.get(
        "sales_document_items",
        {"id": f"eq.{line['id']}", "select": "id,sales_documents(id,organization_id)"},
    )
    assert r.json() == [
        {"id": line["id"], "sales_documents": {"id": docs[0]["id"], "organization_id": org.id}}
    ]


def test_order_by_several_keys_with_nulls(sandbox, api):
    org, docs = org_docs(sandbox)
    r = api.get(
        DOCS,
        {
            "organization_id": f"eq.{org.id}",
            "select": "id",
            "order": "document_type.asc,total_amount.desc,id.asc",
        },
    )
    expected = sorted(docs, key=lambda d: d["id"])
    expected = sorted(expected, key=lambda d: d["total_amount"], reverse=True)
    expected = sorted(expected, key=lambda d: d["document_type"])
    assert [x["id"] for x in r.json()] == [d["id"] for d in expected]

    r = api.get(
        DOCS,
        {
            "organization_id": f"eq.{org.id}",
            "select": "due_date",
            "order": "due_date.desc.nullslast",
        },
    )
    dates = [x["due_date"] for x in r.json()]
    present = [d for d in dates if d is not None]
    assert (
        present == sorted(present, reverse=True)
        and dates[len(present) :] == [None] * (len(dates) - len(present))
        and None in dates
    )

    r = api.get(
        DOCS,
        {
            "organization_id": f"eq.{org.id}",
            "select": "updated_at,id",
            "order": "updated_at.desc,id.desc",
        },
    )
    keys = [(x["updated_at"], x["id"]) for x in r.json()]
    assert keys == sorted(keys, reverse=True)


def test_limit_offset_range_and_content_range(sandbox, api):
    org, docs = org_docs(sandbox)
    n = len(docs)
    base = {"organization_id": f"eq.{org.id}", "select": "id", "order": "updated_at,id"}
    everything = [x["id"] for x in api.get(DOCS, base).json()]
    assert everything == [d["id"] for d in docs]  # documents() is in change order too

    r = api.get(DOCS, {**base, "limit": 10, "offset": 5}, headers={"Prefer": "count=exact"})
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"5-14/{n}"
    assert [x["id"] for x in r.json()] == everything[5:15]

    r = api.get(DOCS, base, headers={"Range": "0-9", "Range-Unit": "items"})
    assert (r.status_code, r.headers["Content-Range"]) == (200, "0-9/*")
    assert [x["id"] for x in r.json()] == everything[:10]

    # limit/offset and a Range header intersect, as in PostgREST: [0, 4) and [2, ...)
    r = api.get(DOCS, {**base, "limit": 4}, headers={"Range": "2-", "Prefer": "count=exact"})
    assert r.headers["Content-Range"] == f"2-3/{n}"

    r = api.get(DOCS, base, headers={"Prefer": "count=exact"})
    assert (r.status_code, r.headers["Content-Range"]) == (200, f"0-{n - 1}/{n}")

    r = api.get(DOCS, {"organization_id": f"eq.{uuid.uuid4()}"}, headers={"Prefer": "count=exact"})
    assert (r.status_code, r.headers["Content-Range"], r.json()) == (200, "*/0", [])

    r = api.get(DOCS, {**base, "offset": n + 5}, headers={"Prefer": "count=exact"})
    assert (r.status_code, r.json()["code"]) == (416, "PGRST103")

    pages, offset = [], 0
    while page := api.get(DOCS, {**base, "limit": 7, "offset": offset}).json():
        pages += [x["id"] for x in page]
        offset += 7
    assert pages == everything

    head = api.session.head(f"{api.base}/{DOCS}", params=base, headers={"Prefer": "count=exact"})
    assert head.headers["Content-Range"].endswith(f"/{n}") and head.content == b""


def test_keyset_paging_on_the_change_cursor_sees_every_document_once(sandbox, api):
    org, docs = org_docs(sandbox)
    seen, cursor = [], None
    while True:
        params = {
            "organization_id": f"eq.{org.id}",
            "select": "id,updated_at",
            "limit": 6,
            "order": "updated_at.asc,id.asc",
        }
        if cursor:
            params["or"] = (
                f"(updated_at.gt.{cursor[0]},and(updated_at.eq.{cursor[0]},id.gt.{cursor[1]}))"
            )
        page = api.get(DOCS, params).json()
        seen += [x["id"] for x in page]
        if len(page) < 6:
            break
        cursor = (page[-1]["updated_at"], page[-1]["id"])
    assert seen == [d["id"] for d in docs]
    newest = api.get(
        DOCS,
        {
            "organization_id": f"eq.{org.id}",
            "select": "id",
            "limit": 2,
            "order": "updated_at.desc,id.desc",
        },
    ).json()
    assert [x["id"] for x in newest] == [d["id"] for d in docs[::-1][:2]]
    between = api.get(
        DOCS,
        {
            "organization_id": f"eq.{org.id}",
            "select": "id",
            "updated_at": f"gte.{docs[3]['updated_at']}",
            "and": f"(updated_at.lt.{docs[7]['updated_at']})",
        },
    ).json()
    assert [x["id"] for x in between] == [d["id"] for d in docs[3:7]]
    either = api.get(
        DOCS,
        {
            "organization_id": f"eq.{org.id}",
            "select": "id",
            "or": (
                f"(updated_at.eq.{docs[9]['updated_at']},updated_at.eq.{docs[2]['updated_at']})"
            ),
        },
    )
    assert [x["id"] for x in either.json()] == [docs[2]["id"], docs[9]["id"]]


def test_single_object_accept_header(sandbox, api):
    org, docs = org_docs(sandbox)
    one = {"Accept": "application/vnd.pgrst.object+json"}
    r = api.get(DOCS, {"id": f"eq.{docs[0]['id']}", "select": "id"}, headers=one)
    assert r.json() == {"id": docs[0]["id"]}
    r = api.get(DOCS, {"organization_id": f"eq.{org.id}"}, headers=one)
    assert (r.status_code, r.json()["code"]) == (406, "PGRST116")


# -- writes -------------------------------------------------------------------------------
def test_insert_fills_defaults_coerces_numbers_and_returns_rows(api):
    org_id = str(uuid.uuid4())
    r = api.post(
        DOCS,
        new_doc(org_id, subtotal_amount="10.005", tax_amount=2.2),
        prefer="return=representation",
    )
    assert r.status_code == 201, r.text
    [row] = r.json()
    assert uuid.UUID(row["id"]) and row["currency"] == "EUR" and row["status"] == "draft"
    assert row["subtotal_amount"] == 10.01 and row["tax_amount"] == 2.2  # numeric(15,2), numbers
    assert row["created_at"] == row["updated_at"]

    quiet = api.post(DOCS, [new_doc(org_id), new_doc(org_id)])
    assert (quiet.status_code, quiet.content) == (201, b"")
    assert len(api.get(DOCS, {"organization_id": f"eq.{org_id}"}).json()) == 3

    line = {
        "document_id": row["id"],
        "description": "Ura dela",
        "quantity": "1.5",
        "unit_price": "40",
        "tax_rate": 22,
    }
    r = api.post("sales_document_items", line, prefer="return=representation")
    assert r.status_code == 201 and r.json()[0]["quantity"] == 1.5
    assert r.json()[0]["unit_price"] == 40.0


def test_updated_at_is_a_strictly_increasing_change_cursor(api):
    org_id = str(uuid.uuid4())
    rows = api.post(
        DOCS, [new_doc(org_id) for _ in range(50)], prefer="return=representation"
    ).json()
    stamps = [r["updated_at"] for r in rows]
    assert stamps == sorted(stamps) and len(set(stamps)) == 50
    r = api.patch(
        DOCS,
        {"id": f"eq.{rows[0]['id']}"},
        {"notes": "x", "updated_at": "2000-01-01"},
        prefer="return=representation",
    )
    assert r.status_code == 200 and r.json()[0]["updated_at"] > stamps[-1]  # server-set
    cursor = api.get(
        DOCS,
        {
            "organization_id": f"eq.{org_id}",
            "order": "updated_at.asc,id.asc",
            "select": "id",
            "updated_at": f"gt.{stamps[-2]}",
        },
    ).json()
    assert [x["id"] for x in cursor] == [rows[-1]["id"], rows[0]["id"]]


def test_cursor_stays_ahead_of_every_timestamp_it_has_seen():
    state = CrmState()
    org_id = str(uuid.uuid4())
    state.insert_document(new_doc(org_id, updated_at="2099-01-01T00:00:00Z"))  # clock skew
    rows = state.insert_rows(DOCS, [new_doc(org_id), new_doc(org_id)])
    assert [r["updated_at"] for r in rows] == [
        "2099-01-01T00:00:00.000001+00:00",
        "2099-01-01T00:00:00.000002+00:00",
    ]


def test_upsert_with_merge_duplicates_is_idempotent(api):
    org_id = str(uuid.uuid4())
    doc = new_doc(org_id, id=str(uuid.uuid4()), notes="first")
    merge = "resolution=merge-duplicates,return=representation"
    first = api.post(DOCS, doc, params={"on_conflict": "id"}, prefer=merge)
    again = api.post(DOCS, doc, params={"on_conflict": "id"}, prefer=merge)
    assert first.status_code == again.status_code == 201
    assert len(api.get(DOCS, {"organization_id": f"eq.{org_id}"}).json()) == 1
    changed = api.post(DOCS, {**doc, "notes": "second"}, prefer=merge).json()[0]
    assert changed["notes"] == "second" and changed["updated_at"] > first.json()[0]["updated_at"]

    dup = api.post(DOCS, doc)
    assert (dup.status_code, dup.json()["code"]) == (409, "23505")
    ignored = api.post(DOCS, {**doc, "notes": "third"}, prefer="resolution=ignore-duplicates")
    assert ignored.status_code == 201
    assert api.get(DOCS, {"id": f"eq.{doc['id']}"}).json()[0]["notes"] == "second"
    r = api.post(DOCS, doc, params={"on_conflict": "document_number"}, prefer=merge)
    assert (r.status_code, r.json()["code"]) == (400, "42P10")


def test_constraint_violations_have_postgres_codes_and_change_nothing(api):
    org_id = str(uuid.uuid4())
    cases = [
        (new_doc(org_id, document_date=None), 400, "23502"),
        ({k: v for k, v in new_doc(org_id).items() if k != "document_date"}, 400, "23502"),
        (new_doc(org_id, document_type="receipt"), 400, "23514"),
        (new_doc(org_id, status="lost"), 400, "23514"),
        (new_doc(org_id, currency="EURO"), 400, "22001"),
        (new_doc(org_id, document_date="yesterday"), 400, "22007"),
        (new_doc(org_id, total_amount="lots"), 400, "22P02"),
        (new_doc(org_id, colour="red"), 400, "PGRST204"),
        ([new_doc(org_id), new_doc(org_id, notes="x")], 400, "PGRST102"),
    ]
    for body, status, code in cases:
        r = api.post(DOCS, body)
        assert (r.status_code, r.json()["code"]) == (status, code), body
        assert "colour" not in r.json()["message"] or code == "PGRST204"
    assert api.get(DOCS, {"organization_id": f"eq.{org_id}"}).json() == []
    batch = [new_doc(org_id), new_doc(org_id, document_type="receipt")]
    assert api.post(DOCS, batch).status_code == 400  # all or nothing
    assert api.get(DOCS, {"organization_id": f"eq.{org_id}"}).json() == []

    orphan = {
        "document_id": str(uuid.uuid4()),
        "description": "x",
        "quantity": 1,
        "unit_price": 1,
        "tax_rate": 22,
    }
    r = api.post("sales_document_items", orphan)
    assert (r.status_code, r.json()["code"]) == (409, "23503")
    no_rate = {k: v for k, v in orphan.items() if k != "tax_rate"}
    assert api.post("sales_document_items", no_rate).json()["code"] == "23502"
    bad = api.session.post(f"{api.base}/{DOCS}", data=b"{not json", timeout=10)
    assert (bad.status_code, bad.json()["code"]) == (400, "PGRST102")


def test_patch_and_delete_with_filters_and_cascade(api):
    org_id = str(uuid.uuid4())
    docs = api.post(
        DOCS,
        [new_doc(org_id, document_type=t) for t in ("offer", "order", "offer")],
        prefer="return=representation",
    ).json()
    line = {
        "document_id": docs[0]["id"],
        "description": "x",
        "quantity": 2,
        "unit_price": 3,
        "tax_rate": 22,
    }
    lines = api.post("sales_document_items", [line, line], prefer="return=representation").json()
    line_ids = f"in.({','.join(x['id'] for x in lines)})"

    r = api.patch(
        DOCS,
        {"organization_id": f"eq.{org_id}", "document_type": "eq.offer"},
        {"status": "sent"},
        prefer="return=representation",
    )
    assert r.status_code == 200 and {x["status"] for x in r.json()} == {"sent"}
    assert len(r.json()) == 2
    assert api.patch(DOCS, {"id": f"eq.{docs[1]['id']}"}, {"notes": "n"}).status_code == 204
    r = api.patch(DOCS, {"id": f"eq.{docs[1]['id']}"}, {"status": "lost"})
    assert (r.status_code, r.json()["code"]) == (400, "23514")

    r = api.delete(DOCS, {"id": f"eq.{docs[0]['id']}"}, prefer="return=representation")
    assert r.status_code == 200 and r.json()[0]["id"] == docs[0]["id"]
    assert api.get("sales_document_items", {"document_id": f"eq.{docs[0]['id']}"}).json() == []
    assert api.get("sales_document_items", {"id": line_ids}).json() == []
    assert api.get("sales_document_items", {"description": "eq.x", "id": line_ids}).json() == []
    assert api.delete(DOCS, {"id": f"eq.{docs[1]['id']}"}).status_code == 204
    assert [x["id"] for x in api.get(DOCS, {"organization_id": f"eq.{org_id}"}).json()] == [
        docs[2]["id"]
    ]

    for call in (lambda: api.patch(DOCS, {}, {"notes": "all"}), lambda: api.delete(DOCS, {})):
        r = call()
        assert (r.status_code, r.json()["code"]) == (400, "21000")


def test_writing_a_line_moves_its_document_in_the_change_cursor(api):
    org_id = str(uuid.uuid4())
    doc = api.post(DOCS, new_doc(org_id), prefer="return=representation").json()[0]
    line = {
        "document_id": doc["id"],
        "description": "x",
        "quantity": 1,
        "unit_price": 5,
        "tax_rate": 9.5,
    }
    api.post("sales_document_items", line)
    after = api.get(DOCS, {"id": f"eq.{doc['id']}"}).json()[0]
    assert after["updated_at"] > doc["updated_at"]


# -- load and faults ----------------------------------------------------------------------
def test_over_the_concurrency_cap_answers_429_with_retry_after(sandbox, api):
    sandbox.configure_faults(
        "crm",
        {
            "max_concurrent": 1,
            "rules": [
                {"fault": "slow", "delay_s": 0.6, "endpoints": ["GET sales_documents"], "count": 1}
            ],
        },
    )
    results = []
    slow = threading.Thread(target=lambda: results.append(api.get(DOCS, {"limit": 1})))
    slow.start()
    time.sleep(0.2)
    other_key = Api(sandbox.crm_rest_url, sandbox.organizations[1].crm_api_key)
    assert other_key.get(DOCS, {"limit": 1}).status_code == 200  # the cap is per key
    r = api.get(DOCS, {"limit": 1})
    slow.join()
    assert r.status_code == 429 and float(r.headers["Retry-After"]) > 0
    assert set(r.json()) == {"code", "message", "details", "hint"}
    assert results[0].status_code == 200
    assert api.get(DOCS, {"limit": 1}).status_code == 200


def test_each_fault_kind_shows_as_the_real_failure(sandbox, api):
    def with_rule(**rule):
        sandbox.configure_faults("crm", {"rules": [{"endpoints": ["GET sales_documents"], **rule}]})

    with_rule(fault="error_5xx_html")
    first, second = api.get(DOCS), api.get(DOCS)
    assert first.status_code == 502 and first.headers["content-type"].startswith("text/html")
    assert second.status_code == 503 and "Retry-After" in second.headers

    for kind in ("rate_limit_429", "opr_code_5"):
        with_rule(fault=kind, retry_after_s=2)
        r = api.get(DOCS)
        assert (r.status_code, r.headers["Retry-After"]) == (429, "2")

    with_rule(fault="opr_code_1")
    r = api.get(DOCS)
    assert (r.status_code, r.json()["code"]) == (500, "XX000")

    with_rule(fault="connection_reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        api.get(DOCS)

    with_rule(fault="malformed_body")
    r = api.get(DOCS)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()

    with_rule(fault="slow", delay_s=0.4)
    started = time.monotonic()
    assert api.get(DOCS, {"limit": 1}).status_code == 200
    assert time.monotonic() - started >= 0.4

    with_rule(fault="rate_limit_429", count=1)
    assert [api.get(DOCS, {"limit": 1}).status_code for _ in range(3)] == [429, 200, 200]
    assert api.post(DOCS, new_doc(str(uuid.uuid4()))).status_code == 201  # other endpoint


def test_timeout_after_commit_stores_the_write_then_stalls(sandbox, api):
    org_id = str(uuid.uuid4())
    sandbox.configure_faults(
        "crm",
        {
            "rules": [
                {
                    "fault": "timeout_after_commit",
                    "delay_s": 1.0,
                    "endpoints": ["POST sales_documents"],
                }
            ]
        },
    )
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.post(DOCS, new_doc(org_id, notes="ambiguous"), timeout=0.3)
    sandbox.configure_faults("crm", {})
    rows = api.get(DOCS, {"organization_id": f"eq.{org_id}"}).json()
    assert [r["notes"] for r in rows] == ["ambiguous"]


# -- admin --------------------------------------------------------------------------------
def test_admin_faults_stats_and_ui_edit(sandbox, api):
    admin = sandbox.crm_url + "/_sandbox"
    spec = {"seed": 3, "rules": [{"fault": "slow", "delay_s": 0.01}]}
    assert requests.post(f"{admin}/faults", json=spec, timeout=10).json()["seed"] == 3
    assert requests.get(f"{admin}/faults", timeout=10).json()["rules"][0]["fault"] == "slow"
    assert (
        requests.post(
            f"{admin}/faults", json={"rules": [{"fault": "nope"}]}, timeout=10
        ).status_code
        == 400
    )
    sandbox.configure_faults("crm", {})

    requests.post(f"{admin}/stats/reset", timeout=10)
    org, docs = org_docs(sandbox)
    api.get(DOCS, {"organization_id": f"eq.{org.id}"})
    api.get(DOCS)  # not scoped by organization: reported
    api.patch(DOCS, {"id": f"eq.{uuid.uuid4()}"}, {"notes": "nobody"})
    stats = requests.get(f"{admin}/stats", timeout=10).json()
    assert stats["calls"] == {"GET sales_documents": 2, "PATCH sales_documents": 1}
    assert stats["writes"] == 1
    assert stats["queries_without_organization_filter"] == {
        "GET sales_documents": 1,
        "PATCH sales_documents": 1,
    }
    assert org.crm_api_key not in str(stats)

    doc = docs[-1]
    lines = [
        {
            "description": "Popravilo",
            "quantity": 3,
            "unit_price": "10.333",
            "discount_percent": 10,
            "tax_rate": 9.5,
        }
    ]
    r = requests.post(
        f"{admin}/edit",
        json={"id": doc["id"], "changes": {"notes": "edited in the UI", "items": lines}},
        timeout=10,
    )
    edited = r.json()
    assert r.status_code == 200 and edited["notes"] == "edited in the UI"
    assert edited["updated_at"] > doc["updated_at"]
    net = (Decimal(3) * Decimal("10.333") * Decimal("0.9")).quantize(Decimal("0.01"), ROUND_HALF_UP)
    tax = (net * Decimal("0.095")).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert edited["subtotal_amount"] == float(net) and edited["tax_amount"] == float(tax)
    assert edited["total_amount"] == float(net + tax)
    assert [i["total_amount"] for i in edited["sales_document_items"]] == [float(net)]
    missing = requests.post(
        f"{admin}/edit", json={"id": str(uuid.uuid4()), "changes": {}}, timeout=10
    )
    assert missing.status_code == 404
