"""Links for pairs that need no push: the one write a sync makes for a document it does not send."""

import pandas as pd

from sync_pipeline.store.repository import SyncStore


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
    return store.links.bind_many(organization_id, pairs)
