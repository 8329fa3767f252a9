"""The checks both exporters make before they write a document, in this order: the document's
claim (`store/claims.py`), then that this run's plan of it is not stale.

A claim keeps two runs (the nightly reconciliation and an on-demand run) from pushing the same
document at once; a document another live run holds is left `pending`. Once claimed, a document
whose link changed since this run's plan was made (another run synced it meanwhile) is also left
`pending` rather than pushed from old data.
"""

from sync_pipeline.domain.text import text_or_none
from sync_pipeline.store.claims import DocumentClaims, claim_owner
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.tables import LINK_LINKED
from sync_pipeline.sync.export.outcomes import PushOutcome, pending


def run_claims(
    store: SyncStore, organization_id: str, run_id: str | None, ttl_s: float
) -> DocumentClaims:
    """This run's claims on the organization's documents (a context: heartbeat while open)."""
    return store.claims.for_owner(organization_id, owner=claim_owner(run_id), ttl_s=ttl_s)


def claim(claims: DocumentClaims, crm_id: str | None, row, direction: str) -> PushOutcome | None:
    """Claim the document; None when this run holds it now, else the `pending` outcome saying
    which run does."""
    holder = claims.try_claim(crm_id, row.action)
    if holder is None:
        return None
    return pending(row, direction, f"not pushed: {holder.describe()}; retried later")


def stale_plan(link: dict | None, row, direction: str) -> PushOutcome | None:
    """The `pending` outcome of a plan row another run overtook (it bound the document after this
    run's plan was made), or None when the plan still holds."""
    if "link_hash" not in row._fields:
        return None
    linked = link if link is not None and link.get("state") == LINK_LINKED else None
    seen = text_or_none(row.link_hash)
    current = text_or_none(linked.get("content_hash")) if linked else None
    if linked is not None and (seen is None or current != seen):
        why = "another run synced it after this run's plan was made"
        return pending(row, direction, f"not pushed: {why}; rechecked next run")
    return None
