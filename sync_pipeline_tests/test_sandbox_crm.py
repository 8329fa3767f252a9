"""The sandbox CRM speaks PostgREST as Supabase runs it, over the CRM's published schema, over
real HTTP (fresh-crm.md; PostgREST's docs and source, as cited in the sandbox's modules).

One sandbox serves the whole module; tests that write use an organization of their own (created
through the Python API, since an organization id must exist: the foreign key says so), so they
never disturb the seeded data other tests read.
"""

from __future__ import annotations

import threading
import time
import uuid
from decimal import ROUND_HALF_UP, Decimal

import pytest
import requests

from sync_pipeline.sandbox.crm_ddl import PROFILES
from sync_pipeline.sandbox.crm_store import CrmState
from sync_pipeline.sandbox.runner import start_sandbox

DOCS, ITEMS = "sales_documents", "sales_document_items"


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


def new_org(state: CrmState) -> tuple[str, str]:
    """A fresh organization with one member: (organization id, user id)."""
    org_id, user_id = str(uuid.uuid4()), str(uuid.uuid4())
    state.insert("auth.users", [{"id": user_id}])
    state.insert("organizations", [{"id": org_id, "name": "Test"}])
    state.insert("organization_members", [{"organization_id": org_id, "user_id": user_id}])
    return org_id, user_id


def new_doc(org_id: str, user_id: str, **extra) -> dict:
    return {
        "organization_id": org_id,
        "user_id": user_id,
        "document_type": "invoice",
        "document_date": "2026-05-04",
        "customer_name": "Test d.o.o.",
        "status": "draft",
        **extra,
    }


def org_docs(sandbox, n=0):
    """The organization's documents that carry its organization_id (the seed also gives it
    documents it owns only through a member, with organization_id NULL)."""
    org = sandbox.organizations[n]
    docs = [d for d in sandbox.crm_state.documents(org.id) if d["organization_id"] == org.id]
    return org, docs


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


# -- the schema's description -------------------------------------------------------------
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_openapi_root_describes_every_public_table_as_postgrest_does(profile):
    with start_sandbox(None, documents_per_org=4, crm_profile=profile) as sb:
        api = Api(sb.crm_rest_url, sb.organizations[0].crm_api_key)
        r = api.session.get(sb.crm_rest_url + "/", timeout=10)
        assert r.status_code == 200 and r.headers["content-type"].startswith(
            "application/openapi+json"
        )
        doc = r.json()
        assert doc["swagger"] == "2.0"
        public = {t.name: t for t in PROFILES[profile] if t.schema == "public"}
        assert set(doc["definitions"]) == set(public)
        for name, table in public.items():
            definition = doc["definitions"][name]
            assert list(definition["properties"]) == [c.name for c in table.columns]
            assert definition["required"] == [c.name for c in table.columns if not c.nullable]
        items = doc["definitions"][ITEMS]["properties"]
        parent = "document_id" if profile == "sm60" else "sales_document_id"
        assert items[parent]["format"] == "uuid"
        assert "<fk table='sales_documents' column='id'/>" in items[parent]["description"]
        assert doc["definitions"][DOCS]["properties"]["id"]["description"].endswith("<pk/>")
        assert "/rpc/sync_pipeline_crm_setup" not in doc["paths"]
        missing = api.post("rpc/sync_pipeline_crm_setup", {})
        assert (missing.status_code, missing.json()["code"]) == (404, "PGRST202")

        sb.crm_state.install_setup()
        assert (
            "/rpc/sync_pipeline_crm_setup" in api.session.get(sb.crm_rest_url + "/").json()["paths"]
        )
        answer = api.post("rpc/sync_pipeline_crm_setup", {})
        assert answer.json() == {"version": 1, "updated_at_trigger": True, "line_trigger": True}


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


def test_documents_belong_by_organization_id_or_by_a_member_owner(sandbox, api):
    org = sandbox.organizations[0]
    state = sandbox.crm_state
    members = [
        m["user_id"] for m in state.tables["organization_members"].rows.values()
        if m["organization_id"] == org.id
    ]  # fmt: skip
    mine = {d["id"] for d in state.documents(org.id)}
    by_org = api.get(DOCS, {"organization_id": f"eq.{org.id}", "select": "id"}).json()
    by_owner = api.get(
        DOCS,
        {"organization_id": "is.null", "user_id": f"in.({','.join(members)})", "select": "id"},
    ).json()
    assert {x["id"] for x in by_org} | {x["id"] for x in by_owner} == mine
    assert by_org and by_owner  # the seed has both kinds


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
    assert api.get(DOCS, {"select": "id,clients(*)"}).json()["code"] == "PGRST200"
    missing = api.get("no_such_table")
    assert (missing.status_code, missing.json()["code"]) == (404, "PGRST205")
    assert api.get("users").json()["code"] == "PGRST205"  # auth.users is not exposed


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

    doc = docs[0]
    r = api.get(
        DOCS, {"id": f"eq.{doc['id']}", "select": "id,lines:sales_document_items(id,quantity)"}
    )
    assert r.json() == [
        {
            "id": doc["id"],
            "lines": [{"id": i["id"], "quantity": i["quantity"]} for i in doc[ITEMS]],
        }
    ]
    r = api.get(
        DOCS,
        {
            "id": f"eq.{doc['id']}",
            "select": "id,sales_document_items(id)",
            "sales_document_items.order": "id.desc",
            "sales_document_items.limit": "1",
        },
    )
    assert r.json()[0][ITEMS] == [{"id": max(i["id"] for i in doc[ITEMS])}]

    line = doc[ITEMS][0]
    r = api.get(ITEMS, {"id": f"eq.{line['id']}", "select": "id,sales_documents(id,user_id)"})
    assert r.json() == [
        {"id": line["id"], "sales_documents": {"id": doc["id"], "user_id": doc["user_id"]}}
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

    head = api.session.head(f"{api.base}/{DOCS}", params=base, headers={"Prefer": "count=exact"})
    assert head.headers["Content-Range"].endswith(f"/{n}") and head.content == b""


def test_max_rows_cuts_pages_and_embedded_lists_silently(tmp_path):
    """Supabase's db-max-rows: a page of 1,000 asked for comes back as max-rows rows with a 200
    and no total; each embedded list is cut the same way (PostgREST issue #2776)."""
    with start_sandbox(None, documents_per_org=60, crm_max_rows=7) as sb:
        org = sb.organizations[0]
        api = Api(sb.crm_rest_url, org.crm_api_key)
        state = sb.crm_state
        docs = [d for d in state.documents(org.id) if d["organization_id"] == org.id]
        r = api.get(DOCS, {"organization_id": f"eq.{org.id}", "select": "id", "limit": 1000})
        assert (r.status_code, len(r.json()), r.headers["Content-Range"]) == (200, 7, "0-6/*")
        counted = api.get(
            DOCS, {"organization_id": f"eq.{org.id}", "limit": 1000},
            headers={"Prefer": "count=exact"},
        )  # fmt: skip
        assert (counted.status_code, counted.headers["Content-Range"]) == (
            206,
            f"0-6/{len(docs)}",
        )
        doc = docs[0]
        many = [{"description": f"L{i}", "quantity": 1, "unit_price": 1} for i in range(12)]
        state.edit_document(doc["id"], {}, many)
        r = api.get(DOCS, {"id": f"eq.{doc['id']}", "select": "id,sales_document_items(id)"})
        assert r.status_code == 200 and len(r.json()[0][ITEMS]) == 7  # of 12, no sign of it
        lines = api.get(
            ITEMS, {"document_id": f"eq.{doc['id']}"}, headers={"Prefer": "count=exact"}
        )
        assert (len(lines.json()), lines.headers["Content-Range"]) == (7, "0-6/12")


def test_a_request_line_over_8_kb_is_refused_with_414(sandbox, api):
    ids = ",".join(str(uuid.uuid4()) for _ in range(230))  # 230 uuids: about 8.5 KB
    r = api.get(DOCS, {"id": f"in.({ids})"})
    assert r.status_code == 414
    ids = ",".join(str(uuid.uuid4()) for _ in range(200))
    assert api.get(DOCS, {"id": f"in.({ids})"}).status_code == 200


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
                f'(updated_at.gt."{cursor[0]}",and(updated_at.eq."{cursor[0]}",id.gt.{cursor[1]}))'
            )
        page = api.get(DOCS, params).json()
        if not page:
            break
        seen += [x["id"] for x in page]
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


def test_single_object_accept_header(sandbox, api):
    org, docs = org_docs(sandbox)
    one = {"Accept": "application/vnd.pgrst.object+json"}
    r = api.get(DOCS, {"id": f"eq.{docs[0]['id']}", "select": "id"}, headers=one)
    assert r.json() == {"id": docs[0]["id"]}
    r = api.get(DOCS, {"organization_id": f"eq.{org.id}"}, headers=one)
    assert (r.status_code, r.json()["code"]) == (406, "PGRST116")


# -- writes -------------------------------------------------------------------------------
def test_insert_fills_defaults_coerces_numbers_and_returns_rows(sandbox, api):
    org_id, user = new_org(sandbox.crm_state)
    r = api.post(
        DOCS, new_doc(org_id, user, total_amount="10.005", tax_amount=2.2),
        prefer="return=representation",
    )  # fmt: skip
    assert r.status_code == 201, r.text
    [row] = r.json()
    assert uuid.UUID(row["id"]) and row["currency"] == "EUR" and row["status"] == "draft"
    assert row["total_amount"] == 10.01 and row["tax_amount"] == 2.2  # numeric(15,2), numbers
    assert row["created_at"] == row["updated_at"]

    quiet = api.post(DOCS, [new_doc(org_id, user), new_doc(org_id, user)])
    assert (quiet.status_code, quiet.content) == (201, b"")
    assert len(api.get(DOCS, {"organization_id": f"eq.{org_id}"}).json()) == 3

    line = {"document_id": row["id"], "description": "Ura dela", "quantity": "1.5",
            "unit_price": "40.125", "tax_rate": 22}  # fmt: skip
    r = api.post(ITEMS, line, prefer="return=representation")
    assert r.status_code == 201 and r.json()[0]["quantity"] == 1.5
    assert r.json()[0]["unit_price"] == 40.13  # numeric(15,2): the CRM keeps two decimals


def test_columns_parameter_and_missing_default(sandbox, api):
    """A bulk insert's objects must share their keys, unless ``columns=`` names the columns:
    then a missing key is NULL, or the default under ``Prefer: missing=default``."""
    org_id, user = new_org(sandbox.crm_state)
    a = new_doc(org_id, user, notes="a")
    b = {k: v for k, v in new_doc(org_id, user).items() if k != "status"}
    r = api.post(DOCS, [a, b])
    assert (r.status_code, r.json()["code"]) == (400, "PGRST102")
    columns = {"columns": ",".join(a)}
    r = api.post(DOCS, [a, b], params=columns)
    assert (r.status_code, r.json()["code"]) == (400, "23502")  # status NULL, not 'draft'
    r = api.post(DOCS, [a, b], params=columns, prefer="missing=default,return=representation")
    assert r.status_code == 201 and [x["status"] for x in r.json()] == ["draft", "draft"]
    assert r.json()[1]["notes"] is None


def test_updated_at_moves_only_when_written_unless_the_setup_is_installed():
    """No trigger maintains updated_at in the CRM (fresh-crm.md 1.1): it is the insert's default
    and then whatever writers set. With docs/crm-setup.sql installed, every write of a document
    or of one of its lines moves it to now()."""
    state = CrmState(["k"])
    org_id, user = new_org(state)
    [doc] = state.insert(DOCS, [new_doc(org_id, user)])
    first = doc["updated_at"]
    state.run(lambda stmt: stmt.update(DOCS, [doc], {"notes": "edited"}))
    assert doc["updated_at"] == first
    state.insert(ITEMS, [{"document_id": doc["id"], "description": "x"}])
    assert doc["updated_at"] == first
    state.run(lambda stmt: stmt.update(DOCS, [doc], {"updated_at": "2020-01-01T00:00:00+00:00"}))
    assert doc["updated_at"] == "2020-01-01T00:00:00+00:00"  # a writer may set any value

    state.install_setup()
    state.run(lambda stmt: stmt.update(DOCS, [doc], {"updated_at": "2020-01-01T00:00:00+00:00"}))
    touched = doc["updated_at"]
    assert touched > first
    state.insert(ITEMS, [{"document_id": doc["id"], "description": "y"}])
    assert doc["updated_at"] > touched
    before_delete = doc["updated_at"]
    state.run(lambda stmt: stmt.delete(ITEMS, state.items_of(doc["id"])[:1]))
    assert doc["updated_at"] > before_delete


def test_now_stays_ahead_of_every_timestamp_it_has_seen():
    state = CrmState()
    org_id, user = new_org(state)
    skewed = {**new_doc(org_id, user), "id": str(uuid.uuid4())}
    skewed["updated_at"] = "2099-01-01T00:00:00+00:00"  # a clock that ran ahead
    state.load(DOCS, [{**state.blank_row(DOCS), **skewed}])
    first = state.insert(DOCS, [new_doc(org_id, user), new_doc(org_id, user)])
    second = state.insert(DOCS, [new_doc(org_id, user)])
    assert [r["updated_at"] for r in first] == ["2099-01-01T00:00:00.000001+00:00"] * 2
    assert second[0]["updated_at"] == "2099-01-01T00:00:00.000002+00:00"


def test_upsert_with_merge_duplicates_is_idempotent(sandbox, api):
    org_id, user = new_org(sandbox.crm_state)
    doc = new_doc(org_id, user, id=str(uuid.uuid4()), notes="first", document_number="R-1")
    merge = "resolution=merge-duplicates,return=representation"
    first = api.post(DOCS, doc, params={"on_conflict": "id"}, prefer=merge)
    again = api.post(DOCS, doc, params={"on_conflict": "id"}, prefer=merge)
    assert (first.status_code, again.status_code) == (201, 200)  # 200: nothing was inserted
    assert len(api.get(DOCS, {"organization_id": f"eq.{org_id}"}).json()) == 1
    changed = api.post(DOCS, {**doc, "notes": "second"}, prefer=merge).json()[0]
    assert changed["notes"] == "second"

    dup = api.post(DOCS, doc)
    assert (dup.status_code, dup.json()["code"]) == (409, "23505")
    ignored = api.post(
        DOCS, {**doc, "notes": "third"}, prefer="resolution=ignore-duplicates,return=representation"
    )
    assert (ignored.status_code, ignored.json()) == (201, [])  # only inserted rows come back
    assert api.get(DOCS, {"id": f"eq.{doc['id']}"}).json()[0]["notes"] == "second"
    r = api.post(DOCS, doc, params={"on_conflict": "document_number"}, prefer=merge)
    assert (r.status_code, r.json()["code"]) == (400, "42P10")
    by_number = {"on_conflict": "user_id,document_type,document_number"}
    r = api.post(DOCS, {**doc, "notes": "by number"}, params=by_number, prefer=merge)
    assert (r.status_code, r.json()[0]["notes"]) == (200, "by number")  # that UNIQUE's target
    unnumbered = {**doc, "id": str(uuid.uuid4()), "document_number": None}
    assert api.post(DOCS, unnumbered, params=by_number, prefer=merge).status_code == 201
    assert api.post(DOCS, unnumbered, params=by_number, prefer=merge).json()["code"] == "23505"
    # NULL numbers never conflict on that target, so the second one collides on the key


def test_constraint_violations_have_postgres_codes_and_change_nothing(sandbox, api):
    org_id, user = new_org(sandbox.crm_state)
    cases = [
        (new_doc(org_id, user, document_date=None), 400, "23502"),
        ({k: v for k, v in new_doc(org_id, user).items() if k != "user_id"}, 400, "23502"),
        (new_doc(org_id, user, document_type="credit_note"), 400, "23514"),
        (new_doc(org_id, user, status="canceled"), 400, "23514"),
        (new_doc(org_id, str(uuid.uuid4())), 409, "23503"),
        (new_doc(org_id, user, document_date="yesterday"), 400, "22007"),
        (new_doc(org_id, user, total_amount="lots"), 400, "22P02"),
        (new_doc(org_id, user, customer_tax_id="SI123"), 400, "PGRST204"),
        ([new_doc(org_id, user), new_doc(org_id, user, notes="x")], 400, "PGRST102"),
    ]
    for body, status, code in cases:
        r = api.post(DOCS, body)
        assert (r.status_code, r.json()["code"]) == (status, code), body
    assert api.get(DOCS, {"organization_id": f"eq.{org_id}"}).json() == []
    batch = [new_doc(org_id, user), new_doc(org_id, user, document_type="receipt")]
    assert api.post(DOCS, batch).status_code == 400  # all or nothing
    assert api.get(DOCS, {"organization_id": f"eq.{org_id}"}).json() == []

    orphan = {"document_id": str(uuid.uuid4()), "description": "x"}
    r = api.post(ITEMS, orphan)
    assert (r.status_code, r.json()["code"]) == (409, "23503")
    assert api.post(ITEMS, {"description": "x"}).json()["code"] == "23502"
    assert api.post(ITEMS, {**orphan, "product_code": "A"}).json()["code"] == "PGRST204"
    bad = api.session.post(f"{api.base}/{DOCS}", data=b"{not json", timeout=10)
    assert (bad.status_code, bad.json()["code"]) == (400, "PGRST102")


def test_patch_and_delete_with_filters_and_cascade(sandbox, api):
    org_id, user = new_org(sandbox.crm_state)
    docs = api.post(
        DOCS,
        [new_doc(org_id, user, document_type=t, document_number=t) for t in ("offer", "order")]
        + [new_doc(org_id, user, document_type="offer", document_number="2")],
        prefer="return=representation",
    ).json()
    line = {"document_id": docs[0]["id"], "description": "x", "quantity": 2, "unit_price": 3}
    lines = api.post(ITEMS, [line, line], prefer="return=representation").json()
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
    nobody = api.patch(DOCS, {"id": f"eq.{uuid.uuid4()}"}, {"notes": "n"}, "return=representation")
    assert (nobody.status_code, nobody.json()) == (200, [])  # no match is no error
    r = api.patch(DOCS, {"id": f"eq.{docs[1]['id']}"}, {"status": "lost"})
    assert (r.status_code, r.json()["code"]) == (400, "23514")

    r = api.delete(DOCS, {"id": f"eq.{docs[0]['id']}"}, prefer="return=representation")
    assert r.status_code == 200 and r.json()[0]["id"] == docs[0]["id"]
    assert api.get(ITEMS, {"document_id": f"eq.{docs[0]['id']}"}).json() == []
    assert api.get(ITEMS, {"id": line_ids}).json() == []
    assert api.delete(DOCS, {"id": f"eq.{docs[1]['id']}"}).status_code == 204
    assert [x["id"] for x in api.get(DOCS, {"organization_id": f"eq.{org_id}"}).json()] == [
        docs[2]["id"]
    ]

    for call in (lambda: api.patch(DOCS, {}, {"notes": "all"}), lambda: api.delete(DOCS, {})):
        r = call()
        assert (r.status_code, r.json()["code"]) == (400, "21000")


def test_fixed10_profile_keys_lines_by_sales_document_id():
    with start_sandbox(None, documents_per_org=6, crm_profile="fixed10") as sb:
        org = sb.organizations[0]
        api = Api(sb.crm_rest_url, org.crm_api_key)
        select = "id,contact_name,sales_document_items(sales_document_id,sort_order)"
        docs = api.get(DOCS, {"organization_id": f"eq.{org.id}", "select": select}).json()
        assert docs and all(i["sales_document_id"] == d["id"] for d in docs for i in d[ITEMS])
        r = api.get(ITEMS, {"document_id": f"eq.{docs[0]['id']}"})
        assert (r.status_code, r.json()["code"]) == (400, "42703")
        assert api.get(DOCS, {"select": "customer_name"}).json()["code"] == "42703"


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
    org_id, user = new_org(sandbox.crm_state)
    assert api.post(DOCS, new_doc(org_id, user)).status_code == 201  # other endpoint


def test_timeout_after_commit_stores_the_write_then_stalls(sandbox, api):
    org_id, user = new_org(sandbox.crm_state)
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
        api.post(DOCS, new_doc(org_id, user, notes="ambiguous"), timeout=0.3)
    sandbox.configure_faults("crm", {})
    rows = api.get(DOCS, {"organization_id": f"eq.{org_id}"}).json()
    assert [r["notes"] for r in rows] == ["ambiguous"]


# -- admin --------------------------------------------------------------------------------
def test_admin_faults_config_stats_and_ui_edit(sandbox, api):
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
    config = requests.get(f"{admin}/config", timeout=10).json()
    assert config == {"profile": "sm60", "max_rows": 1000, "setup_installed": False}
    assert requests.post(f"{admin}/config", json={"max_rows": 0}, timeout=10).status_code == 400

    requests.post(f"{admin}/stats/reset", timeout=10)
    org, docs = org_docs(sandbox)
    api.get(DOCS, {"organization_id": f"eq.{org.id}"})
    api.get(DOCS)  # not scoped by organization: reported
    api.get(DOCS, {"organization_id": f"eq.{org.id}", "offset": 5})  # paged by offset: reported
    api.patch(DOCS, {"id": f"eq.{uuid.uuid4()}"}, {"notes": "nobody"})
    stats = requests.get(f"{admin}/stats", timeout=10).json()
    assert stats["calls"] == {"GET sales_documents": 3, "PATCH sales_documents": 1}
    assert stats["writes"] == 1
    assert stats["queries_without_organization_filter"] == {
        "GET sales_documents": 1,
        "PATCH sales_documents": 1,
    }
    assert stats["reads_with_offset"] == {"GET sales_documents": 1}
    assert org.crm_api_key not in str(stats)

    doc = docs[-1]
    lines = [{"description": "Popravilo", "quantity": 3, "unit_price": "10.33",
              "metadata": {"discount": 10}, "tax_rate": 9.5}]  # fmt: skip
    r = requests.post(
        f"{admin}/edit",
        json={"id": doc["id"], "changes": {"notes": "edited in the UI"}, "items": lines},
        timeout=10,
    )
    edited = r.json()
    assert r.status_code == 200 and edited["notes"] == "edited in the UI"
    assert edited["updated_at"] > doc["updated_at"]  # the CRM's editor sets it
    net = (Decimal(3) * Decimal("10.33") * Decimal("0.9")).quantize(Decimal("0.01"), ROUND_HALF_UP)
    tax = (net * Decimal("0.095")).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert edited["tax_amount"] == float(tax) and edited["total_amount"] == float(net + tax)
    assert [i["total_amount"] for i in edited[ITEMS]] == [float(net + tax)]
    quiet = requests.post(
        f"{admin}/edit",
        json={"id": doc["id"], "changes": {"status": "paid"}, "sets_updated_at": False},
        timeout=10,
    ).json()
    assert quiet["status"] == "paid" and quiet["updated_at"] == edited["updated_at"]
    missing = requests.post(
        f"{admin}/edit", json={"id": str(uuid.uuid4()), "changes": {}}, timeout=10
    )
    assert missing.status_code == 404


def test_a_dropped_column_leaves_rows_queries_and_the_description_and_stays_dropped(tmp_path):
    """``{"drop_columns": [...]}``: the CRM as if one published column had never been added (its
    own sandbox: the module's is shared)."""
    with start_sandbox(tmp_path, documents_per_org=5, reset=True) as sb:
        admin = sb.crm_url + "/_sandbox"
        rest = Api(sb.crm_rest_url, sb.organizations[0].crm_api_key)
        refused = requests.post(
            f"{admin}/config", json={"drop_columns": [f"{DOCS}.organization_id"]}, timeout=10
        )
        assert refused.status_code == 400  # a foreign key names it: not modelled
        unknown = requests.post(
            f"{admin}/config", json={"drop_columns": [f"{DOCS}.nope"]}, timeout=10
        )
        assert unknown.status_code == 400 and unknown.json()["code"] == "42703"
        dropped = requests.post(
            f"{admin}/config", json={"drop_columns": [f"{DOCS}.customer_email"]}, timeout=10
        )
        assert dropped.status_code == 200
        described = rest.get("").json()["definitions"][DOCS]["properties"]
        assert "customer_email" not in described and "customer_name" in described
        r = rest.get(DOCS, {"select": "id,customer_email"})
        assert r.status_code == 400 and r.json()["code"] == "42703"
        assert all("customer_email" not in row for row in rest.get(DOCS).json())
    with start_sandbox(tmp_path) as resumed:  # the saved state keeps the column dropped
        assert "customer_email" not in resumed.crm_state.specs[DOCS].by_name
