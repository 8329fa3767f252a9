"""Read every sales document of one organization from each system and map it to canonical form.

A record that cannot even be mapped (a date that does not parse, a missing field the mapper
needs, a CRM line with no Metakocka product code) is kept as a `Quarantined` entry with the
reason, so validation can report it instead of dropping it.

Both sides' documents are hashed at the precision the CRM keeps (`Extraction.precision`, from its
schema profile): that is what makes a Metakocka price of 1.2345 and the CRM's 1.23 the same.
"""

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from queue import Full, Queue
from typing import Protocol

from sync_pipeline.crm.client import CrmClient
from sync_pipeline.crm.mapping import (
    CrmContext,
    MissingProductCode,
    crm_row_to_canonical,
    lines_without_product_code,
)
from sync_pipeline.crm.profiles import CrmSchema
from sync_pipeline.domain.document import SalesDocument, external_ref_to_crm_id
from sync_pipeline.domain.hashing import DEFAULT_PRECISION, Precision, content_hash
from sync_pipeline.domain.interning import TextInterner
from sync_pipeline.domain.text import text_or_none
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.metakocka.mapping import MappingError, metakocka_to_canonical
from sync_pipeline.metakocka.reads import METAKOCKA_SALES_DOC_TYPES, UNIQUE_TEXT_KEYS

CRM = "crm"
METAKOCKA = "metakocka"

# Texts that never repeat between documents are not worth sharing (domain/interning.py).
CRM_UNIQUE_KEYS = frozenset({"id", "document_id", "document_number", "created_at", "updated_at"})


@dataclass(frozen=True)
class Quarantined:
    """A document that will not be synced until it is fixed, with the reasons why."""

    side: str
    crm_document_id: str | None
    metakocka_id: str | None
    document_type: str | None
    document_number: str | None
    reasons: tuple[str, ...]


class SideReduction(Protocol):
    """What a full sweep reduces one side to as it reads it (`sync/lean.py`'s `LeanSide`): the
    extraction hands it each document instead of holding them all."""

    documents_read: int
    unmappable: int
    newest_updated_at: datetime | None

    def add(self, doc: SalesDocument, key: str) -> None: ...

    def add_unmappable(self, entry: Quarantined, key: str) -> None: ...

    def finish(self) -> object: ...


@dataclass
class Extraction:
    """What one side holds: the mapped documents and those that could not be mapped."""

    side: str
    organization_id: str
    documents: list[SalesDocument] = field(default_factory=list)
    unmappable: list[Quarantined] = field(default_factory=list)
    api_calls: int = 0
    precision: Precision = DEFAULT_PRECISION
    """What the CRM keeps of a number: both sides are compared at it (`domain.hashing`)."""
    lines_without_product_code: dict[str, int] = field(default_factory=dict)
    """CRM side: {document id: its lines with no Metakocka product code}, for the unmappable
    documents that have any (a document's reason names only the first; the preflight counts
    them all)."""
    lean: SideReduction | None = None
    """A full sweep's side, validated and reduced as it was read (`sync/lean.py`): its documents
    are in `lean.validated`, not in `documents` or `unmappable`."""
    left_out: int = 0
    """CRM side of an incremental run: documents read exactly as their pair was last synced,
    left out as read (`extract_crm`'s `in_sync`)."""
    newest_left_out_at: datetime | None = None
    """The newest change time among those left out (the CRM's cursor counts them too)."""

    @property
    def documents_read(self) -> int:
        """Documents read and mapped (whole, summarised, or found invalid)."""
        return self.lean.documents_read if self.lean is not None else len(self.documents)

    @property
    def unreadable(self) -> int:
        """Documents that could not be mapped at all."""
        return self.lean.unmappable if self.lean is not None else len(self.unmappable)

    def newest_updated_at(self) -> datetime | None:
        """The newest change time among the documents read (None: they show none)."""
        if self.lean is not None:
            return self.lean.newest_updated_at
        times = [d.updated_at for d in self.documents if d.updated_at is not None]
        if self.newest_left_out_at is not None:
            times.append(self.newest_left_out_at)
        return max(times, default=None)


def change_detection(schema: CrmSchema) -> str:
    """How CRM edits are found: by ``updated_at`` (docs/crm-setup.sql's triggers keep it
    truthful) or by comparing every document's content (no trigger: the published schema)."""
    if schema.change_tracking:
        return "updated_at (docs/crm-setup.sql installed)"
    return "content comparison: every CRM document is read (docs/crm-setup.sql not installed)"


def crm_schema_summary(schema: CrmSchema) -> str:
    return (
        f"CRM schema {schema.profile.name} ({schema.profile.source}); "
        f"CRM changes by {change_detection(schema)}"
    )


def crm_context(client: CrmClient, organization_id: str) -> CrmContext:
    """What mapping the organization's CRM rows needs: the CRM's schema, the rows documents
    refer to, and the organization's CRM settings."""
    tenant = client.tenant(organization_id)
    return CrmContext(
        organization_id=organization_id,
        schema=client.schema(),
        lookups=client.directory(organization_id),
        integration_user_id=tenant.integration_user_id,
        service_product_code=tenant.service_product_code,
    )


def extract_crm(
    client: CrmClient,
    organization_id: str,
    *,
    ids: Iterable[str] | None = None,
    updated_since: datetime | None = None,
    lean: SideReduction | None = None,
    in_sync: Mapping[str, str] | None = None,
) -> Extraction:
    """The organization's CRM documents (all, those changed since ``updated_since``, or those of
    ``ids``), mapped; a document the read met twice (edited meanwhile) counts once, as last read.
    With `lean` (a full sweep), each is handed to it as it is read (`sync/lean.py`).

    `in_sync` (an incremental run: `Links.in_sync`): {CRM id: content hash} of the pairs left
    `synced`. A document read with that hash is left out as read (counted in `left_out`), as if
    the read had not met it: the run's closure reads it again by id if its counterpart changed
    (`sync/incremental.py`). Without it, a CRM with no trigger on `updated_at` (every document
    read on every incremental run) had every document held mapped until the run planned."""
    context = crm_context(client, organization_id)
    tenancy = client.directory(organization_id).tenancy()
    rows = client.list_documents(
        organization_id, ids=list(ids) if ids is not None else None, updated_since=updated_since
    )
    # Shared texts only pay off in documents held whole: a lean read holds few.
    texts = TextInterner(CRM_UNIQUE_KEYS) if lean is None else None
    found: dict[str, SalesDocument | Quarantined] = {}
    left_out: set[str] = set()
    newest_left_out: datetime | None = None
    uncoded: dict[str, int] = {}
    for row in read_ahead(rows):
        row = texts.record(row) if texts is not None and isinstance(row, dict) else row
        key = str(row.get("id"))
        try:
            if tenancy.is_ambiguous(row):
                raise MappingError(
                    f"organization_id is empty and its owner {row.get('user_id')} belongs to "
                    "several organizations: set the document's organization_id in the CRM"
                )
            doc = crm_row_to_canonical(row, context)
            uncoded.pop(key, None)  # read again after an edit: the later copy counts
        except (MappingError, KeyError, TypeError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, MissingProductCode) else None
            uncoded[key] = lines_without_product_code(row, context)
            doc = Quarantined(
                side=CRM,
                crm_document_id=str(row.get("id")) if row.get("id") else None,
                metakocka_id=None,
                document_type=row.get("document_type"),
                document_number=row.get("document_number"),
                reasons=(reason or f"cannot read CRM document: {exc}",),
            )
        if lean is not None:
            if isinstance(doc, SalesDocument):
                lean.add(doc, key)
            else:
                lean.add_unmappable(doc, key)
        elif in_sync is not None and as_synced(doc, in_sync, context.precision):
            found.pop(key, None)  # the last read counts
            left_out.add(key)
            if doc.updated_at is not None and (
                newest_left_out is None or doc.updated_at > newest_left_out
            ):
                newest_left_out = doc.updated_at
        else:
            found[key] = doc
            left_out.discard(key)
    extraction = Extraction(
        CRM,
        organization_id,
        precision=context.precision,
        lean=lean,
        lines_without_product_code={key: n for key, n in uncoded.items() if n},
        left_out=len(left_out),
        newest_left_out_at=newest_left_out,
    )
    if lean is not None:
        lean.finish()
    for item in found.values():
        if isinstance(item, SalesDocument):
            extraction.documents.append(item)
        else:
            extraction.unmappable.append(item)
    return extraction


def as_synced(doc: SalesDocument | Quarantined, in_sync: Mapping[str, str], precision) -> bool:
    """Is this CRM document exactly as its pair was last synced (`extract_crm`'s `in_sync`)?"""
    if not isinstance(doc, SalesDocument):
        return False
    synced = in_sync.get(doc.crm_document_id)
    return synced is not None and content_hash(doc, precision) == synced


def extract_metakocka(
    client: MetakockaClient,
    organization_id: str,
    *,
    doc_types: Iterable[str] = METAKOCKA_SALES_DOC_TYPES,
    changed_since: datetime | None = None,
    precision: Precision = DEFAULT_PRECISION,
    lean: SideReduction | None = None,
) -> Extraction:
    """The company's Metakocka documents (all, or those changed since ``changed_since``),
    mapped. With `lean` (a full sweep), each is handed to it as it is read (`sync/lean.py`)."""
    extraction = Extraction(METAKOCKA, organization_id, precision=precision, lean=lean)
    # Shared texts only pay off in documents held whole: a lean read holds few.
    texts = TextInterner(UNIQUE_TEXT_KEYS) if lean is None else None
    pages = (
        (doc_type, raw)
        for doc_type in doc_types
        for raw in client.search_changed(doc_type, changed_since)
    )
    # Documents already fetched (an on-demand run maps them through here) need no read-ahead.
    for doc_type, raw in read_ahead(pages) if isinstance(client, MetakockaClient) else pages:
        raw = texts.record(raw) if texts is not None and isinstance(raw, dict) else raw
        raw.setdefault("doc_type", doc_type)
        try:
            doc = metakocka_to_canonical(raw, organization_id)
        except (MappingError, KeyError, TypeError, ValueError) as exc:
            entry = Quarantined(
                side=METAKOCKA,
                crm_document_id=external_ref_to_crm_id(text_or_none(raw.get("buyer_order"))),
                metakocka_id=text_or_none(raw.get("mk_id")),
                document_type=doc_type,
                document_number=text_or_none(raw.get("count_code")),
                reasons=(f"cannot read Metakocka document: {exc}",),
            )
            if lean is None:
                extraction.unmappable.append(entry)
            else:
                lean.add_unmappable(entry, "")
            continue
        if lean is None:
            extraction.documents.append(doc)
        else:
            lean.add(doc, "")
    if lean is not None:
        lean.finish()
    return extraction


def read_ahead(items: Iterable, chunk: int = 100, chunks: int = 20) -> Iterator:
    """`items`, produced by a helper thread up to `chunks` chunks ahead of the consumer.

    An extraction waits on the API for each page and then maps its rows; reading ahead overlaps
    the two, so the next pages are on their way while this thread maps. A failure of the reader
    is raised here, in the consumer, where it would have been raised without the helper.
    """
    queue: Queue = Queue(maxsize=chunks)
    stop = threading.Event()

    def produce() -> None:
        try:
            batch: list = []
            for item in items:
                batch.append(item)
                if len(batch) >= chunk:
                    if not _put(queue, batch, stop):
                        return
                    batch = []
            _put(queue, batch, stop)
            _put(queue, _END, stop)
        except BaseException as exc:  # handed over to the consumer
            _put(queue, _Failed(exc), stop)

    thread = threading.Thread(target=produce, name="extract-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            batch = queue.get()
            if batch is _END:
                return
            if isinstance(batch, _Failed):
                raise batch.exc
            yield from batch
    finally:
        stop.set()


_END = object()


@dataclass(frozen=True)
class _Failed:
    exc: BaseException


def _put(queue: Queue, item, stop: threading.Event) -> bool:
    """Put unless the consumer has gone away (then the reader just stops)."""
    while not stop.is_set():
        try:
            queue.put(item, timeout=0.1)
            return True
        except Full:
            continue
    return False
