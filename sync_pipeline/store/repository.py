"""Reads and writes of the sync database, behind one small class.

Every write that learns an outcome is its own short transaction, committed before the next
remote call (the OCA connector's lesson: bind the remote id the moment the remote write succeeds).
"""

from collections.abc import Iterable

import pandas as pd
import sqlalchemy as sa

from sync_pipeline.store.engine import database_schema, make_engine
from sync_pipeline.store.error_log import ErrorLog
from sync_pipeline.store.frames import REPEATED_TEXTS, read_frame
from sync_pipeline.store.links import Links
from sync_pipeline.store.locks import lock_organization_status
from sync_pipeline.store.migrate import upgrade
from sync_pipeline.store.status_diff import diff_status
from sync_pipeline.store.tables import sync_status


class SyncStore:
    """The sync database: document_links, sync_status and sync_error_log."""

    def __init__(self, url: str, *, secrets: Iterable[str] = (), schema: str | None = None):
        """`schema`: where the tables live on PostgreSQL (default `SYNC_DATABASE_SCHEMA`, else
        `sync`; see `store/engine.py`)."""
        self.url = url
        self.schema = database_schema(url, schema)
        self.engine = make_engine(url, self.schema)
        self.links = Links(self.engine)
        self.errors = ErrorLog(self.engine, secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Redact these too from now on (a secret learned after opening: the CRM's
        `metakocka_credentials`)."""
        self.errors.add_secrets(secrets)

    def create_schema(self) -> None:
        """Bring the database to the newest migration (cheap when it is already there)."""
        upgrade(self.url, schema=self.schema or "")

    def dispose(self) -> None:
        self.engine.dispose()

    # ----------------------------------------------------------------- status
    def status_frame(self, organization_id: str) -> pd.DataFrame:
        """The organization's sync_status rows."""
        columns = [c.name for c in sync_status.columns]
        query = sa.select(*[sync_status.c[name] for name in columns]).where(
            sync_status.c.organization_id == organization_id
        )
        return read_frame(self.engine, query, columns, repeated=REPEATED_TEXTS)

    def replace_status(
        self, organization_id: str, rows: Iterable[dict], previous: pd.DataFrame | None = None
    ) -> int:
        """Re-materialise one organization's sync_status in a single transaction.

        With `previous` (its rows as they are now, `status_frame`), only the differences are
        written: rows of documents no longer known are deleted, new and changed rows replace
        theirs, and an unchanged row is left alone (a full sweep of an organization in sync then
        writes next to nothing). Returns the number of rows written.
        """
        if previous is None:
            return self.write_status(organization_id, list(rows), everything=True)
        changed, gone = diff_status(rows, previous)
        return self.write_status(organization_id, changed, gone=gone)

    def write_status(
        self,
        organization_id: str,
        changed: list[dict],
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
                    for start in range(0, len(ids), 500):
                        conn.execute(
                            sync_status.delete().where(
                                sync_status.c.organization_id == organization_id,
                                column.in_(ids[start : start + 500]),
                            )
                        )
            for start in range(0, len(changed), 5000):
                conn.execute(sync_status.insert(), changed[start : start + 5000])
        return len(changed)
