"""`sync-pipeline demo`: the sandbox, the nightly reconciliation of every organization, a summary.

The demo goes through the same doors as production: it points the environment variables at the
sandbox and loads the same `Definitions`, so what the demo shows is what a deployment does.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from sync_pipeline.crm.client import CrmClient
from sync_pipeline.domain.directions import CRM_TO_METAKOCKA, METAKOCKA_TO_CRM
from sync_pipeline.domain.document import crm_id_for_metakocka_document
from sync_pipeline.jobs import NIGHTLY_JOB_NAME
from sync_pipeline.runs import TAG_REQUESTED_BY
from sync_pipeline.sandbox.runner import Sandbox, env_values, start_sandbox
from sync_pipeline.settings import (
    Settings,
    crm_tenants,
    default_database_url,
    parse_organizations,
)
from sync_pipeline.store.urls import printable_url
from sync_pipeline.sync.export.outcomes import FAILED, OK
from sync_pipeline.sync.record import INVALID

SUMMARY_COLUMNS = ("created", "updated", "unchanged", "invalid", "failed")


def sandbox_environment(sandbox: Sandbox, database_url: str, data_dir: Path) -> dict[str, str]:
    """The environment variables that point the pipeline at a running sandbox."""
    return {
        **env_values(sandbox),
        "SYNC_DATABASE_URL": database_url,
        "SYNC_DATA_DIR": str(data_dir),
    }


def sandbox_crm_client(sandbox: Sandbox, api_key: str | None = None, **options) -> CrmClient:
    """A CRM client of a running sandbox with its organizations' CRM settings (integration user,
    service product code), as the code location builds it from `SYNC_ORGANIZATIONS`."""
    values = env_values(sandbox)
    organizations = parse_organizations(values["SYNC_ORGANIZATIONS"])
    key = api_key if api_key is not None else values["CRM_API_KEY"]
    return CrmClient(sandbox.crm_url, key, tenants=crm_tenants(organizations), **options)


@contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class OrganizationRun:
    organization: str
    success: bool
    counts: dict[str, dict[str, int]]
    """direction -> column -> count."""


def run_reconciliation(
    settings: Settings, instance: dg.DagsterInstance, *, log_level: str = "WARNING"
) -> list[OrganizationRun]:
    """Run the nightly job once per organization, in process, and summarise each run."""
    from sync_pipeline.definitions import build_definitions

    defs = build_definitions(settings)
    job = defs.resolve_job_def(NIGHTLY_JOB_NAME)
    runs = []
    for org in settings.organizations:
        result = job.execute_in_process(
            partition_key=org.key,
            instance=instance,
            raise_on_error=False,
            tags={TAG_REQUESTED_BY: "demo"},
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        counts = summarise(result, org.id) if result.success else {}
        runs.append(OrganizationRun(org.name, result.success, counts))
    return runs


def summarise(result, organization_id: str) -> dict[str, dict[str, int]]:
    plan = result.output_for_node("sync_plan")
    outcomes = [*result.output_for_node("metakocka_push"), *result.output_for_node("crm_push")]
    validated = result.output_for_node("validated_sales_documents")
    counts = {d: dict.fromkeys(SUMMARY_COLUMNS, 0) for d in (CRM_TO_METAKOCKA, METAKOCKA_TO_CRM)}
    for outcome in outcomes:
        column = "failed" if outcome.result == FAILED else None
        if outcome.result == OK:
            column = "created" if outcome.action.startswith("create") else "updated"
        if column:
            counts[outcome.direction][column] += 1
    unchanged = plan.loc[plan["action"] == "unchanged"]
    for row in unchanged.itertuples(index=False):
        born_in_metakocka = row.crm_document_id == crm_id_for_metakocka_document(
            organization_id, str(row.metakocka_id)
        )
        counts[METAKOCKA_TO_CRM if born_in_metakocka else CRM_TO_METAKOCKA]["unchanged"] += 1
    counts[CRM_TO_METAKOCKA]["invalid"] = len(validated.crm.quarantined)
    counts[METAKOCKA_TO_CRM]["invalid"] = len(validated.metakocka.quarantined)
    # Documents held back because their counterpart is invalid are counted with the invalid ones.
    held_back = int((plan["action"] == INVALID).sum()) - len(validated.quarantined)
    counts[CRM_TO_METAKOCKA]["invalid"] += max(0, held_back)
    return counts


def format_summary(runs: list[OrganizationRun]) -> str:
    header = f"{'organization':<24} {'direction':<18}" + "".join(
        f"{c:>10}" for c in SUMMARY_COLUMNS
    )
    lines = [header, "-" * len(header)]
    for run in runs:
        if not run.success:
            lines.append(f"{run.organization:<24} RUN FAILED (see the Dagster event log)")
            continue
        for direction, counts in run.counts.items():
            lines.append(
                f"{run.organization:<24} {direction:<18}"
                + "".join(f"{counts[c]:>10}" for c in SUMMARY_COLUMNS)
            )
    return "\n".join(lines)


def run_demo(
    *,
    data_dir: Path,
    database_url: str | None,
    documents: int,
    reset: bool,
    echo=print,
    crm_options: dict | None = None,
) -> int:
    """``crm_options``: `start_sandbox`'s CRM options (schema profile, max-rows, setup)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    database_url = database_url or default_database_url(data_dir)
    with start_sandbox(
        data_dir / "sandbox", documents_per_org=documents, reset=reset, **(crm_options or {})
    ) as sandbox:
        echo(f"sandbox CRM at {sandbox.crm_url}, Metakocka at {sandbox.metakocka_url}")
        with patched_environ(sandbox_environment(sandbox, database_url, data_dir)):
            settings = Settings.from_env()
            instance = (
                dg.DagsterInstance.get()
                if settings.dagster_home
                else (dg.DagsterInstance.ephemeral())
            )
            runs = run_reconciliation(settings, instance)
    echo(format_summary(runs))
    pushed = sum(
        counts[c] for run in runs for counts in run.counts.values() for c in ("created", "updated")
    )
    if all(run.success for run in runs) and pushed == 0:
        echo("nothing needed pushing: both systems were already in sync")
    echo(f"sync database: {printable_url(database_url)}")
    return 0 if all(run.success for run in runs) else 1
