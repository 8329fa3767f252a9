"""`sync_status`, one row per document known on either side: every read and write of it.

The nightly reconciliation re-materialises a whole organization's rows (`replace`, or `write` of
the rows a sweep found different); an on-demand run touches a handful of documents, so it reads
only their rows (`for_ids`) and *upserts* only those (`upsert`). Every writer of an organization's
rows first takes its lock (`store/locks.py`).
"""

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipeline.store.frames import REPEATED_TEXTS, read_frame
from sync_pipeline.store.id_lists import chunks, rows_naming
from sync_pipeline.store.locks import lock_organization_status
from sync_pipeline.store.status_diff import diff_status
from sync_pipeline.store.tables import sync_status

NO_DIRECTION = "none"
"""`counts_by_direction`'s direction of a document never pushed."""

OUT_OF_SYNC_EXCLUDED = ("synced", "deleted_in_crm", "deleted_in_metakocka", "no_crm_type")
"""Statuses a sync of "every unsynced document" does not take again."""

DELETE_CHUNK, INSERT_CHUNK = 500, 5000
"""Ids per `IN (...)` list of a delete; rows per executemany insert."""


class Statuses:
    """The organization's `sync_status` rows."""

    def __init__(self, engine: Engine):
        self.engine = engine

    # ----------------------------------------------------------------- reads
    def frame(self, organization_id: str) -> pd.DataFrame:
        """The organization's sync_status rows."""
        columns = [c.name for c in sync_status.columns]
        query = sa.select(*[sync_status.c[name] for name in columns]).where(
            sync_status.c.organization_id == organization_id
        )
        return read_frame(self.engine, query, columns, repeated=REPEATED_TEXTS)

    def for_ids(
        self, organization_id: str, crm_ids: Iterable[str], mk_ids: Iterable[str]
    ) -> pd.DataFrame:
        """The sync_status rows that name any of the ids."""
        rows = rows_naming(
            self.engine, sync_status, [sync_status], organization_id, crm_ids, mk_ids
        )
        return pd.DataFrame.from_records(rows, columns=[c.name for c in sync_status.columns])

    def of_document(self, organization_id: str, document_id: str) -> dict | None:
        """The status row of one document, by its CRM id or its Metakocka id."""
        query = sa.select(sync_status).where(
            sync_status.c.organization_id == organization_id,
            sa.or_(
                sync_status.c.crm_document_id == document_id,
                sync_status.c.metakocka_id == document_id,
            ),
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row else None

    def row_ids(self, organization_id: str) -> np.ndarray:
        """The ids of the organization's sync_status rows, sorted."""
        query = sa.select(sync_status.c.id).where(sync_status.c.organization_id == organization_id)
        with self.engine.connect() as conn:
            return np.sort(np.fromiter((row_id for (row_id,) in conn.execute(query)), np.int64))

    def counts(self, organization_id: str) -> dict[str, int]:
        query = (
            sa.select(sync_status.c.status, sa.func.count())
            .where(sync_status.c.organization_id == organization_id)
            .group_by(sync_status.c.status)
        )
        with self.engine.connect() as conn:
            return {status: int(n) for status, n in conn.execute(query).all()}

    def counts_by_direction(self, organization_id: str) -> pd.DataFrame:
        """sync_status rows counted by status and last_direction (`none` when never pushed)."""
        direction = sa.func.coalesce(sync_status.c.last_direction, NO_DIRECTION)
        query = (
            sa.select(sync_status.c.status, direction.label("direction"), sa.func.count())
            .where(sync_status.c.organization_id == organization_id)
            .group_by(sync_status.c.status, direction)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return pd.DataFrame(rows, columns=["status", "direction", "documents"])

    def not_synced(self, organization_id: str, limit: int = 1000) -> list[dict]:
        """Status rows of the organization that are not `synced`, oldest change first."""
        query = (
            sa.select(sync_status)
            .where(
                sync_status.c.organization_id == organization_id, sync_status.c.status != "synced"
            )
            .order_by(sync_status.c.updated_at, sync_status.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings().all()]

    def out_of_sync_counts(self, organization_id: str, source: str) -> tuple[int, int]:
        """(without a counterpart, with one) of the organization's documents of the `source`
        side (`crm` or `metakocka`) that the sync database knows to be out of sync."""
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
        with self.engine.connect() as conn:
            counts = {bool(alone): int(n) for alone, n in conn.execute(query).all()}
        return counts.get(True, 0), counts.get(False, 0)

    # ----------------------------------------------------------------- writes
    def replace(
        self, organization_id: str, rows: Iterable[dict], previous: pd.DataFrame | None = None
    ) -> int:
        """Re-materialise one organization's sync_status in a single transaction.

        With `previous` (its rows as they are now, `frame`), only the differences are written:
        rows of documents no longer known are deleted, new and changed rows replace theirs, and
        an unchanged row is left alone (a full sweep of an organization in sync then writes next
        to nothing). Returns the number of rows written.
        """
        if previous is None:
            return self.write(organization_id, list(rows), everything=True)
        changed, gone = diff_status(rows, previous)
        return self.write(organization_id, changed, gone=gone)

    def write(
        self,
        organization_id: str,
        changed: Sequence[dict],
        *,
        gone: Iterable[int] = (),
        everything: bool = False,
    ) -> int:
        """Write `changed` rows in place of the rows naming their ids, and delete the rows of
        `gone` (their ids), or with `everything` every row of the organization first; in a
        single transaction. Returns the number of rows written."""
        with self.engine.begin() as conn:
            lock_organization_status(conn, organization_id)  # one status writer at a time
            if everything:
                conn.execute(
                    sync_status.delete().where(sync_status.c.organization_id == organization_id)
                )
            else:
                named = [
                    (column, [r[column.name] for r in changed if r[column.name]])
                    for column in (sync_status.c.crm_document_id, sync_status.c.metakocka_id)
                ]
                for column, ids in [(sync_status.c.id, list(gone)), *named]:
                    for start in range(0, len(ids), DELETE_CHUNK):
                        conn.execute(
                            sync_status.delete().where(
                                sync_status.c.organization_id == organization_id,
                                column.in_(ids[start : start + DELETE_CHUNK]),
                            )
                        )
            for start in range(0, len(changed), INSERT_CHUNK):
                conn.execute(sync_status.insert(), changed[start : start + INSERT_CHUNK])
        return len(changed)

    def upsert(self, organization_id: str, rows: list[dict]) -> int:
        """Replace the status rows of these documents only, in one transaction.

        A document's row may have been keyed by one id and now know both (a CRM-only row that
        got its Metakocka twin), so every existing row naming either id of a new row is replaced
        by it.
        """
        if not rows:
            return 0
        crm_ids = [r["crm_document_id"] for r in rows if r.get("crm_document_id")]
        mk_ids = [r["metakocka_id"] for r in rows if r.get("metakocka_id")]
        with self.engine.begin() as conn:
            lock_organization_status(conn, organization_id)  # not while a nightly run rewrites
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
