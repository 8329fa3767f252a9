"""`sync-pipeline migrate`: bring the sync database to the newest migration (or write a new one)."""

import click


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
    from sync_pipeline.settings import Settings
    from sync_pipeline.store import migrate as migrations
    from sync_pipeline.store.urls import printable_url

    if autogenerate:
        path = migrations.new_revision(autogenerate)
        click.echo(f"wrote {path}: review it, then run the tests (test_migrations.py)")
        return
    url = db_url or Settings.from_env().database_url
    if sql:
        migrations.upgrade_sql(url, schema=schema, revision=revision)
        return
    at = migrations.upgrade(url, schema=schema, revision=revision)  # creates a SQLite's folder
    click.echo(f"sync database {printable_url(url)} is at revision {at}")
