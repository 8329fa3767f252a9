"""Is the sync database at the newest migration? Answered with one read, without alembic.

Every run's process opens the sync database and makes sure it is migrated
(`SyncStore.create_schema`). Nearly always it already is, and importing alembic (with mako and
its autogenerate machinery) just to learn that cost each run's process about 13 MiB of memory for
good. So the question is asked here with SQLAlchemy alone, against `HEAD_REVISION`; alembic
(`store/migrate.py`) is imported only when there is a migration to run.
`test_migrations.py::test_head_revision_is_alembics_head` fails when a migration is added
without moving `HEAD_REVISION` to it.
"""

import sqlalchemy as sa

from sync_pipeline.store.tables import metadata

VERSION_TABLE = "sync_alembic_version"
"""Alembic's bookkeeping table, named so it cannot meet Dagster's own `alembic_version` (or another
application's) when the sync tables share a database and schema with them."""

HEAD_REVISION = "0007_metakocka_status"
"""The newest migration in `store/migrations/versions/`."""


def revisions(connection: sa.Connection, schema: str | None) -> set[str]:
    """The revisions alembic has stamped (one per head; none for a database it never saw)."""
    if not sa.inspect(connection).has_table(VERSION_TABLE, schema=schema):
        return set()
    table = sa.table(VERSION_TABLE, sa.column("version_num"), schema=schema)
    return set(connection.execute(sa.select(table.c.version_num)).scalars())


def is_at_head(engine: sa.Engine, schema: str | None) -> bool:
    """Stamped with `HEAD_REVISION` alone, and holding every table of `store/tables.py`.

    Read without the migration lock: a stamp is committed with the migration it records (one
    transaction), so a database that reads as at head is."""
    with engine.connect() as connection:
        if revisions(connection, schema) != {HEAD_REVISION}:
            return False
        present = set(sa.inspect(connection).get_table_names(schema=schema))
    check_tables(present)
    return True


def check_tables(present: set[str]) -> None:
    """Refuse a database at head that lacks a table of `store/tables.py`: a table was added to
    the models without a migration."""
    missing = sorted(set(metadata.tables) - present)
    if missing:
        raise RuntimeError(
            f"store/tables.py has tables that no migration creates: {', '.join(missing)}. "
            'Write one with `uv run sync-pipeline migrate --autogenerate "add <table>"` '
            "(see sync_pipeline/store/migrations/README)."
        )
