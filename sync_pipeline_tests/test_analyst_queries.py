"""Every SQL query in docs/analysts.md runs on the real PostgreSQL after a real reconciliation of
the sandbox, on a plain connection (no search_path: the queries name the `sync` schema)."""

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipeline.demo import patched_environ, sandbox_environment
from sync_pipeline.settings import Settings

from .helpers import run_nightly

DOC = Path(__file__).resolve().parents[1] / "docs" / "analysts.md"


def documented_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_document_has_queries_for_every_report():
    text = "\n".join(documented_queries())
    assert len(documented_queries()) >= 8
    for view in ("report_status_daily", "report_open_errors_by_type", "report_oldest_unsynced"):
        assert f"sync.{view}" in text


@pytest.fixture
def reconciled_postgres(sandbox, pg_url, tmp_path, dagster_instance) -> str:
    with patched_environ(sandbox_environment(sandbox, pg_url, tmp_path)):
        settings = Settings.from_env()
        for org in settings.organizations:
            run_nightly(settings, dagster_instance, org.id)
    return pg_url


def test_documented_queries_run_on_a_reconciled_database(reconciled_postgres):
    engine = sa.create_engine(reconciled_postgres)
    try:
        with engine.connect() as conn:
            results = {}
            for query in documented_queries():
                results[query] = conn.execute(sa.text(query)).all()

            def rows(view: str) -> list:
                return conn.execute(sa.text(f"select * from sync.{view}")).all()

            # The reconciliation left something to report on: the sandbox seeds invalid documents.
            daily = rows("report_status_daily")
            assert {r.status for r in daily} >= {"synced", "invalid"}
            assert (
                sum(r.documents for r in daily)
                == conn.execute(sa.text("select count(*) from sync.sync_status")).scalar_one()
            )
            open_by_type = {r.error_type: r.open_errors for r in rows("report_open_errors_by_type")}
            assert open_by_type.get("validation", 0) > 0
            oldest = rows("report_oldest_unsynced")
            assert oldest and all(r.unsynced_since is not None for r in oldest)
            assert {r.status for r in oldest} <= {"pending", "failed", "conflict", "invalid"}
    finally:
        engine.dispose()
    (why_invalid,) = [rows for query, rows in results.items() if "failed_checks" in query]
    assert why_invalid  # the reasons of the sandbox's invalid documents, one row per check
