"""Request and response bodies of the HTTP API (the seed's field names: camelCase).

The answers are supersets of what the CRM's own components read (fresh-crm.md section 3, from
aware88/fresh-ai-crm at 8295d4b; the components are in `src/components/integrations/metakocka/`):
`SalesDocumentSyncSection.tsx` reads `synced`, `lastSyncedAt`, `syncStatus`, `syncError` at the
top level;
`SyncSalesDocumentButton.tsx` reads `synced` and `mapping.{lastSyncedAt, syncStatus, syncError}`;
`SalesDocumentBulkSyncUI.tsx` reads `mappings[]` keyed by `documentId` with `synced`,
`syncStatus`, `lastSyncedAt`; it and `SyncAllSalesDocumentsButton.tsx` read `created`, `updated`,
`failed` after a POST; `SyncFromMetakockaButton.tsx` reads `success` and `documents`, and
`src/lib/integrations/metakocka/sales-document-sync-api.ts` reads `data.documents[].id` of the
unsynced list and `documentId` after a sync from Metakocka. The mapping's fields are those of the
CRM's `SalesDocumentSyncService.getSalesDocumentMapping`
(`src/lib/integrations/metakocka/sales-document-sync.ts`).
"""

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from sync_pipeline.domain.sync_request import MAX_DOCUMENT_IDS

METAKOCKA_ID = r"^[0-9]{1,20}$"
UUID_TEXT = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
ANY_ID = rf"({UUID_TEXT}|[0-9]{{1,20}})"
DOCUMENT_ID = rf"^{ANY_ID}$"
"""A CRM id (uuid) or a Metakocka id (digits)."""
MAX_STATUS_IDS = 100
"""Ids in one status look-up (the CRM's bulk view asks 50 at a time, in the query string)."""
DOCUMENT_IDS = rf"^{ANY_ID}(,{ANY_ID}){{0,{MAX_STATUS_IDS - 1}}}$"
"""A comma-separated list of document ids (`GET sync?documentIds=a,b`)."""


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SyncDocumentBody(Body):
    documentId: UUID = Field(description="CRM sales document id.")


class CrmSyncBody(Body):
    """The CRM's own `POST sync` body: `{documentId}`, `{documentIds}`, or `{}` (every CRM
    document of the organization that is not in sync)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"documentId": "6f1c2a9e-1b7d-4c8e-9a0b-2d3e4f5a6b7c"},
                {"documentIds": ["6f1c2a9e-1b7d-4c8e-9a0b-2d3e4f5a6b7c"]},
                {},
            ]
        },
    )
    documentId: UUID | None = Field(default=None, description="One CRM sales document id.")
    documentIds: list[UUID] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_DOCUMENT_IDS,
        description="Several CRM sales document ids (not together with documentId).",
    )


class SyncBulkBody(Body):
    documentIds: list[UUID] = Field(
        min_length=1, max_length=MAX_DOCUMENT_IDS, description="CRM sales document ids."
    )


class SyncFromMetakockaBody(Body):
    metakockaId: str = Field(pattern=METAKOCKA_ID, description="Metakocka document id (mk_id).")


class CrmWebhookBody(BaseModel):
    """A Supabase database webhook (`type`, `table`, `record`, `old_record`), or a plain list."""

    model_config = ConfigDict(extra="allow")
    type: Literal["INSERT", "UPDATE", "DELETE"] | None = None
    table: str | None = Field(default=None, max_length=200)
    record: dict | None = None
    old_record: dict | None = None
    documentIds: list[UUID] | None = Field(default=None, max_length=MAX_DOCUMENT_IDS)


class MetakockaWebhookBody(BaseModel):
    """A change notification from Metakocka: one `mk_id` (with its `doc_type`), or a list."""

    model_config = ConfigDict(extra="allow")
    mk_id: str | None = Field(default=None, pattern=METAKOCKA_ID)
    doc_type: str | None = Field(default=None, max_length=60)
    metakockaIds: list[str] | None = Field(default=None, max_length=MAX_DOCUMENT_IDS)


class RequestAccepted(BaseModel):
    requestId: str
    state: str
    deduplicated: bool = Field(
        description="True when this is an earlier request (same Idempotency-Key, or the same "
        "documents still queued): it runs once."
    )
    statusUrl: str


class DocumentSyncAccepted(RequestAccepted):
    """A queued sync of one document, with what the CRM's buttons read after a POST."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "requestId": "0b7e6a52-4f0e-4d1e-8a57-5a1f7c3e9d21",
                    "state": "queued",
                    "deduplicated": False,
                    "statusUrl": "/api/integrations/metakocka/sales-documents/requests/"
                    "0b7e6a52-4f0e-4d1e-8a57-5a1f7c3e9d21",
                    "success": True,
                    "documentId": "6f1c2a9e-1b7d-4c8e-9a0b-2d3e4f5a6b7c",
                    "metakockaId": "1000234",
                }
            ]
        }
    )
    success: bool = Field(default=True, description="The request was accepted (queued).")
    documentId: str | None = Field(
        description="The CRM document: the one named, or (from Metakocka) the CRM id the "
        "document has or will have."
    )
    metakockaId: str | None = Field(
        description="The Metakocka document: the one named, or the counterpart already linked "
        "to the CRM document (null until the first sync has created it)."
    )


class BulkSyncError(BaseModel):
    documentId: str
    error: str


class BulkSyncAccepted(RequestAccepted):
    """A queued sync of several documents, with the counts the CRM's bulk and "Sync all"
    buttons read. The API queues; the run follows within seconds (`statusUrl`). So the counts
    are what the request will do as the sync database knows it at acceptance: `created` =
    documents without a counterpart yet, `updated` = documents with one, `failed` = 0 (a
    request naming an unknown document is refused whole, 404). For "every unsynced document"
    they count the documents the sync database knows to be out of sync; the run also takes
    documents it has not seen yet."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "requestId": "3c2d1e0f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
                    "state": "queued",
                    "deduplicated": False,
                    "statusUrl": "/api/integrations/metakocka/sales-documents/requests/"
                    "3c2d1e0f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
                    "success": True,
                    "total": 3,
                    "created": 2,
                    "updated": 1,
                    "failed": 0,
                    "errors": [],
                }
            ]
        }
    )
    success: bool = Field(default=True, description="The request was accepted (queued).")
    total: int = Field(ge=0, description="Documents the request names (or is known to take).")
    created: int = Field(ge=0, description="Of them, documents without a counterpart yet.")
    updated: int = Field(ge=0, description="Of them, documents with a counterpart.")
    failed: int = Field(ge=0, description="Refused at acceptance: always 0 (see above).")
    errors: list[BulkSyncError] = Field(default_factory=list)


class RequestState(BaseModel):
    requestId: str
    direction: str
    documentIds: list[str]
    allUnsynced: bool
    requestedBy: str | None
    state: Literal["queued", "launched", "done", "failed"]
    runId: str | None
    createdAt: str
    updatedAt: str
    error: str | None


class PendingRequest(BaseModel):
    requestId: str
    state: str
    error: str | None


CRM_SYNC_STATUSES = ("synced", "pending", "error", "needs_review")
"""The CRM's `metakocka_sales_document_mappings.sync_status` CHECK set (sql-migrations/61)."""


class CrmMapping(BaseModel):
    """A document's sync as the CRM's mapping row shows it (fresh-crm.md section 3). No `id`:
    the CRM's mapping row id is the CRM's own, and no component reads it."""

    documentId: str = Field(description="The id asked for (CRM id, or Metakocka id).")
    synced: bool = Field(
        description="A linked counterpart exists (the CRM: a mapping row exists); see syncStatus "
        "for whether it is up to date."
    )
    metakockaId: str | None = None
    metakockaDocumentType: str | None = Field(
        default=None, description="Metakocka doc_type: sales_offer, sales_order, sales_bill, ..."
    )
    metakockaDocumentNumber: str | None = Field(
        default=None, description="Metakocka's document number (count_code)."
    )
    lastSyncedAt: str | None = None
    syncStatus: Literal["synced", "pending", "error", "needs_review"] | None = Field(
        default=None,
        description="The CRM's vocabulary: synced; pending (a sync is queued or running); "
        "error (failed, or the document is invalid: see syncError); needs_review (a conflict, "
        "or deleted on one side). Null: never synced, nothing queued.",
    )
    syncError: str | None = None


class DocumentStatus(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "documentId": "6f1c2a9e-1b7d-4c8e-9a0b-2d3e4f5a6b7c",
                    "status": "synced",
                    "documentType": "order",
                    "lastSyncedAt": "2026-06-01T10:15:02+00:00",
                    "lastAttemptAt": "2026-06-01T10:15:02+00:00",
                    "lastDirection": "crm_to_metakocka",
                    "metakockaId": "1000234",
                    "metakockaCountCode": "N-2026-0042",
                    "lastError": None,
                    "latestRequest": {
                        "requestId": "0b7e6a52-4f0e-4d1e-8a57-5a1f7c3e9d21",
                        "state": "done",
                        "error": None,
                    },
                    "synced": True,
                    "syncStatus": "synced",
                    "syncError": None,
                    "metakockaDocumentType": "sales_order",
                    "metakockaDocumentNumber": "N-2026-0042",
                    "mapping": {
                        "documentId": "6f1c2a9e-1b7d-4c8e-9a0b-2d3e4f5a6b7c",
                        "synced": True,
                        "metakockaId": "1000234",
                        "metakockaDocumentType": "sales_order",
                        "metakockaDocumentNumber": "N-2026-0042",
                        "lastSyncedAt": "2026-06-01T10:15:02+00:00",
                        "syncStatus": "synced",
                        "syncError": None,
                    },
                },
                {
                    "documentId": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
                    "status": "not_synced",
                    "latestRequest": None,
                    "synced": False,
                    "syncStatus": None,
                    "syncError": None,
                    "mapping": None,
                },
            ]
        }
    )
    documentId: str
    status: str = Field(
        description="synced, pending, failed, conflict, invalid, deleted_in_crm, "
        "deleted_in_metakocka, or not_synced (known to the CRM, never synced)."
    )
    documentType: str | None = None
    lastSyncedAt: str | None = None
    lastAttemptAt: str | None = None
    lastDirection: str | None = None
    metakockaId: str | None = None
    metakockaCountCode: str | None = None
    lastError: str | None = None
    latestRequest: PendingRequest | None = None
    synced: bool = Field(default=False, description="As in `mapping` (the CRM's badge).")
    syncStatus: Literal["synced", "pending", "error", "needs_review"] | None = None
    syncError: str | None = None
    metakockaDocumentType: str | None = None
    metakockaDocumentNumber: str | None = None
    mapping: CrmMapping | None = Field(
        default=None, description="The CRM's mapping shape; null when not synced."
    )


class MappingList(BaseModel):
    """`GET sync?documentIds=a,b`: one entry per document the sync database knows (synced or
    not); a document it does not know is left out, as the CRM leaves out documents without a
    mapping row (its bulk UI shows them "Not Synced")."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "mappings": [
                        {
                            "documentId": "6f1c2a9e-1b7d-4c8e-9a0b-2d3e4f5a6b7c",
                            "synced": True,
                            "metakockaId": "1000234",
                            "metakockaDocumentType": "sales_order",
                            "metakockaDocumentNumber": "N-2026-0042",
                            "lastSyncedAt": "2026-06-01T10:15:02+00:00",
                            "syncStatus": "synced",
                            "syncError": None,
                        }
                    ]
                }
            ]
        }
    )
    mappings: list[CrmMapping]


class UnsyncedDocument(BaseModel):
    id: str = Field(description="= metakockaId (the CRM's client reads `documents[].id`).")
    metakockaId: str
    docType: str | None
    documentType: str | None
    countCode: str | None
    reason: str


class UnsyncedData(BaseModel):
    count: int
    documents: list[UnsyncedDocument]


class UnsyncedList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "success": True,
                    "count": 1,
                    "documents": [
                        {
                            "id": "1000311",
                            "metakockaId": "1000311",
                            "docType": "sales_offer",
                            "documentType": "offer",
                            "countCode": "P-2026-0007",
                            "reason": "not synced yet",
                        }
                    ],
                    "data": {
                        "count": 1,
                        "documents": [
                            {
                                "id": "1000311",
                                "metakockaId": "1000311",
                                "docType": "sales_offer",
                                "documentType": "offer",
                                "countCode": "P-2026-0007",
                                "reason": "not synced yet",
                            }
                        ],
                    },
                }
            ]
        }
    )
    success: bool = True
    count: int
    documents: list[UnsyncedDocument]
    data: UnsyncedData = Field(description="The same list, where the CRM's client reads it.")


class Problem(BaseModel):
    detail: str
    error: str | None = Field(
        default=None, description="The same text, where the CRM's client reads a failure."
    )
