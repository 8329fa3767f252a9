"""`sync-pipeline migrate`: bring the sync database to the newest migration (or write a new one)."""

import os
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from sync_pipeline.settings import DEFAULT_DATA_DIR, default_database_url


@click.command()
@click.option(
    "--db-url",
    default=None,
    help="Sync database URL (default: SYNC_DATABASE_URL, else SQLite in the data dir).",
)
@click.option(
    "--schema",
    default=None,
    help="PostgreSQL schema of the sync tables (default: SYNC_DATABASE_SCHEMA, else `sync`).",
)
@click.option("--to", "revision", default="head", show_default=True, help="Target revision.")
@click.option("--sql", is_flag=True, help="Print the DDL of a migration from scratch; run nothing.")
@click.option(
    "--autogenerate",
    metavar="MESSAGE",
    default=None,
    help="Write a new migration for what store/tables.py has and the migrations lack.",
)
def migrate(
    db_url: str | None, schema: str | None, revision: str, sql: bool, autogenerate: str | None
) -> None:
    """Create or upgrade the sync database's tables and report views (Alembic)."""
    from sync_pipeline.store import migrate as migrations

    if autogenerate:
        path = migrations.new_revision(autogenerate)
        click.echo(f"wrote {path}: review it, then run the tests (test_migrations.py)")
        return
    data_dir = Path(os.environ.get("SYNC_DATA_DIR", DEFAULT_DATA_DIR))
    url = db_url or os.environ.get("SYNC_DATABASE_URL") or default_database_url(data_dir)
    if sql:
        migrations.upgrade_sql(url, schema=schema, revision=revision)
        return
    database = make_url(url).database
    if make_url(url).get_backend_name() == "sqlite" and database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    at = migrations.upgrade(url, schema=schema, revision=revision)
    shown = make_url(url).render_as_string(hide_password=True)
    click.echo(f"sync database {shown} is at revision {at}")
