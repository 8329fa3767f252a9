"""Jobs: the nightly reconciliation of one organization (a partition) runs every asset in order."""

import dagster as dg

from sync_pipeline.runs import ORGANIZATION_ID_TAG, TAG_KIND, organization_run_tags

RECONCILIATION_GROUPS = ("extract", "validate", "plan", "push", "report")

NIGHTLY_JOB_NAME = "nightly_reconciliation"

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
        tags={TAG_KIND: "reconciliation"},
    )
