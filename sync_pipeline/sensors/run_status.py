"""Run-status sensors: a `sync_documents` run that fails or is canceled fails its requests.

The job itself marks its requests `done` or `failed` when it finishes (or raises); these sensors
cover what the job cannot see: a run that crashed, was killed, timed out in the queue or was
canceled before or while it ran. Requests are found by the run's id (claimed at start) or by its
run key (set by the request sensor before the run existed).
"""

import dagster as dg

from sync_pipeline.resources import SyncStoreResource
from sync_pipeline.store.requests import SyncRequestQueue


def _fail_requests(context, sync_store: SyncStoreResource, error: str) -> int:
    run = context.dagster_run
    queue = SyncRequestQueue(sync_store.store().engine)
    failed = queue.fail_run(run_id=run.run_id, run_key=run.tags.get("dagster/run_key"), error=error)
    if failed:
        context.log.info(f"marked {failed} request(s) of run {run.run_id} failed")
    return failed


def build_run_status_sensors(job) -> list[dg.SensorDefinition]:
    @dg.run_failure_sensor(
        name="sync_documents_failure_sensor",
        monitored_jobs=[job],
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Marks the sync requests of a failed sync_documents run `failed`.",
    )
    def sync_documents_failure_sensor(
        context: dg.RunFailureSensorContext, sync_store: SyncStoreResource
    ):
        message = context.failure_event.message if context.failure_event else None
        _fail_requests(context, sync_store, f"run {context.dagster_run.run_id} failed: {message}")

    @dg.run_status_sensor(
        name="sync_documents_canceled_sensor",
        run_status=dg.DagsterRunStatus.CANCELED,
        monitored_jobs=[job],
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Marks the sync requests of a canceled sync_documents run `failed`.",
    )
    def sync_documents_canceled_sensor(
        context: dg.RunStatusSensorContext, sync_store: SyncStoreResource
    ):
        _fail_requests(context, sync_store, f"run {context.dagster_run.run_id} was canceled")

    return [sync_documents_failure_sensor, sync_documents_canceled_sensor]
