"""The seed's end-to-end scenario over real HTTP, and the invariants of a full reconciliation."""

from decimal import Decimal

import sqlalchemy as sa

from sync_pipeline.domain.document import (
    crm_id_for_metakocka_document,
    crm_id_to_external_ref,
)
from sync_pipeline.store.resolutions import Resolutions

from .helpers import (
    CrmHttp,
    MetakockaHttp,
    error_rows,
    metakocka_duplicates,
    pushed_count,
    run_nightly,
    status_rows,
)


def _new_order(sandbox, org) -> tuple[dict, list[dict]]:
    """An order a salesperson enters in the CRM (the published sm60 schema): one line of a
    product the CRM maps to Metakocka, one line with no product (the service product)."""
    products = [
        p for p in sandbox.crm_state.tables["products"].rows.values()
        if p["organization_id"] == org.id
    ]  # fmt: skip
    owner = next(
        m["user_id"] for m in sandbox.crm_state.tables["organization_members"].rows.values()
        if m["organization_id"] == org.id and m["user_id"] != org.integration_user_id
    )  # fmt: skip
    row = {
        "organization_id": org.id,
        "user_id": owner,
        "document_type": "order",
        "document_number": "SO-E2E-1",
        "document_date": "2026-03-15",
        "due_date": "2026-04-14",
        "customer_name": "Testna stranka d.o.o.",
        "customer_email": "kupec@example.si",
        "customer_address": "Slovenska cesta 1",
        "currency": "EUR",
        "status": "sent",
        "notes": "e2e order",
        "tax_amount": 39.20,
        "total_amount": 274.20,
    }
    items = [
        {
            "product_id": products[0]["id"],
            "description": "Widget",
            "quantity": 3,
            "unit_price": 50.0,
            "tax_rate": 22,
            "tax_amount": 29.70,
            "total_amount": 164.70,
            "metadata": {"discount": 10},
        },
        {
            "product_id": None,
            "description": "Installation",
            "quantity": 1,
            "unit_price": 100.0,
            "tax_rate": 9.5,
            "tax_amount": 9.50,
            "total_amount": 109.50,
            "metadata": None,
        },
    ]
    return row, items


def test_seed_scenario_round_trip(sandbox, pipeline_env, dagster_instance):
    org = sandbox.organizations[0]
    crm, mk = CrmHttp(sandbox), MetakockaHttp(sandbox, org)

    # 1. create a document in the CRM and sync it to Metakocka
    row, items = _new_order(sandbox, org)
    created = crm.insert_document(row, items)
    run_nightly(pipeline_env, dagster_instance, org.id)

    # 2. it is in Metakocka, once, with the right fields and totals
    ref = crm_id_to_external_ref(created["id"])
    found = mk.find_by_buyer_order("sales_order", ref)
    assert len(found) == 1
    doc = found[0]
    assert doc["title"] == created["id"]
    assert doc["partner"]["customer"] == "Testna stranka d.o.o."
    assert doc["currency_code"] == "EUR"
    assert doc["doc_date"].startswith("2026-03-15")
    assert sorted(line["code"] for line in doc["product_list"]) == ["MK-0001", "STORITEV"]
    assert Decimal(doc["sum_basic"]) == Decimal("235.00")
    assert Decimal(doc["sum_all"]) == Decimal("274.20")

    # 3. change it in Metakocka (full replace, as the MK app's API does): the CRM owns that
    #    content (docs/field-ownership.md), so under the default `manual` policy it is held as a
    #    conflict; an operator lets Metakocka's version win and the next run syncs it back
    changed = {k: v for k, v in doc.items() if not k.startswith("sum_") and k != "opr_code"}
    widget = next(line for line in changed["product_list"] if line["name"] == "Widget")
    widget["amount"] = "5"
    changed["notes"] = "changed in Metakocka"
    mk.call("put_document", {**changed, "mk_id": doc["mk_id"], "doc_type": "sales_order"})
    result = run_nightly(pipeline_env, dagster_instance, org.id)
    assert pushed_count(result) == 0
    assert crm.get_document(created["id"])["notes"] == "e2e order"
    Resolutions(sa.create_engine(pipeline_env.database_url)).resolve(
        org.id, created["id"], "metakocka"
    )
    result = run_nightly(pipeline_env, dagster_instance, org.id)
    assert pushed_count(result) == 1

    # 4. the CRM shows the change, and the totals Metakocka computes
    back = crm.get_document(created["id"])
    assert back["notes"] == "changed in Metakocka"
    lines = sorted(back["sales_document_items"], key=lambda i: i["description"])
    assert Decimal(str(lines[1]["quantity"])) == 5
    refreshed = mk.find_by_buyer_order("sales_order", ref)[0]
    assert Decimal(str(back["total_amount"])) == Decimal(refreshed["sum_all"])

    # 5. a document created in Metakocka arrives in the CRM
    answer = mk.call(
        "put_document",
        {
            "doc_type": "sales_offer",
            "doc_date": "2026-05-02+02:00",
            "currency_code": "EUR",
            "partner": {"customer": "Born in Metakocka s.p.", "country": "SI"},
            "product_list": [
                {
                    "code": "ART-777",
                    "name": "Gadget",
                    "unit": "kos",
                    "amount": "2",
                    "price": "10",
                    "tax": "220",
                }
            ],
        },
    )
    run_nightly(pipeline_env, dagster_instance, org.id)
    arrived = crm.get_document(crm_id_for_metakocka_document(org.id, answer["mk_id"]))
    assert arrived is not None
    assert arrived["document_type"] == "offer"
    assert arrived["customer_name"] == "Born in Metakocka s.p."
    assert Decimal(str(arrived["total_amount"])) == Decimal("24.40")

    # nothing was duplicated on the way
    assert metakocka_duplicates(sandbox, org.metakocka_company_id) == {}


def test_full_reconciliation_invariants(sandbox, pipeline_env, dagster_instance):
    org = sandbox.organizations[0]
    first = run_nightly(pipeline_env, dagster_instance, org.id)
    assert pushed_count(first) > 0

    statuses = status_rows(pipeline_env.database_url, org.id)
    by_status = {}
    for row in statuses:
        by_status.setdefault(row["status"], []).append(row)
    assert set(by_status) <= {"synced", "invalid", "conflict", "no_crm_type"}, {
        k: len(v) for k, v in by_status.items()
    }
    credit_notes = sandbox.seed_summary["organizations"][org.id]["credit_notes"]
    assert len(by_status["no_crm_type"]) == credit_notes >= 1
    assert all("credit note" in r["last_error"] for r in by_status["no_crm_type"])
    assert len(by_status["invalid"]) >= 3

    # every invalid document has its reason in the error log
    errors = error_rows(pipeline_env.database_url, org.id)
    validation = [e for e in errors if e["error_type"] == "validation"]
    for row in by_status["invalid"]:
        assert any(
            e["crm_document_id"] == row["crm_document_id"]
            or e["metakocka_id"] == row["metakocka_id"]
            for e in validation
        ), row
        assert row["last_error"]

    # every valid CRM document has a Metakocka twin, and the reverse, and no duplicates anywhere
    crm_ids = {d["id"] for d in sandbox.crm_state.documents(org.id)}
    synced = by_status["synced"]
    assert all(r["crm_document_id"] and r["metakocka_id"] for r in synced)
    assert {r["crm_document_id"] for r in synced} <= crm_ids
    assert metakocka_duplicates(sandbox, org.metakocka_company_id) == {}
    held = by_status.get("invalid", []) + by_status.get("conflict", [])
    assert len(crm_ids) == len(synced) + sum(1 for r in held if r["crm_document_id"] in crm_ids)

    # a second run right after finds nothing to push
    second = run_nightly(pipeline_env, dagster_instance, org.id)
    assert pushed_count(second) == 0
    plan = second.output_for_node("sync_plan")
    assert set(plan["action"]) <= {"unchanged", "invalid", "conflict", "no_crm_type"}
    # and logs no new validation errors for the same documents
    assert len(error_rows(pipeline_env.database_url, org.id)) == len(errors)
