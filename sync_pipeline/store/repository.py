"""The sync database: one engine, and one repository per family of tables built on it.

Callers say which table they mean: `store.links.bind(...)` (the binder), `store.errors.log(rows)`,
`store.status.upsert(...)`, and so on. Every repository's writes are short transactions of their
own (the OCA connector's lesson: bind the remote id the moment the remote write succeeds).
"""

from collections.abc import Iterable

from sync_pipeline.store.claims import Claims
from sync_pipeline.store.cursors import Cursors
from sync_pipeline.store.engine import database_schema, make_engine
from sync_pipeline.store.error_log import ErrorLog
from sync_pipeline.store.history import History
from sync_pipeline.store.links import Links
from sync_pipeline.store.migrate import upgrade
from sync_pipeline.store.requests import SyncRequestQueue
from sync_pipeline.store.resolutions import Resolutions
from sync_pipeline.store.retries import Retries
from sync_pipeline.store.status import Statuses


class SyncStore:
    """The sync database and its repositories (module docstring)."""

    def __init__(self, url: str, *, secrets: Iterable[str] = (), schema: str | None = None):
        """`schema`: where the tables live on PostgreSQL (default `SYNC_DATABASE_SCHEMA`, else
        `sync`; see `store/engine.py`)."""
        self.url = url
        self.schema = database_schema(url, schema)
        self.engine = make_engine(url, self.schema)
        self.links = Links(self.engine)
        self.errors = ErrorLog(self.engine, secrets)
        self.status = Statuses(self.engine)
        self.cursors = Cursors(self.engine)
        self.resolutions = Resolutions(self.engine)
        self.retries = Retries(self.engine)
        self.history = History(self.engine)
        self.claims = Claims(self.engine)
        self.requests = SyncRequestQueue(self.engine)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Redact these too from now on (a secret learned after opening: the CRM's
        `metakocka_credentials`)."""
        self.errors.add_secrets(secrets)

    def create_schema(self) -> None:
        """Bring the database to the newest migration (cheap when it is already there)."""
        upgrade(self.url, schema=self.schema or "")

    def dispose(self) -> None:
        self.engine.dispose()
