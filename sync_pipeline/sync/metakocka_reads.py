"""Metakocka documents read by id or by reference, mapped exactly as the nightly extraction maps
them (same canonical form, same quarantine rule), for the runs that read a few documents at a time:
on-demand syncs, an incremental run's counterparts, and the push step's replaces."""

from sync_pipeline.domain.document import SalesDocument, crm_id_to_external_ref
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.metakocka.reads import get_raw_document, raw_documents_with_reference
from sync_pipeline.sync.extract import Extraction, Quarantined, extract_metakocka

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
    """One Metakocka document by id, mapped; None when the company has no such document."""
    raw = get_raw_document(client, mk_id, doc_type)
    if raw is None:
        return None
    extraction = map_metakocka([raw], organization_id)
    return (extraction.documents or extraction.unmappable or [None])[0]


def find_metakocka_twins(
    client: MetakockaClient, organization_id: str, doc: SalesDocument
) -> list[Found]:
    """Metakocka documents whose `buyer_order` carries this CRM document's reference."""
    raws = raw_documents_with_reference(
        client, doc.document_type, crm_id_to_external_ref(doc.crm_document_id)
    )
    extraction = map_metakocka(raws, organization_id)
    return [*extraction.documents, *extraction.unmappable]
