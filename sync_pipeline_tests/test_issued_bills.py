"""An issued invoice in Metakocka is immutable (issue 16, item 8).

A bill Metakocka has published (`publish_ts`) or fiscalized (`furs_eor` / `furs_zoi`) must never be
replaced: the CRM's later edit of it is a `conflict` with the reason, on a full sweep (the plan
sees the bill) and on an incremental run (which reads the changed CRM document's counterpart). A
replace that still reaches Metakocka (a plan made before the bill was issued) is refused by it.
"""

import pytest

from sync_pipeline.metakocka.mapping import ISSUED_BILL

from .edits import Users, pushes, run, status_of, synced_pairs
from .helpers import error_rows


@pytest.mark.parametrize("full_sweep", [True, False])
def test_a_crm_edit_of_an_issued_invoice_is_a_conflict_not_a_rewrite(
    sandbox, pipeline_env, dagster_instance, full_sweep
):
    org = sandbox.organizations[0]
    url = pipeline_env.database_url
    users = Users(sandbox, org)
    run(pipeline_env, dagster_instance, org.id)
    invoice = next(
        p
        for p in synced_pairs(url, org.id)
        if p.document_type == "invoice" and not p.born_in_metakocka
    )
    sandbox.metakocka_state.issue_bill(org.metakocka_company_id, invoice.mk_id)
    before = users.metakocka_document(invoice.mk_id)
    users.edit_in_crm(invoice.crm_id, notes="changed after the invoice was issued")

    result = run(pipeline_env, dagster_instance, org.id, full_sweep=full_sweep)

    after = users.metakocka_document(invoice.mk_id)
    assert after["notes"] == before["notes"]  # not replaced
    plan = result.output_for_node("sync_plan").set_index("crm_document_id")
    assert plan.loc[invoice.crm_id, "action"] == "conflict"
    assert plan.loc[invoice.crm_id, "reason"] == ISSUED_BILL
    assert invoice.crm_id not in {o.crm_document_id for o in pushes(result)}
    assert status_of(url, org.id, invoice.crm_id)["status"] == "conflict"
    (error,) = [
        e
        for e in error_rows(url, org.id)
        if e["crm_document_id"] == invoice.crm_id and e["resolved_at"] is None
    ]
    assert error["error_type"] == "conflict"
    assert "issued invoice" in error["message"] or "issued invoice" in str(error["details"])
