"""Reads and writes of the sync database, behind one small class.

Every write that learns an outcome is its own short transaction, committed before the next
remote call (the OCA connector's lesson: bind the remote id the moment the remote write succeeds).
"""

from collections.abc import Iterable

from sync_pipeline.store.engine import database_schema, make_engine
from sync_pipeline.store.error_log import ErrorLog
from sync_pipeline.store.links import Links
from sync_pipeline.store.migrate import upgrade
from sync_pipeline.store.status import Statuses


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
        self.status = Statuses(self.engine)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Redact these too from now on (a secret learned after opening: the CRM's
        `metakocka_credentials`)."""
        self.errors.add_secrets(secrets)

    def create_schema(self) -> None:
        """Bring the database to the newest migration (cheap when it is already there)."""
        upgrade(self.url, schema=self.schema or "")

    def dispose(self) -> None:
        self.engine.dispose()
