"""Metakocka documents read by id or by reference, mapped exactly as the nightly extraction maps
them (same canonical form, same quarantine rule), for the runs that read a few documents at a time:
on-demand syncs, an incremental run's counterparts, and the push step's replaces."""

from sync_pipeline.adapters.errors import NotFoundError
from sync_pipeline.domain.document import SalesDocument, crm_id_to_external_ref
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.metakocka.mapping import METAKOCKA_TO_DOC_TYPE
from sync_pipeline.sync.extract import (
    METAKOCKA_SALES_DOC_TYPES,
    Extraction,
    Quarantined,
    extract_metakocka,
)

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

Found = SalesDocument | Quarantined | None
"""A document as read: mapped, unreadable (quarantined), or absent (None)."""


class _DocumentsAsSearch:
    """Documents already fetched, served the way `extract_metakocka` asks for them, so that the
    nightly's mapping and quarantine rule applies unchanged to documents read one by one."""

    def __init__(self, raw_by_type: dict[str, list[dict]]):
        self._raw_by_type = raw_by_type

    def search_changed(self, doc_type: str, _since) -> list[dict]:
        return self._raw_by_type.get(doc_type, [])


def map_metakocka(raws: list[dict], organization_id: str) -> Extraction:
    """Metakocka documents (as get_document or search returns them) in canonical form."""
    by_type: dict[str, list[dict]] = {}
    for raw in raws:
        by_type.setdefault(raw["doc_type"], []).append(raw)
    return extract_metakocka(_DocumentsAsSearch(by_type), organization_id, doc_types=tuple(by_type))


def read_metakocka_document(
    client: MetakockaClient, organization_id: str, mk_id: str, doc_type: str | None = None
) -> Found:
    """One Metakocka document by id, mapped; None when the company has no such document.

    `get_document` needs the type: the link's, else each sales type in turn.
    """
    for candidate in (doc_type,) if doc_type else PROBE_ORDER:
        try:
            raw = client.get_document(candidate, mk_id)
        except NotFoundError:
            continue
        raw = {**raw, "doc_type": raw.get("doc_type") or candidate}
        extraction = map_metakocka([raw], organization_id)
        return (extraction.documents or extraction.unmappable or [None])[0]
    return None


def find_metakocka_twins(
    client: MetakockaClient, organization_id: str, doc: SalesDocument
) -> list[Found]:
    """Metakocka documents whose `buyer_order` carries this CRM document's reference."""
    ref = crm_id_to_external_ref(doc.crm_document_id)
    raws = []
    for mk_type, crm_type in METAKOCKA_TO_DOC_TYPE.items():
        if crm_type == doc.document_type:
            raws += [
                {**raw, "doc_type": mk_type} for raw in client.find_by_external_ref(mk_type, ref)
            ]
    extraction = map_metakocka(raws, organization_id)
    return [*extraction.documents, *extraction.unmappable]
