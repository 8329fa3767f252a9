"""What a write to the CRM sends, built from a plan row: shared by the CRM exporter and the
first-run preflight (`preflight/first_run.py`), which checks that every document would map."""

from sync_pipeline.crm.client import CrmClient
from sync_pipeline.crm.documents import CrmDocumentWrite
from sync_pipeline.crm.mapping import CrmContext, canonical_to_crm_write
from sync_pipeline.domain.document import SalesDocument, crm_id_for_metakocka_document


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
    current = getattr(row, "crm_document", None)
    write = canonical_to_crm_write(
        doc,
        context,
        crm_document_id=crm_id,
        create=create,
        current=None if create or not isinstance(current, SalesDocument) else current,
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


class ReferencesToRead:
    """The references of documents read again (`prefetch_metakocka_references`), read once
    per batch, inside the guard of the first write that needs them."""

    def __init__(self, client: CrmClient, organization_id: str, docs: list):
        self._args = (client, organization_id, docs)
        self._done = not docs

    def prefetch(self) -> None:
        if not self._done:
            prefetch_metakocka_references(*self._args)
            self._done = True
