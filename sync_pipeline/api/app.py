"""The seed's endpoints as an HTTP API in front of the sync request queue (FastAPI).

Every POST writes a request to `sync_requests` and answers 202 with its id; the request sensor
turns it into a `sync_documents` run within seconds. Reads answer from the sync database (and,
where the seed asks for it, one read of Metakocka).

Who calls (`access.py`): a CRM user with their Supabase access token, acting for their own
organizations, or a service with a static token of one organization. Every query is scoped by
the organization acted for. A document of another organization is answered exactly like one that
does not exist (404), so ids cannot be probed. Idempotency: the same `Idempotency-Key`, or the
same documents while still queued, give back the earlier request (`deduplicated: true`), which
runs once.

The answers carry, beside their own fields, the fields the CRM's components read from the CRM's
own routes (models.py, crm_shapes.py), so the CRM can call this API in their place.
"""

from typing import Annotated

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sync_pipeline.adapters.errors import SyncError
from sync_pipeline.api.access import Access, access_dependency, invalid
from sync_pipeline.api.config import ApiConfig
from sync_pipeline.api.desk import PREFIX, Desk
from sync_pipeline.api.models import (
    DOCUMENT_ID,
    DOCUMENT_IDS,
    BulkSyncAccepted,
    CrmSyncBody,
    CrmWebhookBody,
    DocumentStatus,
    DocumentSyncAccepted,
    MappingList,
    MetakockaWebhookBody,
    Problem,
    RequestAccepted,
    RequestState,
    SyncBulkBody,
    SyncFromMetakockaBody,
    UnsyncedList,
)
from sync_pipeline.domain.directions import BOTH, CRM_TO_METAKOCKA, METAKOCKA_TO_CRM
from sync_pipeline.domain.sync_request import is_crm_id, is_metakocka_id
from sync_pipeline.settings import Organization

HEADER_TEXT = r"^[\x21-\x7e]{1,200}$"
ERRORS = {
    401: {
        "model": Problem,
        "description": "Missing or unknown bearer token; a user token that is expired, wrongly "
        "signed, for another audience (or issuer), or not a user's.",
    },
    403: {
        "model": Problem,
        "description": "A user token of a user who belongs to none of the organizations synced "
        "here (or, on a webhook, any user token).",
    },
    404: {
        "model": Problem,
        "description": "No such document (or not of the caller's organizations).",
    },
    503: {
        "model": Problem,
        "description": "The CRM, Metakocka or the signing keys (JWKS) could not be reached.",
    },
}
CRM_SYNC_EXAMPLES = {
    "one": {
        "summary": "One document (the CRM's Sync button)",
        "value": {"documentId": "6f1c2a9e-1b7d-4c8e-9a0b-2d3e4f5a6b7c"},
    },
    "several": {
        "summary": "Selected documents (the CRM's bulk sync)",
        "value": {
            "documentIds": [
                "6f1c2a9e-1b7d-4c8e-9a0b-2d3e4f5a6b7c",
                "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
            ]
        },
    },
    "all": {"summary": "Every unsynced document (Sync all)", "value": {}},
}
POST_ERRORS = {
    **ERRORS,
    409: {"model": Problem, "description": "Idempotency-Key reused for a different request."},
}


def create_app(config: ApiConfig) -> FastAPI:
    app = FastAPI(
        title="sync_pipeline: on-demand sales document sync",
        version="1.0",
        description="The CRM's sync buttons: queue syncs between Fresh AI CRM and Metakocka, "
        "read their status. Authenticate with `Authorization: Bearer <token>`: the CRM user's "
        "Supabase access token (acting for the user's organizations, as the user), or a "
        "service token of one organization. The answers include the fields the CRM's own "
        "components read (`synced`, `mapping`, `mappings[]`, `created`/`updated`/`failed`/"
        "`total`, `success`), so the CRM can call this API in place of its own routes.",
    )
    desk = Desk(config)
    if config.cors_origins:  # the CRM's pages calling from the browser (README)
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Requested-By"],
            expose_headers=["Location"],
            max_age=600,
        )

    @app.exception_handler(StarletteHTTPException)
    def problem(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """`detail`, and the same text as `error`, where the CRM's client reads a failure."""
        return JSONResponse(
            status_code=exc.status_code,
            content={"detail": exc.detail, "error": exc.detail},
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(SyncError)
    def upstream_unavailable(_request: Request, exc: SyncError) -> JSONResponse:
        detail = f"upstream error: {exc}"
        return JSONResponse(status_code=503, content={"detail": detail, "error": detail})

    def idempotency_key(
        idempotency_key: str | None = Header(
            default=None,
            pattern=HEADER_TEXT,
            description="The same key posted again returns the first request instead of "
            "queueing another.",
        ),
    ) -> str | None:
        return idempotency_key

    Acting = Annotated[Access, Depends(access_dependency(config))]
    IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]

    # ------------------------------------------------------------------ CRM -> Metakocka
    @app.post(
        f"{PREFIX}/sync",
        status_code=202,
        response_model=DocumentSyncAccepted | BulkSyncAccepted,
        responses=POST_ERRORS,
        summary="Sync CRM documents to Metakocka: {documentId}, {documentIds}, or {} (every "
        "unsynced one)",
        description="The CRM's own `POST sync` bodies. `{documentId}` answers with `success` "
        "and `metakockaId` (the counterpart already linked, else null); `{documentIds}` and "
        "`{}` answer with `success`, `total`, `created`, `updated`, `failed` and `errors`. "
        "All queue one request (202) and answer its id and `statusUrl`.",
    )
    def sync_document(
        response: Response,
        access: Acting,
        key: IdempotencyKey,
        body: Annotated[CrmSyncBody, Body(openapi_examples=CRM_SYNC_EXAMPLES)],
    ) -> DocumentSyncAccepted | BulkSyncAccepted:
        if body.documentId is not None and body.documentIds is not None:
            raise invalid(["body"], "name documentId or documentIds, not both")
        if body.documentIds is not None:
            ids = list(dict.fromkeys(str(i) for i in body.documentIds))
            return desk.accept_crm_documents(response, access, key, ids)
        if body.documentId is None:
            return desk.accept_all_unsynced(response, access, key, CRM_TO_METAKOCKA)
        return desk.accept_crm_document(response, access, key, str(body.documentId))

    @app.post(
        f"{PREFIX}/sync-bulk",
        status_code=202,
        response_model=BulkSyncAccepted,
        responses=POST_ERRORS,
        summary="Sync several CRM documents to Metakocka (one request, one run)",
    )
    def sync_bulk(
        body: SyncBulkBody,
        response: Response,
        access: Acting,
        key: IdempotencyKey,
    ) -> BulkSyncAccepted:
        ids = list(dict.fromkeys(str(i) for i in body.documentIds))
        return desk.accept_crm_documents(response, access, key, ids)

    # ------------------------------------------------------------------ Metakocka -> CRM
    @app.get(
        f"{PREFIX}/sync-from-metakocka",
        response_model=UnsyncedList,
        responses=ERRORS,
        summary="Metakocka documents not (or no longer) in sync with the CRM, and their count",
    )
    def unsynced_from_metakocka(access: Acting) -> UnsyncedList:
        return desk.unsynced_in_metakocka(access.only())

    @app.post(
        f"{PREFIX}/sync-from-metakocka",
        status_code=202,
        response_model=DocumentSyncAccepted,
        responses=POST_ERRORS,
        summary="Sync one Metakocka document to the CRM",
    )
    def sync_from_metakocka(
        body: SyncFromMetakockaBody,
        response: Response,
        access: Acting,
        key: IdempotencyKey,
    ) -> DocumentSyncAccepted:
        return desk.accept_metakocka_document(response, access, key, body.metakockaId)

    @app.post(
        f"{PREFIX}/sync-all-from-metakocka",
        status_code=202,
        response_model=BulkSyncAccepted,
        responses=POST_ERRORS,
        summary="Sync every unsynced Metakocka document to the CRM",
    )
    def sync_all_from_metakocka(
        response: Response,
        access: Acting,
        key: IdempotencyKey,
    ) -> BulkSyncAccepted:
        return desk.accept_all_unsynced(response, access, key, METAKOCKA_TO_CRM)

    # ------------------------------------------------------------------ status
    @app.get(
        f"{PREFIX}/sync",
        response_model=DocumentStatus | MappingList,
        responses=ERRORS,
        summary="Sync status of one document (documentId: CRM or Metakocka id), or of several "
        "(documentIds=a,b: the CRM's bulk view)",
        description="`documentId`: the document's status, with the CRM's `synced`, "
        "`lastSyncedAt`, `syncStatus`, `syncError` and `mapping{...}`; 404 for a document the "
        "caller's organizations do not have. `documentIds`: `{mappings: [...]}` with one entry "
        "per document the sync database knows. With both, `documentId` wins (as in the CRM).",
    )
    def sync_status(
        access: Acting,
        documentId: Annotated[  # noqa: N803 (the seed's query parameter)
            str | None, Query(pattern=DOCUMENT_ID, description="CRM or Metakocka id.")
        ] = None,
        documentIds: Annotated[  # noqa: N803 (the CRM's query parameter)
            str | None,
            Query(
                pattern=DOCUMENT_IDS,
                description="Comma-separated CRM or Metakocka ids (at most 100).",
            ),
        ] = None,
    ) -> DocumentStatus | MappingList:
        if documentId is not None:
            return desk.status(access, documentId.lower())
        if documentIds is None:
            raise invalid(["query", "documentId"], "name documentId or documentIds")
        ids = list(dict.fromkeys(i.lower() for i in documentIds.split(",")))
        return desk.mappings(access, ids)

    @app.get(
        f"{PREFIX}/requests/{{request_id}}",
        response_model=RequestState,
        responses=ERRORS,
        summary="State of one sync request (queued, launched, done, failed)",
    )
    def request_state(request_id: str, access: Acting) -> RequestState:
        data = desk.request(access, request_id).as_json()
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
        access: Acting,
        key: IdempotencyKey,
    ) -> RequestAccepted:
        access.service_only("webhooks")
        org = access.only()
        ids = [str(i) for i in body.documentIds or []] or _crm_webhook_ids(body, org)
        return RequestAccepted(**desk.accept(response, org, BOTH, ids, key=key, who="webhook:crm"))

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
        access: Acting,
        key: IdempotencyKey,
    ) -> RequestAccepted:
        access.service_only("webhooks")
        org = access.only()
        ids = list(body.metakockaIds or []) or ([body.mk_id] if body.mk_id else [])
        bad = [i for i in ids if not is_metakocka_id(str(i))]
        if bad or not ids:
            what = f"not a Metakocka document id: {str(bad[0])[:40]!r}" if bad else "no mk_id"
            raise invalid(["body", "metakockaIds" if bad else "mk_id"], what)
        accepted = desk.accept(response, org, BOTH, ids, key=key, who="webhook:metakocka")
        return RequestAccepted(**accepted)

    return app


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


def app_from_env() -> FastAPI:
    """For `uvicorn --factory sync_pipeline.api.app:app_from_env`."""
    return create_app(ApiConfig.from_env())
