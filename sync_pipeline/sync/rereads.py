"""The CRM documents behind summaries, read again just before their content is used.

A full sweep keeps most documents as summaries (`sync/lean.py`). When the push writes from one (or
over one: an update keeps the CRM's owner, number and metadata), or a new conflict lists its
field differences, the document is read again by id, a hundred per request, in the order it
will be asked for, and used only if it still hashes as summarised: the run writes what it
validated and planned, never a later edit it has not judged (that one is planned by the next
run). The Metakocka side goes through `sync.counterparts.CounterpartReader`, which does the same
for Metakocka's documents (one `get_document` each, or one full read when that is cheaper).
"""

import threading
from collections.abc import Iterable

from sync_pipeline.adapters.errors import SyncError
from sync_pipeline.crm.client import CrmClient
from sync_pipeline.domain.document import SalesDocument
from sync_pipeline.domain.hashing import content_hash
from sync_pipeline.domain.summary import DocumentSummary, is_summary
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.store.links import Links
from sync_pipeline.sync.counterparts import CounterpartReader, LinkedCounterpart
from sync_pipeline.sync.extract import extract_crm

BATCH = 100
"""CRM documents read per request (their ids go into one URL)."""


class CrmRereads:
    """The current CRM documents behind `summaries`, read in batches in the given order; each is
    dropped once it has been asked for."""

    def __init__(self, client: CrmClient, organization_id: str, summaries: Iterable):
        self._client, self._org = client, organization_id
        ids = list(dict.fromkeys(s.crm_document_id for s in summaries if is_summary(s)))
        self._batches = [ids[i : i + BATCH] for i in range(0, len(ids), BATCH)]
        self._batch_of = {crm_id: n for n, batch in enumerate(self._batches) for crm_id in batch}
        self._read: dict[str, SalesDocument | None] = {}
        self._loaded: set[int] = set()
        self._locks = [threading.Lock() for _ in self._batches]
        self._lock = threading.Lock()

    def whole(self, summary: DocumentSummary) -> tuple[SalesDocument | None, str]:
        """(the document as the CRM holds it now, "") when it still has the summarised content;
        else (None, why)."""
        crm_id = summary.crm_document_id
        batch = self._batch_of.get(crm_id)
        if batch is None:  # not announced: read alone
            current = _read(self._client, self._org, [crm_id]).get(crm_id)
        else:
            with self._locks[batch]:
                if batch not in self._loaded:
                    read = _read(self._client, self._org, self._batches[batch])
                    with self._lock:
                        self._read.update(read)
                    self._loaded.add(batch)
            with self._lock:
                current = self._read.pop(crm_id, None)
        if current is None:
            return None, "the CRM document no longer exists or can no longer be read"
        if content_hash(current, summary.precision) != summary.content_hash:
            return None, "the CRM document changed after this run read it"
        return current, ""


def _read(client: CrmClient, organization_id: str, ids: list[str]) -> dict:
    extraction = extract_crm(client, organization_id, ids=ids)
    return {doc.crm_document_id: doc for doc in extraction.documents}


class WholeDocuments:
    """The whole documents behind the summaries (and the counterparts known by their link) a
    push is about to use, each read just before its use and only if still as planned.

    `crm_summaries` / `metakocka_stand_ins`: what will be asked for, in push order. Use it as a
    context manager: leaving stops a full read of Metakocka nobody waits for any more.
    """

    def __init__(
        self,
        organization_id: str,
        *,
        links: Links,
        crm: CrmClient | None = None,
        metakocka: MetakockaClient | None = None,
        crm_summaries: Iterable = (),
        metakocka_stand_ins: Iterable = (),
    ):
        crm_summaries = [s for s in crm_summaries if is_summary(s)]
        stand_ins = [s for s in metakocka_stand_ins if _stands_in(s)]
        if (crm_summaries and crm is None) or (stand_ins and metakocka is None):
            raise ValueError("the plan holds documents to read again: pass both systems' clients")
        self._crm = CrmRereads(crm, organization_id, crm_summaries) if crm is not None else None
        self._metakocka = (
            CounterpartReader(metakocka, organization_id, stand_ins, links=links)
            if metakocka is not None
            else None
        )

    def __enter__(self) -> "WholeDocuments":
        return self

    def __exit__(self, *exc_info) -> None:
        if self._metakocka is not None:
            self._metakocka.__exit__(*exc_info)

    def crm(self, doc) -> tuple[SalesDocument | None, str]:
        """The CRM document to use: `doc` itself unless it is a summary (then read again)."""
        if not is_summary(doc):
            return doc, ""
        return self._crm.whole(doc)

    def for_differences(self, crm_doc, metakocka_doc) -> tuple:
        """A new conflict's two versions, whole where they are summaries, for the field
        differences its error row lists; one that can no longer be read as summarised stays a
        summary (the row then lists none, as for a conflict that is not about content)."""

        def whole(read, doc):
            if not is_summary(doc):
                return doc
            try:
                found, _ = read(doc)
            except SyncError:
                return doc
            return doc if found is None else found

        return whole(self.crm, crm_doc), whole(self.metakocka, metakocka_doc)

    def metakocka(self, doc) -> tuple[SalesDocument | None, str]:
        """The Metakocka document to use: `doc` itself unless it is a summary or known only by
        its link (then read again)."""
        if not _stands_in(doc):
            return doc, ""
        return self._metakocka.unchanged(doc)


def _stands_in(doc) -> bool:
    return isinstance(doc, DocumentSummary | LinkedCounterpart)
