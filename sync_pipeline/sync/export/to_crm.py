"""Create or update Metakocka documents in the CRM (`CrmExporter`): a write of just the fields
Metakocka owns goes alone (`CrmExporter.run`), whole documents go a hundred to a batch
(`CrmExporter.write_batch`).

A create in the CRM needs no intent: its id is derived from the Metakocka id, so a repeat is an
upsert. A write to the CRM takes several requests, so its claim is also its intent: a run that
dies or fails half-way leaves it behind, and the next push to the CRM first rewrites that
document from Metakocka (whatever this run's plan says about it), while the push to Metakocka
leaves it alone, so a half-written CRM document is never taken for a user's edit and copied to
Metakocka.
"""

import threading
from contextlib import ExitStack
from datetime import UTC, datetime

import pandas as pd

from sync_pipeline.adapters.errors import AuthError
from sync_pipeline.crm.client import CrmClient
from sync_pipeline.crm.documents import CrmDocumentWrite
from sync_pipeline.crm.mapping import CRM_OWNER, CrmContext
from sync_pipeline.domain.directions import METAKOCKA_TO_CRM
from sync_pipeline.domain.document import SalesDocument, crm_id_for_metakocka_document
from sync_pipeline.domain.summary import was_read
from sync_pipeline.domain.text import text_or_none
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.store.claims import DEFAULT_CLAIM_TTL_S, DocumentClaims
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.tables import LINK_LINKED
from sync_pipeline.sync.export.crm_writes import (
    ReferencesToRead,
    crm_document_write,
    prefetch_metakocka_references,
)
from sync_pipeline.sync.export.guards import claim, run_claims, stale_plan
from sync_pipeline.sync.export.outcomes import (
    FAILED,
    OK,
    SKIPPED,
    TO_CRM_ACTIONS,
    PushOutcome,
    pending,
)
from sync_pipeline.sync.export.runner import (
    CircuitBreaker,
    Progress,
    failure,
    guarded,
    run_batches,
    run_each,
    with_breaker_summary,
)
from sync_pipeline.sync.extract import crm_context
from sync_pipeline.sync.rereads import WholeDocuments

CRM_BATCH = 100
"""Whole documents written to the CRM per batch (the ids of a batch go into one URL)."""


class CrmExporter:
    """Pushes plan rows to the CRM for one organization, under this run's claims."""

    def __init__(
        self,
        *,
        client: CrmClient,
        store: SyncStore,
        organization_id: str,
        claims: DocumentClaims,
        rereads: WholeDocuments,
        breaker: CircuitBreaker,
        rows: pd.DataFrame,
    ):
        self._client = client
        self._store = store
        self._organization_id = organization_id
        self._claims = claims
        self._rereads = rereads
        self._breaker = breaker
        self._rows = rows
        self._context_lock = threading.Lock()
        self._crm_context: CrmContext | None = None

    def run(self, row) -> PushOutcome:
        """One document, alone: claim; stale-plan check; write (just Metakocka's fields, or the
        whole document); bind; release. A write that raises keeps its claim as an unfinished
        write (`abandon`: the CRM copy may be half-written, the next run resumes it), and
        `runner.guarded` makes the exception the document's outcome."""
        crm_id = text_or_none(row.crm_document_id)
        busy = claim(self._claims, crm_id, row, METAKOCKA_TO_CRM)
        if busy is not None:
            return busy
        try:
            link = self._store.links.find(self._organization_id, crm_document_id=crm_id)
            stale = stale_plan(link, row, METAKOCKA_TO_CRM)
            fields = getattr(row, "crm_fields", None)
            if stale is not None:
                outcome = stale
            elif fields:
                outcome = self._patch_fields(row, fields)
            else:
                outcome = self._write_whole(row)
        except BaseException:
            self._claims.abandon(crm_id)
            raise
        self._claims.release(crm_id)
        return outcome

    def write_batch(self, batch: list) -> list[PushOutcome]:
        """Up to a hundred whole documents in a handful of requests (`CrmClient.write_documents`),
        each through the steps of `run`: read again if summarised; claim; stale-plan check; the
        write built; then one write for the batch; bind; release. If the batch fails, each
        document is written alone (`run`), which both says which one is at fault and rewrites
        any the batch left half-written."""
        if self._breaker.is_open:
            return [guarded(row, self.run, METAKOCKA_TO_CRM, self._breaker) for row in batch]
        done: dict[int, PushOutcome] = {}
        ready: list[tuple[int, object, str, CrmDocumentWrite]] = []
        batch, read_again = self._with_whole_documents(batch, done)
        references = ReferencesToRead(self._client, self._organization_id, read_again)
        for index, row in enumerate(batch):
            if index in done:
                continue
            if self._breaker.is_open:
                done[index] = guarded(row, self.run, METAKOCKA_TO_CRM, self._breaker)
                continue
            crm_id = text_or_none(row.crm_document_id)
            busy = claim(self._claims, crm_id, row, METAKOCKA_TO_CRM)
            if busy is not None:
                done[index] = busy
                continue
            link = self._store.links.find(self._organization_id, crm_document_id=crm_id)
            stale = stale_plan(link, row, METAKOCKA_TO_CRM)
            if stale is not None:
                self._claims.release(crm_id)
                done[index] = stale
                continue
            try:
                references.prefetch()
                ready.append((index, row, *self._whole_document_write(row)))
            except Exception as exc:  # nothing was sent: this document fails alone
                self._claims.release(crm_id)
                failed_at = datetime.now(UTC)
                done[index] = failure(row, exc, METAKOCKA_TO_CRM, self._breaker, failed_at)
        done.update(self._send(ready))
        return [done[index] for index in range(len(batch))]

    def _send(self, ready: list) -> dict[int, PushOutcome]:
        """The claimed, ready documents of a batch written in one go, then bound and released."""
        attempted_at = datetime.now(UTC)
        done: dict[int, PushOutcome] = {}
        try:
            self._client.write_documents(self._organization_id, [write for *_, write in ready])
        except AuthError as exc:
            # The circuit breaker: refused credentials are one failure, the rest wait (and
            # are not tried one by one); a refusal half-way keeps the claims as unfinished.
            first = self._breaker.trip(str(exc))
            for position, (index, row, crm_id, *_) in enumerate(ready):
                self._claims.abandon(crm_id)
                done[index] = PushOutcome(
                    row.action,
                    METAKOCKA_TO_CRM,
                    FAILED if first and position == 0 else SKIPPED,
                    crm_id,
                    text_or_none(row.metakocka_id),
                    error_type=exc.error_type,
                    message=str(exc) if first and position == 0 else f"not attempted: {exc}",
                    attempted_at=attempted_at,
                )
        except Exception:
            for index, row, *_ in ready:
                done[index] = guarded(row, self.run, METAKOCKA_TO_CRM, self._breaker)
        else:
            links = [_link_of(row, crm_id, write) for _, row, crm_id, write in ready]
            self._store.links.bind_many(self._organization_id, links)
            for index, row, crm_id, _ in ready:
                self._claims.release(crm_id)
                done[index] = _written(row, crm_id, attempted_at)
        return done

    def _patch_fields(self, row, fields: dict) -> PushOutcome:
        """Only fields Metakocka owns changed (domain/ownership.py): write just those columns,
        then bind."""
        doc: SalesDocument = row.metakocka_document
        attempted_at = datetime.now(UTC)
        mk_id = str(row.metakocka_id)
        crm_id = str(row.crm_document_id)
        current = getattr(row, "crm_document", None)  # whole or summarised: its owner
        owner = current.source_extra.get(CRM_OWNER) if was_read(current) else None
        self._client.patch_document(self._organization_id, crm_id, fields, owner)
        self._store.links.bind(
            self._organization_id,
            crm_document_id=crm_id,
            metakocka_id=mk_id,
            content_hash=row.crm_hash,
            document_type=doc.document_type,
            metakocka_doc_type=doc.metakocka_doc_type,
            crm_document_number=fields.get("document_number"),
            metakocka_count_code=doc.metakocka_count_code,
        )
        return PushOutcome(
            row.action,
            METAKOCKA_TO_CRM,
            OK,
            crm_id,
            mk_id,
            doc.metakocka_count_code,
            attempted_at=attempted_at,
        )

    def _write_whole(self, row) -> PushOutcome:
        """The whole document written alone (a create is an upsert on the derived id), then
        bound."""
        attempted_at = datetime.now(UTC)
        crm_id, write = self._whole_document_write(row)
        self._client.write_documents(self._organization_id, [write])
        self._store.links.bind(self._organization_id, **_link_of(row, crm_id, write))
        return _written(row, crm_id, attempted_at)

    def _whole_document_write(self, row) -> tuple[str, CrmDocumentWrite]:
        return crm_document_write(row, self._context(), self._organization_id)

    def _context(self) -> CrmContext:
        """The CRM's schema and settings, and the references the writes need, read on the first
        write inside its guard: a refused key or a broken answer is that document's failure (a
        refused key trips the breaker), not a crashed push; and nothing is read when nothing is
        written."""
        with self._context_lock:
            if self._crm_context is None:
                read = crm_context(self._client, self._organization_id)
                prefetch_metakocka_references(
                    self._client, self._organization_id, self._rows.get("metakocka_document", ())
                )
                self._crm_context = read
            return self._crm_context

    def _with_whole_documents(self, batch: list, done: dict) -> tuple[list, list]:
        """The batch's rows with whole documents where they hold summaries (`sync/rereads.py`),
        and the Metakocka documents so read. A document that changed since this run read it, or
        could not be read, goes into `done` (pending, or failed) and is not written."""
        rows, read_again = [], []
        for index, row in enumerate(batch):
            attempted_at = datetime.now(UTC)
            try:
                mk_doc, why = self._rereads.metakocka(row.metakocka_document)
                crm_doc, crm_why = getattr(row, "crm_document", None), ""
                if row.action == "update_in_crm":  # an update keeps what the CRM's copy holds
                    crm_doc, crm_why = self._rereads.crm(crm_doc)
            except Exception as exc:  # nothing was sent: this document fails alone
                done[index] = failure(row, exc, METAKOCKA_TO_CRM, self._breaker, attempted_at)
                rows.append(row)
                continue
            if why or crm_why:
                why = f"not pushed: {why or crm_why}; planned again"
                done[index] = pending(row, METAKOCKA_TO_CRM, why)
            elif mk_doc is not row.metakocka_document:
                read_again.append(mk_doc)
            documents = {"metakocka_document": mk_doc, "crm_document": crm_doc}
            rows.append(row._replace(**{k: v for k, v in documents.items() if k in row._fields}))
        return rows, read_again


def push_to_crm(
    plan: pd.DataFrame,
    *,
    client: CrmClient,
    store: SyncStore,
    organization_id: str,
    concurrency: int = 2,
    on_progress: Progress | None = None,
    run_id: str | None = None,
    claim_ttl_s: float = DEFAULT_CLAIM_TTL_S,
    metakocka: MetakockaClient | None = None,
) -> list[PushOutcome]:
    """Create or update in the CRM every plan row whose action points there, after redoing the
    writes an earlier run left half-done. A document known by its summary (`sync/lean.py`) is
    read again first (from `metakocka`, or the CRM's own for an update: `sync/rereads.py`)."""
    rows = plan.loc[plan["action"].isin(TO_CRM_ACTIONS)]
    breaker = CircuitBreaker()
    claims = run_claims(store, organization_id, run_id, claim_ttl_s)
    with claims, ExitStack() as stack:
        resumed = _unfinished_crm_writes(plan, claims, store, organization_id)
        rows = pd.concat([resumed, rows]) if len(resumed) else rows
        rereads = WholeDocuments(
            organization_id,
            links=store.links,
            crm=client,
            metakocka=metakocka,
            crm_summaries=rows.loc[rows["action"] == "update_in_crm", "crm_document"]
            if len(rows)
            else (),
            metakocka_stand_ins=rows["metakocka_document"] if len(rows) else (),
        )
        stack.enter_context(rereads)
        exporter = CrmExporter(
            client=client,
            store=store,
            organization_id=organization_id,
            claims=claims,
            rereads=rereads,
            breaker=breaker,
            rows=rows,
        )
        fields = rows["crm_fields"] if "crm_fields" in rows else pd.Series(None, index=rows.index)
        # a write of just Metakocka's fields goes alone; whole documents go in batches
        whole = ~fields.map(lambda value: isinstance(value, dict) and bool(value)).astype(bool)
        outcomes = run_each(
            rows.loc[~whole], exporter.run, METAKOCKA_TO_CRM, breaker, concurrency, on_progress
        )
        outcomes += run_batches(
            rows.loc[whole],
            exporter.write_batch,
            METAKOCKA_TO_CRM,
            concurrency,
            on_progress,
            size=CRM_BATCH,
        )
    return with_breaker_summary(outcomes, breaker, "the CRM")


def _unfinished_crm_writes(plan, claims: DocumentClaims, store: SyncStore, organization_id):
    """Plan rows that redo a write to the CRM a dead or failed run left half-done: the document
    is written again from its Metakocka copy, whatever this run's plan made of the half-written
    CRM side (a change, a conflict, an invalid document)."""
    unfinished = claims.unfinished_writes(TO_CRM_ACTIONS)
    if not unfinished or plan.empty:
        return plan.iloc[0:0]
    candidates = plan.loc[
        plan["crm_document_id"].isin(list(unfinished))
        & ~plan["action"].isin(TO_CRM_ACTIONS)
        & plan["metakocka_id"].notna()
        & plan["metakocka_document"].map(was_read)
    ].copy()
    actions = []
    pairs = zip(candidates["crm_document_id"], candidates["metakocka_id"], strict=True)
    for crm_id, mk_id in pairs:
        link = store.links.find(organization_id, crm_document_id=str(crm_id))
        linked = link is not None and link.get("state") == LINK_LINKED
        # A create writes the id derived from the Metakocka id: right for a document born in
        # Metakocka, but a CRM-born document (an adopted pair, not linked yet) is rewritten in
        # place, under its own id, or the CRM would get a second copy of it.
        born_in_metakocka = crm_id == crm_id_for_metakocka_document(organization_id, str(mk_id))
        actions.append("create_in_crm" if born_in_metakocka and not linked else "update_in_crm")
    candidates["action"] = actions
    if "crm_fields" in candidates:
        candidates["crm_fields"] = None  # the whole document is rewritten
    return candidates


def _link_of(row, crm_id: str, write: CrmDocumentWrite) -> dict:
    """The link a whole-document write binds."""
    doc: SalesDocument = row.metakocka_document
    current = getattr(row, "crm_document", None)
    number = write.header.get("document_number") or (
        current.document_number if was_read(current) else None
    )
    return {
        "crm_document_id": crm_id,
        "metakocka_id": str(row.metakocka_id),
        "content_hash": row.metakocka_hash,
        "document_type": doc.document_type,
        "metakocka_doc_type": doc.metakocka_doc_type,
        "crm_document_number": number,
        "metakocka_count_code": doc.metakocka_count_code,
    }


def _written(row, crm_id: str, attempted_at: datetime) -> PushOutcome:
    """The `ok` outcome of a whole-document write."""
    return PushOutcome(
        row.action,
        METAKOCKA_TO_CRM,
        OK,
        crm_id,
        str(row.metakocka_id),
        row.metakocka_document.metakocka_count_code,
        attempted_at=attempted_at,
    )
