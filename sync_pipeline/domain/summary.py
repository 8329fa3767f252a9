"""What a full sweep keeps of a document it read but does not hold whole: a `DocumentSummary`.

A nightly full sweep reads every document of an organization from both systems, and nearly all of
them are exactly as they were last synced (their content hash equals their link's). The plan
decides on ids, content hashes, change times, types, numbers and statuses alone, so holding each
document whole (a mapped document is a few KB) only costs memory. A
summary holds those few fields; the content itself is read again, by id, just before anything is
written from or over it (`sync/rereads.py`), and written only if it still hashes as summarised.

It answers the attributes the plan's steps read of a document with the names `SalesDocument`
uses, so they treat both alike (`was_read`); anything that needs the content (a write, the
field differences of a conflict) must have the document read again first.
"""

from dataclasses import dataclass
from datetime import datetime

from sync_pipeline.domain.document import SalesDocument, crm_id_to_external_ref
from sync_pipeline.domain.hashing import DEFAULT_PRECISION, Precision


@dataclass(frozen=True, slots=True)
class SummaryKind:
    """What many summaries have in common (a few distinct values over 100,000 documents): one
    object for all of them."""

    document_type: str
    metakocka_doc_type: str | None
    status: str | None
    source_extra: dict
    """The side-specific fields the plan reads (the CRM's owner; Metakocka's status as read,
    whether a bill is issued): read it, never change it."""
    precision: Precision = DEFAULT_PRECISION


@dataclass(frozen=True, slots=True, eq=False)
class DocumentSummary:
    """A document as read by this run, without its content (module docstring)."""

    content_hash: str
    """The document's content hash as read, at `precision`."""
    crm_document_id: str | None
    metakocka_id: str | None
    document_number: str | None
    metakocka_count_code: str | None
    updated_at: datetime | None
    kind: SummaryKind
    buyer_order_as_read: str | None = None
    """Metakocka's `buyer_order` as read, when it is not the reference `crm_document_id` was
    read from (that one is derived again: `buyer_order`)."""

    @property
    def document_type(self) -> str:
        return self.kind.document_type

    @property
    def metakocka_doc_type(self) -> str | None:
        return self.kind.metakocka_doc_type

    @property
    def status(self) -> str | None:
        return self.kind.status

    @property
    def source_extra(self) -> dict:
        return self.kind.source_extra

    @property
    def precision(self) -> Precision:
        return self.kind.precision

    @property
    def buyer_order(self) -> str | None:
        """Metakocka's `buyer_order` as read (it narrows the search that orders a conflict's
        edits: `sync/change_order.py`)."""
        if self.buyer_order_as_read is not None or self.metakocka_id is None:
            return self.buyer_order_as_read
        return crm_id_to_external_ref(self.crm_document_id) if self.crm_document_id else None


def was_read(doc) -> bool:
    """Did this run read the document (whole, or summarised), as opposed to knowing it only by
    its link (`sync.counterparts.LinkedCounterpart`) or not at all?"""
    return isinstance(doc, SalesDocument | DocumentSummary)


def is_summary(doc) -> bool:
    """Is this a document whose content must be read again before it is used?"""
    return isinstance(doc, DocumentSummary)
