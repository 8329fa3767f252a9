"""Carry out the write half of a sync plan, one document at a time, with bounded concurrency.

The order of steps for every document is what makes a duplicate impossible:
1. a create in Metakocka is first recorded as an *intent* in `document_links`;
2. the create goes through `MetakockaClient.create_document_exactly_once`, which looks the
   document up by its external id (`buyer_order`) before any (re)send;
3. the link is bound in its own transaction the moment the remote write is confirmed.
A create in the CRM needs no intent: its id is derived from the Metakocka id, so a repeat is
an upsert.

Before any remote call a push claims its document (`store/claims.py`): a document another live
run is pushing is left `pending` for a later run, so the nightly reconciliation and an on-demand
run cannot both create it. Once claimed, a document whose link changed since this run's plan was
made (another run synced it meanwhile) is also left `pending` rather than pushed from a stale plan.

A write to the CRM takes several requests, so its claim is also its intent: a run that dies or
fails half-way leaves it behind, and the next push to the CRM first rewrites that document from
Metakocka (whatever this run's plan says about it), while the push to Metakocka leaves it alone, so
a half-written CRM document is never taken for a user's edit and copied to Metakocka.

A document is `synced` only after its write is confirmed. Every failure becomes an outcome with its
`error_type`; nothing is dropped. An `AuthError` trips a per-run circuit breaker: the first
document is pushed alone (a probe), so bad credentials cost one call; the company is not called
again for the remaining documents, which stay `pending`, and the run logs one `auth` row, not one
per document.
"""

import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pandas as pd

from sync_pipeline.adapters.errors import AuthError, SyncError
from sync_pipeline.crm.client import CrmClient
from sync_pipeline.crm.documents import CrmDocumentWrite
from sync_pipeline.crm.mapping import CRM_OWNER, CrmContext, canonical_to_crm_write
from sync_pipeline.domain.document import (
    MappingError,
    SalesDocument,
    crm_id_for_metakocka_document,
)
from sync_pipeline.domain.summary import DocumentSummary, was_read
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.metakocka.mapping import (
    ISSUED_BILL,
    canonical_to_metakocka,
    is_issued_bill,
    metakocka_to_canonical,
)
from sync_pipeline.store.bulk_links import bind_many
from sync_pipeline.store.claims import DEFAULT_CLAIM_TTL_S, DocumentClaims, claim_owner
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.tables import LINK_CREATING_IN_METAKOCKA, LINK_LINKED
from sync_pipeline.sync.counterparts import LinkedCounterpart
from sync_pipeline.sync.extract import crm_context
from sync_pipeline.sync.rereads import WholeDocuments

KNOWN_ABSENT = "metakocka_absent"
"""Plan column (sync/incremental.py): a create in Metakocka that may skip its first look-up."""

CRM_TO_METAKOCKA = "crm_to_metakocka"
METAKOCKA_TO_CRM = "metakocka_to_crm"

TO_METAKOCKA_ACTIONS = ("create_in_metakocka", "update_in_metakocka")
TO_CRM_ACTIONS = ("create_in_crm", "update_in_crm")

OK = "ok"
FAILED = "failed"
SKIPPED = "skipped"


@dataclass(frozen=True)
class PushOutcome:
    action: str
    direction: str
    result: str
    """`ok`, `failed`, or `skipped` (not attempted: the circuit breaker is open)."""
    crm_document_id: str | None
    metakocka_id: str | None
    metakocka_count_code: str | None = None
    error_type: str | None = None
    message: str | None = None
    attempted_at: datetime | None = None
    stack_trace: str | None = None


class CircuitBreaker:
    """Opens on the first `AuthError`: bad credentials will not get better by asking again."""

    def __init__(self):
        self._open = threading.Event()
        self._lock = threading.Lock()
        self.reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def trip(self, reason: str) -> bool:
        """Open the breaker; True only for the caller that opened it (whose failure is logged)."""
        with self._lock:
            if self._open.is_set():
                return False
            self.reason = reason
            self._open.set()
            return True


def push_to_metakocka(
    plan: pd.DataFrame,
    *,
    client: MetakockaClient,
    store: SyncStore,
    organization_id: str,
    concurrency: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
    run_id: str | None = None,
    claim_ttl_s: float = DEFAULT_CLAIM_TTL_S,
    crm: CrmClient | None = None,
) -> list[PushOutcome]:
    """Create or update in Metakocka every plan row whose action points there.

    An update whose Metakocka side is known only by its link (`sync/counterparts.py`) or by its
    summary (`sync/lean.py`) reads that side first and goes last, so the reads overlap the other
    writes; a CRM document known by its summary is read again from `crm` (`sync/rereads.py`)."""
    rows = plan.loc[plan["action"].isin(TO_METAKOCKA_ACTIONS)]
    by_link = _read_before_replace(rows)
    rows = pd.concat([rows.loc[~by_link], rows.loc[by_link]])
    breaker = CircuitBreaker()

    def push_one(row) -> PushOutcome:
        doc, why = rereads.crm(row.crm_document)
        if why:
            return _pending(row, CRM_TO_METAKOCKA, f"not pushed: {why}; planned again")
        attempted_at = datetime.now(UTC)
        if row.action == "create_in_metakocka":
            store.record_intent(
                organization_id,
                state=LINK_CREATING_IN_METAKOCKA,
                crm_document_id=doc.crm_document_id,
                document_type=doc.document_type,
            )
            payload = canonical_to_metakocka(doc)
            result, created = client.create_document_exactly_once(
                payload,
                external_ref=payload["buyer_order"],
                # this run's extraction proves it is not there yet (sync/incremental.py)
                known_absent=bool(getattr(row, KNOWN_ABSENT, False)),
            )
            mk_id = str(result["mk_id"])
            if not created:
                # Found by its external id: an earlier attempt got through, and Metakocka's users
                # may have worked on it since. Read it, then replace it keeping every field the
                # CRM does not own (status, delivery type, warehouse, ...).
                held = metakocka_to_canonical(
                    client.get_document(payload["doc_type"], mk_id), organization_id
                )
                payload = canonical_to_metakocka(doc, mk_id=mk_id, current=held)
                client.replace_document(mk_id, payload)
        else:
            mk_id = str(row.metakocka_id)
            current, why = rereads.metakocka(getattr(row, "metakocka_document", None))
            if why:
                return _pending(row, CRM_TO_METAKOCKA, f"not pushed: {why}; planned again")
            current = current if isinstance(current, SalesDocument) else None
            if is_issued_bill(current):  # never replaced (sync/planning.py, keep_issued_bills)
                return PushOutcome(
                    row.action,
                    CRM_TO_METAKOCKA,
                    FAILED,
                    doc.crm_document_id,
                    mk_id,
                    error_type="conflict",
                    message=ISSUED_BILL,
                    attempted_at=attempted_at,
                )
            # A replace rewrites the whole document: carry over the fields only Metakocka has.
            payload = canonical_to_metakocka(doc, mk_id=mk_id, current=current)
            result = client.replace_document(mk_id, payload)
        count_code = _text(result.get("count_code"))
        store.bind(
            organization_id,
            crm_document_id=doc.crm_document_id,
            metakocka_id=mk_id,
            content_hash=row.crm_hash,
            document_type=doc.document_type,
            metakocka_doc_type=payload.get("doc_type"),
            crm_document_number=doc.document_number,
            metakocka_count_code=count_code,
        )
        return PushOutcome(
            row.action,
            CRM_TO_METAKOCKA,
            OK,
            doc.crm_document_id,
            mk_id,
            count_code,
            attempted_at=attempted_at,
        )

    claims = DocumentClaims(
        store.engine, organization_id, owner=claim_owner(run_id), ttl_s=claim_ttl_s
    )
    rereads = WholeDocuments(
        organization_id,
        engine=store.engine,
        crm=crm,
        metakocka=client,
        crm_summaries=rows["crm_document"] if len(rows) else (),
        metakocka_stand_ins=rows["metakocka_document"].loc[by_link] if by_link.any() else (),
    )
    with claims, rereads:
        # A CRM document whose write to the CRM never finished is not pushed to Metakocka.
        held_back = set(claims.unfinished_writes(TO_CRM_ACTIONS))
        push_one = _claimed(push_one, claims, store, organization_id, CRM_TO_METAKOCKA, held_back)
        outcomes = _run_all(rows, push_one, CRM_TO_METAKOCKA, breaker, concurrency, on_progress)
    return _with_breaker_summary(outcomes, breaker, "Metakocka")


def push_to_crm(
    plan: pd.DataFrame,
    *,
    client: CrmClient,
    store: SyncStore,
    organization_id: str,
    concurrency: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
    run_id: str | None = None,
    claim_ttl_s: float = DEFAULT_CLAIM_TTL_S,
    metakocka: MetakockaClient | None = None,
) -> list[PushOutcome]:
    """Create or update in the CRM every plan row whose action points there. A document known
    by its summary (`sync/lean.py`) is read again first (from `metakocka`, or the CRM's own
    for an update: `sync/rereads.py`)."""
    rows = plan.loc[plan["action"].isin(TO_CRM_ACTIONS)]
    breaker = CircuitBreaker()
    setup_lock = threading.Lock()
    setup: dict[str, CrmContext] = {}

    def context() -> CrmContext:
        """The CRM's schema and settings, and the references the writes need, read on the first
        write inside its guard: a refused key or a broken answer is that document's failure (a
        refused key trips the breaker), not a crashed push; and nothing is read when nothing is
        written."""
        with setup_lock:
            if "context" not in setup:
                read = crm_context(client, organization_id)
                prefetch_metakocka_references(
                    client, organization_id, rows.get("metakocka_document", ())
                )
                setup["context"] = read
            return setup["context"]

    def push_one(row) -> PushOutcome:
        doc: SalesDocument = row.metakocka_document
        attempted_at = datetime.now(UTC)
        mk_id = str(row.metakocka_id)
        fields = getattr(row, "crm_fields", None)
        if fields:
            # Only fields Metakocka owns changed (domain/ownership.py): write just those columns.
            crm_id = str(row.crm_document_id)
            current = getattr(row, "crm_document", None)  # whole or summarised: its owner
            owner = current.source_extra.get(CRM_OWNER) if was_read(current) else None
            client.patch_document(organization_id, crm_id, fields, owner)
            store.bind(
                organization_id,
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
        crm_id, write = crm_write(row)
        client.write_documents(organization_id, [write])
        store.bind(organization_id, **link_of(row, crm_id, write))
        return ok(row, crm_id, attempted_at)

    def crm_write(row) -> tuple[str, CrmDocumentWrite]:
        return crm_document_write(row, context(), organization_id)

    def link_of(row, crm_id: str, write: CrmDocumentWrite) -> dict:
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

    def ok(row, crm_id: str, attempted_at: datetime) -> PushOutcome:
        return PushOutcome(
            row.action,
            METAKOCKA_TO_CRM,
            OK,
            crm_id,
            str(row.metakocka_id),
            row.metakocka_document.metakocka_count_code,
            attempted_at=attempted_at,
        )

    claims = DocumentClaims(
        store.engine, organization_id, owner=claim_owner(run_id), ttl_s=claim_ttl_s
    )
    with claims, ExitStack() as stack:
        resumed = _unfinished_crm_writes(plan, claims, store, organization_id)
        rows = pd.concat([resumed, rows]) if len(resumed) else rows
        push_one = _claimed(push_one, claims, store, organization_id, METAKOCKA_TO_CRM)
        rereads = WholeDocuments(
            organization_id,
            engine=store.engine,
            crm=client,
            metakocka=metakocka,
            crm_summaries=rows.loc[rows["action"] == "update_in_crm", "crm_document"]
            if len(rows)
            else (),
            metakocka_stand_ins=rows["metakocka_document"] if len(rows) else (),
        )
        stack.enter_context(rereads)
        fields = rows["crm_fields"] if "crm_fields" in rows else pd.Series(None, index=rows.index)
        # a write of just Metakocka's fields goes alone; whole documents go in batches
        whole = ~fields.map(lambda value: isinstance(value, dict) and bool(value)).astype(bool)
        outcomes = _run_all(
            rows.loc[~whole], push_one, METAKOCKA_TO_CRM, breaker, concurrency, on_progress
        )

        def write_batch(batch: list) -> list[PushOutcome]:
            """Up to a hundred whole documents in a handful of requests
            (`CrmClient.write_documents`) under their claims; if the batch fails, each document
            is written alone, which both says which one is at fault and rewrites any the batch
            left half-written."""
            if breaker.is_open:
                return [_guarded_push(row, push_one, METAKOCKA_TO_CRM, breaker) for row in batch]
            done: dict[int, PushOutcome] = {}
            ready: list[tuple[int, object, str, CrmDocumentWrite]] = []
            batch, read_again = _with_whole_documents(batch, rereads, done, breaker)
            references = _References(client, organization_id, read_again)
            for index, row in enumerate(batch):
                if index in done:
                    continue
                if breaker.is_open:
                    done[index] = _guarded_push(row, push_one, METAKOCKA_TO_CRM, breaker)
                    continue
                crm_id = _text(row.crm_document_id)
                holder = claims.try_claim(crm_id, row.action)
                if holder is not None:
                    why = f"not pushed: {holder.describe()}; retried later"
                    done[index] = _pending(row, METAKOCKA_TO_CRM, why)
                    continue
                link = store.find_link(organization_id, crm_document_id=crm_id)
                changed = _link_changed_since_plan(link, row)
                if changed:
                    claims.release(crm_id)
                    why = f"not pushed: {changed}; rechecked next run"
                    done[index] = _pending(row, METAKOCKA_TO_CRM, why)
                    continue
                try:
                    references.prefetch()
                    ready.append((index, row, *crm_write(row)))
                except Exception as exc:  # nothing was sent: this document fails alone
                    claims.release(crm_id)
                    failed_at = datetime.now(UTC)
                    done[index] = _failure(row, exc, METAKOCKA_TO_CRM, breaker, failed_at)
            attempted_at = datetime.now(UTC)
            try:
                client.write_documents(organization_id, [write for *_, write in ready])
            except AuthError as exc:
                # The circuit breaker: refused credentials are one failure, the rest wait (and
                # are not tried one by one); a refusal half-way keeps the claims as unfinished.
                first = breaker.trip(str(exc))
                for position, (index, row, crm_id, *_) in enumerate(ready):
                    claims.abandon(crm_id)
                    done[index] = PushOutcome(
                        row.action,
                        METAKOCKA_TO_CRM,
                        FAILED if first and position == 0 else SKIPPED,
                        crm_id,
                        _text(row.metakocka_id),
                        error_type=exc.error_type,
                        message=str(exc) if first and position == 0 else f"not attempted: {exc}",
                        attempted_at=attempted_at,
                    )
            except Exception:
                for index, row, *_ in ready:
                    done[index] = _guarded_push(row, push_one, METAKOCKA_TO_CRM, breaker)
            else:
                links = [link_of(row, crm_id, write) for _, row, crm_id, write in ready]
                bind_many(store.engine, organization_id, links, bind_one=store.bind)
                for index, row, crm_id, _ in ready:
                    claims.release(crm_id)
                    done[index] = ok(row, crm_id, attempted_at)
            return [done[index] for index in range(len(batch))]

        outcomes += _run_batches(
            rows.loc[whole], write_batch, METAKOCKA_TO_CRM, concurrency, on_progress
        )
    return _with_breaker_summary(outcomes, breaker, "the CRM")


CRM_BATCH = 100
"""Whole documents written to the CRM per batch (the ids of a batch go into one URL)."""


def _run_batches(rows, write_batch, direction, concurrency, on_progress) -> list[PushOutcome]:
    """`write_batch` over `CRM_BATCH`-sized batches of `rows`, `concurrency` batches at a time;
    the first batch goes alone (a probe, as in `_run_all`)."""
    records = list(rows.itertuples(index=False))
    batches = [records[i : i + CRM_BATCH] for i in range(0, len(records), CRM_BATCH)]
    total, done, lock = len(records), 0, threading.Lock()

    def run(batch) -> list[PushOutcome]:
        nonlocal done
        outcomes = write_batch(batch)
        if on_progress is not None:
            with lock:
                for _ in outcomes:
                    done += 1
                    on_progress(done, total)
        return outcomes

    if not batches:
        return []
    first = run(batches[0])
    with ThreadPoolExecutor(
        max_workers=max(1, concurrency), thread_name_prefix=f"push-{direction}"
    ) as pool:
        return [*first, *(o for outcomes in pool.map(run, batches[1:]) for o in outcomes)]


def _run_all(rows, push_one, direction, breaker, concurrency, on_progress) -> list[PushOutcome]:
    total = len(rows)
    done = 0
    lock = threading.Lock()

    def guarded(row) -> PushOutcome:
        nonlocal done
        outcome = _guarded_push(row, push_one, direction, breaker)
        if on_progress is not None:
            with lock:
                done += 1
                on_progress(done, total)
        return outcome

    records = list(rows.itertuples(index=False))
    if concurrency <= 1 or total <= 1:
        return [guarded(row) for row in records]
    # The first document goes alone: if the credentials are bad, one call finds out (the breaker
    # then stops the rest before any of them is sent).
    probe = guarded(records[0])
    with ThreadPoolExecutor(
        max_workers=concurrency, thread_name_prefix=f"push-{direction}"
    ) as pool:
        return [probe, *pool.map(guarded, records[1:])]


def _claimed(
    push_one, claims: DocumentClaims, store: SyncStore, organization_id, direction, held_back=()
):
    """`push_one` under the document's claim; a document claimed elsewhere, synced by another run
    since this run's plan, or (`held_back`) half-written in the CRM, is skipped (left `pending`).
    A write to the CRM that raises keeps its claim as an unfinished write (`abandon`)."""

    def claimed_push(row) -> PushOutcome:
        crm_id = _text(row.crm_document_id)
        if crm_id in held_back:
            why = "an earlier write of it to the CRM did not finish; the CRM push resumes it first"
            return _pending(row, direction, f"not pushed: {why}")
        holder = claims.try_claim(crm_id, row.action)
        if holder is not None:
            return _pending(row, direction, f"not pushed: {holder.describe()}; retried later")
        try:
            link = store.find_link(organization_id, crm_document_id=crm_id)
            changed = _link_changed_since_plan(link, row)
            if changed:
                outcome = _pending(row, direction, f"not pushed: {changed}; rechecked next run")
            else:
                outcome = push_one(_look_up_if_ever_attempted(link, row))
        except BaseException:
            if direction == METAKOCKA_TO_CRM:
                claims.abandon(crm_id)  # the CRM copy may be half-written: resume it next run
            else:
                claims.release(crm_id)
            raise
        claims.release(crm_id)
        return outcome

    return claimed_push


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
        link = store.find_link(organization_id, crm_document_id=str(crm_id))
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


def _look_up_if_ever_attempted(link: dict | None, row):
    """A create the plan called known absent (no intent when the plan was made) keeps its look-up
    if an intent exists by now: another run may have sent that create since, and died before
    binding it. An unfinished intent is always resolved by a look-up before anything is resent."""
    if link is not None and getattr(row, KNOWN_ABSENT, False):
        return row._replace(**{KNOWN_ABSENT: False})
    return row


def _link_changed_since_plan(link: dict | None, row) -> str | None:
    """Why the plan row is stale (another run bound this document after the plan was made)."""
    if "link_hash" not in row._fields:
        return None
    linked = link if link is not None and link.get("state") == LINK_LINKED else None
    seen = _text(row.link_hash)
    current = _text(linked.get("content_hash")) if linked else None
    if linked is not None and (seen is None or current != seen):
        return "another run synced it after this run's plan was made"
    return None


def _pending(row, direction: str, message: str) -> PushOutcome:
    return PushOutcome(
        row.action,
        direction,
        SKIPPED,
        _text(getattr(row, "crm_document_id", None)),
        _text(getattr(row, "metakocka_id", None)),
        message=message,
    )


def _with_breaker_summary(outcomes: list[PushOutcome], breaker, system: str) -> list[PushOutcome]:
    """Say on the one `auth` failure how many documents the open breaker left pending."""
    if not breaker.is_open:
        return outcomes
    left = sum(o.result == SKIPPED and o.error_type == "auth" for o in outcomes)
    return [
        replace(
            o,
            message=f"{o.message} (circuit breaker open: {system} was not called again in this "
            f"run; {left} more document(s) left pending)",
        )
        if o.result == FAILED and o.error_type == "auth"
        else o
        for o in outcomes
    ]


def _guarded_push(row, push_one, direction, breaker: CircuitBreaker) -> PushOutcome:
    """Run one push and turn any failure into an outcome; never let one document stop the rest."""
    if breaker.is_open:
        return PushOutcome(
            row.action,
            direction,
            SKIPPED,
            _text(getattr(row, "crm_document_id", None)),
            _text(getattr(row, "metakocka_id", None)),
            error_type="auth",
            message=f"not attempted: {breaker.reason}",
        )
    attempted_at = datetime.now(UTC)
    try:
        return push_one(row)
    except Exception as exc:
        return _failure(row, exc, direction, breaker, attempted_at)


def _failure(
    row, exc: Exception, direction: str, breaker: CircuitBreaker, attempted_at: datetime
) -> PushOutcome:
    """The outcome of one document's failed push (called in the `except` that caught `exc`).

    A refused key trips the breaker (only the first refusal is a failure, the others wait); a
    value the other system cannot hold is `rejected`; anything unexpected is `internal`, with
    its stack trace."""
    crm_id = _text(getattr(row, "crm_document_id", None))
    mk_id = _text(getattr(row, "metakocka_id", None))
    failed = {"attempted_at": attempted_at}
    if isinstance(exc, AuthError):
        first = breaker.trip(str(exc))
        result = FAILED if first else SKIPPED
        return PushOutcome(
            row.action, direction, result, crm_id, mk_id,
            error_type=exc.error_type, message=str(exc), **failed,
        )  # fmt: skip
    if isinstance(exc, SyncError):
        return PushOutcome(
            row.action, direction, FAILED, crm_id, mk_id,
            error_type=exc.error_type, message=str(exc), **failed,
        )  # fmt: skip
    if isinstance(exc, MappingError):  # the other system cannot hold it (a setting is missing)
        return PushOutcome(
            row.action, direction, FAILED, crm_id, mk_id,
            error_type="rejected", message=exc.reason, **failed,
        )  # fmt: skip
    return PushOutcome(  # a bug or an unexpected answer: record it, go on with the others
        row.action, direction, FAILED, crm_id, mk_id,
        error_type="internal", message=f"{type(exc).__name__}: {exc}",
        stack_trace=traceback.format_exc(), **failed,
    )  # fmt: skip


def _read_before_replace(rows: pd.DataFrame) -> pd.Series:
    """Rows whose Metakocka side is known by its link or its summary: read before the replace."""
    if "metakocka_document" not in rows:
        return pd.Series(False, index=rows.index)
    stands_in = rows["metakocka_document"].map(
        lambda doc: isinstance(doc, LinkedCounterpart | DocumentSummary)
    )
    return stands_in.astype(bool)


def _document_or_none(row, side: str = "metakocka_document") -> SalesDocument | None:
    doc = getattr(row, side, None)
    return doc if isinstance(doc, SalesDocument) else None


def crm_document_write(
    row, context: CrmContext, organization_id: str
) -> tuple[str, CrmDocumentWrite]:
    """The CRM id and the whole-document write of a plan row bound for the CRM
    (`crm/mapping.py`: a create gets the organization's integration user, the derived id and
    Metakocka's number; an update keeps the CRM's owner, number and its own metadata).
    `MappingError` when the CRM cannot hold the document."""
    doc: SalesDocument = row.metakocka_document
    create = row.action == "create_in_crm"
    crm_id = (
        crm_id_for_metakocka_document(organization_id, str(row.metakocka_id))
        if create
        else str(row.crm_document_id)
    )
    write = canonical_to_crm_write(
        doc,
        context,
        crm_document_id=crm_id,
        create=create,
        current=None if create else _document_or_none(row, "crm_document"),
    )
    return crm_id, write


def prefetch_metakocka_references(client: CrmClient, organization_id: str, docs) -> None:
    """What the Metakocka documents to write refer to (partners, product codes), read from the
    CRM's mapping tables in a few requests before the writes (`CrmDirectory`)."""
    docs = [d for d in docs if isinstance(d, SalesDocument)]
    if docs:
        client.directory(organization_id).prefetch_metakocka_references(
            (d.customer.metakocka_partner_id for d in docs),
            (line.product_code for d in docs for line in d.lines),
        )


def _with_whole_documents(batch: list, rereads: WholeDocuments, done: dict, breaker) -> tuple:
    """The batch's rows with whole documents where they hold summaries (`sync/rereads.py`), and
    the Metakocka documents so read. A document that changed since this run read it, or could
    not be read, goes into `done` (pending, or failed) and is not written."""
    rows, read_again = [], []
    for index, row in enumerate(batch):
        attempted_at = datetime.now(UTC)
        try:
            mk_doc, why = rereads.metakocka(row.metakocka_document)
            crm_doc, crm_why = getattr(row, "crm_document", None), ""
            if row.action == "update_in_crm":  # an update keeps what the CRM's copy holds
                crm_doc, crm_why = rereads.crm(crm_doc)
        except Exception as exc:  # nothing was sent: this document fails alone
            done[index] = _failure(row, exc, METAKOCKA_TO_CRM, breaker, attempted_at)
            rows.append(row)
            continue
        if why or crm_why:
            why = f"not pushed: {why or crm_why}; planned again"
            done[index] = _pending(row, METAKOCKA_TO_CRM, why)
        elif mk_doc is not row.metakocka_document:
            read_again.append(mk_doc)
        documents = {"metakocka_document": mk_doc, "crm_document": crm_doc}
        rows.append(row._replace(**{k: v for k, v in documents.items() if k in row._fields}))
    return rows, read_again


class _References:
    """The references of documents read again (`prefetch_metakocka_references`), read once
    per batch, inside the guard of the first write that needs them."""

    def __init__(self, client: CrmClient, organization_id: str, docs: list):
        self._args = (client, organization_id, docs)
        self._done = not docs

    def prefetch(self) -> None:
        if not self._done:
            prefetch_metakocka_references(*self._args)
            self._done = True


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return None
    return str(value)


def bind_unchanged_pairs(plan: pd.DataFrame, *, store: SyncStore, organization_id: str) -> int:
    """Write the link of pairs that need no push: matched without a link row, or converged.

    A pair found by external id (an earlier run crashed before binding, or the CRM's old sync made
    it) gets its link here, so the next run compares against a stored hash like any other.
    """
    flags = plan.get("link_missing", False) | plan.get("refresh_link", False)
    rows = plan.loc[(plan["action"] == "unchanged") & flags]
    pairs = (
        {
            "crm_document_id": str(row.crm_document_id),
            "metakocka_id": str(row.metakocka_id),
            "content_hash": row.crm_hash,
            "document_type": row.crm_document.document_type,
            "metakocka_doc_type": row.metakocka_document.metakocka_doc_type,
            "crm_document_number": row.crm_document.document_number,
            "metakocka_count_code": row.metakocka_document.metakocka_count_code,
        }
        for row in rows.itertuples(index=False)
    )
    # A first run against documents the old integration linked binds them all: in bulk, a
    # chunk at a time.
    return bind_many(store.engine, organization_id, pairs, bind_one=store.bind)
