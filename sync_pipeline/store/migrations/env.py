"""Alembic environment of the sync database.

The target metadata is `sync_pipeline.store.tables.metadata`. The database comes from (first wins):
a connection handed over by `sync_pipeline.store.migrate` (`config.attributes["connection"]`), the
`-x db_url=URL` argument of the `alembic` command, `SYNC_DATABASE_URL`, `sqlalchemy.url`.

On PostgreSQL the tables (and the version table, `sync_alembic_version`) live in the sync schema
(`SYNC_DATABASE_SCHEMA`, default `sync`), which is created here; an advisory lock makes concurrent
upgrades (several run workers starting at once) take turns. On SQLite the whole upgrade is one
`BEGIN IMMEDIATE` transaction for the same reason, and `render_as_batch` turns ALTERs into table
rebuilds (with the legacy rename, so the report views survive a rebuild of the table they read).
"""

import sqlalchemy as sa
from alembic import context

from sync_pipeline.settings import Settings
from sync_pipeline.store.engine import database_schema, make_engine
from sync_pipeline.store.migrate import MIGRATION_LOCK_KEY, VERSION_TABLE, include_name
from sync_pipeline.store.tables import metadata

config = context.config


def _url() -> str:
    settings = Settings.from_env()  # the one reader of the environment (sync_pipeline/settings.py)
    url = (
        context.get_x_argument(as_dictionary=True).get("db_url")
        or (settings.database_url if settings.database_url_from_env else None)
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise SystemExit("no database: pass -x db_url=URL or set SYNC_DATABASE_URL")
    return url


def _schema(url) -> str | None:
    if "schema" in config.attributes:  # chosen by the caller (None: the login's default schema)
        return config.attributes["schema"]
    return database_schema(url)


def _render_item(type_, obj, autogen_context):
    """Render `sa.true()`, `sa.false()` and `sa.func.now()` server defaults as such, not as the
    scratch database's SQL (SQLite would turn `sa.false()` into `0`, which PostgreSQL refuses)."""
    if type_ == "server_default" and isinstance(obj, sa.schema.DefaultClause):
        arg = obj.arg
        if isinstance(arg, sa.sql.elements.True_ | sa.sql.elements.False_):
            return "sa.true()" if isinstance(arg, sa.sql.elements.True_) else "sa.false()"
        if isinstance(arg, sa.sql.functions.FunctionElement) and not list(arg.clauses):
            return f"sa.func.{arg.name}()"
    return False


def _options(dialect_name: str, schema: str | None) -> dict:
    return {
        "render_item": _render_item,
        "include_name": include_name,
        "target_metadata": metadata,
        "version_table": VERSION_TABLE,
        "version_table_schema": schema,
        "render_as_batch": dialect_name == "sqlite",
        # SQLite can run DDL in a transaction; alembic only assumes it cannot.
        "transactional_ddl": True,
        "compare_type": True,
        "compare_server_default": True,
    }


def run_migrations_offline() -> None:
    """`--sql`: print the DDL for a DBA instead of running it."""
    url = _url()
    schema = _schema(url)
    dialect = sa.engine.make_url(url).get_backend_name()
    context.configure(url=url, literal_binds=True, **_options(dialect, schema))
    with context.begin_transaction():
        if schema:
            context.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            context.execute(f'SET search_path TO "{schema}", public')
        context.run_migrations()


def _run(connection: sa.Connection, schema: str | None) -> None:
    dialect = connection.dialect.name
    context.configure(connection=connection, **_options(dialect, schema))
    with context.begin_transaction():
        if dialect == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
            if schema:
                connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                # The dialect read current_schema() before the schema existed; reflection (and
                # so autogenerate) must look in the sync schema.
                connection.dialect.default_schema_name = schema
        elif dialect == "sqlite":
            # A batch migration rebuilds a table and renames it into place; without the legacy
            # rename, SQLite refuses that rename while a report view names the table.
            connection.exec_driver_sql("PRAGMA legacy_alter_table=ON")
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection, config.attributes.get("schema"))
        return
    url = _url()
    schema = _schema(url)
    engine = make_engine(url, schema)
    try:
        with engine.connect() as connection:
            _run(connection, schema)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
