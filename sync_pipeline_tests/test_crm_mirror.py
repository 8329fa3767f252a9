"""The CRM's own UI stays truthful: the pipeline keeps the CRM's mapping table and error log.

Read back through PostgREST, as the CRM's components read them (fresh-crm.md section 3): one
`metakocka_sales_document_mappings` row per document that has a Metakocka counterpart, owned by
the document's owner, with the real Metakocka id, type and number and a sync_status within the
table's CHECK; every document error of a run as a `metakocka_integration_logs` row with
status 'error', entity_type 'sales_document' and the organization. On both published schemas.
"""

import json
from contextlib import contextmanager

import pytest
import requests

from sync_pipeline.crm.mirror import CRM_MAPPING_STATUS
from sync_pipeline.sync import crm_mirror
from sync_pipeline.sync.crm_mirror import MIRROR_FAILED

from .edits import report_metadata, run
from .faultlab import invalid_crm_ids
from .helpers import error_rows, profile_sandbox, status_rows

DOCUMENT_KEY = {"sm60": "document_id", "fixed10": "sales_document_id"}


@contextmanager
def lab_for(profile: str, tmp_path):
    with profile_sandbox(tmp_path, profile) as (sandbox, settings, database_url, instance):
        yield sandbox, settings, database_url, instance, profile


@pytest.fixture(params=["sm60", "fixed10"])
def lab(request, tmp_path):
    with lab_for(request.param, tmp_path) as running:
        yield running


def in_the_crm(status: dict) -> bool:
    """A synced pair whose CRM document exists (a credit note has none; a deleted one neither)."""
    return bool(
        status["crm_document_id"]
        and status["metakocka_id"]
        and status["status"] not in ("deleted_in_crm", "no_crm_type")
    )


def crm_table(sandbox, table: str) -> list[dict]:
    """A CRM table as its UI reads it, through PostgREST."""
    key = sandbox.organizations[0].crm_api_key
    response = requests.get(
        f"{sandbox.crm_url}/rest/v1/{table}",
        params={"select": "*"},
        headers={"apikey": key, "Authorization": f"Bearer {key}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def mirror_failure(error: dict) -> bool:
    details = error["details"]
    details = json.loads(details) if isinstance(details, str) else details or {}
    return details.get("kind") == MIRROR_FAILED


def status_output(result) -> dict:
    """The metadata of the run's sync_status materialization."""
    (materialization,) = result.asset_materializations_for_node("sync_status")
    return {k: v.value for k, v in materialization.metadata.items()}


@pytest.mark.parametrize("mirror_slice", [None, 3], ids=["one-slice", "slices-of-3"])
def test_mapping_rows_and_error_logs_mirror_the_sync(lab, mirror_slice, monkeypatch):
    """`mirror_slice` 3: the mapping rows made and written a few documents at a time, as an
    organization's first run at 100,000 documents writes them, are the same rows."""
    if mirror_slice is not None:
        monkeypatch.setattr(crm_mirror, "SLICE", mirror_slice)
    sandbox, settings, database_url, instance, profile = lab
    org = sandbox.organizations[0]
    result = run(settings, instance, org.id)
    owners = {d["id"]: d["user_id"] for d in sandbox.crm_state.documents(org.id)}

    mappings = crm_table(sandbox, "metakocka_sales_document_mappings")
    by_document = {}
    for row in mappings:
        by_document.setdefault(row[DOCUMENT_KEY[profile]], []).append(row)
    paired = [r for r in status_rows(database_url, org.id) if in_the_crm(r)]
    assert paired and len(mappings) == len(paired)
    for status in paired:
        (row,) = by_document[status["crm_document_id"]]  # one row per document
        assert row["metakocka_id"] == status["metakocka_id"]
        assert row["user_id"] == owners[status["crm_document_id"]]  # the document's owner
        assert row["organization_id"] == org.id
        assert row["sync_status"] == CRM_MAPPING_STATUS[status["status"]]
        assert row["metakocka_document_type"].startswith("sales_")
        if profile == "sm60":
            assert row["metakocka_document_number"] == status["metakocka_count_code"]
            assert row["sync_direction"] in (
                "crm_to_metakocka",
                "metakocka_to_crm",
                "bidirectional",
            )
        else:  # fixed/11 has no such columns: they travel in metadata
            assert (
                row["metadata"]["sync_pipeline"]["metakocka_document_number"]
                == (status["metakocka_count_code"])
            )
    invalid = invalid_crm_ids(sandbox, org)
    assert invalid and not set(invalid) & set(by_document)  # no Metakocka id, no mapping row

    logs = crm_table(sandbox, "metakocka_integration_logs")
    logged = {row["entity_id"]: row for row in logs}
    for crm_id in invalid:  # each quarantined document's error, as the admin page lists it
        row = logged[crm_id]
        assert (row["status"], row["entity_type"]) == ("error", "sales_document")
        assert row["organization_id"] == org.id and row["message"]
        assert row["user_id"] == owners[crm_id]
    metadata = status_output(result)
    assert metadata["crm_mappings_written"] == len(paired)
    assert metadata["crm_error_logs_written"] == len(logs)

    # idempotent: a run that changes nothing writes nothing, and nothing is there twice
    again = status_output(run(settings, instance, org.id))
    assert again["crm_mappings_written"] == again["crm_error_logs_written"] == 0
    assert len(crm_table(sandbox, "metakocka_sales_document_mappings")) == len(mappings)
    assert len(crm_table(sandbox, "metakocka_integration_logs")) == len(logs)
    assert report_metadata(result)  # the run reported as usual


def test_a_mirror_the_crm_refuses_is_written_by_the_next_run(tmp_path):
    with lab_for("sm60", tmp_path) as (sandbox, settings, database_url, instance, _):
        refused_then_written(sandbox, settings, database_url, instance)


def refused_then_written(sandbox, settings, database_url, instance):
    org = sandbox.organizations[0]
    sandbox.configure_faults(
        "crm",
        {
            "rules": [
                {
                    "fault": "error_5xx_html",
                    "endpoints": ["POST metakocka_sales_document_mappings"],
                    "count": 5,  # every attempt of the first run's write
                }
            ]
        },
    )
    first = run(settings, instance, org.id)  # the run itself succeeds: our database has it all
    assert crm_table(sandbox, "metakocka_sales_document_mappings") == []
    (failure,) = [
        r
        for r in error_rows(database_url, org.id)
        if mirror_failure(r) and r["resolved_at"] is None
    ]
    assert "the next run writes them" in failure["message"]
    assert status_output(first)["crm_mirror_failed"]

    run(settings, instance, org.id)  # nothing changed in the documents, yet the rows come
    paired = [r for r in status_rows(database_url, org.id) if in_the_crm(r)]
    assert len(crm_table(sandbox, "metakocka_sales_document_mappings")) == len(paired)
    still_open = [
        r
        for r in error_rows(database_url, org.id)
        if mirror_failure(r) and r["resolved_at"] is None
    ]
    assert still_open == []
