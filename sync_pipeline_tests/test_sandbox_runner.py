"""The sandbox runner: seeded categories as promised, credentials, persistence and scale."""

from __future__ import annotations

import base64
import io
import json
import shlex
import threading
import uuid
from collections import Counter
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

import pytest
import requests

from sync_pipeline.sandbox.crm_store import CrmState
from sync_pipeline.sandbox.metakocka_store import MetakockaState
from sync_pipeline.sandbox.runner import serve_forever, start_sandbox
from sync_pipeline.sandbox.seed import category_counts, make_organizations, seed_sandbox

CENT = Decimal("0.01")
MK_TYPES = {
    "offer": {"sales_offer"},
    "order": {"sales_order"},
    "invoice": {"sales_bill_domestic", "sales_bill_foreign"},
    "credit_note": {"sales_bill_credit_note"},
    "proforma": {"sales_bill_prepaid"},
}


def decode_link(buyer_order: str) -> str:
    """The pipeline's link: "FC" + unpadded base32 of the CRM uuid's 16 bytes."""
    assert buyer_order.startswith("FC") and len(buyer_order) == 28
    return str(uuid.UUID(bytes=base64.b32decode(buyer_order[2:] + "======")))


def expected_totals(lines, profile="sm60"):
    """Metakocka's rounding, written out independently of the sandbox's own helper; a line's
    total_amount is gross (with its tax), as the CRM's sync service reads it."""
    nets = {}
    for line in lines:
        discount = (
            line["discount_rate"]
            if profile == "fixed10"
            else (line["metadata"] or {}).get("discount")
        )
        net = (
            Decimal(str(line["quantity"]))
            * Decimal(str(line["unit_price"]))
            * (1 - Decimal(str(discount or 0)) / 100)
        ).quantize(CENT, ROUND_HALF_UP)
        tax = (net * Decimal(str(line["tax_rate"])) / 100).quantize(CENT, ROUND_HALF_UP)
        assert (line["tax_amount"], line["total_amount"]) == (float(tax), float(net + tax))
        nets[Decimal(str(line["tax_rate"]))] = nets.get(Decimal(str(line["tax_rate"])), 0) + net
    subtotal = sum(nets.values(), Decimal(0))
    tax = sum(((n * r / 100).quantize(CENT, ROUND_HALF_UP) for r, n in nets.items()), Decimal(0))
    return float(subtotal), float(tax), float(subtotal + tax)


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with start_sandbox(tmp_path_factory.mktemp("runner"), documents_per_org=60) as sb:
        yield sb


def test_organizations_have_distinct_seeded_credentials(sandbox):
    orgs = sandbox.organizations
    assert [o.name for o in orgs] == ["Acme d.o.o.", "Borovnica s.p."]
    assert [o.metakocka_company_id for o in orgs] == ["16", "17"]
    assert all(
        o.metakocka_secret_key.startswith("mk_sk_") and len(o.metakocka_secret_key) == 30
        for o in orgs
    )
    assert len({o.crm_api_key for o in orgs}) == len({o.id for o in orgs}) == 2
    assert make_organizations(2, seed=7) == orgs  # the same seed gives the same keys
    assert make_organizations(2, seed=8)[0].crm_api_key != orgs[0].crm_api_key
    for org in orgs:
        r = requests.post(
            f"{sandbox.metakocka_api_url}/search",
            timeout=10,
            json={
                "secret_key": org.metakocka_secret_key,
                "company_id": org.metakocka_company_id,
                "doc_type": "sales_order",
                "limit": 1,
            },
        )
        assert r.json()["opr_code"] == "0"


def test_seeded_categories_links_and_invalid_documents(sandbox):
    for org in sandbox.organizations:
        summary = sandbox.seed_summary["organizations"][org.id]
        counts = category_counts(60)
        cats = summary["categories"]
        assert (
            cats["linked_changed_in_crm"] + cats["linked_changed_in_metakocka"]
            == counts["linked_changed"]
        )
        assert {
            k: cats[k] for k in ("crm_only", "metakocka_only", "linked_unchanged", "invalid")
        } == {k: counts[k] for k in ("crm_only", "metakocka_only", "linked_unchanged", "invalid")}
        assert counts == {
            "crm_only": 21,
            "metakocka_only": 15,
            "linked_unchanged": 12,
            "linked_changed": 9,
            "invalid": 3,
        }

        crm = {d["id"]: d for d in sandbox.crm_state.documents(org.id)}
        mk = sandbox.metakocka_state.documents(org.metakocka_company_id)
        assert len(crm) == summary["crm_documents"] == 45
        assert len(mk) == summary["metakocka_documents"] == 36
        contacts = sandbox.crm_state.tables["contacts"].rows

        linked = [d for d in mk if d.get("buyer_order")]
        assert len(linked) == cats["linked_unchanged"] + counts["linked_changed"]
        newer = Counter()
        for doc in linked:
            crm_id = decode_link(doc["buyer_order"])
            assert doc["title"] == crm_id and crm_id in crm
            row = crm[crm_id]
            assert doc["doc_type"] in MK_TYPES[row["document_type"]]
            assert doc["partner"]["customer"] == row["customer_name"]
            contact = contacts.get(row["customer_id"])
            assert doc["partner"].get("country_iso_2") == (contact["country"] if contact else "SI")
            assert all(line["code"] for line in doc["product_list"])
            same = (
                Decimal(doc["sum_all"]) == Decimal(str(row["total_amount"]))
                and doc.get("notes") == row["notes"]
            )
            mk_time = sandbox.metakocka_state.last_change(org.metakocka_company_id, doc["mk_id"])
            crm_time = stamp(row["updated_at"])
            if same:
                assert mk_time > crm_time  # synced after the CRM's last edit
            else:
                newer["crm" if crm_time > mk_time else "metakocka"] += 1
        assert newer == {
            "crm": cats["linked_changed_in_crm"],
            "metakocka": cats["linked_changed_in_metakocka"],
        }
        linked_ids = {decode_link(d["buyer_order"]) for d in linked}
        assert len(linked_ids) == len(linked)  # no CRM document linked twice
        born = [d for d in mk if not d.get("buyer_order")]
        credit_notes = [d for d in born if d["doc_type"] == "sales_bill_credit_note"]
        assert len(credit_notes) == summary["credit_notes"] >= 1  # only Metakocka has them

        invalid = summary["invalid_documents"]
        assert sorted(invalid.values()) == [
            "empty_customer_name",
            "negative_quantity",
            "unknown_currency",
        ]
        for doc_id, kind in invalid.items():
            row = crm[doc_id]
            assert doc_id not in linked_ids
            if kind == "empty_customer_name":
                assert row["customer_name"] == ""
            elif kind == "unknown_currency":
                assert row["currency"] == "XYZ"
            else:
                assert any(
                    i["quantity"] < 0 and i["product_id"] for i in row["sales_document_items"]
                )

        for row in crm.values():
            _, tax, total = expected_totals(row["sales_document_items"])
            assert (row["tax_amount"], row["total_amount"]) == (tax, total)
            assert 1 <= len(row["sales_document_items"]) <= 5
            assert row["document_type"] in ("offer", "order", "invoice", "proforma")
        assert {d["organization_id"] for d in crm.values()} == {org.id, None}  # some by owner
        assert any(d["doc_type"] == "sales_bill_foreign" for d in mk)
        lines = [i for d in crm.values() for i in d["sales_document_items"]]
        assert {i["tax_rate"] for i in lines} == {22, 9.5, 0}
        assert any(i["product_id"] is None for i in lines)  # a service line
        assert any((i["metadata"] or {}).get("discount") for i in lines)


@pytest.mark.parametrize("profile", ["sm60", "fixed10"])
def test_seeded_rows_satisfy_every_constraint_of_the_published_schema(profile):
    """The seeder writes through the store's fast path (no checks): every row it wrote must
    also pass them, table by table in foreign-key order."""
    orgs = make_organizations(2, 7)
    crm, mk = CrmState(profile=profile), MetakockaState({})
    seed_sandbox(crm, mk, orgs, documents_per_org=40)
    again = CrmState(profile=profile)
    order = ["auth.users", "organizations", "organization_members", "products", "contacts",
             "metakocka_product_mappings", "metakocka_contact_mappings", "sales_documents",
             "sales_document_items"]  # fmt: skip
    for table in order:
        rows = list(crm.tables[table].rows.values())
        assert rows, table
        written = again.insert(table, rows)
        assert [r["id"] for r in written] == [r["id"] for r in rows]
    if profile == "fixed10":
        doc = next(iter(crm.tables["sales_documents"].rows.values()))
        assert doc["subtotal"] == expected_totals(crm.items_of(doc["id"]), profile)[0]


def test_same_seed_same_data_other_seed_other_data():
    def seeded(seed):
        orgs = make_organizations(2, seed)
        crm, mk = CrmState(), MetakockaState({})
        seed_sandbox(crm, mk, orgs, documents_per_org=25, seed=seed)
        return crm.documents(), [mk.documents(o.metakocka_company_id) for o in orgs]

    first, again, other = seeded(7), seeded(7), seeded(8)
    assert first[0] == again[0]
    assert [[d["buyer_order"] for d in c if "buyer_order" in d] for c in first[1]] == [
        [d["buyer_order"] for d in c if "buyer_order" in d] for c in again[1]
    ]
    assert {d["id"] for d in first[0]}.isdisjoint({d["id"] for d in other[0]})


def test_state_survives_a_restart_and_reset_reseeds(tmp_path):
    with start_sandbox(tmp_path, documents_per_org=20) as sb:
        orgs = sb.organizations
        seeded = sb.crm_state.documents()
        org = orgs[0]
        headers = {
            "apikey": org.crm_api_key,
            "Authorization": f"Bearer {org.crm_api_key}",
            "Prefer": "return=representation",
        }
        new = requests.post(
            f"{sb.crm_rest_url}/sales_documents",
            headers=headers,
            timeout=10,
            json={
                "organization_id": org.id,
                "user_id": org.integration_user_id,
                "document_type": "offer",
                "document_date": "2026-11-02",
                "customer_name": "Nova",
            },
        ).json()
        mk_count = len(sb.metakocka_state.documents(org.metakocka_company_id))
    assert (tmp_path / "sandbox_state.json").exists()

    with start_sandbox(tmp_path, documents_per_org=999, seed=1) as sb:  # the saved state wins
        assert sb.organizations == orgs
        docs = sb.crm_state.documents()
        assert len(docs) == len(seeded) + 1
        assert sb.crm_state.document_with_items(new[0]["id"])["customer_name"] == "Nova"
        assert len(sb.metakocka_state.documents(org.metakocka_company_id)) == mk_count
        assert (
            sb.crm_state.insert(
                "sales_documents",
                [
                    {
                        **{k: new[0][k] for k in ("organization_id", "user_id", "document_type")},
                        "customer_name": "Druga",
                    }
                ],
            )[0]["updated_at"]
            > new[0]["updated_at"]
        )  # now() stays after the saved timestamps

    with start_sandbox(tmp_path, documents_per_org=20, reset=True) as sb:
        assert sb.organizations == orgs
        assert sb.crm_state.documents() == seeded


def test_configure_faults_reaches_each_system():
    with start_sandbox(documents_per_org=5) as sb:
        org = sb.organizations[0]
        sb.configure_faults("metakocka", {"rules": [{"fault": "opr_code_5"}]})
        r = requests.post(
            f"{sb.metakocka_api_url}/search",
            timeout=10,
            json={
                "secret_key": org.metakocka_secret_key,
                "company_id": org.metakocka_company_id,
                "doc_type": "sales_order",
            },
        )
        assert r.json()["opr_code"] == "5"
        sb.configure_faults("crm", {"rules": [{"fault": "rate_limit_429"}]})
        r = requests.get(
            f"{sb.crm_rest_url}/sales_documents",
            timeout=10,
            headers={"apikey": org.crm_api_key, "Authorization": f"Bearer {org.crm_api_key}"},
        )
        assert r.status_code == 429
        with pytest.raises(ValueError):
            sb.configure_faults("erp", {})
        assert not sb.persistent
    assert not sb.data_dir.exists()  # no data_dir: a temp dir, removed on stop


def test_serve_forever_prints_credentials_and_saves_on_stop(tmp_path):
    out, stop = io.StringIO(), threading.Event()
    thread = threading.Thread(
        target=serve_forever,
        args=(tmp_path,),
        kwargs=dict(documents_per_org=5, crm_port=0, metakocka_port=0, out=out, stop=stop),
    )
    thread.start()
    for _ in range(200):
        if "Ctrl-C" in out.getvalue():
            break
        threading.Event().wait(0.05)
    stop.set()
    thread.join(10)
    env = dict(
        shlex.split(line)[0].split("=", 1)
        for line in out.getvalue().splitlines()
        if line[:1].isupper() and "=" in line
    )
    orgs = make_organizations(2, 7)
    assert env["CRM_API_KEY"] == orgs[0].crm_api_key
    assert env["CRM_BASE_URL"].startswith("http://127.0.0.1:")
    assert env["METAKOCKA_BASE_URL"].startswith("http://127.0.0.1:")
    assert json.loads(env["METAKOCKA_SECRET_KEYS"]) == {
        o.metakocka_company_id: o.metakocka_secret_key for o in orgs
    }
    listed = json.loads(env["SYNC_ORGANIZATIONS"])
    assert [o["id"] for o in listed] == [o.id for o in orgs]
    assert [o["crm_integration_user_id"] for o in listed] == [o.integration_user_id for o in orgs]
    assert "schema sm60, max-rows 1000, crm-setup.sql not installed" in out.getvalue()
    assert orgs[1].crm_api_key in out.getvalue()
    assert (tmp_path / "sandbox_state.json").exists()


def test_seeding_20k_documents_per_organization():
    orgs = make_organizations(2, 7)
    crm, mk = CrmState(), MetakockaState({})
    summary = seed_sandbox(crm, mk, orgs, documents_per_org=20_000)
    counts = category_counts(20_000)
    for org in orgs:
        got = summary["organizations"][org.id]
        assert got["crm_documents"] == 20_000 - counts["metakocka_only"]
        assert len(crm.documents_of(org.id)) == got["crm_documents"]
        assert got["metakocka_documents"] == 20_000 - counts["crm_only"] - counts["invalid"]
        in_metakocka = sum(
            int(
                mk.search(org.metakocka_company_id, {"doc_type": t, "limit": 1})[
                    "result_all_records"
                ]
            )
            for ts in MK_TYPES.values()
            for t in ts
        )
        assert in_metakocka == got["metakocka_documents"]
    assert len(crm.tables["sales_documents"].rows) == 2 * (20_000 - counts["metakocka_only"])
