"""The seed's endpoints as an HTTP API in front of the sync request queue (FastAPI).

Every POST writes a request to `sync_requests` and answers 202 with its id; the request sensor
turns it into a `sync_documents` run within seconds. Reads answer from the sync database (and,
where the seed asks for it, one read of Metakocka).

Tenancy: a bearer token belongs to one organization, and every query is scoped by it. A document
of another organization is answered exactly like one that does not exist (404), so ids cannot be
probed. Idempotency: the same `Idempotency-Key`, or the same documents while still queued, give
back the earlier request (`deduplicated: true`), which runs once.
"""

import hmac
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sync_pipeline.adapters.errors import SyncError
from sync_pipeline.api.config import ApiConfig
from sync_pipeline.api.models import (
    DOCUMENT_ID,
    CrmWebhookBody,
    DocumentStatus,
    MetakockaWebhookBody,
    PendingRequest,
    Problem,
    RequestAccepted,
    RequestState,
    SyncBulkBody,
    SyncDocumentBody,
    SyncFromMetakockaBody,
    UnsyncedDocument,
    UnsyncedList,
)
from sync_pipeline.domain.sync_request import (
    BOTH,
    CRM_TO_METAKOCKA,
    METAKOCKA_TO_CRM,
    is_crm_id,
    is_metakocka_id,
)
from sync_pipeline.settings import Organization
from sync_pipeline.store.document_queries import document_status, links_for, status_for
from sync_pipeline.store.requests import IdempotencyKeyReused, SyncRequest, SyncRequestQueue
from sync_pipeline.sync.extract import Quarantined, extract_metakocka
from sync_pipeline.sync.metakocka_reads import read_metakocka_document
from sync_pipeline.sync.targeted import unsynced_documents

PREFIX = "/api/integrations/metakocka/sales-documents"
HEADER_TEXT = r"^[\x21-\x7e]{1,200}$"
USER_TEXT = r"^[\x20-\x7e]{1,200}$"
ERRORS = {
    401: {"model": Problem, "description": "Missing or unknown bearer token."},
    404: {"model": Problem, "description": "No such document (or not this organization's)."},
    503: {"model": Problem, "description": "The CRM or Metakocka could not be reached."},
}
POST_ERRORS = {
    **ERRORS,
    409: {"model": Problem, "description": "Idempotency-Key reused for a different request."},
}


def _iso(value) -> str | None:
    return value.isoformat() if value is not None and hasattr(value, "isoformat") else None


def create_app(config: ApiConfig) -> FastAPI:
    app = FastAPI(
        title="sync_pipeline: on-demand sales document sync",
        version="1.0",
        description="The CRM's sync buttons: queue syncs between Fresh AI CRM and Metakocka, "
        "read their status. Authenticate with `Authorization: Bearer <token>`; a token belongs "
        "to one organization.",
    )
    queue = SyncRequestQueue(config.store.engine)
    engine = config.store.engine
    bearer = HTTPBearer(auto_error=False, description="A token of one organization.")

    @app.exception_handler(SyncError)
    def upstream_unavailable(_request: Request, exc: SyncError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": f"upstream error: {exc}"})

    def organization(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Organization:
        org_id = None
        if credentials is not None:
            presented = credentials.credentials.encode()
            for token, owner in config.tokens.items():
                if hmac.compare_digest(token.encode(), presented):
                    org_id = owner
        if org_id is None:
            raise HTTPException(
                401, "missing or unknown bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        return config.organizations[org_id]

    def requested_by(
        x_requested_by: str | None = Header(
            default=None,
            pattern=USER_TEXT,
            description="The CRM user who clicked (kept in the request and the error log).",
        ),
    ) -> str:
        return f"api:{x_requested_by}" if x_requested_by else "api"

    def idempotency_key(
        idempotency_key: str | None = Header(
            default=None,
            pattern=HEADER_TEXT,
            description="The same key posted again returns the first request instead of "
            "queueing another.",
        ),
    ) -> str | None:
        return idempotency_key

    Org = Annotated[Organization, Depends(organization)]
    IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]
    RequestedBy = Annotated[str, Depends(requested_by)]

    def accept(
        response: Response,
        org: Organization,
        direction: str,
        ids: list[str],
        *,
        key: str | None,
        who: str,
        all_unsynced: bool = False,
    ) -> RequestAccepted:
        try:
            request, created = queue.enqueue(
                org.id,
                direction,
                ids,
                all_unsynced=all_unsynced,
                requested_by=who,
                idempotency_key=key,
            )
        except IdempotencyKeyReused as exc:
            raise HTTPException(409, str(exc)) from None
        status_url = f"{PREFIX}/requests/{request.id}"
        response.headers["Location"] = status_url
        return RequestAccepted(
            requestId=request.id,
            state=request.state,
            deduplicated=not created,
            statusUrl=status_url,
        )

    def known_ids(org: Organization, crm_ids: list[str], mk_ids: list[str]) -> set[str]:
        """Ids the sync database knows for this organization (linked or with a status row)."""
        known = set()
        for frame in (
            links_for(engine, org.id, crm_ids, mk_ids),
            status_for(engine, org.id, crm_ids, mk_ids),
        ):
            known |= set(frame["crm_document_id"].dropna()) | set(frame["metakocka_id"].dropna())
        return known

    def require_crm_documents(org: Organization, ids: list[str]) -> None:
        unknown = [i for i in ids if i not in known_ids(org, ids, [])]
        if unknown:
            found = {row["id"] for row in config.crm().list_documents(org.id, ids=unknown)}
            missing = [i for i in unknown if i not in found]
            if missing:
                raise HTTPException(404, f"no such CRM document: {', '.join(missing[:50])}")

    def require_metakocka_document(org: Organization, mk_id: str) -> None:
        if mk_id in known_ids(org, [], [mk_id]):
            return
        if read_metakocka_document(config.metakocka(org), org.id, mk_id) is None:
            raise HTTPException(404, f"no such Metakocka document: {mk_id}")

    # ------------------------------------------------------------------ CRM -> Metakocka
    @app.post(
        f"{PREFIX}/sync",
        status_code=202,
        response_model=RequestAccepted,
        responses=POST_ERRORS,
        summary="Sync one CRM document to Metakocka",
    )
    def sync_document(
        body: SyncDocumentBody,
        response: Response,
        org: Org,
        key: IdempotencyKey,
        who: RequestedBy,
    ) -> RequestAccepted:
        document_id = str(body.documentId)
        require_crm_documents(org, [document_id])
        return accept(response, org, CRM_TO_METAKOCKA, [document_id], key=key, who=who)

    @app.post(
        f"{PREFIX}/sync-bulk",
        status_code=202,
        response_model=RequestAccepted,
        responses=POST_ERRORS,
        summary="Sync several CRM documents to Metakocka (one request, one run)",
    )
    def sync_bulk(
        body: SyncBulkBody,
        response: Response,
        org: Org,
        key: IdempotencyKey,
        who: RequestedBy,
    ) -> RequestAccepted:
        ids = list(dict.fromkeys(str(i) for i in body.documentIds))
        require_crm_documents(org, ids)
        return accept(response, org, CRM_TO_METAKOCKA, ids, key=key, who=who)

    # ------------------------------------------------------------------ Metakocka -> CRM
    @app.get(
        f"{PREFIX}/sync-from-metakocka",
        response_model=UnsyncedList,
        responses=ERRORS,
        summary="Metakocka documents not (or no longer) in sync with the CRM, and their count",
    )
    def unsynced_from_metakocka(org: Org) -> UnsyncedList:
        extraction = extract_metakocka(config.metakocka(org), org.id)
        links = config.store.links_frame(org.id)
        linked = set(links.loc[links["state"] == "linked", "metakocka_id"].dropna())
        documents = []
        for doc in unsynced_documents(extraction, links):
            if isinstance(doc, Quarantined):
                reason = "cannot be read: " + "; ".join(doc.reasons)
                doc_type, document_type, count_code = doc.document_type, None, doc.document_number
            else:
                reason = (
                    "changed in Metakocka since the last sync"
                    if doc.metakocka_id in linked
                    else "not synced yet"
                )
                doc_type, document_type = doc.metakocka_doc_type, doc.document_type
                count_code = doc.metakocka_count_code
            documents.append(
                UnsyncedDocument(
                    metakockaId=doc.metakocka_id,
                    docType=doc_type,
                    documentType=document_type,
                    countCode=count_code,
                    reason=reason,
                )
            )
        return UnsyncedList(count=len(documents), documents=documents)

    @app.post(
        f"{PREFIX}/sync-from-metakocka",
        status_code=202,
        response_model=RequestAccepted,
        responses=POST_ERRORS,
        summary="Sync one Metakocka document to the CRM",
    )
    def sync_from_metakocka(
        body: SyncFromMetakockaBody,
        response: Response,
        org: Org,
        key: IdempotencyKey,
        who: RequestedBy,
    ) -> RequestAccepted:
        require_metakocka_document(org, body.metakockaId)
        return accept(response, org, METAKOCKA_TO_CRM, [body.metakockaId], key=key, who=who)

    @app.post(
        f"{PREFIX}/sync-all-from-metakocka",
        status_code=202,
        response_model=RequestAccepted,
        responses=POST_ERRORS,
        summary="Sync every unsynced Metakocka document to the CRM",
    )
    def sync_all_from_metakocka(
        response: Response,
        org: Org,
        key: IdempotencyKey,
        who: RequestedBy,
    ) -> RequestAccepted:
        return accept(response, org, METAKOCKA_TO_CRM, [], key=key, who=who, all_unsynced=True)

    # ------------------------------------------------------------------ status
    @app.get(
        f"{PREFIX}/sync",
        response_model=DocumentStatus,
        responses=ERRORS,
        summary="Sync status of one document (CRM id, or Metakocka id)",
    )
    def sync_status(
        org: Org,
        documentId: Annotated[  # noqa: N803 (the seed's query parameter)
            str, Query(pattern=DOCUMENT_ID, description="CRM or Metakocka id.")
        ],
    ) -> DocumentStatus:
        document_id = documentId.lower()
        latest = _latest_request(queue.recent(org.id, limit=200), document_id)
        row = document_status(engine, org.id, document_id)
        if row is None:
            if is_crm_id(document_id):
                require_crm_documents(org, [document_id])
            else:
                require_metakocka_document(org, document_id)
            return DocumentStatus(documentId=document_id, status="not_synced", latestRequest=latest)
        return DocumentStatus(
            documentId=document_id,
            status=row["status"],
            documentType=row["document_type"],
            lastSyncedAt=_iso(row["last_synced_at"]),
            lastAttemptAt=_iso(row["last_attempt_at"]),
            lastDirection=row["last_direction"],
            metakockaId=row["metakocka_id"],
            metakockaCountCode=row["metakocka_count_code"],
            lastError=row["last_error"],
            latestRequest=latest,
        )

    @app.get(
        f"{PREFIX}/requests/{{request_id}}",
        response_model=RequestState,
        responses=ERRORS,
        summary="State of one sync request (queued, launched, done, failed)",
    )
    def request_state(
        request_id: str,
        org: Org,
    ) -> RequestState:
        request = queue.get(request_id, org.id) if is_crm_id(request_id) else None
        if request is None:
            raise HTTPException(404, "no such request")
        data = request.as_json()
        data.pop("organizationId")
        return RequestState(**data)

    # ------------------------------------------------------------------ webhooks
    @app.post(
        f"{PREFIX}/webhooks/crm",
        status_code=202,
        response_model=RequestAccepted,
        responses=POST_ERRORS,
        summary="Change notification from the CRM (Supabase database webhook, or documentIds)",
    )
    def crm_webhook(
        body: CrmWebhookBody,
        response: Response,
        org: Org,
        key: IdempotencyKey,
    ) -> RequestAccepted:
        ids = [str(i) for i in body.documentIds or []] or _crm_webhook_ids(body, org)
        return accept(response, org, BOTH, ids, key=key, who="webhook:crm")

    @app.post(
        f"{PREFIX}/webhooks/metakocka",
        status_code=202,
        response_model=RequestAccepted,
        responses=POST_ERRORS,
        summary="Change notification from Metakocka (mk_id, or metakockaIds)",
    )
    def metakocka_webhook(
        body: MetakockaWebhookBody,
        response: Response,
        org: Org,
        key: IdempotencyKey,
    ) -> RequestAccepted:
        ids = list(body.metakockaIds or []) or ([body.mk_id] if body.mk_id else [])
        bad = [i for i in ids if not is_metakocka_id(str(i))]
        if bad or not ids:
            what = f"not a Metakocka document id: {str(bad[0])[:40]!r}" if bad else "no mk_id"
            raise invalid(["body", "metakockaIds" if bad else "mk_id"], what)
        return accept(response, org, BOTH, ids, key=key, who="webhook:metakocka")

    return app


def invalid(loc: list[str], message: str) -> RequestValidationError:
    """A 422 in FastAPI's own shape (the `HTTPValidationError` of the spec)."""
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": message}])


def _crm_webhook_ids(body: CrmWebhookBody, org: Organization) -> list[str]:
    """The document a Supabase webhook is about: the row's id (a line: its document_id)."""
    record = body.record or body.old_record or {}
    owner = record.get("organization_id")
    if owner is not None and str(owner) != org.id:
        raise HTTPException(404, "no such CRM document")
    key = "document_id" if body.table == "sales_document_items" else "id"
    document_id = record.get(key)
    if not isinstance(document_id, str) or not is_crm_id(document_id.lower()):
        raise invalid(["body", "record", key], "the notification names no CRM document id")
    return [document_id.lower()]


def _latest_request(requests: list[SyncRequest], document_id: str) -> PendingRequest | None:
    for request in requests:  # newest first
        if document_id in request.document_ids:
            return PendingRequest(requestId=request.id, state=request.state, error=request.error)
    return None


def app_from_env() -> FastAPI:
    """For `uvicorn --factory sync_pipeline.api.app:app_from_env`."""
    return create_app(ApiConfig.from_env())
