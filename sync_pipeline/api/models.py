"""Request and response bodies of the HTTP API (the seed's field names: camelCase)."""

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from sync_pipeline.domain.sync_request import MAX_DOCUMENT_IDS

METAKOCKA_ID = r"^[0-9]{1,20}$"
UUID_TEXT = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
DOCUMENT_ID = rf"^({UUID_TEXT}|[0-9]{{1,20}})$"
"""A CRM id (uuid) or a Metakocka id (digits)."""


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SyncDocumentBody(Body):
    documentId: UUID = Field(description="CRM sales document id.")


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


class DocumentStatus(BaseModel):
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


class UnsyncedDocument(BaseModel):
    metakockaId: str
    docType: str | None
    documentType: str | None
    countCode: str | None
    reason: str


class UnsyncedList(BaseModel):
    count: int
    documents: list[UnsyncedDocument]


class Problem(BaseModel):
    detail: str
