"""The code location: every asset, check, job, schedule and resource, wired in one place.

Reading this file tells the whole code location. Resources are fed by environment variables
(`EnvVar`), so no secret lives in code or config and the UI shows variable names only. A caller
with other numbers (the fault lab's short timeouts) hands `build_definitions` its own resources.
"""

import dagster as dg

from sync_pipeline.assets.deletions import build_deletion_assets
from sync_pipeline.assets.extract import build_extract_assets
from sync_pipeline.assets.partitions import organization_partitions
from sync_pipeline.assets.plan import build_plan_assets
from sync_pipeline.assets.push import build_push_assets
from sync_pipeline.assets.report import build_report_assets
from sync_pipeline.assets.reporting import (
    build_freshness_job_and_schedule,
    build_reporting_assets,
    reconciled_within_26_hours,
)
from sync_pipeline.assets.validate import build_validate_assets
from sync_pipeline.io_managers import RESOURCE_KEY as RECONCILIATION_IO_MANAGER
from sync_pipeline.io_managers import ReconciliationIOManager
from sync_pipeline.jobs import build_nightly_job
from sync_pipeline.maintenance import build_run_retention_job, build_run_retention_schedule
from sync_pipeline.ops.preflight import build_preflight_job
from sync_pipeline.ops.sync_documents import build_sync_documents_job
from sync_pipeline.resources import (
    CrmResource,
    HistoryPlotResource,
    MetakockaResource,
    OrganizationsResource,
    SyncStoreResource,
    configured_in_code,
)
from sync_pipeline.schedules import build_nightly_schedule
from sync_pipeline.sensors import build_on_demand_sensors
from sync_pipeline.sensors.run_failures import sync_run_failure_sensor
from sync_pipeline.settings import Settings, organizations_to_json


def build_resources(settings: Settings) -> dict:
    """Every resource configured here, from the settings and `EnvVar`s: the launchpad does not
    offer their config (`configured_in_code`)."""
    organizations = organizations_to_json(settings.organizations)
    resources = {
        "crm": CrmResource(
            base_url=dg.EnvVar("CRM_BASE_URL"),
            api_key=dg.EnvVar("CRM_API_KEY"),
            organizations_json=organizations,
        ),
        # Unset only where every organization takes its credentials from the CRM.
        "metakocka": MetakockaResource(
            base_url=dg.EnvVar("METAKOCKA_BASE_URL"),
            secret_keys=dg.EnvVar("METAKOCKA_SECRET_KEYS")
            if settings.metakocka_secret_keys_from_env
            else "{}",
        ),
        # The URL may carry a password, so it is passed by variable name when it is set.
        "sync_store": SyncStoreResource(
            database_url=dg.EnvVar("SYNC_DATABASE_URL")
            if settings.database_url_from_env
            else settings.database_url,
            database_schema=settings.database_schema,
        ),
        "organizations": OrganizationsResource(
            organizations_json=organizations,
            push_concurrency=settings.push_concurrency,
        ),
        "history_plot": HistoryPlotResource(),
    }
    return {
        **{key: configured_in_code(resource) for key, resource in resources.items()},
        # The reconciliation's documents go from step to step in memory (io_managers.py).
        RECONCILIATION_IO_MANAGER: ReconciliationIOManager(),
    }


def build_definitions(settings: Settings, resources: dict | None = None) -> dg.Definitions:
    """`resources`: every resource by key (default: `build_resources(settings)`)."""
    partitions = organization_partitions(settings)
    assets = [
        *build_extract_assets(partitions),
        *build_validate_assets(partitions),
        *build_plan_assets(partitions),
        *build_push_assets(partitions),
        *build_report_assets(partitions),
        *build_deletion_assets(partitions),
        *build_reporting_assets(partitions),
    ]
    nightly = build_nightly_job(partitions, settings.organizations)
    freshness_job, freshness_schedule = build_freshness_job_and_schedule()
    on_demand = build_sync_documents_job()
    run_retention_job = build_run_retention_job(settings.run_retention_days)
    return dg.Definitions(
        assets=assets,
        asset_checks=[reconciled_within_26_hours],
        jobs=[
            nightly,
            on_demand,
            run_retention_job,
            freshness_job,
            build_preflight_job(partitions, settings.organizations),
        ],
        schedules=[
            build_nightly_schedule(nightly, settings),
            build_run_retention_schedule(run_retention_job),
            freshness_schedule,
        ],
        sensors=[
            *build_on_demand_sensors(on_demand, settings),
            sync_run_failure_sensor,
        ],
        resources=build_resources(settings) if resources is None else resources,
    )


defs = build_definitions(Settings.from_env())
