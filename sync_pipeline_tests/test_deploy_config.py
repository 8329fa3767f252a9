"""The production wiring that needs no server: run tags for the queued run coordinator's limits,
the selectable executor, run retention, and deploy/dagster.yaml as a valid instance config."""

import importlib
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml

from sync_pipeline.definitions import build_definitions
from sync_pipeline.jobs import NIGHTLY_JOB_NAME
from sync_pipeline.maintenance import build_run_retention_job
from sync_pipeline.runs import METAKOCKA_COMPANY_TAG
from sync_pipeline.settings import Organization, Settings

REPO_ROOT = Path(__file__).resolve().parents[1]

SETTINGS = Settings(
    database_url="sqlite:///:memory:",
    organizations=(
        Organization(id="org-a", name="A", metakocka_company_id="16"),
        Organization(id="org-b", name="B", metakocka_company_id="17"),
    ),
)
run_retention_job = build_run_retention_job(SETTINGS.run_retention_days)


@pytest.fixture
def resource_env(monkeypatch):
    for name in ("CRM_BASE_URL", "CRM_API_KEY", "METAKOCKA_BASE_URL"):
        monkeypatch.setenv(name, "unused")
    monkeypatch.setenv("METAKOCKA_SECRET_KEYS", "{}")


def test_nightly_runs_carry_their_partition_and_metakocka_company():
    defs = build_definitions(SETTINGS)
    schedule = defs.resolve_schedule_def("nightly_reconciliation_schedule")
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 25, 2, tzinfo=UTC)
    )
    requests = schedule(context)
    # partitions are keyed by the organizations' names: the UI shows "a", not a uuid
    assert {(r.partition_key, r.tags[METAKOCKA_COMPANY_TAG]) for r in requests} == {
        ("a", "16"),
        ("b", "17"),
    }


def test_nightly_executor_is_in_process_unless_run_config_asks_for_multiprocess(resource_env):
    job = build_definitions(SETTINGS).resolve_job_def(NIGHTLY_JOB_NAME)
    (default,) = dg.validate_run_config(job, {})["execution"].values()
    assert set(default) == {"in_process"}
    multiprocess = {"execution": {"config": {"multiprocess": {"max_concurrent": 2}}}}
    (chosen,) = dg.validate_run_config(job, multiprocess)["execution"].values()
    assert chosen["multiprocess"]["max_concurrent"] == 2


def test_run_retention_deletes_old_finished_runs(dagster_instance):
    for _ in range(3):
        assert run_retention_job.execute_in_process(instance=dagster_instance).success
    assert dagster_instance.get_runs_count() == 3
    config = {"ops": {"delete_old_runs": {"config": {"keep_days": 0}}}}
    result = run_retention_job.execute_in_process(instance=dagster_instance, run_config=config)
    assert result.output_for_node("delete_old_runs") == 3
    assert [r.run_id for r in dagster_instance.get_runs()] == [result.run_id]


def test_production_instance_config_limits_runs_per_organization_and_company():
    config = yaml.safe_load((REPO_ROOT / "deploy" / "dagster.yaml").read_text())
    postgres = config["storage"]["postgres"]["postgres_db"]
    assert postgres["scheme"] == "postgresql+psycopg2"  # psycopg 3 breaks dagster-postgres
    assert all(isinstance(postgres[k], dict) for k in ("hostname", "username", "db_name"))
    coordinator = config["run_coordinator"]
    # Dagster's queued coordinator (ours adds the organization's tags to launchpad runs)
    module = importlib.import_module(coordinator["module"])
    assert issubclass(getattr(module, coordinator["class"]), dg.QueuedRunCoordinator)
    limits = {
        limit["key"]: (limit["limit"], limit["value"])
        for limit in coordinator["config"]["tag_concurrency_limits"]
    }
    assert limits["dagster/partition"] == (1, {"applyLimitPerUniqueValue": True})
    assert limits[METAKOCKA_COMPANY_TAG][1] == {"applyLimitPerUniqueValue": True}
    # ...and the local one still needs no server.
    local = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    assert "storage" not in local
