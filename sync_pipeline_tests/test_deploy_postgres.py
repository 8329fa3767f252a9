"""Production shape on the real PostgreSQL: `dagster dev` (webserver + daemon) with
deploy/dagster.yaml, Dagster's storage and the sync tables in one fresh database (Dagster's in
`public`, ours in `sync`), three organizations launched at once through the queued run coordinator,
each run on the multiprocess executor. All three succeed."""

import os
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipeline.demo import patched_environ, sandbox_environment
from sync_pipeline.jobs import NIGHTLY_JOB_NAME
from sync_pipeline.runs import METAKOCKA_COMPANY_TAG
from sync_pipeline.sandbox.runner import start_sandbox
from sync_pipeline.settings import slug

from .dagster_dev import dagster_dev
from .graphql_helpers import LAUNCH, RUN_STATUS
from .graphql_helpers import graphql as _graphql

REPO_ROOT = Path(__file__).resolve().parents[1]
# The forkserver imports the code location once per run; each step is then a fork of it, not a
# fresh interpreter that imports Dagster and pandas again (docs/deploy.md).
MULTIPROCESS = {
    "execution": {
        "config": {
            "multiprocess": {
                "max_concurrent": 2,
                "start_method": {"forkserver": {"preload_modules": ["sync_pipeline.definitions"]}},
            }
        }
    }
}


def _dagster_pg_environment(pg_url: str) -> dict[str, str]:
    """deploy/dagster.yaml's variables, pointing at the test database."""
    url = sa.engine.make_url(pg_url)
    return {
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USER": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": url.database,
    }


@pytest.fixture
def three_organizations(tmp_path):
    with start_sandbox(
        tmp_path / "sandbox", documents_per_org=20, organizations=3, reset=True
    ) as running:
        yield running


@pytest.fixture
def production_dagster(three_organizations, pg_url, tmp_path):
    """`dagster dev` on deploy/dagster.yaml; yields (url, environment)."""
    environment = {
        **sandbox_environment(three_organizations, pg_url, tmp_path),
        **_dagster_pg_environment(pg_url),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    with dagster_dev(
        {**os.environ, **environment},
        tmp_path / "dagster_home",
        instance_yaml=REPO_ROOT / "deploy" / "dagster.yaml",
    ) as url:
        yield url, environment


def _launch(graphql: str, organization) -> str:
    params = {
        "selector": {
            "repositoryLocationName": "sync_pipeline",
            "repositoryName": "__repository__",
            "jobName": NIGHTLY_JOB_NAME,
        },
        "runConfigData": MULTIPROCESS,
        "executionMetadata": {
            "tags": [
                {"key": "dagster/partition", "value": slug(organization.name)},
                {"key": METAKOCKA_COMPANY_TAG, "value": organization.metakocka_company_id},
            ]
        },
    }
    deadline = time.monotonic() + 60
    while True:  # the code location may still be loading right after the server answers
        launched = _graphql(graphql, LAUNCH, {"executionParams": params})["launchRun"]
        if launched["__typename"] == "LaunchRunSuccess" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


@pytest.mark.timeout(600)  # a guard for a loaded machine, not a performance assertion
def test_three_organizations_at_once_through_the_queue_on_postgresql(
    production_dagster, three_organizations, pg_url
):
    url, environment = production_dagster
    graphql = f"{url}/graphql"
    organizations = three_organizations.organizations
    assert len(organizations) == 3
    run_ids = {_launch(graphql, org): org for org in organizations}

    statuses: dict[str, str] = {}
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline and len(statuses) < len(run_ids):
        for run_id in set(run_ids) - set(statuses):
            status = _graphql(graphql, RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                statuses[run_id] = status
        time.sleep(1)
    assert statuses == dict.fromkeys(run_ids, "SUCCESS")

    # The runs went through the queue, ran on the multiprocess executor, and Dagster kept them in
    # PostgreSQL: read them back from the instance the way another host would.
    with patched_environ(environment):
        instance = dg.DagsterInstance.get()
        try:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            for run_id in run_ids:
                events = instance.all_logs(run_id)
                types = {e.dagster_event.event_type_value for e in events if e.dagster_event}
                assert {"PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_SUCCESS"} <= types
                assert any("multiprocess executor" in (e.message or "") for e in events)
            # Different organizations do not wait for each other: every run started before any
            # other one ended.
            records = instance.get_run_records(dg.RunsFilter(run_ids=list(run_ids)))
            assert max(r.start_time for r in records) < min(r.end_time for r in records)
        finally:
            instance.dispose()

    # Our tables are in their own schema, Dagster's in public, both in the one database.
    engine = sa.create_engine(pg_url)
    try:
        inspector = sa.inspect(engine)
        assert {"sync_status", "sync_error_log", "document_links"} <= set(
            inspector.get_table_names("sync")
        )
        assert "runs" in inspector.get_table_names("public")
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("select organization_id, status from sync.sync_status")
            ).all()
    finally:
        engine.dispose()
    assert {org for org, _ in rows} == {org.id for org in organizations}
    assert {status for _, status in rows} <= {"synced", "invalid", "no_crm_type"}
