"""Run retention: Dagster keeps every run and its event log forever; this job deletes the finished
runs older than `DAGSTER_RUN_RETENTION_DAYS` (default 90) from the instance's storage.

The sync tables keep their own history (`sync_error_log`, `sync_status`), so what an analyst needs
outlives the Dagster run that wrote it; `run_id` there then names a run the UI no longer shows.
Schedule and sensor tick history is purged by the instance itself (`retention:` in
deploy/dagster.yaml).
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from sync_pipeline.runs import TAG_KIND

RUN_RETENTION_JOB_NAME = "run_retention"
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


class RunRetentionConfig(dg.Config):
    keep_days: int
    """Finished runs created more than this many days ago are deleted (the job's default:
    DAGSTER_RUN_RETENTION_DAYS, `build_run_retention_job`)."""
    batch_size: int = 500


@dg.op(description="Delete finished runs (and their event logs) older than `keep_days`.")
def delete_old_runs(context: dg.OpExecutionContext, config: RunRetentionConfig) -> int:
    cutoff = datetime.now(UTC) - timedelta(days=config.keep_days)
    deleted = 0
    while True:
        records = context.instance.get_run_records(
            filters=dg.RunsFilter(statuses=FINISHED, created_before=cutoff),
            limit=config.batch_size,
        )
        records = [r for r in records if r.dagster_run.run_id != context.run_id]
        if not records:
            break
        for record in records:
            context.instance.delete_run(record.dagster_run.run_id)
        deleted += len(records)
    context.log.info(f"deleted {deleted} runs created before {cutoff.isoformat()}")
    context.add_output_metadata({"deleted_runs": deleted, "cutoff": cutoff.isoformat()})
    return deleted


def build_run_retention_job(keep_days: int) -> dg.JobDefinition:
    """The retention job; `keep_days` (the settings' DAGSTER_RUN_RETENTION_DAYS) is its default
    config, which a launch may override."""

    @dg.job(
        name=RUN_RETENTION_JOB_NAME,
        executor_def=dg.in_process_executor,
        description="Deletes finished Dagster runs older than DAGSTER_RUN_RETENTION_DAYS days.",
        tags={TAG_KIND: "maintenance"},
        config={"ops": {"delete_old_runs": {"config": {"keep_days": keep_days}}}},
    )
    def run_retention_job():
        delete_old_runs()

    return run_retention_job


def build_run_retention_schedule(job: dg.JobDefinition) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="run_retention_schedule",
        job=job,
        cron_schedule="30 4 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Deletes old finished runs every day at 04:30 UTC (after the nightly runs).",
    )
