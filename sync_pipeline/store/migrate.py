"""Alembic migrations of the sync database, driven from code.

`SyncStore.create_schema()` and `sync-pipeline migrate` both call `upgrade()`. The migration scripts
live in `store/migrations/versions/`; `store/tables.py` is their target metadata, and
`schema_drift()` (used by the tests) proves the two agree: every table or column added to
`tables.py` needs a migration (`sync-pipeline migrate --autogenerate "message"` writes one).
"""

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from sync_pipeline.store.engine import database_schema, make_engine
from sync_pipeline.store.tables import metadata

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Alembic's bookkeeping table, named so it cannot meet Dagster's own `alembic_version` (or another
# application's) when the sync tables share a database and schema with them.
VERSION_TABLE = "sync_alembic_version"

# The revision that matches the tables created by `metadata.create_all` before migrations existed.
BASELINE_REVISION = "0001_initial"

# Any fixed 64-bit number: the key of the PostgreSQL advisory lock held while a schema is upgraded.
MIGRATION_LOCK_KEY = 7_301_946_204_551_003


def include_name(name: str | None, type_: str, _parent_names: dict) -> bool:
    """Autogenerate's filter: the version table is alembic's own, not one of ours (it sits in the
    sync schema, which autogenerate reflects as the default schema)."""
    return not (type_ == "table" and name == VERSION_TABLE)


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "%%(rev)s")  # rev ids are "0003_what_it_does"
    if url:
        # ConfigParser interpolation: a literal % (e.g. in a password) must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: sa.Connection, schema: str | None) -> str | None:
    context = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "version_table_schema": schema}
    )
    return context.get_current_revision()


def upgrade(url: str, *, schema: str | None = None, revision: str = "head") -> str | None:
    """Bring the sync database to `revision` (default: the newest); returns the revision it is at.

    Cheap when there is nothing to do (one read of the version table), so every process may call it
    on start. Concurrent callers take turns (an advisory lock on PostgreSQL, `BEGIN IMMEDIATE` on
    SQLite). A database made by `create_all` before migrations existed is adopted: it is stamped
    with the baseline revision, then upgraded.
    """
    schema = database_schema(url, schema)
    engine = make_engine(url, schema)
    try:
        with engine.connect() as connection, _taking_turns(connection):
            at, tables = _state(connection, schema)
            if revision == "head" and at == head_revision():
                _check_tables(tables)
                return at
            adopt = at is None and "document_links" in tables
            config = alembic_config(url)
            config.attributes["schema"] = schema
            config.attributes["connection"] = connection
            if adopt:
                command.stamp(config, BASELINE_REVISION)
            command.upgrade(config, revision)
            at, tables = _state(connection, schema)
        if revision == "head":
            _check_tables(tables)
        return at
    finally:
        engine.dispose()


def _state(connection: sa.Connection, schema: str | None) -> tuple[str | None, set[str]]:
    """The revision and the tables, read in a transaction that ends here (alembic runs its own)."""
    at = current_revision(connection, schema)
    tables = set(sa.inspect(connection).get_table_names(schema=schema))
    connection.commit()
    return at, tables


@contextmanager
def _taking_turns(connection: sa.Connection) -> Iterator[None]:
    """Concurrent `upgrade()` calls take turns from their first read of the version on.

    Why from the first read: a caller that read "no version" just before another committed the
    schema, and then listed the tables just after, took the new database for one made before
    migrations existed, stamped it with the baseline revision (over the newest) and upgraded it
    again (a failed start, seen under load in test_concurrent_upgrades_take_turns). On PostgreSQL
    this holds a session advisory lock; env.py takes the same key for each migration transaction,
    which the same session already holds. On SQLite env.py's `BEGIN IMMEDIATE` serialises the
    migrations themselves.
    """
    if connection.dialect.name != "postgresql":
        yield
        return
    lock = {"key": MIGRATION_LOCK_KEY}
    connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), lock)
    connection.commit()
    try:
        yield
    finally:
        connection.rollback()
        connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), lock)
        connection.commit()


def _check_tables(present: set[str]) -> None:
    missing = sorted(set(metadata.tables) - present)
    if missing:
        raise RuntimeError(
            f"store/tables.py has tables that no migration creates: {', '.join(missing)}. "
            'Write one with `uv run sync-pipeline migrate --autogenerate "add <table>"` '
            "(see sync_pipeline/store/migrations/README)."
        )


def upgrade_sql(url: str, *, schema: str | None = None, revision: str = "head") -> None:
    """Print the DDL of an upgrade from scratch (alembic's offline mode) instead of running it."""
    config = alembic_config(url)
    config.attributes["schema"] = database_schema(url, schema)
    command.upgrade(config, revision, sql=True)


def schema_drift(url: str, *, schema: str | None = None) -> list:
    """What autogenerate would change to make the database match `store/tables.py` (empty when
    the migrations and the models agree)."""
    schema = database_schema(url, schema)
    engine = make_engine(url, schema)
    try:
        with engine.connect() as connection:
            if schema:
                connection.dialect.default_schema_name = schema
            context = MigrationContext.configure(
                connection,
                opts={
                    "version_table": VERSION_TABLE,
                    "version_table_schema": schema,
                    "include_name": include_name,
                    "compare_type": True,
                    "compare_server_default": True,
                },
            )
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def new_revision(message: str) -> Path:
    """Write a migration for whatever `store/tables.py` has that the migrations do not (compared
    against a scratch SQLite database at head), formatted with ruff. Review it before committing."""
    with tempfile.TemporaryDirectory(prefix="sync-pipeline-autogen-") as scratch:
        url = f"sqlite:///{Path(scratch) / 'scratch.db'}"
        upgrade(url)
        config = alembic_config(url)
        versions = MIGRATIONS_DIR / "versions"
        number = 1 + max((int(p.name[:4]) for p in versions.glob("[0-9]*.py")), default=0)
        slug = "_".join(message.lower().split())[:40]
        script = command.revision(
            config, message=message, autogenerate=True, rev_id=f"{number:04d}_{slug}"
        )
    path = Path(script.path)
    for args in (["format", "--quiet"], ["check", "--fix", "--quiet"]):
        subprocess.run([sys.executable, "-m", "ruff", *args, str(path)], check=False)
    return path
