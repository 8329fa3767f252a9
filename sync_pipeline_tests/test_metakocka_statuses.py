"""Metakocka's statuses reach the CRM through the organization's map, and none is dropped silently
(issue 16, item 2).

A Metakocka status is the company's own register entry: `status_code` its localized label,
`status_desc` its internal code (metakocka-api.md section 5). Documents with real register
statuses sync to the CRM with the mapped status; an organization maps its own statuses (by code
or by label); a status nobody mapped leaves the CRM's status as it was, and is recorded: a
`warning` row in sync_error_log, a count in the sync report, the label in
sync_status.metakocka_status. All over real HTTP, through the nightly job.
"""

import json

from sync_pipeline.domain.document import crm_id_for_metakocka_document
from sync_pipeline.metakocka.statuses import StatusMap

from .edits import Users, report_metadata, run, status_of, with_organization
from .helpers import MetakockaHttp, error_rows, new_metakocka_document


def entered_in_metakocka(mk: MetakockaHttp, label: str, status: str, **kind) -> str:
    """A document Metakocka's users entered, its status then set from the register (by label,
    the way Metakocka matches a status: section 4); its mk_id."""
    mk_id = new_metakocka_document(mk, label, **kind)
    doc_type = kind.get("doc_type", "sales_order")
    mk.call("update_document", {"doc_type": doc_type, "mk_id": mk_id, "status_code": status})
    return mk_id


def status_warnings(database_url: str, organization_id: str) -> list[dict]:
    """The organization's warning rows, `details` decoded (a raw query reads JSON as text)."""
    return [
        {**e, "details": json.loads(e["details"])}
        for e in error_rows(database_url, organization_id)
        if e["error_type"] == "warning"
    ]


def test_register_statuses_reach_the_crm_mapped_by_status_desc(
    sandbox, pipeline_env, dagster_instance
):
    org = sandbox.organizations[0]
    url = pipeline_env.database_url
    users, mk = Users(sandbox, org), MetakockaHttp(sandbox, org)
    entered = {
        entered_in_metakocka(mk, "ST-PROC", "V obdelavi"): ("V obdelavi", "sent"),
        entered_in_metakocka(mk, "ST-SHIP", "Poslano"): ("Poslano", "sent"),
        entered_in_metakocka(mk, "ST-CANC", "Preklicano"): ("Preklicano", "cancelled"),
        # nothing has happened to it in Metakocka yet: a new CRM document is a draft
        entered_in_metakocka(mk, "ST-NEW", "Novo naročilo"): ("Novo naročilo", "draft"),
        entered_in_metakocka(mk, "ST-FIN", "Zaključeno", doc_type="sales_bill_domestic"): (
            "Zaključeno",
            "sent",  # finished is not paid: nothing was paid
        ),
    }

    result = run(pipeline_env, dagster_instance, org.id)

    for mk_id, (label, crm_status) in entered.items():
        crm_id = crm_id_for_metakocka_document(org.id, mk_id)
        assert users.crm_document(crm_id)["status"] == crm_status, label
        row = status_of(url, org.id, crm_id)
        assert (row["status"], row["metakocka_status"]) == ("synced", label)
    assert status_warnings(url, org.id) == []
    assert report_metadata(result)["unmapped_metakocka_statuses"] == 0

    # Metakocka moves an order on (change_document_status, section 6): the CRM follows
    moved = next(iter(entered))
    mk.call(
        "change_document_status",
        {"doc_type": "sales_order", "mk_id": moved, "status_code": "Preklicano"},
    )
    run(pipeline_env, dagster_instance, org.id)
    crm_id = crm_id_for_metakocka_document(org.id, moved)
    assert users.crm_document(crm_id)["status"] == "cancelled"
    assert status_of(url, org.id, crm_id)["metakocka_status"] == "Preklicano"


def test_an_unmapped_status_keeps_the_crm_status_is_reported_and_can_be_mapped(
    sandbox, pipeline_env, dagster_instance
):
    org = sandbox.organizations[0]
    url = pipeline_env.database_url
    users, mk = Users(sandbox, org), MetakockaHttp(sandbox, org)
    # the company's own register: a status of its own, and one without an internal code
    sandbox.metakocka_state.set_status_register(
        org.metakocka_company_id,
        {"V obdelavi": "in_process", "Čaka na plačilo": "awaiting_payment", "Dobavljeno": None},
    )
    waiting = entered_in_metakocka(mk, "ST-WAIT", "V obdelavi")
    run(pipeline_env, dagster_instance, org.id)
    waiting_crm = crm_id_for_metakocka_document(org.id, waiting)
    assert users.crm_document(waiting_crm)["status"] == "sent"

    # Metakocka's users set statuses no map knows, on a synced document and on a new one
    mk.call(
        "update_document",
        {"doc_type": "sales_order", "mk_id": waiting, "status_code": "Čaka na plačilo"},
    )
    delivered = entered_in_metakocka(mk, "ST-DELIV", "Dobavljeno")
    delivered_crm = crm_id_for_metakocka_document(org.id, delivered)
    result = run(pipeline_env, dagster_instance, org.id)

    assert users.crm_document(waiting_crm)["status"] == "sent"  # kept, not emptied
    assert users.crm_document(delivered_crm)["status"] == "draft"  # synced all the same
    for crm_id, label in ((waiting_crm, "Čaka na plačilo"), (delivered_crm, "Dobavljeno")):
        row = status_of(url, org.id, crm_id)
        assert (row["status"], row["metakocka_status"]) == ("synced", label)
    warnings = {w["metakocka_id"]: w for w in status_warnings(url, org.id)}
    assert set(warnings) == {waiting, delivered}
    assert all(w["resolved_at"] is None for w in warnings.values())
    message = warnings[waiting]["message"]
    assert "'Čaka na plačilo'" in message and "'awaiting_payment'" in message
    assert "keeps its own status" in message and '"metakocka_statuses"' in message
    assert warnings[waiting]["details"]["status_code"] == "Čaka na plačilo"
    assert warnings[waiting]["details"]["status_desc"] == "awaiting_payment"
    assert warnings[delivered]["details"]["status_desc"] is None
    report = report_metadata(result)
    assert report["unmapped_metakocka_statuses"] == 2
    assert "Čaka na plačilo" in report["unmapped_statuses"]
    assert "awaiting_payment" in report["unmapped_statuses"]

    # the next run reports them again, once: no second row per document
    again = run(pipeline_env, dagster_instance, org.id, full_sweep=True)
    assert len(status_warnings(url, org.id)) == 2
    assert report_metadata(again)["unmapped_metakocka_statuses"] == 2

    # the organization maps them (one by its code, one by its label): the CRM follows
    mapped = with_organization(
        pipeline_env,
        org.id,
        metakocka_statuses=StatusMap.from_config(
            {"awaiting_payment": "overdue", "dobavljeno": "paid"}, "test"
        ),
    )
    settled = run(mapped, dagster_instance, org.id, full_sweep=True)
    assert users.crm_document(waiting_crm)["status"] == "overdue"
    assert users.crm_document(delivered_crm)["status"] == "paid"
    assert all(w["resolved_at"] is not None for w in status_warnings(url, org.id))
    assert report_metadata(settled)["unmapped_metakocka_statuses"] == 0
