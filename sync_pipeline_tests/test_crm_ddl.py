"""The sandbox CRM's schema is the published DDL: loaded into the real PostgreSQL, the catalog
holds exactly the tables, columns, types, defaults and constraints `sandbox/crm_ddl.py` declares."""

from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipeline.sandbox import crm_ddl

DDL_DIR = Path(crm_ddl.__file__).parent / "crm_ddl"


def load_profile(url: str, profile: str) -> sa.Engine:
    """A database holding the profile's published DDL (the SQL files, applied as psql would)."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for name in crm_ddl.SQL_FILES[profile]:
            conn.exec_driver_sql((DDL_DIR / name).read_text())
    return engine


COLUMNS_SQL = """
select c.relname, a.attname, format_type(a.atttypid, a.atttypmod), not a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), n.nspname
from pg_attribute a join pg_class c on c.oid = a.attrelid
join pg_namespace n on n.oid = c.relnamespace
left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
where n.nspname in ('public', 'auth') and c.relkind = 'r' and a.attnum > 0
  and not a.attisdropped
order by n.nspname, c.relname, a.attnum
"""
CONSTRAINTS_SQL = """
select c.relname, x.conname, pg_get_constraintdef(x.oid)
from pg_constraint x join pg_class c on c.oid = x.conrelid
join pg_namespace n on n.oid = c.relnamespace
where n.nspname in ('public', 'auth')
"""


@pytest.mark.parametrize("profile", sorted(crm_ddl.PROFILES))
def test_crm_ddl_matches_postgres(pg_url, profile):
    engine = load_profile(pg_url, profile)
    with engine.connect() as conn:
        columns = conn.execute(sa.text(COLUMNS_SQL)).all()
        constraints = conn.execute(sa.text(CONSTRAINTS_SQL)).all()
    engine.dispose()

    in_postgres: dict[str, list[tuple]] = {}
    for table, name, sql_type, nullable, default, schema in columns:
        in_postgres.setdefault(f"{schema}.{table}", []).append((name, sql_type, nullable, default))
    declared = {
        f"{t.schema}.{t.name}": [(c.name, c.sql_type, c.nullable, c.default) for c in t.columns]
        for t in crm_ddl.PROFILES[profile]
    }
    assert declared == in_postgres

    pg_constraints: dict[str, dict[str, str]] = {}
    for table, name, definition in constraints:
        pg_constraints.setdefault(table, {})[name] = definition
    assert {t.name: t.constraints for t in crm_ddl.PROFILES[profile]} == pg_constraints
