"""Jobs: the nightly reconciliation of one organization (a partition) runs every asset in order."""

import dagster as dg

RECONCILIATION_GROUPS = ("extract", "validate", "plan", "push", "report")

NIGHTLY_JOB_NAME = "nightly_reconciliation"

# Every run that talks to Metakocka carries its company id under this tag, so the queued run
# coordinator can bound the runs in flight per company (deploy/dagster.yaml,
# `tag_concurrency_limits`). Schedules and sensors set it with `metakocka_company_tags`.
METAKOCKA_COMPANY_TAG = "sync_pipeline/metakocka_company"


ORGANIZATION_NAME_TAG = "sync_pipeline/organization_name"
ORGANIZATION_ID_TAG = "sync_pipeline/organization_id"
"""The CRM organization uuid behind a run's readable partition key."""
"""The organization's name on its runs: the run list and run page show tags, not partitions'
meanings."""


def metakocka_company_tags(organization) -> dict[str, str]:
    """The run tags that name an organization's Metakocka company (an `Organization`).

    Tags are fixed when the code location loads, which never calls the CRM: an organization
    whose credentials come from the CRM (read at run start) and that names no
    `metakocka_company_id` is counted under `crm:<organization id>`, i.e. on its own."""
    company = organization.metakocka_company_id or f"crm:{organization.id}"
    return {METAKOCKA_COMPANY_TAG: company}


def organization_run_tags(organization) -> dict[str, str]:
    """Every run of an organization's reconciliation, however launched (schedule, launchpad,
    backfill), is named and counted against its company's limit by these tags."""
    return {
        ORGANIZATION_NAME_TAG: organization.name,
        ORGANIZATION_ID_TAG: organization.id,
        **metakocka_company_tags(organization),
    }


# In process unless the run config says otherwise: the steps are sequential by nature (each needs
# the previous one) and in-process saves ~2 s per step on a small machine, but a deployment can ask
# for `execution: {config: {multiprocess: {max_concurrent: 2}}}` (step isolation, the two extracts
# side by side) without a second job. Dagster's own executor, with the default flipped.
in_process_or_multiprocess_executor = dg.multi_or_in_process_executor.configured(
    lambda config: config,
    name="in_process_or_multiprocess",
    config_schema=dg.Field(
        dg.Selector(
            {
                "in_process": dg.Field(dg.Permissive(), default_value={}),
                "multiprocess": dg.Field(dg.Permissive(), default_value={}),
            }
        ),
        default_value={"in_process": {}},
    ),
)


def partition_key_of(job: dg.JobDefinition, organization_id: str) -> str:
    """The partition of `job` that is the organization `organization_id` (tests, the demo and
    the benchmarks name organizations by id; the UI by their readable keys)."""
    for key in job.partitions_def.get_partition_keys():
        if job.get_tags_for_partition_key(key, None).get(ORGANIZATION_ID_TAG) == organization_id:
            return key
    raise KeyError(f"no partition of {job.name} is the organization {organization_id!r}")


def build_nightly_job(partitions_def: dg.PartitionsDefinition, organizations):
    """The nightly reconciliation job (in process by default; see the executor above). Its
    partitioned config tags each organization's runs (`organization_run_tags`), so a run
    launched by hand from the launchpad carries them too."""
    by_key = {org.key: org for org in organizations}
    return dg.define_asset_job(
        NIGHTLY_JOB_NAME,
        selection=dg.AssetSelection.groups(*RECONCILIATION_GROUPS),
        config=dg.PartitionedConfig(
            partitions_def,
            run_config_for_partition_key_fn=lambda key: {},
            tags_for_partition_key_fn=lambda key: organization_run_tags(by_key[key]),
        ),
        executor_def=in_process_or_multiprocess_executor,
        description="Two-way reconciliation of one organization: extract both systems, validate, "
        "plan against document_links, push each way, re-materialise sync_status.",
        tags={"sync_pipeline/kind": "reconciliation"},
    )
