"""Alembic migrations of the sync database, on a real SQLite file and the real PostgreSQL: the
models (store/tables.py) and the migrations agree, the tables sit in their own PostgreSQL schema,
concurrent upgrades take turns, and `sync-pipeline migrate` does it from the command line."""

import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner

from sync_pipeline.cli import main as cli
from sync_pipeline.store.migrate import (
    BASELINE_REVISION,
    VERSION_TABLE,
    alembic_config,
    head_revision,
    schema_drift,
    upgrade,
)
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.tables import metadata

REPORT_VIEWS = {
    "report_status_daily",
    "report_errors_daily",
    "report_open_errors_by_type",
    "report_oldest_unsynced",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def _names(url: str, schema: str | None) -> tuple[set[str], set[str]]:
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return set(inspector.get_table_names(schema)), set(inspector.get_view_names(schema))
    finally:
        engine.dispose()


def test_models_and_migrations_agree(db_url):
    """After `upgrade head`, autogenerate finds nothing to do. When this fails, a table or column
    was added to store/tables.py without a migration: `sync-pipeline migrate --autogenerate`."""
    assert upgrade(db_url) == head_revision()
    assert schema_drift(db_url) == []
    schema = "sync" if db_url.startswith("postgresql") else None
    tables, views = _names(db_url, schema)
    assert set(metadata.tables) | {VERSION_TABLE} == tables
    assert REPORT_VIEWS <= views
    assert upgrade(db_url) == head_revision()  # a second upgrade is a no-op


def test_downgrade_to_nothing_and_back(db_url):
    upgrade(db_url)
    config = alembic_config(db_url)
    command.downgrade(config, "base")
    schema = "sync" if db_url.startswith("postgresql") else None
    tables, views = _names(db_url, schema)
    assert tables <= {VERSION_TABLE} and not views
    assert upgrade(db_url) == head_revision()
    assert schema_drift(db_url) == []


def test_postgresql_tables_live_in_their_own_schema(pg_url, monkeypatch):
    monkeypatch.setenv("SYNC_DATABASE_SCHEMA", "sync_reporting")
    store = SyncStore(pg_url)
    store.create_schema()
    store.links.bind("org", crm_document_id="c1", metakocka_id="1", content_hash="h")
    store.dispose()
    assert set(metadata.tables) <= _names(pg_url, "sync_reporting")[0]
    assert not _names(pg_url, "public")[0]  # nothing of ours in public
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:  # plain SQL with the schema named, as analysts write it
        assert conn.execute(sa.text("select count(*) from sync_reporting.document_links")).scalar()
    engine.dispose()


def test_sqlite_ignores_the_schema_setting(sqlite_url, monkeypatch):
    monkeypatch.setenv("SYNC_DATABASE_SCHEMA", "sync")
    store = SyncStore(sqlite_url)
    store.create_schema()
    assert store.schema is None
    assert store.links.frame("org").empty
    store.dispose()


def test_concurrent_upgrades_take_turns(db_url):
    """Run workers that start at once on a fresh database each try to migrate it."""
    code = (
        "import sys; from sync_pipeline.store.migrate import upgrade; print(upgrade(sys.argv[1]))"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, db_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [worker.communicate(timeout=120) for worker in workers]
    for worker, (out, err) in zip(workers, results, strict=True):
        assert worker.returncode == 0, err
        assert out.strip() == head_revision()
    assert schema_drift(db_url) == []


def test_a_database_made_before_migrations_is_adopted(db_url):
    """`metadata.create_all` made the seed's tables without a version table: upgrade stamps the
    baseline and goes on from there, keeping the rows."""
    upgrade(db_url, revision=BASELINE_REVISION)
    schema = "sync" if db_url.startswith("postgresql") else None
    store = SyncStore(db_url)
    store.links.bind("org", crm_document_id="c1", metakocka_id="1", content_hash="h")
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
    store.dispose()
    assert upgrade(db_url) == head_revision()
    assert schema_drift(db_url) == []
    store = SyncStore(db_url)
    assert len(store.links.frame("org")) == 1
    store.dispose()
    assert VERSION_TABLE in _names(db_url, schema)[0]


def test_a_table_without_a_migration_is_named(sqlite_url):
    table = sa.Table("not_migrated_yet", metadata, sa.Column("id", sa.Integer, primary_key=True))
    try:
        with pytest.raises(RuntimeError, match="not_migrated_yet.*--autogenerate"):
            upgrade(sqlite_url)
    finally:
        metadata.remove(table)


def test_migrate_command(tmp_path, pg_url):
    sqlite_url = f"sqlite:///{tmp_path / 'new' / 'sync.db'}"
    for url in (sqlite_url, pg_url):
        result = CliRunner().invoke(cli, ["migrate", "--db-url", url])
        assert result.exit_code == 0, result.output
        assert head_revision() in result.output
        assert schema_drift(url) == []
    result = CliRunner().invoke(cli, ["migrate", "--db-url", pg_url, "--sql"])
    assert result.exit_code == 0, result.output
    assert 'CREATE SCHEMA IF NOT EXISTS "sync"' in result.output
    assert "CREATE VIEW report_oldest_unsynced" in result.output
    result = CliRunner().invoke(cli, ["migrate", "--db-url", pg_url, "--sql", "--schema", ""])
    assert result.exit_code == 0 and "CREATE SCHEMA" not in result.output  # the login's default
