"""Create or update CRM documents in Metakocka, one document at a time (`MetakockaExporter.run`).

The order of steps for every document is what makes a duplicate impossible: the document is
claimed, its plan checked for staleness, a create is first recorded as an *intent* in
`document_links`, then goes through `MetakockaClient.create_document_exactly_once` (which looks
the document up by its external id, `buyer_order`, before any (re)send), and the link is bound in
its own transaction the moment the write is confirmed (`docs/exactly-once.md`).
"""

from datetime import UTC, datetime

import pandas as pd

from sync_pipeline.crm.client import CrmClient
from sync_pipeline.domain.directions import CRM_TO_METAKOCKA
from sync_pipeline.domain.document import SalesDocument
from sync_pipeline.domain.plan import KNOWN_ABSENT
from sync_pipeline.domain.summary import DocumentSummary
from sync_pipeline.domain.text import text_or_none
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.metakocka.mapping import (
    ISSUED_BILL,
    canonical_to_metakocka,
    is_issued_bill,
    metakocka_to_canonical,
)
from sync_pipeline.store.claims import DEFAULT_CLAIM_TTL_S, DocumentClaims
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.tables import LINK_CREATING_IN_METAKOCKA
from sync_pipeline.sync.counterparts import LinkedCounterpart
from sync_pipeline.sync.export.guards import claim, run_claims, stale_plan
from sync_pipeline.sync.export.outcomes import (
    FAILED,
    OK,
    TO_CRM_ACTIONS,
    TO_METAKOCKA_ACTIONS,
    PushOutcome,
    pending,
)
from sync_pipeline.sync.export.runner import (
    CircuitBreaker,
    Progress,
    run_each,
    with_breaker_summary,
)
from sync_pipeline.sync.rereads import WholeDocuments

HALF_WRITTEN_IN_CRM = (
    "not pushed: an earlier write of it to the CRM did not finish; the CRM push resumes it first"
)


class MetakockaExporter:
    """Pushes plan rows to Metakocka for one organization, under this run's claims."""

    def __init__(
        self,
        *,
        client: MetakockaClient,
        store: SyncStore,
        organization_id: str,
        claims: DocumentClaims,
        rereads: WholeDocuments,
        half_written_in_crm: set[str],
    ):
        self._client = client
        self._store = store
        self._organization_id = organization_id
        self._claims = claims
        self._rereads = rereads
        self._half_written_in_crm = half_written_in_crm

    def run(self, row) -> PushOutcome:
        """One document, through each protection of `docs/exactly-once.md` in turn: a CRM
        document whose write to the CRM never finished is left alone; claim; stale-plan check;
        the whole CRM document read again if summarised; intent; find-or-create (or read, then
        replace); bind; release. Raises what the write raised (`runner.guarded` makes it the
        document's outcome)."""
        crm_id = text_or_none(row.crm_document_id)
        if crm_id in self._half_written_in_crm:
            return pending(row, CRM_TO_METAKOCKA, HALF_WRITTEN_IN_CRM)
        busy = claim(self._claims, crm_id, row, CRM_TO_METAKOCKA)
        if busy is not None:
            return busy
        try:
            link = self._store.links.find(self._organization_id, crm_document_id=crm_id)
            stale = stale_plan(link, row, CRM_TO_METAKOCKA)
            if stale is not None:
                return stale
            row = _look_up_if_ever_attempted(link, row)
            doc, why = self._rereads.crm(row.crm_document)
            if why:
                return pending(row, CRM_TO_METAKOCKA, f"not pushed: {why}; planned again")
            attempted_at = datetime.now(UTC)
            if row.action == "create_in_metakocka":
                self._record_intent(doc)
                mk_id, payload, result = self._find_or_create(row, doc)
            else:
                mk_id = str(row.metakocka_id)
                current, why = self._rereads.metakocka(getattr(row, "metakocka_document", None))
                if why:
                    return pending(row, CRM_TO_METAKOCKA, f"not pushed: {why}; planned again")
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
                result = self._client.replace_document(mk_id, payload)
            count_code = text_or_none(result.get("count_code"))
            self._bind(row, doc, mk_id, payload, count_code)
            return PushOutcome(
                row.action,
                CRM_TO_METAKOCKA,
                OK,
                doc.crm_document_id,
                mk_id,
                count_code,
                attempted_at=attempted_at,
            )
        finally:
            self._claims.release(crm_id)

    def _record_intent(self, doc: SalesDocument) -> None:
        """The create's trace in `document_links`, written before anything is sent: a crash
        between Metakocka storing the document and its bind is then resolved by a look-up."""
        self._store.links.record_intent(
            self._organization_id,
            state=LINK_CREATING_IN_METAKOCKA,
            crm_document_id=doc.crm_document_id,
            document_type=doc.document_type,
        )

    def _find_or_create(self, row, doc: SalesDocument) -> tuple[str, dict, dict]:
        """Metakocka's id, the payload sent last and Metakocka's answer: the document is looked
        up by its external id before any (re)send (`create_document_exactly_once`)."""
        payload = canonical_to_metakocka(doc)
        result, created = self._client.create_document_exactly_once(
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
                self._client.get_document(payload["doc_type"], mk_id), self._organization_id
            )
            payload = canonical_to_metakocka(doc, mk_id=mk_id, current=held)
            self._client.replace_document(mk_id, payload)
        return mk_id, payload, result

    def _bind(self, row, doc: SalesDocument, mk_id: str, payload: dict, count_code) -> None:
        """The link, in its own transaction, the moment Metakocka confirmed the write."""
        self._store.links.bind(
            self._organization_id,
            crm_document_id=doc.crm_document_id,
            metakocka_id=mk_id,
            content_hash=row.crm_hash,
            document_type=doc.document_type,
            metakocka_doc_type=payload.get("doc_type"),
            crm_document_number=doc.document_number,
            metakocka_count_code=count_code,
        )


def push_to_metakocka(
    plan: pd.DataFrame,
    *,
    client: MetakockaClient,
    store: SyncStore,
    organization_id: str,
    concurrency: int = 2,
    on_progress: Progress | None = None,
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
    claims = run_claims(store, organization_id, run_id, claim_ttl_s)
    rereads = WholeDocuments(
        organization_id,
        links=store.links,
        crm=crm,
        metakocka=client,
        crm_summaries=rows["crm_document"] if len(rows) else (),
        metakocka_stand_ins=rows["metakocka_document"].loc[by_link] if by_link.any() else (),
    )
    with claims, rereads:
        exporter = MetakockaExporter(
            client=client,
            store=store,
            organization_id=organization_id,
            claims=claims,
            rereads=rereads,
            half_written_in_crm=set(claims.unfinished_writes(TO_CRM_ACTIONS)),
        )
        outcomes = run_each(rows, exporter.run, CRM_TO_METAKOCKA, breaker, concurrency, on_progress)
    return with_breaker_summary(outcomes, breaker, "Metakocka")


def _look_up_if_ever_attempted(link: dict | None, row):
    """A create the plan called known absent (no intent when the plan was made) keeps its look-up
    if an intent exists by now: another run may have sent that create since, and died before
    binding it. An unfinished intent is always resolved by a look-up before anything is resent."""
    if link is not None and getattr(row, KNOWN_ABSENT, False):
        return row._replace(**{KNOWN_ABSENT: False})
    return row


def _read_before_replace(rows: pd.DataFrame) -> pd.Series:
    """Rows whose Metakocka side is known by its link or its summary: read before the replace."""
    if "metakocka_document" not in rows:
        return pd.Series(False, index=rows.index)
    stands_in = rows["metakocka_document"].map(
        lambda doc: isinstance(doc, LinkedCounterpart | DocumentSummary)
    )
    return stands_in.astype(bool)
