"""The sync database's view of a document, in the shapes the CRM's components read.

The CRM counts a document as synced when its `metakocka_sales_document_mappings` row exists, and
shows that row's `sync_status` (`synced`, `pending`, `error`, `needs_review`: the CHECK of
sql-migrations/61), `sync_error`, `last_synced_at` and `metakocka_id` (fresh-crm.md section 3).
Here the row is the document's link (`document_links`, state `linked`) and its `sync_status`
row; `CRM_MAPPING_STATUS` (crm/mirror.py) translates the pipeline's statuses into
the CRM's four, as the mapping rows the pipeline writes into the CRM have them.
"""

import pandas as pd

from sync_pipeline.api.models import CrmMapping
from sync_pipeline.crm.mirror import CRM_MAPPING_STATUS
from sync_pipeline.domain.sync_request import is_crm_id
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.requests import SyncRequest
from sync_pipeline.store.tables import LINK_LINKED

IN_FLIGHT = ("queued", "launched")


def iso(value) -> str | None:
    if value is None or value is pd.NaT or not hasattr(value, "isoformat"):
        return None
    return value.isoformat()


def _records(frame: pd.DataFrame) -> list[dict]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _naming(rows: list[dict], document_id: str) -> dict | None:
    """The row naming the id; of several links, the linked one."""
    naming = [r for r in rows if document_id in (r.get("crm_document_id"), r.get("metakocka_id"))]
    linked = [r for r in naming if r.get("state") == LINK_LINKED]
    return (linked or naming or [None])[0]


def latest_states(requests: list[SyncRequest], ids: list[str]) -> dict[str, str]:
    """The state of the newest request naming each id (`requests` newest first)."""
    states: dict[str, str] = {}
    for request in requests:
        for document_id in request.document_ids:
            if document_id in ids:
                states.setdefault(document_id, request.state)
    return states


def crm_mapping(
    document_id: str, status: dict | None, link: dict | None, request_state: str | None
) -> CrmMapping:
    """One document's mapping: `synced` when a linked counterpart exists; `syncStatus` from
    its status row, `pending` while a request for it is queued or running and it is not in
    sync, else (no row) `synced` for a linked pair and null for a document never synced."""
    linked = bool(link and link.get("state") == LINK_LINKED and link.get("metakocka_id"))
    status = status or {}
    sync_status = CRM_MAPPING_STATUS.get(status.get("status")) or ("synced" if linked else None)
    if request_state in IN_FLIGHT and sync_status != "synced":
        sync_status = "pending"
    link = link or {}
    return CrmMapping(
        documentId=document_id,
        synced=linked,
        metakockaId=link.get("metakocka_id") or status.get("metakocka_id"),
        metakockaDocumentType=link.get("metakocka_doc_type"),
        metakockaDocumentNumber=status.get("metakocka_count_code")
        or link.get("metakocka_count_code"),
        lastSyncedAt=iso(status.get("last_synced_at") or link.get("last_synced_at")),
        syncStatus=sync_status,
        syncError=status.get("last_error"),
    )


def document_mappings(
    store: SyncStore, organization_id: str, ids: list[str], requests: list[SyncRequest]
) -> dict[str, CrmMapping]:
    """The mappings of the ids the sync database knows for this organization (a link, a status
    row or a request), by id; ids it does not know are left out."""
    crm_ids = [i for i in ids if is_crm_id(i)]
    mk_ids = [i for i in ids if not is_crm_id(i)]
    links = _records(store.links.for_ids(organization_id, crm_ids, mk_ids))
    statuses = _records(store.status.for_ids(organization_id, crm_ids, mk_ids))
    states = latest_states(requests, ids)
    found = {}
    for document_id in ids:
        link = _naming(links, document_id)
        status = _naming(statuses, document_id)
        if link or status or document_id in states:
            found[document_id] = crm_mapping(document_id, status, link, states.get(document_id))
    return found


def linked_pairs(
    store: SyncStore, organization_id: str, crm_ids: list[str], mk_ids: list[str] = ()
) -> list[tuple[str, str]]:
    """(CRM id, Metakocka id) of the linked pairs naming any of the ids."""
    links = _records(store.links.for_ids(organization_id, crm_ids, list(mk_ids)))
    return [
        (r["crm_document_id"], r["metakocka_id"])
        for r in links
        if r.get("state") == LINK_LINKED and r.get("metakocka_id") and r.get("crm_document_id")
    ]
