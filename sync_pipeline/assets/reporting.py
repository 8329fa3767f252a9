"""The sync report of each reconciliation, and the freshness check on sync_status.

`sync_report` (per organization, last step of the nightly job) shows in the Dagster UI what the
organization's sync looks like now: documents by status and direction, the status counts of the
last 30 days (sparklines on the page, and a plot, from the daily `sync_status_history` snapshot it
writes), the top open errors naming their documents, this run's pushes, and the Metakocka statuses
with no CRM status (documents per status: what to add to the organization's
`metakocka_statuses`). It also records the finished reconciliation in `reconciliation_runs`,
which the freshness check reads.

Why sparklines and not Dagster's plots alone: the asset is partitioned by organization, and
Dagster's "Plots" view graphs numeric metadata by partition (each organization's latest value) or
by event (every organization's runs on one line), not one organization's days.

`reconciled_within_26_hours` fails when an organization has not finished a reconciliation for 26
hours (the nightly run plus two hours of grace). It runs every hour from its own schedule, so a
stopped scheduler or a run that keeps failing is noticed even though no run reports it.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd

from sync_pipeline.assets.common import open_store
from sync_pipeline.resources import (
    CrmResource,
    HistoryPlotResource,
    MetakockaResource,
    OrganizationsResource,
    SyncStoreResource,
)
from sync_pipeline.runs import TAG_PARTITION
from sync_pipeline.settings import parse_organizations
from sync_pipeline.store.resolutions import APPLIED
from sync_pipeline.store.tables import SYNC_STATUSES
from sync_pipeline.sync.export.outcomes import OK, PushOutcome
from sync_pipeline.sync.reporting import (
    TOP_ERROR_COLUMNS,
    history_markdown,
    history_sparklines,
    markdown_table,
    run_outcome_table,
    status_direction_table,
    top_error_rows,
    unmapped_statuses_table,
)
from sync_pipeline.sync.statuses import unmapped_status_counts

GROUP = "report"
HISTORY_DAYS = 30
LIMIT_HOURS = 26
FRESHNESS_LIMIT = timedelta(hours=LIMIT_HOURS)
CHECK_RECONCILED_RECENTLY = "reconciled_within_26_hours"
FRESHNESS_JOB_NAME = "sync_freshness_check"


def build_reporting_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        deps=["sync_status", "sync_error_log"],
        description="The organization's sync after the reconciliation: documents by status and "
        "last push direction, the last 30 days (a sparkline per status, bars from 0 to its "
        "highest count; the plot is in status_history), the top open errors with their "
        "documents, this run's pushes, the Metakocka statuses no map knows; then the counts as "
        "numbers. Writes the day's snapshot to sync_status_history and the finished run to "
        "reconciliation_runs.",
    )
    def sync_report(
        context: dg.AssetExecutionContext,
        sync_plan: pd.DataFrame,
        metakocka_push: list,
        crm_push: list,
        propagated_deletions: list,
        sync_store: SyncStoreResource,
        crm: CrmResource,
        metakocka: MetakockaResource,
        organizations: OrganizationsResource,
        history_plot: HistoryPlotResource,
    ) -> dg.MaterializeResult:
        org_id = organizations.for_partition(context.partition_key).id
        run_id = context.run.run_id
        store = open_store(sync_store, crm, metakocka)
        outcomes: list[PushOutcome] = [*metakocka_push, *crm_push, *propagated_deletions]
        applied = store.resolutions.consume(
            _applied_resolutions(sync_plan, outcomes), run_id=run_id, outcome=APPLIED
        )
        store.errors.resolve_run_failures(org_id, note=f"reconciliation run {run_id} succeeded")
        store.errors.resolve_vanished(
            org_id, note=f"document gone from both systems (run {run_id})"
        )

        counts = store.status.counts_by_direction(org_id)
        by_status = counts.groupby("status")["documents"].sum().to_dict()
        today = datetime.now(UTC).date()
        store.history.snapshot(org_id, by_status, run_id=run_id, day=today)
        runs_table, run_counts = run_outcome_table(outcomes)
        unmapped = unmapped_status_counts(store.errors, org_id)
        summary = {
            "statuses": by_status,
            "pushes": run_counts,
            "unmapped_metakocka_statuses": int(unmapped["documents"].sum()),
        }
        store.history.record_reconciliation(org_id, run_id, summary)
        history = store.history.daily_counts(org_id, since=today - timedelta(days=HISTORY_DAYS - 1))
        errors = store.errors.top_open(org_id)
        # In the order the page tells it (the UI keeps it): the tables, then the numbers.
        return dg.MaterializeResult(
            metadata={
                "by_status_and_direction": dg.MetadataValue.md(status_direction_table(counts)),
                "last_30_days": dg.MetadataValue.md(
                    history_sparklines(history, today, HISTORY_DAYS)
                ),
                "top_errors": _top_errors(errors),
                "this_run": dg.MetadataValue.md(runs_table),
                "unmapped_statuses": dg.MetadataValue.md(unmapped_statuses_table(unmapped)),
                "documents": int(sum(by_status.values())),
                **{f"status_{s}": int(by_status.get(s, 0)) for s in SYNC_STATUSES},
                **{key: int(n) for key, n in sorted(run_counts.items())},
                "conflict_resolutions_applied": applied,
                "open_errors": int(errors["errors"].sum()) if not errors.empty else 0,
                "unmapped_metakocka_statuses": summary["unmapped_metakocka_statuses"],
                "status_history": dg.MetadataValue.md(
                    history_markdown(history, today, HISTORY_DAYS, history_plot.plotter)
                ),
            }
        )

    return [sync_report]


def _top_errors(errors: pd.DataFrame) -> dg.MetadataValue:
    """A table entry (drawn in place, however many errors), or a line saying there are none."""
    if errors.empty:
        return dg.MetadataValue.md("_no open errors_")
    return dg.MetadataValue.table(
        records=[dg.TableRecord(row) for row in top_error_rows(errors)],
        schema=dg.TableSchema(columns=[dg.TableColumn(name) for name in TOP_ERROR_COLUMNS]),
    )


def _applied_resolutions(plan: pd.DataFrame, outcomes: list[PushOutcome]) -> list:
    """Ids of the operator resolutions whose winner's content was written in this run."""
    if "conflict_resolution_id" not in plan:
        return []
    done = {(o.crm_document_id, o.metakocka_id) for o in outcomes if o.result == OK}
    rows = plan.loc[plan["conflict_resolution_id"].notna()]
    return [
        r.conflict_resolution_id
        for r in rows.itertuples(index=False)
        if (str(r.crm_document_id), str(r.metakocka_id)) in done
    ]


@dg.asset_check(
    asset="sync_status",
    name=CHECK_RECONCILED_RECENTLY,
    description="Fails when an organization has not finished a reconciliation for 26 hours "
    "(read from reconciliation_runs, written by sync_report). In an organization's own run it "
    "judges that organization only; on its hourly schedule, every organization.",
)
def reconciled_within_26_hours(
    context: dg.AssetCheckExecutionContext,
    sync_store: SyncStoreResource,
    organizations: OrganizationsResource,
) -> dg.AssetCheckResult:
    orgs = parse_organizations(organizations.organizations_json)
    # Checks are per asset, not per partition: a run of one organization's partition must not
    # fail on another organization that has not run yet.
    partition = context.run.tags.get(TAG_PARTITION)
    if partition:
        orgs = [org for org in orgs if partition in (org.key, org.id)]
    return freshness_result(
        sync_store.store().history.last_reconciliations(), orgs, now=datetime.now(UTC)
    )


def freshness_result(last: dict, orgs, *, now: datetime) -> dg.AssetCheckResult:
    rows, stale = [], []
    for org in orgs:
        at = last.get(org.id)
        age = (now - at) if at else None
        late = age is None or age > FRESHNESS_LIMIT
        if late:
            ago = f"{age.total_seconds() / 3600:.0f} h ago" if age is not None else "never"
            stale.append(f"{org.name} ({ago})")
        rows.append(
            [
                org.name,
                org.id,
                at.strftime("%Y-%m-%d %H:%M UTC") if at else "never",
                f"{age.total_seconds() / 3600:.1f}" if age is not None else "",
                "**stale**" if late else "ok",
            ]
        )
    return dg.AssetCheckResult(
        check_name=CHECK_RECONCILED_RECENTLY,
        passed=not stale,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{len(stale)} organization(s) not reconciled within {LIMIT_HOURS} h: "
            + ", ".join(stale)
            if stale
            else f"reconciled within {LIMIT_HOURS} h: " + ", ".join(org.name for org in orgs)
        ),
        metadata={
            "stale_organizations": len(stale),
            "organizations": dg.MetadataValue.md(
                markdown_table(
                    ["organization", "id", "last reconciliation", "hours ago", "state"], rows
                )
            ),
        },
    )


def build_freshness_job_and_schedule():
    """The freshness check on its own, every hour (at :17, off the nightly run's minute)."""
    job = dg.define_asset_job(
        FRESHNESS_JOB_NAME,
        selection=dg.AssetSelection.checks(reconciled_within_26_hours),
        executor_def=dg.in_process_executor,
        description="Checks that every organization finished a reconciliation in the last 26 h.",
    )
    schedule = dg.ScheduleDefinition(
        name="sync_freshness_check_schedule",
        job=job,
        cron_schedule="17 * * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Runs the 26-hour freshness check on sync_status every hour.",
    )
    return job, schedule
