"""Run-status sensors: a `sync_documents` run that fails or is canceled fails its requests.

The job itself marks its requests `done` or `failed` when it finishes (or raises); these sensors
cover what the job cannot see: a run that crashed, was killed, timed out in the queue or was
canceled before or while it ran. Requests are found by the run's id (claimed at start) or by its
run key (set by the request sensor before the run existed).
"""

import dagster as dg

from sync_pipeline.resources import SyncStoreResource
from sync_pipeline.runs import RUN_KEY_TAG
from sync_pipeline.sensors.finished_runs import handle_runs
from sync_pipeline.sensors.run_failures import failure_text


def _fail_requests(context, sync_store: SyncStoreResource, run: dg.DagsterRun, error: str) -> int:
    queue = sync_store.store().requests
    failed = queue.fail_run(run_id=run.run_id, run_key=run.tags.get(RUN_KEY_TAG), error=error)
    if failed:
        context.log.info(f"marked {failed} request(s) of run {run.run_id} failed")
    return failed


def build_run_status_sensors(job) -> list[dg.SensorDefinition]:
    """One sensor per ending the job cannot report itself (sensors/finished_runs.py: a run
    whose requests could not be marked is handed to the next tick again)."""

    @dg.sensor(
        name="sync_documents_failure_sensor",
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Marks the sync requests of a failed sync_documents run `failed`.",
    )
    def sync_documents_failure_sensor(
        context: dg.SensorEvaluationContext, sync_store: SyncStoreResource
    ):
        def fail(run: dg.DagsterRun) -> None:
            message, _ = failure_text(context.instance, run)
            _fail_requests(context, sync_store, run, message)

        return handle_runs(context, [dg.DagsterRunStatus.FAILURE], fail, job_name=job.name)

    @dg.sensor(
        name="sync_documents_canceled_sensor",
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Marks the sync requests of a canceled sync_documents run `failed`.",
    )
    def sync_documents_canceled_sensor(
        context: dg.SensorEvaluationContext, sync_store: SyncStoreResource
    ):
        def fail(run: dg.DagsterRun) -> None:
            _fail_requests(context, sync_store, run, f"run {run.run_id} was canceled")

        return handle_runs(context, [dg.DagsterRunStatus.CANCELED], fail, job_name=job.name)

    return [sync_documents_failure_sensor, sync_documents_canceled_sensor]
