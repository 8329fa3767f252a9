"""The `preflight` job: the read-only preflight of one organization (a partition), from the UI.

The same checks as `sync-pipeline preflight` (`sync_pipeline/preflight/`), with the code
location's resources. The findings table is the step's metadata (Markdown, and the figures as
JSON); warnings go to the run's log; a blocker fails the run with the blockers in its message, so
the run list shows at a glance which organizations are not ready.
"""

import dagster as dg

from sync_pipeline.preflight.findings import BLOCKER, WARN
from sync_pipeline.preflight.render import report_markdown
from sync_pipeline.preflight.run import READ_ONLY_NOTICE, preflight_organization
from sync_pipeline.resources import CrmResource, MetakockaResource, OrganizationsResource
from sync_pipeline.runs import TAG_KIND, organization_run_tags

JOB_NAME = "preflight"
OP_NAME = "preflight_checks"


@dg.op(
    name=OP_NAME,
    description="Read-only checks of the CRM, Metakocka and the first run's plan for the "
    "partition's organization; fails on a blocker. " + READ_ONLY_NOTICE,
)
def preflight_checks(
    context: dg.OpExecutionContext,
    crm: CrmResource,
    metakocka: MetakockaResource,
    organizations: OrganizationsResource,
) -> dg.Output:
    context.log.info(READ_ONLY_NOTICE)
    org = organizations.for_partition(context.partition_key)
    report = preflight_organization(org, crm, metakocka)
    metadata = {
        "status": report.status,
        "blockers": report.count(BLOCKER),
        "warnings": report.count(WARN),
        "findings": dg.MetadataValue.md(report_markdown(report)),
        "report": dg.MetadataValue.json(report.as_json()),
    }
    for finding in report.findings:
        if finding.status == WARN:
            context.log.warning(f"{finding.area}, {finding.check}: {finding.detail}")
    blockers = [f for f in report.findings if f.status == BLOCKER]
    if blockers:
        raise dg.Failure(
            description=f"{org.name}: {report.summary()}. "
            + " ".join(f"[{f.area}, {f.check}] {f.detail}. Fix: {f.fix}." for f in blockers),
            metadata=metadata,
        )
    return dg.Output(report.as_json(), metadata=metadata)


def build_preflight_job(partitions_def: dg.PartitionsDefinition, organizations):
    """One run per organization partition, tagged like its reconciliation runs (so the run
    queue's per-company limit covers its Metakocka reads too)."""
    by_key = {org.key: org for org in organizations}

    @dg.job(
        name=JOB_NAME,
        executor_def=dg.in_process_executor,
        config=dg.PartitionedConfig(
            partitions_def,
            run_config_for_partition_key_fn=lambda key: {},
            tags_for_partition_key_fn=lambda key: organization_run_tags(by_key[key]),
        ),
        description="Before the first run: what it will do and what will stop it, read-only "
        "(the CRM, Metakocka, the first run's plan, its API calls and time). Fails on a blocker.",
        tags={TAG_KIND: "preflight"},
    )
    def preflight_job():
        preflight_checks()

    return preflight_job
