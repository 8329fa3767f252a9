"""The CRM's own record of the sync: its mapping table and its integration log.

The CRM's UI shows a document as synced when a `metakocka_sales_document_mappings` row exists for
it, with that row's sync_status, sync_error, last_synced_at and metakocka_id; its admin error page
lists `metakocka_integration_logs` rows with status 'error' joined on their organization
(fresh-crm.md section 3; the CRM's `SalesDocumentSyncSection.tsx`, `MetakockaLogService.ts`). So a
team that points its CRM at this pipeline sees what the pipeline did. Our sync database stays the
full record; these tables mirror it:

- one mapping row per document that has a Metakocka counterpart, upserted on the table's own
  unique key: sm/61's UNIQUE(user_id, document_id) (user_id = the document's owner), or
  fixed/11's UNIQUE(sales_document_id, metakocka_id). Only columns the CRM has are written;
  fixed/11 has no number, Metakocka status or direction columns, so those go in `metadata`. A
  document without a Metakocka id has no row: `metakocka_id` is NOT NULL, and the CRM's UI would
  read any row as "synced";
- one log row per new error about a document (`status='error'`, `entity_type='sales_document'`,
  the CRM document id, the organization), its id derived from our error row's, so a step that runs
  again inserts it once.
"""

import uuid
from collections.abc import Iterable

from sync_pipeline.crm.profiles import CrmSchema
from sync_pipeline.crm.query import chunks
from sync_pipeline.domain.directions import PUSH_DIRECTIONS

MAPPINGS = "metakocka_sales_document_mappings"
LOGS = "metakocka_integration_logs"
LOG_ID_NAMESPACE = uuid.UUID("0b5c5d2e-7a51-4c3e-9f0e-2d1f6c8a4b71")

CRM_MAPPING_STATUS = {
    "synced": "synced",
    "pending": "pending",
    "failed": "error",
    "invalid": "error",  # the document cannot be synced as it is: the reason is in sync_error
    "conflict": "needs_review",
    "deleted_in_crm": "needs_review",
    "deleted_in_metakocka": "needs_review",
    "no_crm_type": "needs_review",
}
"""The pipeline's sync_status statuses in the four the CRM's CHECK allows (sm/61)."""
WRITES_PER_REQUEST = 500


def mapping_row(status: dict, *, owner: str, organization_id: str, doc_type: str | None) -> dict:
    """The mapping row of one document, in sm/61's columns (fixed/11 is derived from it).

    `status` is the document's sync_status row; `doc_type` its Metakocka doc_type.
    """
    last_synced = status.get("last_synced_at")
    return {
        "user_id": owner,
        "document_id": status["crm_document_id"],
        "metakocka_id": status["metakocka_id"],
        "metakocka_document_type": doc_type or "",
        "metakocka_document_number": status.get("metakocka_count_code"),
        "metakocka_status": status.get("metakocka_status"),
        "sync_direction": _crm_direction(status.get("last_direction")),
        "sync_status": CRM_MAPPING_STATUS.get(status["status"], "needs_review"),
        "sync_error": status.get("last_error"),
        "last_synced_at": last_synced.isoformat() if last_synced is not None else None,
        "organization_id": organization_id,
    }


def log_row(error: dict, *, owner: str, organization_id: str, entity_id: str) -> dict:
    """The CRM's integration-log row of one of our error rows (`error`: id, direction,
    error_type, message, run_id, metakocka_id)."""
    return {
        "id": str(uuid.uuid5(LOG_ID_NAMESPACE, str(error["id"]))),
        "user_id": owner,
        "entity_type": "sales_document",
        "entity_id": entity_id,
        "operation": "sync_from_metakocka"
        if error.get("direction") == "metakocka_to_crm"
        else "sync_to_metakocka",
        "status": "error",
        "message": error["message"],
        "details": {
            "error_type": error["error_type"],
            "run_id": error.get("run_id"),
            "metakocka_id": error.get("metakocka_id"),
            "sync_error_log_id": error["id"],
        },
        "organization_id": organization_id,
    }


def can_mirror(schema: CrmSchema) -> bool:
    """Whether the CRM has the tables the mirror writes (a CRM without them gets none)."""
    return bool(schema.columns.get(MAPPINGS)) and bool(schema.columns.get(LOGS))


def write_mappings(client, schema: CrmSchema, rows: Iterable[dict]) -> int:
    """Upsert mapping rows (from `mapping_row`) in the CRM's variant of the table."""
    rows = [_in_variant(schema, row) for row in rows]
    key = (
        "user_id,document_id"
        if schema.has(MAPPINGS, "document_id")
        else ("sales_document_id,metakocka_id")
    )
    for chunk in chunks(rows, WRITES_PER_REQUEST):
        client.execute(
            "POST",
            MAPPINGS,
            params=[("on_conflict", key)],
            body=chunk,
            prefer="resolution=merge-duplicates,return=minimal",
        )
    return len(rows)


def write_logs(client, schema: CrmSchema, rows: Iterable[dict]) -> int:
    """Insert log rows (from `log_row`); one already there (same id) is left as it is."""
    rows = [{k: v for k, v in row.items() if schema.has(LOGS, k)} for row in rows]
    for chunk in chunks(rows, WRITES_PER_REQUEST):
        client.execute(
            "POST",
            LOGS,
            params=[("on_conflict", "id")],
            body=chunk,
            prefer="resolution=ignore-duplicates,return=minimal",
        )
    return len(rows)


def _in_variant(schema: CrmSchema, row: dict) -> dict:
    """sm/61's row as the CRM's table has it: fixed/11 keys the document by
    `sales_document_id` and keeps what it has no column for in `metadata`."""
    if schema.has(MAPPINGS, "document_id"):
        return {k: v for k, v in row.items() if schema.has(MAPPINGS, k)}
    out = {k: v for k, v in row.items() if k != "document_id" and schema.has(MAPPINGS, k)}
    out["sales_document_id"] = row["document_id"]
    extra = {k: v for k, v in row.items() if k != "document_id" and not schema.has(MAPPINGS, k)}
    if extra and schema.has(MAPPINGS, "metadata"):
        out["metadata"] = {"sync_pipeline": extra}
    return out


def _crm_direction(last_direction: str | None) -> str:
    """sm/61's CHECK takes our push directions as they are; a pair never pushed is bidirectional."""
    return last_direction if last_direction in PUSH_DIRECTIONS else "bidirectional"
