"""Helpers of the conflict, deletion and ownership tests: run the nightly job with an
organization's settings changed, edit documents as users of either system would, and find
synced pairs to edit."""

from dataclasses import dataclass, replace

import requests

from sync_pipeline.definitions import build_definitions
from sync_pipeline.domain.document import crm_id_for_metakocka_document
from sync_pipeline.jobs import NIGHTLY_JOB_NAME, partition_key_of

from .helpers import status_rows


def with_organization(settings, organization_id: str, **changes):
    """`settings` with one organization's fields changed (conflict_policy, propagate_deletes)."""
    orgs = tuple(
        replace(org, **changes) if org.id == organization_id else org
        for org in settings.organizations
    )
    return settings.model_copy(update={"organizations": orgs})


FULL_SWEEP = {"ops": {"extract_sales_documents": {"config": {"full_sweep": True}}}}
"""Run config of a full sweep: only a full sweep notices deletions (sync/incremental.py)."""


def run(settings, instance, organization_id: str, run_config: dict | None = None, full_sweep=False):
    job = build_definitions(settings).resolve_job_def(NIGHTLY_JOB_NAME)
    config = dict(run_config or {})
    if full_sweep:
        config["ops"] = {**config.get("ops", {}), **FULL_SWEEP["ops"]}
    result = job.execute_in_process(
        partition_key=partition_key_of(job, organization_id), instance=instance, run_config=config
    )
    assert result.success
    return result


def pushes(result) -> list:
    """Outcomes of this run's pushes (both directions) that went through."""
    outcomes = [*result.output_for_node("metakocka_push"), *result.output_for_node("crm_push")]
    return [o for o in outcomes if o.result == "ok"]


def report_metadata(result) -> dict:
    (materialization,) = [m for m in result.asset_materializations_for_node("sync_report")]
    return {key: value.value for key, value in materialization.metadata.items()}


@dataclass(frozen=True)
class Pair:
    crm_id: str
    mk_id: str
    document_type: str
    born_in_metakocka: bool


def synced_pairs(database_url: str, organization_id: str) -> list[Pair]:
    rows = status_rows(database_url, organization_id)
    pairs = [
        Pair(
            r["crm_document_id"],
            r["metakocka_id"],
            r["document_type"],
            r["crm_document_id"]
            == crm_id_for_metakocka_document(organization_id, r["metakocka_id"]),
        )
        for r in rows
        if r["status"] == "synced"
    ]
    return sorted(pairs, key=lambda p: (p.document_type, p.crm_id))


def status_of(database_url: str, organization_id: str, crm_id: str) -> dict:
    (row,) = [
        r for r in status_rows(database_url, organization_id) if r["crm_document_id"] == crm_id
    ]
    return row


class Users:
    """People editing documents in the CRM UI and in the Metakocka app (the sandboxes' admin
    endpoints over HTTP; Metakocka's in-process state when the test needs to set the time of
    the change)."""

    def __init__(self, sandbox, organization):
        self.sandbox, self.org = sandbox, organization

    def edit_in_crm(self, crm_id: str, **changes) -> dict:
        response = requests.post(
            f"{self.sandbox.crm_url}/_sandbox/edit",
            json={"id": crm_id, "changes": changes},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def edit_in_metakocka(self, mk_id: str, last_change=None, **changes) -> dict:
        if last_change is not None:
            return self.sandbox.metakocka_state.edit_document(
                self.org.metakocka_company_id, mk_id, changes, last_change=last_change
            )
        response = requests.post(
            f"{self.sandbox.metakocka_url}/_sandbox/edit",
            json={
                "company_id": self.org.metakocka_company_id,
                "mk_id": mk_id,
                "changes": changes,
            },
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["document"]

    def metakocka_document(self, mk_id: str) -> dict | None:
        for doc in self.sandbox.metakocka_state.documents(self.org.metakocka_company_id):
            if str(doc["mk_id"]) == str(mk_id):
                return doc
        return None

    def crm_document(self, crm_id: str) -> dict | None:
        for doc in self.sandbox.crm_state.documents(self.org.id):
            if doc["id"] == crm_id:
                return doc
        return None
