"""What an incremental run reads again although it did not change: documents whose last push
failed or was left pending, creates whose link is still an intent, and writes another run left
unfinished (`store/claims.py`)."""

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipeline.store.tables import (
    LINK_CREATING_IN_METAKOCKA,
    document_links,
    sync_claims,
    sync_status,
)

RETRIED_STATUSES = ("failed", "pending")


class Retries:
    """The organization's unfinished work, read again by every incremental run."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def documents(self, organization_id: str) -> tuple[set, set]:
        """(CRM ids, Metakocka ids) of the organization's unfinished work (module docstring)."""
        crm_ids, mk_ids = set(), set()
        failed = sa.select(sync_status.c.crm_document_id, sync_status.c.metakocka_id).where(
            sync_status.c.organization_id == organization_id,
            sync_status.c.status.in_(RETRIED_STATUSES),
        )
        intents = sa.select(document_links.c.crm_document_id).where(
            document_links.c.organization_id == organization_id,
            document_links.c.state == LINK_CREATING_IN_METAKOCKA,
        )
        claimed = sa.select(sync_claims.c.crm_document_id).where(
            sync_claims.c.organization_id == organization_id
        )
        with self.engine.connect() as conn:
            for crm_id, mk_id in conn.execute(failed):
                crm_ids.add(crm_id)
                mk_ids.add(mk_id)
            crm_ids.update(row[0] for row in conn.execute(intents))
            crm_ids.update(row[0] for row in conn.execute(claimed))
        return crm_ids, mk_ids
