"""A full sweep holds hashes, not documents.

A full sweep reads every document of both systems (100,000 per side and more), and held them all
mapped until the run ended: about 3 KB each, a GB at 100,000 per side. Nearly all of them are
exactly as they were last synced, and the plan needs only their ids, content hash, change time,
type, number and status. So each side is reduced as it arrives (`LeanSide`), page by page:

- a document whose content hash equals its link's (unchanged since it was synced, and checked
  then) is kept as a `DocumentSummary`, as `validate_extraction` would have passed it unchecked;
- the others are validated in batches of `BATCH` (the same pandera checks, the same quarantine)
  and kept whole, up to `HELD_WHOLE` per side: these are what the plan will write. Past that (an
  organization's first run, where nothing has a link yet) they are summarised too;
- the summaries that the push writes from or over (the unchanged side of an edit, and past
  `HELD_WHOLE` the changed ones) are read again just before the write, by id, and written only
  if they still hash as summarised (`sync/rereads.py`): what the run validated and planned is
  what it writes. A conflict's differences are read the same way (`sync/rereads.py`).

What changes for an operator: nothing but the memory. The statuses, errors, quarantine and
writes are those of a run that held every document.
"""

import threading
from collections.abc import Mapping
from datetime import datetime

import pandas as pd

from sync_pipeline.crm.mapping import CRM_OWNER
from sync_pipeline.domain.document import SalesDocument
from sync_pipeline.domain.document import crm_id_to_external_ref as reference
from sync_pipeline.domain.frames import plan_frame
from sync_pipeline.domain.hashing import Precision, content_hash
from sync_pipeline.domain.interning import texts_held
from sync_pipeline.domain.summary import DocumentSummary, SummaryKind
from sync_pipeline.metakocka.mapping import ISSUED_KEY, PASSTHROUGH_KEY
from sync_pipeline.metakocka.statuses import STATUS_KEY
from sync_pipeline.sync.extract import CRM, METAKOCKA, Quarantined
from sync_pipeline.sync.validate import (
    KEY_BY_SIDE,
    ValidatedSide,
    check_documents,
    synced_hashes,
)

HELD_WHOLE = 2_000
"""Documents per side kept whole among those not as last synced; past it they are summarised
(and read again before a write). About 6 MB per side."""
BATCH = 1_000
"""Documents validated at once: big enough that pandera's cost per call does not matter."""
SUMMARY_KEYS = (CRM_OWNER, STATUS_KEY, ISSUED_KEY)
"""What a summary keeps of `SalesDocument.source_extra`: what the plan's steps read of it."""

_checks = threading.Lock()
"""Both sides are read in threads of their own; pandera's checks run one batch at a time."""


class LeanSide:
    """One side of a full sweep, reduced to what the plan needs as its documents are read.

    `synced`: {id on this side: content hash at its last sync} (`validate.synced_hashes`).
    `link_ids`: {id: the same id, as the links hold it} (`link_texts`): a summary keeps the
    link's object for an id equal to one, not its own copy.
    `last_read_wins`: a document read twice (the CRM's keyset read meets a document edited
    during the read again) counts once, as last read.
    """

    def __init__(
        self,
        side: str,
        precision: Precision,
        synced: Mapping[str, str],
        *,
        link_ids: Mapping[str, str] | None = None,
        held_whole: int = HELD_WHOLE,
        batch: int = BATCH,
        last_read_wins: bool = False,
    ):
        self.side, self.key = side, KEY_BY_SIDE[side]
        self.precision = precision
        self.held_whole, self.batch = held_whole, batch
        self._synced = synced
        self._link_ids = {} if link_ids is None else link_ids
        self._last_read_wins = last_read_wins
        self._pending: list[tuple[int, SalesDocument, str]] = []
        # The valid documents (whole or summarised) as parallel columns: a tuple per document
        # would cost 64 bytes more each.
        self._valid_seqs: list[int] = []
        self._valid_docs: list[SalesDocument | DocumentSummary] = []
        self._valid_hashes: list[str] = []
        self._quarantined: list[tuple[int, Quarantined]] = []
        self._keys: list[str] = []
        """Each document's key, in read order (only with `last_read_wins`)."""
        self._count = 0
        self._differences: dict[str, list[str]] = {}
        self._kinds: dict[tuple, SummaryKind] = {}
        self.documents_read = 0
        self.unmappable = 0
        self.held = 0
        self.newest_updated_at: datetime | None = None
        self.validated: ValidatedSide | None = None

    def add(self, doc: SalesDocument, key: str) -> None:
        """A mapped document; `key` names it for `last_read_wins`."""
        seq = self._next(key)
        self.documents_read += 1
        if doc.updated_at is not None and (
            self.newest_updated_at is None or doc.updated_at > self.newest_updated_at
        ):
            self.newest_updated_at = doc.updated_at
        digest = content_hash(doc, self.precision)
        synced = self._synced.get(getattr(doc, self.key))
        if synced == digest:  # as last synced, and checked then: not checked again
            self._keep(seq, self._summary(doc, synced), synced)
            return
        self._pending.append((seq, doc, digest))
        if len(self._pending) >= self.batch:
            self._check()

    def add_unmappable(self, entry: Quarantined, key: str) -> None:
        """A document that could not be mapped at all, quarantined as read."""
        self.unmappable += 1
        self._quarantined.append((self._next(key), entry))

    def finish(self) -> ValidatedSide:
        """Everything read, validated: the side as `validate_extraction` would give it."""
        self._check()
        docs, hashes, quarantined = self._valid_docs, self._valid_hashes, self._quarantined
        if self._last_read_wins and self._keys:
            superseded = pd.Index(self._keys).duplicated(keep="last")
            if superseded.any():
                kept = ~superseded[self._valid_seqs]
                docs = [doc for doc, keep in zip(docs, kept, strict=True) if keep]
                hashes = [digest for digest, keep in zip(hashes, kept, strict=True) if keep]
                quarantined = [entry for entry in quarantined if not superseded[entry[0]]]
        self._valid_seqs, self._valid_docs, self._valid_hashes = [], [], []
        self._keys, self._synced, self._link_ids = [], {}, {}
        frame = plan_frame(docs, hashes)
        del docs, hashes
        self.validated = ValidatedSide(
            self.side, frame, [entry for _, entry in quarantined], self._differences
        )
        self._quarantined = []
        return self.validated

    def _next(self, key: str) -> int:
        if self._last_read_wins:
            self._keys.append(key)
        self._count += 1
        return self._count - 1

    def _check(self) -> None:
        if not self._pending:
            return
        seqs, docs, digests = zip(*self._pending, strict=True)
        self._pending = []
        with _checks:
            checked = check_documents(self.side, list(docs), list(digests))
        for position in checked.valid:
            doc, digest = docs[position], digests[position]
            if self.held < self.held_whole:
                self.held += 1
                self._keep(seqs[position], doc, digest)
            else:
                self._keep(seqs[position], self._summary(doc, digest), digest)
        invalid = zip(checked.quarantined_positions, checked.quarantined, strict=True)
        self._quarantined += [(seqs[position], entry) for position, entry in invalid]
        self._differences.update(checked.totals_differences)

    def _keep(self, seq: int, doc: SalesDocument | DocumentSummary, digest: str) -> None:
        self._valid_seqs.append(seq)
        self._valid_docs.append(doc)
        self._valid_hashes.append(digest)

    def _summary(self, doc: SalesDocument, digest: str) -> DocumentSummary:
        source_extra = doc.source_extra
        extra = {key: source_extra[key] for key in SUMMARY_KEYS if key in source_extra}
        key = (doc.document_type, doc.metakocka_doc_type, doc.status, _key(extra))
        kind = self._kinds.get(key)
        if kind is None:  # made once per kind, not per document
            kind = self._kinds[key] = SummaryKind(
                doc.document_type, doc.metakocka_doc_type, doc.status, extra, self.precision
            )
        buyer_order = (doc.source_extra.get(PASSTHROUGH_KEY) or {}).get("buyer_order")
        if buyer_order is not None and doc.crm_document_id:  # kept only if not derivable
            buyer_order = None if buyer_order == reference(doc.crm_document_id) else buyer_order
        ids = self._link_ids
        return DocumentSummary(
            content_hash=digest,
            crm_document_id=ids.get(doc.crm_document_id, doc.crm_document_id),
            metakocka_id=ids.get(doc.metakocka_id, doc.metakocka_id),
            document_number=doc.document_number,
            metakocka_count_code=doc.metakocka_count_code,
            updated_at=doc.updated_at,
            kind=kind,
            buyer_order_as_read=buyer_order,
        )


def lean_sides(links: pd.DataFrame, precision: Precision) -> dict[str, LeanSide]:
    """Both sides of a full sweep, against the organization's links (`Links.frame`)."""
    from sync_pipeline.heap import return_large_blocks

    return_large_blocks()  # each page's buffers freed to the system, not kept (heap.py)
    known, ids = synced_hashes(links), link_texts(links)
    return {
        CRM: LeanSide(
            CRM, precision, known[CRM], link_ids=ids, held_whole=HELD_WHOLE, last_read_wins=True
        ),
        METAKOCKA: LeanSide(
            METAKOCKA, precision, known[METAKOCKA], link_ids=ids, held_whole=HELD_WHOLE
        ),
    }


def link_texts(links: pd.DataFrame) -> dict[str, str]:
    """{id: the same id} over the links' CRM and Metakocka ids, the objects the links hold.

    Why: a pair's ids are read three times, each its own object: the CRM document holds its id
    and its Metakocka id, the Metakocka document holds both again (its CRM id made from
    `buyer_order`), and the links hold them too. A summary that takes the link's objects
    instead lets both documents' copies go as soon as they are summarised: about 140 bytes a
    pair. Equal values only (a dict lookup), so what the plan sees is unchanged. The table
    itself is dropped when the sides finish (`LeanSide.finish`)."""
    return texts_held(links["crm_document_id"], links["metakocka_id"])


def _key(extra: dict) -> tuple:
    """A hashable stand-in for a summary's `source_extra` (its values: the CRM's owner, a dict of
    two texts; Metakocka's status, and a flag)."""
    return tuple(
        (key, tuple(value.items()) if isinstance(value, dict) else value)
        for key, value in extra.items()
    )
