"""Jobs: the nightly reconciliation of one organization (a partition) runs every asset in order."""

import dagster as dg

RECONCILIATION_GROUPS = ("extract", "validate", "plan", "push", "report")

NIGHTLY_JOB_NAME = "nightly_reconciliation"

# Every run that talks to Metakocka carries its company id under this tag, so the queued run
# coordinator can bound the runs in flight per company (deploy/dagster.yaml,
# `tag_concurrency_limits`). Schedules and sensors set it with `metakocka_company_tags`.
METAKOCKA_COMPANY_TAG = "sync_pipeline/metakocka_company"


def metakocka_company_tags(organization) -> dict[str, str]:
    """The run tags that name an organization's Metakocka company (an `Organization`)."""
    return {METAKOCKA_COMPANY_TAG: organization.metakocka_company_id}


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


def build_nightly_job():
    """The nightly reconciliation job (in process by default; see the executor above)."""
    return dg.define_asset_job(
        NIGHTLY_JOB_NAME,
        selection=dg.AssetSelection.groups(*RECONCILIATION_GROUPS),
        executor_def=in_process_or_multiprocess_executor,
        description="Two-way reconciliation of one organization: extract both systems, validate, "
        "plan against document_links, push each way, re-materialise sync_status.",
        tags={"sync_pipeline/kind": "reconciliation"},
    )
