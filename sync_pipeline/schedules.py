"""The nightly schedule: one reconciliation run per organization, at 02:00 Ljubljana time."""

import dagster as dg

from sync_pipeline.runs import TAG_REQUESTED_BY, organization_run_tags
from sync_pipeline.settings import Settings


def build_nightly_schedule(job, settings: Settings) -> dg.ScheduleDefinition:
    @dg.schedule(
        job=job,
        cron_schedule=settings.nightly_cron,
        execution_timezone=settings.timezone,
        name="nightly_reconciliation_schedule",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Requests one reconciliation run per organization every night "
        "(SYNC_NIGHTLY_CRON, SYNC_TIMEZONE).",
    )
    def nightly_reconciliation_schedule(context: dg.ScheduleEvaluationContext):
        night = context.scheduled_execution_time.strftime("%Y-%m-%d")
        return [
            dg.RunRequest(
                run_key=f"nightly:{org.id}:{night}",
                partition_key=org.key,
                tags={TAG_REQUESTED_BY: "schedule", **organization_run_tags(org)},
            )
            for org in settings.organizations
        ]

    return nightly_reconciliation_schedule
