"""What the API's endpoints do between authentication and the answer: find the documents of the
organization acted for (404 for any other), queue the request, and read statuses back in the
API's shapes and the CRM's (`crm_shapes`).

A document the sync database knows for the organization exists; any other is looked up in its
system (the CRM through the organization's tenancy, Metakocka in the organization's company).
"""

from fastapi import HTTPException, Response

from sync_pipeline.api.access import Access
from sync_pipeline.api.config import ApiConfig
from sync_pipeline.api.crm_shapes import crm_mapping, document_mappings, iso, linked_pairs
from sync_pipeline.api.dagster_runs import submit_request
from sync_pipeline.api.models import (
    BulkSyncAccepted,
    DocumentStatus,
    DocumentSyncAccepted,
    MappingList,
    PendingRequest,
    RequestAccepted,
    UnsyncedData,
    UnsyncedDocument,
    UnsyncedList,
)
from sync_pipeline.domain.document import crm_id_for_metakocka_document
from sync_pipeline.domain.sync_request import CRM_TO_METAKOCKA, METAKOCKA_TO_CRM, is_crm_id
from sync_pipeline.settings import Organization
from sync_pipeline.store.requests import (
    LAUNCHED,
    IdempotencyKeyReused,
    SyncRequest,
)
from sync_pipeline.sync.extract import Quarantined, extract_metakocka
from sync_pipeline.sync.metakocka_reads import read_metakocka_document
from sync_pipeline.sync.targeted import unsynced_documents

PREFIX = "/api/integrations/metakocka/sales-documents"
RECENT_REQUESTS = 200
"""Requests read back to find a document's latest one."""


class Desk:
    def __init__(self, config: ApiConfig):
        self.config = config
        self.store = config.store
        self.queue = self.store.requests

    # ------------------------------------------------------------------ existence
    def known_ids(self, org: Organization, crm_ids: list[str], mk_ids: list[str]) -> set[str]:
        """Ids the sync database knows for this organization (linked or with a status row)."""
        known = set()
        for frame in (
            self.store.links.for_ids(org.id, crm_ids, mk_ids),
            self.store.status.for_ids(org.id, crm_ids, mk_ids),
        ):
            known |= set(frame["crm_document_id"].dropna()) | set(frame["metakocka_id"].dropna())
        return known

    def require_crm_documents(self, org: Organization, ids: list[str]) -> None:
        unknown = [i for i in ids if i not in self.known_ids(org, ids, [])]
        if unknown:
            found = {row["id"] for row in self.config.crm().list_documents(org.id, ids=unknown)}
            missing = [i for i in unknown if i not in found]
            if missing:
                raise HTTPException(404, f"no such CRM document: {', '.join(missing[:50])}")

    def require_metakocka_document(self, org: Organization, mk_id: str) -> None:
        if mk_id in self.known_ids(org, [], [mk_id]):
            return
        if read_metakocka_document(self.config.metakocka(org), org.id, mk_id) is None:
            raise HTTPException(404, f"no such Metakocka document: {mk_id}")

    def known_document(self, org: Organization, document_id: str) -> dict | None:
        """The document's status row, or None for a document the organization has but never
        synced; 404 for one it does not have."""
        row = self.store.status.of_document(org.id, document_id)
        if row is None:
            if is_crm_id(document_id):
                self.require_crm_documents(org, [document_id])
            else:
                self.require_metakocka_document(org, document_id)
        return row

    # ------------------------------------------------------------------ queueing
    def accept(
        self,
        response: Response,
        org: Organization,
        direction: str,
        ids: list[str],
        *,
        key: str | None,
        who: str,
        all_unsynced: bool = False,
    ) -> dict:
        """Queue the request (or find its twin) and, when the API knows the Dagster webserver,
        submit its run at once (dagster_runs.py); the fields of `RequestAccepted`."""
        try:
            request, created = self.queue.enqueue(
                org.id,
                direction,
                ids,
                all_unsynced=all_unsynced,
                requested_by=who,
                idempotency_key=key,
            )
        except IdempotencyKeyReused as exc:
            raise HTTPException(409, str(exc)) from None
        state = request.state
        if created and self.config.dagster is not None:
            if submit_request(self.config.dagster, self.queue, request, org):
                state = LAUNCHED
        status_url = f"{PREFIX}/requests/{request.id}"
        response.headers["Location"] = status_url
        return RequestAccepted(
            requestId=request.id,
            state=state,
            deduplicated=not created,
            statusUrl=status_url,
        ).model_dump()

    def accept_crm_document(
        self, response: Response, access: Access, key: str | None, document_id: str
    ) -> DocumentSyncAccepted:
        org, _ = access.first(lambda o: self.require_crm_documents(o, [document_id]))
        pairs = linked_pairs(self.store, org.id, [document_id])
        accepted = self.accept(
            response,
            org,
            CRM_TO_METAKOCKA,
            [document_id],
            key=key,
            who=access.caller.requested_by,
        )
        return DocumentSyncAccepted(
            **accepted, documentId=document_id, metakockaId=pairs[0][1] if pairs else None
        )

    def accept_metakocka_document(
        self, response: Response, access: Access, key: str | None, mk_id: str
    ) -> DocumentSyncAccepted:
        """`documentId`: the CRM document linked to it, else the id the pipeline gives the
        document it creates (derived from the Metakocka id)."""
        org, _ = access.first(lambda o: self.require_metakocka_document(o, mk_id))
        pairs = linked_pairs(self.store, org.id, [], [mk_id])
        accepted = self.accept(
            response, org, METAKOCKA_TO_CRM, [mk_id], key=key, who=access.caller.requested_by
        )
        crm_id = pairs[0][0] if pairs else crm_id_for_metakocka_document(org.id, mk_id)
        return DocumentSyncAccepted(**accepted, documentId=crm_id, metakockaId=mk_id)

    def accept_crm_documents(
        self, response: Response, access: Access, key: str | None, ids: list[str]
    ) -> BulkSyncAccepted:
        """CRM documents in one request: the organization that has them all."""
        org, _ = access.first(lambda o: self.require_crm_documents(o, ids))
        linked = {crm_id for crm_id, _ in linked_pairs(self.store, org.id, ids)}
        accepted = self.accept(
            response, org, CRM_TO_METAKOCKA, ids, key=key, who=access.caller.requested_by
        )
        updated = sum(1 for i in ids if i in linked)
        return BulkSyncAccepted(
            **accepted, total=len(ids), created=len(ids) - updated, updated=updated, failed=0
        )

    def accept_all_unsynced(
        self, response: Response, access: Access, key: str | None, direction: str
    ) -> BulkSyncAccepted:
        """Every unsynced document of the source side, counted as the sync database knows
        them (the run also takes documents it has not seen yet)."""
        org = access.only()
        source = "crm" if direction == CRM_TO_METAKOCKA else "metakocka"
        created, updated = self.store.status.out_of_sync_counts(org.id, source)
        accepted = self.accept(
            response,
            org,
            direction,
            [],
            key=key,
            who=access.caller.requested_by,
            all_unsynced=True,
        )
        return BulkSyncAccepted(
            **accepted, total=created + updated, created=created, updated=updated, failed=0
        )

    # ------------------------------------------------------------------ reading back
    def status(self, access: Access, document_id: str) -> DocumentStatus:
        """One document: its status row, its latest request and the CRM's mapping fields."""
        org, row = access.first(lambda o: self.known_document(o, document_id))
        recent = self.queue.recent(org.id, limit=RECENT_REQUESTS)
        latest = latest_request(recent, document_id)
        mapping = document_mappings(self.store, org.id, [document_id], recent).get(
            document_id
        ) or crm_mapping(document_id, None, None, None)
        crm_fields = {
            "synced": mapping.synced,
            "syncStatus": mapping.syncStatus,
            "syncError": mapping.syncError,
            "metakockaDocumentType": mapping.metakockaDocumentType,
            "metakockaDocumentNumber": mapping.metakockaDocumentNumber,
            "mapping": mapping if mapping.synced else None,
        }
        if row is None:
            return DocumentStatus(
                documentId=document_id,
                status="not_synced",
                latestRequest=latest,
                lastSyncedAt=mapping.lastSyncedAt,
                metakockaId=mapping.metakockaId,
                **crm_fields,
            )
        return DocumentStatus(
            documentId=document_id,
            status=row["status"],
            documentType=row["document_type"],
            lastSyncedAt=iso(row["last_synced_at"]),
            lastAttemptAt=iso(row["last_attempt_at"]),
            lastDirection=row["last_direction"],
            metakockaId=row["metakocka_id"],
            metakockaCountCode=row["metakocka_count_code"],
            lastError=row["last_error"],
            latestRequest=latest,
            **crm_fields,
        )

    def mappings(self, access: Access, ids: list[str]) -> MappingList:
        """The mappings of the ids known in the caller's organizations, in the order asked."""
        found: dict = {}
        for org in access.organizations:
            recent = self.queue.recent(org.id, limit=RECENT_REQUESTS)
            for document_id, mapping in document_mappings(self.store, org.id, ids, recent).items():
                found.setdefault(document_id, mapping)
        return MappingList(mappings=[found[i] for i in ids if i in found])

    def request(self, access: Access, request_id: str) -> SyncRequest:
        def own_request(org: Organization) -> SyncRequest:
            request = self.queue.get(request_id, org.id) if is_crm_id(request_id) else None
            if request is None:
                raise HTTPException(404, "no such request")
            return request

        return access.first(own_request)[1]

    def unsynced_in_metakocka(self, org: Organization) -> UnsyncedList:
        extraction = extract_metakocka(self.config.metakocka(org), org.id)
        links = self.store.links.frame(org.id)
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
                    id=doc.metakocka_id,
                    metakockaId=doc.metakocka_id,
                    docType=doc_type,
                    documentType=document_type,
                    countCode=count_code,
                    reason=reason,
                )
            )
        return UnsyncedList(
            count=len(documents),
            documents=documents,
            data=UnsyncedData(count=len(documents), documents=documents),
        )


def latest_request(requests: list[SyncRequest], document_id: str) -> PendingRequest | None:
    for request in requests:  # newest first
        if document_id in request.document_ids:
            return PendingRequest(requestId=request.id, state=request.state, error=request.error)
    return None
