"""Deletions over real HTTP: reported by default, propagated only with `propagate_deletes`, never
for a document that is merely quarantined, and for Metakocka only where its API can delete.
(Deletions are seen by full sweeps only, so every run here is one.)"""

import pytest
import requests

from .edits import Users, pushes, run, status_of, synced_pairs, with_organization
from .helpers import MetakockaHttp, error_rows, status_rows


def delete_in_crm(sandbox, org, crm_id: str) -> None:
    """A CRM user deletes a document (PostgREST DELETE by id, as the CRM UI does: its row may
    have a NULL organization_id and belong to the organization through its user)."""
    key = org.crm_api_key
    response = requests.delete(
        f"{sandbox.crm_rest_url}/sales_documents",
        params={"id": f"eq.{crm_id}"},
        headers={
            "apikey": key,
            "Authorization": f"Bearer {key}",
            "Prefer": "return=representation",
        },
        timeout=10,
    )
    response.raise_for_status()
    assert len(response.json()) == 1, response.json()


def open_errors(url, org_id, crm_id=None, mk_id=None):
    return [
        e
        for e in error_rows(url, org_id)
        if e["resolved_at"] is None
        and (crm_id is None or e["crm_document_id"] == crm_id)
        and (mk_id is None or e["metakocka_id"] == mk_id)
    ]


@pytest.mark.parametrize("not_found_code", ["6", "2"])
def test_deletions_are_reported_and_propagated_only_when_the_organization_opts_in(
    sandbox, pipeline_env, dagster_instance, not_found_code
):
    """Metakocka answers a missing document with opr_code 6 or 2 (undocumented): with either,
    a deletion is confirmed and propagated, not retried for ever."""
    requests.post(
        f"{sandbox.metakocka_url}/_sandbox/not_found_code",
        json={"opr_code": not_found_code},
        timeout=10,
    ).raise_for_status()
    org = sandbox.organizations[0]
    url = pipeline_env.database_url
    users = Users(sandbox, org)
    run(pipeline_env, dagster_instance, org.id)
    pairs = [p for p in synced_pairs(url, org.id) if not p.born_in_metakocka]
    orders = [p for p in pairs if p.document_type == "order"]
    gone_in_crm, gone_in_mk = orders[:2]  # Metakocka's API deletes orders only
    invoices = [p for p in pairs if p.document_type == "invoice"]
    invoice, quarantined = invoices[:2]

    # between two runs: one order deleted in the CRM, one in Metakocka, one made invalid
    delete_in_crm(sandbox, org, gone_in_crm.crm_id)
    MetakockaHttp(sandbox, org).call(
        "delete_document", {"doc_type": "sales_order", "mk_id": gone_in_mk.mk_id}
    )
    users.edit_in_crm(quarantined.crm_id, customer_name="")

    first = run(pipeline_env, dagster_instance, org.id, full_sweep=True)
    assert pushes(first) == []
    assert first.output_for_node("propagated_deletions") == []
    assert status_of(url, org.id, gone_in_crm.crm_id)["status"] == "deleted_in_crm"
    assert status_of(url, org.id, gone_in_mk.crm_id)["status"] == "deleted_in_metakocka"
    assert status_of(url, org.id, quarantined.crm_id)["status"] == "invalid"
    assert users.metakocka_document(gone_in_crm.mk_id) is not None  # not propagated
    assert users.crm_document(gone_in_mk.crm_id) is not None
    for pair in (gone_in_crm, gone_in_mk):
        (error,) = open_errors(url, org.id, crm_id=pair.crm_id)
        assert error["error_type"] == "not_found"
        assert "propagate_deletes off" in error["message"]
    logged = len(error_rows(url, org.id))
    assert pushes(run(pipeline_env, dagster_instance, org.id, full_sweep=True)) == []
    assert len(error_rows(url, org.id)) == logged  # reported once, not every night

    # the organization opts in; an invoice is deleted in the CRM as well
    delete_in_crm(sandbox, org, invoice.crm_id)
    propagating = with_organization(pipeline_env, org.id, propagate_deletes=True)
    second = run(propagating, dagster_instance, org.id, full_sweep=True)
    outcomes = {o.crm_document_id: o for o in second.output_for_node("propagated_deletions")}
    assert {k: (o.action, o.result) for k, o in outcomes.items()} == {
        gone_in_crm.crm_id: ("delete_in_metakocka", "ok"),
        gone_in_mk.crm_id: ("delete_in_crm", "ok"),
        invoice.crm_id: ("delete_in_metakocka", "skipped"),
    }
    assert users.metakocka_document(gone_in_crm.mk_id) is None
    assert users.crm_document(gone_in_mk.crm_id) is None
    # Metakocka's API cannot delete an invoice: left in place, with an error saying so
    assert users.metakocka_document(invoice.mk_id) is not None
    (refused,) = open_errors(url, org.id, crm_id=invoice.crm_id)
    assert refused["error_type"] == "rejected" and "by hand" in refused["message"]
    # the quarantined document's counterpart is untouched
    assert users.metakocka_document(quarantined.mk_id) is not None
    assert status_of(url, org.id, quarantined.crm_id)["status"] == "invalid"
    for pair in (gone_in_crm, gone_in_mk):
        assert open_errors(url, org.id, crm_id=pair.crm_id) == []

    # the links are gone: the next run knows neither document and deletes nothing again
    third = run(propagating, dagster_instance, org.id, full_sweep=True)
    assert [o.crm_document_id for o in third.output_for_node("propagated_deletions")] == [
        invoice.crm_id
    ]
    known = {r["crm_document_id"] for r in status_rows(url, org.id)}
    assert gone_in_crm.crm_id not in known and gone_in_mk.crm_id not in known
    assert len(open_errors(url, org.id, crm_id=invoice.crm_id)) == 1
    assert pushes(third) == []
