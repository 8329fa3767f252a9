"""Run-failure sensor: every failed run of this code location becomes a row in sync_error_log.

Fires (every 30 s) for each run that failed: a reconciliation that crashed, a step that raised, a
run killed by the run monitor (sensors/finished_runs.py: a failure it could not record is not
skipped). Each failure becomes one open `internal` error with the run's id, the job, the failure
message and, when Dagster has it, the stack trace; the organization is taken from the run's tags
(`sync_pipeline/organization_id` of the nightly job, `sync_pipeline/organization` of the on-demand
job) or its partition key, else `*`. The row is closed by the organization's next successful
reconciliation (`sync_report`), or by an operator (`sync-pipeline errors resolve`)."""

import dagster as dg

from sync_pipeline.resources import CrmResource, MetakockaResource, SyncStoreResource
from sync_pipeline.runs import (
    ORGANIZATION_ID_TAG,
    TAG_ORGANIZATION,
    TAG_PARTITION,
    TAG_REQUESTED_BY,
    TAG_USER,
)
from sync_pipeline.sensors.finished_runs import handle_runs
from sync_pipeline.settings import organization_for_partition, parse_organizations

ORGANIZATION_TAGS = (ORGANIZATION_ID_TAG, TAG_ORGANIZATION)
NO_ORGANIZATION = "*"


def run_organization(tags: dict, organizations=()) -> str:
    """The CRM organization id of a run: its tags name it, or its partition key does."""
    for tag in ORGANIZATION_TAGS:
        if tags.get(tag):
            return tags[tag]
    partition = tags.get(TAG_PARTITION)
    if not partition:
        return NO_ORGANIZATION
    try:
        return organization_for_partition(tuple(organizations), partition).id
    except KeyError:
        return partition


def failure_text(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[str, str | None]:
    """The failure's message and stack trace (the failed step's error, when one is known)."""
    events = instance.all_logs(
        run.run_id, of_type={dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.STEP_FAILURE}
    )
    run_failures = [
        e.dagster_event for e in events if e.dagster_event and e.dagster_event.is_run_failure
    ]
    message = (run_failures[-1].message if run_failures else None) or "run failed"
    trace = None
    for entry in events:
        event = entry.dagster_event
        if event is None or not event.is_step_failure or event.step_failure_data is None:
            continue
        error = event.step_failure_data.error
        if error is not None:
            root = error
            while root.cause is not None:  # the user code's own exception, not Dagster's wrapper
                root = root.cause
            message = f"{message}; step {event.step_key}: {root.message.strip()}"
            trace = error.to_string()
            break
    return f"run {run.run_id} of {run.job_name} failed: {message}", trace


@dg.sensor(
    name="sync_run_failure_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records every failed run of this code location in sync_error_log (error_type "
    "internal, with the run id and the organization of the run). A failure it cannot record "
    "yet (the sync database unreachable) fails the tick and is recorded by the next one.",
)
def sync_run_failure_sensor(
    context: dg.SensorEvaluationContext,
    sync_store: SyncStoreResource,
    crm: CrmResource,
    metakocka: MetakockaResource,
):
    def record(run: dg.DagsterRun) -> None:
        message, trace = failure_text(context.instance, run)
        recorded = sync_store.store().errors.record_run_failure(
            organization_id=run_organization(run.tags, parse_organizations(crm.organizations_json)),
            run_id=run.run_id,
            job_name=run.job_name,
            message=message,
            stack_trace=trace,
            requested_by=run.tags.get(TAG_REQUESTED_BY) or run.tags.get(TAG_USER),
            secrets=[crm.api_key, *metakocka.all_secrets()],
        )
        if recorded:
            context.log.info(f"recorded the failure of run {run.run_id} in sync_error_log")

    return handle_runs(context, [dg.DagsterRunStatus.FAILURE], record)
