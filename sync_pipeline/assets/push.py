"""Push assets: carry out the plan in each direction and record every outcome as it is learned."""

import dagster as dg

from sync_pipeline.assets.common import open_store, requested_by
from sync_pipeline.resources import (
    CrmResource,
    MetakockaResource,
    OrganizationsResource,
    SyncStoreResource,
)
from sync_pipeline.sync.push import (
    CRM_TO_METAKOCKA,
    FAILED,
    METAKOCKA_TO_CRM,
    OK,
    SKIPPED,
    PushOutcome,
    bind_unchanged_pairs,
    push_to_crm,
    push_to_metakocka,
)
from sync_pipeline.sync.record import error_rows
from sync_pipeline.sync.run_errors import retried_failure_rows

GROUP = "push"


def build_push_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        description="Creates and updates in Metakocka. A create is recorded as an intent first and "
        "looked up by its external id (buyer_order) before any resend; the link is bound the "
        "moment Metakocka confirms the write.",
    )
    def metakocka_push(
        context: dg.AssetExecutionContext,
        sync_plan,
        metakocka: MetakockaResource,
        crm: CrmResource,
        organizations: OrganizationsResource,
        sync_store: SyncStoreResource,
    ) -> dg.Output:
        org = organizations.get(context.partition_key)
        store = open_store(sync_store, crm, metakocka)
        bind_unchanged_pairs(sync_plan, store=store, organization_id=org.id)
        client = metakocka.client(org.metakocka_company_id)
        outcomes = push_to_metakocka(
            sync_plan,
            client=client,
            store=store,
            organization_id=org.id,
            concurrency=organizations.push_concurrency,
            on_progress=_progress_logger(context, "Metakocka"),
            run_id=context.run.run_id,
            claim_ttl_s=sync_store.claim_ttl_s,
        )
        return _record(context, store, org.id, outcomes, client, "Metakocka", CRM_TO_METAKOCKA)

    @dg.asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        description="Creates and updates in the CRM. A document born in Metakocka gets a CRM id "
        "derived from its Metakocka id, so a repeated create is an idempotent upsert.",
    )
    def crm_push(
        context: dg.AssetExecutionContext,
        sync_plan,
        crm: CrmResource,
        metakocka: MetakockaResource,
        organizations: OrganizationsResource,
        sync_store: SyncStoreResource,
    ) -> dg.Output:
        org = organizations.get(context.partition_key)
        store = open_store(sync_store, crm, metakocka)
        client = crm.client()
        outcomes = push_to_crm(
            sync_plan,
            client=client,
            store=store,
            organization_id=org.id,
            concurrency=organizations.push_concurrency,
            on_progress=_progress_logger(context, "CRM"),
            run_id=context.run.run_id,
            claim_ttl_s=sync_store.claim_ttl_s,
        )
        return _record(context, store, org.id, outcomes, client, "the CRM", METAKOCKA_TO_CRM)

    return [metakocka_push, crm_push]


def _record(
    context, store, organization_id: str, outcomes: list[PushOutcome], client, system, direction
) -> dg.Output:
    store.log_errors(
        error_rows(
            organization_id=organization_id,
            run_id=context.run.run_id,
            outcomes=outcomes,
            requested_by=requested_by(context),
        )
    )
    # The failures the retry policy absorbed, one resolved row per error type (sync/run_errors.py).
    store.log_errors(
        retried_failure_rows(
            client.stats,
            organization_id=organization_id,
            run_id=context.run.run_id,
            system=system,
            step="push",
            direction=direction,
            requested_by=requested_by(context),
        )
    )
    ok = [o for o in outcomes if o.result == OK]
    store.resolve_errors(
        organization_id,
        crm_document_ids=[o.crm_document_id for o in ok],
        metakocka_ids=[o.metakocka_id for o in ok],
        note=f"synced by run {context.run.run_id}",
    )
    by_result = {
        result: sum(o.result == result for o in outcomes) for result in (OK, FAILED, SKIPPED)
    }
    return dg.Output(
        outcomes,
        metadata={
            "created": sum(o.result == OK and o.action.startswith("create") for o in outcomes),
            "updated": sum(o.result == OK and o.action.startswith("update") for o in outcomes),
            "failed": by_result[FAILED],
            "skipped": by_result[SKIPPED],
            "api_calls": client.stats.snapshot()["total_calls"],
            "retries": client.stats.snapshot()["total_retries"],
            "retry_wait_s": client.stats.snapshot()["retry_wait_s"],
        },
    )


def _progress_logger(context, system: str):
    """Log n of N as pushes complete (about every 5 %), visible in the UI while the run is live."""

    def report(done: int, total: int) -> None:
        step = max(1, total // 20)
        if done == total or done % step == 0:
            context.log.info(f"pushed {done} of {total} documents to {system}")

    return report
