"""Metakocka's sales documents read as Metakocka sends them: every type a company's sales
documents come in, one document by id (its type probed when unknown), the documents that carry a
CRM reference, and the whole company by search. Mapping them is the run's business
(`sync/extract.py`, `sync/metakocka_reads.py`)."""

import math
import threading
from collections.abc import Collection

from sync_pipeline.adapters.errors import NotFoundError
from sync_pipeline.metakocka.client import MAX_PAGE_SIZE, MetakockaClient
from sync_pipeline.metakocka.mapping import METAKOCKA_TO_DOC_TYPE

METAKOCKA_SALES_DOC_TYPES = (
    "sales_offer",
    "sales_order",
    "sales_bill_domestic",
    "sales_bill_foreign",
    "sales_bill_credit_note",
    "sales_bill_prepaid",
)

UNIQUE_TEXT_KEYS = frozenset(
    {"mk_id", "count_code", "buyer_order", "title", "last_change", "created_ts", "mk_row_id"}
)
"""Fields of a document as Metakocka sends it whose texts never repeat between documents (not
worth sharing: domain/interning.py)."""

PROBE_ORDER = (
    "sales_order",
    "sales_bill_domestic",
    "sales_offer",
    "sales_bill_foreign",
    "sales_bill_credit_note",
    "sales_bill_prepaid",
)
"""Metakocka types tried, most common first, for an id whose type no link records."""
assert set(PROBE_ORDER) == set(METAKOCKA_SALES_DOC_TYPES)


def get_raw_document(client: MetakockaClient, mk_id: str, doc_type: str | None) -> dict | None:
    """One document by id, with its `doc_type`; None when the company has no such document.

    `get_document` needs the type: the one given, else each sales type in turn.
    """
    for candidate in (doc_type,) if doc_type else PROBE_ORDER:
        try:
            raw = client.get_document(candidate, mk_id)
        except NotFoundError:
            continue
        return {**raw, "doc_type": raw.get("doc_type") or candidate}
    return None


def raw_documents_with_reference(
    client: MetakockaClient, document_type: str, reference: str
) -> list[dict]:
    """The documents of the Metakocka types that map to CRM `document_type` whose
    `buyer_order` carries `reference`, each with its `doc_type`."""
    return [
        {**raw, "doc_type": mk_type}
        for mk_type, crm_type in METAKOCKA_TO_DOC_TYPE.items()
        if crm_type == document_type
        for raw in client.find_by_external_ref(mk_type, reference)
    ]


def read_every_document(
    client: MetakockaClient,
    *,
    keep: Collection[str] | None = None,
    stop: threading.Event | None = None,
) -> dict[str, dict]:
    """Every sales document of the company as Metakocka sends it, by `mk_id` (a search per page,
    one doc_type after another). `keep`: hold only these ids (the rest of the company is read,
    not held); `stop` ends the read early (what was read so far is returned)."""
    everything = {}
    for doc_type in METAKOCKA_SALES_DOC_TYPES:
        for raw in client.search(doc_type):
            if stop is not None and stop.is_set():
                return everything
            mk_id = str(raw.get("mk_id") or "")
            if mk_id and (keep is None or mk_id in keep):
                everything[mk_id] = {**raw, "doc_type": raw.get("doc_type") or doc_type}
    return everything


def full_read_takes_fewer_calls(documents: int, reads: int, concurrency: int) -> bool:
    """One `get_document` per id (`concurrency` at a time), or every one of the company's
    `documents` by search (100 per page, one search at a time)?"""
    pages = math.ceil(documents / MAX_PAGE_SIZE) + len(METAKOCKA_SALES_DOC_TYPES)
    # A page also costs mapping 100 documents, about one more round trip: count it twice.
    return 2 * pages < reads / max(1, concurrency)
