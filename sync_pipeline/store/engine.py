"""Engines for the sync database, and where its tables live.

On PostgreSQL the sync tables sit in their own schema (`SYNC_DATABASE_SCHEMA`, default `sync`), so
they can share a database with Dagster's storage or the CRM without mixing with anything else. The
schema is put first on every connection's `search_path` (SQLAlchemy's recipe for alternate search
paths), so the Core tables, plain SQL and the analyst views all resolve to it without qualifying a
single name. SQLite has no schemas: there the tables are simply in the file.
"""

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipeline.settings import Settings

SCHEMA_ENV = "SYNC_DATABASE_SCHEMA"
DEFAULT_POSTGRES_SCHEMA = "sync"


def is_postgresql(url: str | sa.URL) -> bool:
    return sa.engine.make_url(url).get_backend_name() == "postgresql"


def database_schema(url: str | sa.URL, schema: str | None = None) -> str | None:
    """The schema the sync tables live in: `schema`, else `SYNC_DATABASE_SCHEMA`, else `sync` on
    PostgreSQL; always None on other databases. An empty value means the connection's default
    (`public`)."""
    if not is_postgresql(url):
        return None
    if schema is None:
        configured = Settings.from_env().database_schema
        schema = DEFAULT_POSTGRES_SCHEMA if configured is None else configured
    schema = schema.strip()
    if schema and not schema.replace("_", "").isalnum():
        raise ValueError(f"{SCHEMA_ENV} must be a plain identifier, got {schema!r}")
    return schema or None


def make_engine(url: str, schema: str | None = None) -> Engine:
    """An engine that behaves under concurrency: SQLite gets WAL and a busy timeout; PostgreSQL
    gets the sync schema first on its search_path (see `database_schema`)."""
    if url.startswith("sqlite"):
        _create_folder_of(url)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    engine = sa.create_engine(url, pool_pre_ping=True)
    schema = database_schema(url, schema)
    if schema:
        search_path = f'"{schema}", public'

        # insert=True: before the dialect's first-connect initialisation, so the dialect's default
        # schema is the sync schema once it exists.
        @sa.event.listens_for(engine, "connect", insert=True)
        def _search_path(dbapi_connection, _record):
            autocommit = dbapi_connection.autocommit
            dbapi_connection.autocommit = True
            cursor = dbapi_connection.cursor()
            cursor.execute(f"SET SESSION search_path TO {search_path}")
            cursor.close()
            dbapi_connection.autocommit = autocommit

    return engine


def _create_folder_of(url: str) -> None:
    """Create the folder of a SQLite file: every process that opens the sync database (a sensor,
    a run, the CLI) may be the first, e.g. on a fresh clone with the default
    ``.sync_pipeline/sync.db``, and SQLite creates the file but not its folder."""
    database = sa.engine.make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
