"""Per-document reads and writes of the sync database, for on-demand syncs and status look-ups.

The nightly reconciliation re-materialises a whole organization's `sync_status`; an on-demand run
touches a handful of documents, so it reads only their links and status rows and *upserts* only
their status rows here. Id lists are chunked to keep `IN (...)` lists small.
"""

from collections.abc import Iterable

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipeline.store.locks import lock_organization_status
from sync_pipeline.store.repository import LINK_COLUMNS, link_id_conditions
from sync_pipeline.store.tables import document_links, sync_status

CHUNK = 500


def _chunks(ids: Iterable[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(i for i in ids if i))
    return [unique[i : i + CHUNK] for i in range(0, len(unique), CHUNK)]


def _either(table: sa.Table, crm_ids: list[str], mk_ids: list[str]):
    conditions = []
    if crm_ids:
        conditions.append(table.c.crm_document_id.in_(crm_ids))
    if mk_ids:
        conditions.append(table.c.metakocka_id.in_(mk_ids))
    return sa.or_(*conditions) if conditions else sa.false()


def _rows_for(
    engine: Engine,
    table: sa.Table,
    columns,
    organization_id: str,
    crm_ids: Iterable[str],
    mk_ids: Iterable[str],
) -> list[tuple]:
    """The rows naming any of the ids, once each (`columns` start with the table's `id`)."""
    crm_chunks, mk_chunks = _chunks(crm_ids), _chunks(mk_ids)
    rows: dict = {}
    with engine.connect() as conn:
        for crm_chunk, mk_chunk in [(c, []) for c in crm_chunks] + [([], m) for m in mk_chunks]:
            query = sa.select(*columns).where(
                table.c.organization_id == organization_id, _either(table, crm_chunk, mk_chunk)
            )
            for row in conn.execute(query):  # tuples: a mapping per row costs 20x more
                rows[row[0]] = tuple(row)
    return list(rows.values())


def links_for(
    engine: Engine, organization_id: str, crm_ids: Iterable[str], mk_ids: Iterable[str]
) -> pd.DataFrame:
    """The link rows that name any of the ids (the columns of `SyncStore.links_frame`)."""
    columns = [document_links.c.id, *[document_links.c[name] for name in LINK_COLUMNS]]
    rows = _rows_for(engine, document_links, columns, organization_id, crm_ids, mk_ids)
    return pd.DataFrame.from_records(rows, columns=["id", *LINK_COLUMNS]).drop(columns="id")


def status_for(
    engine: Engine, organization_id: str, crm_ids: Iterable[str], mk_ids: Iterable[str]
) -> pd.DataFrame:
    """The sync_status rows that name any of the ids."""
    rows = _rows_for(engine, sync_status, [sync_status], organization_id, crm_ids, mk_ids)
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
        for crm_chunk in _chunks(crm_ids):
            conn.execute(
                sync_status.delete().where(
                    sync_status.c.organization_id == organization_id,
                    sync_status.c.crm_document_id.in_(crm_chunk),
                )
            )
        for mk_chunk in _chunks(mk_ids):
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


def linked_metakocka_count(engine: Engine, organization_id: str) -> int:
    """How many of the organization's links name a Metakocka document."""
    query = sa.select(sa.func.count()).where(
        document_links.c.organization_id == organization_id,
        document_links.c.metakocka_id.is_not(None),
    )
    with engine.connect() as conn:
        return conn.execute(query).scalar_one()


def delete_link(
    engine: Engine, organization_id: str, *, crm_document_id: str | None, metakocka_id: str | None
) -> int:
    """Delete the organization's link naming these ids (nothing when neither is given)."""
    conditions = link_id_conditions(crm_document_id, metakocka_id)
    if not conditions:
        return 0
    with engine.begin() as conn:
        return conn.execute(
            document_links.delete().where(
                document_links.c.organization_id == organization_id, *conditions
            )
        ).rowcount
