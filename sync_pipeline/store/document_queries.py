"""Per-document reads and writes of the sync database, for on-demand syncs and status look-ups.

The nightly reconciliation re-materialises a whole organization's `sync_status`; an on-demand run
touches a handful of documents, so it reads only their status rows and *upserts* only those here
(their links: `Links.for_ids`).
"""

from collections.abc import Iterable

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipeline.store.id_lists import chunks, rows_naming
from sync_pipeline.store.locks import lock_organization_status
from sync_pipeline.store.tables import sync_status


def status_for(
    engine: Engine, organization_id: str, crm_ids: Iterable[str], mk_ids: Iterable[str]
) -> pd.DataFrame:
    """The sync_status rows that name any of the ids."""
    rows = rows_naming(engine, sync_status, [sync_status], organization_id, crm_ids, mk_ids)
    return pd.DataFrame.from_records(rows, columns=[c.name for c in sync_status.columns])


def upsert_status(engine: Engine, organization_id: str, rows: list[dict]) -> int:
    """Replace the status rows of these documents only, in one transaction.

    A document's row may have been keyed by one id and now know both (a CRM-only row that got its
    Metakocka twin), so every existing row naming either id of a new row is replaced by it.
    """
    if not rows:
        return 0
    crm_ids = [r["crm_document_id"] for r in rows if r.get("crm_document_id")]
    mk_ids = [r["metakocka_id"] for r in rows if r.get("metakocka_id")]
    with engine.begin() as conn:
        lock_organization_status(conn, organization_id)  # not while a nightly run rewrites them
        for crm_chunk in chunks(crm_ids):
            conn.execute(
                sync_status.delete().where(
                    sync_status.c.organization_id == organization_id,
                    sync_status.c.crm_document_id.in_(crm_chunk),
                )
            )
        for mk_chunk in chunks(mk_ids):
            conn.execute(
                sync_status.delete().where(
                    sync_status.c.organization_id == organization_id,
                    sync_status.c.metakocka_id.in_(mk_chunk),
                )
            )
        known = {c.name for c in sync_status.columns}
        conn.execute(
            sync_status.insert(), [{k: v for k, v in r.items() if k in known} for r in rows]
        )
    return len(rows)


def document_status(engine: Engine, organization_id: str, document_id: str) -> dict | None:
    """The status row of one document, by its CRM id or its Metakocka id."""
    query = sa.select(sync_status).where(
        sync_status.c.organization_id == organization_id,
        sa.or_(
            sync_status.c.crm_document_id == document_id,
            sync_status.c.metakocka_id == document_id,
        ),
    )
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def status_counts(engine: Engine, organization_id: str) -> dict[str, int]:
    query = (
        sa.select(sync_status.c.status, sa.func.count())
        .where(sync_status.c.organization_id == organization_id)
        .group_by(sync_status.c.status)
    )
    with engine.connect() as conn:
        return {status: int(n) for status, n in conn.execute(query).all()}


def not_synced(engine: Engine, organization_id: str, limit: int = 1000) -> list[dict]:
    """Status rows of the organization that are not `synced`, oldest change first."""
    query = (
        sa.select(sync_status)
        .where(sync_status.c.organization_id == organization_id, sync_status.c.status != "synced")
        .order_by(sync_status.c.updated_at, sync_status.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings().all()]


OUT_OF_SYNC_EXCLUDED = ("synced", "deleted_in_crm", "deleted_in_metakocka", "no_crm_type")
"""Statuses a sync of "every unsynced document" does not take again."""


def out_of_sync_counts(engine: Engine, organization_id: str, source: str) -> tuple[int, int]:
    """(without a counterpart, with one) of the organization's documents of the `source` side
    (`crm` or `metakocka`) that the sync database knows to be out of sync."""
    own, other = (
        (sync_status.c.crm_document_id, sync_status.c.metakocka_id)
        if source == "crm"
        else (sync_status.c.metakocka_id, sync_status.c.crm_document_id)
    )
    query = (
        sa.select(other.is_(None), sa.func.count())
        .where(
            sync_status.c.organization_id == organization_id,
            own.is_not(None),
            sync_status.c.status.not_in(OUT_OF_SYNC_EXCLUDED),
        )
        .group_by(other.is_(None))
    )
    with engine.connect() as conn:
        counts = {bool(alone): int(n) for alone, n in conn.execute(query).all()}
    return counts.get(True, 0), counts.get(False, 0)


def status_row_ids(engine: Engine, organization_id: str) -> np.ndarray:
    """The ids of the organization's sync_status rows, sorted."""
    query = sa.select(sync_status.c.id).where(sync_status.c.organization_id == organization_id)
    with engine.connect() as conn:
        return np.sort(np.fromiter((row_id for (row_id,) in conn.execute(query)), np.int64))
