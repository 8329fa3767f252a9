"""Push assets: carry out the plan in each direction and record every outcome as it is learned.

The CRM and Metakocka are separate APIs with separate allowances, so `sync_pushes` writes to both
at once (one thread per direction, each with its own bounded pool); a run is then as long as the
slower direction, not the sum of both. `metakocka_push` and `crm_push` are each direction's
outcomes, with what they did as metadata.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dagster as dg

from sync_pipeline.assets.common import metakocka_client, open_store, requested_by
from sync_pipeline.domain.directions import CRM_TO_METAKOCKA, METAKOCKA_TO_CRM
from sync_pipeline.resources import (
    CrmResource,
    MetakockaResource,
    OrganizationsResource,
    SyncStoreResource,
)
from sync_pipeline.sync.export.outcomes import FAILED, OK, SKIPPED, PushOutcome
from sync_pipeline.sync.export.to_crm import push_to_crm
from sync_pipeline.sync.export.to_metakocka import push_to_metakocka
from sync_pipeline.sync.export.unchanged_pairs import bind_unchanged_pairs
from sync_pipeline.sync.record import error_rows
from sync_pipeline.sync.run_errors import retried_failure_rows

GROUP = "push"


@dataclass
class Pushes:
    """Both directions' outcomes, and per direction what the push did (asset metadata)."""

    outcomes: dict[str, list[PushOutcome]] = field(default_factory=dict)
    metadata: dict[str, dict] = field(default_factory=dict)


def build_push_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        description="The plan carried out in both directions at once (the CRM and Metakocka are "
        "separate APIs). A create in Metakocka is recorded as an intent first and is never sent "
        "twice; a document born in Metakocka gets a CRM id derived from its Metakocka id, so a "
        "repeated create in the CRM is an upsert. Each link is bound the moment its write is "
        "confirmed; every failure is logged in sync_error_log.",
    )
    def sync_pushes(
        context: dg.AssetExecutionContext,
        sync_plan,
        metakocka: MetakockaResource,
        crm: CrmResource,
        organizations: OrganizationsResource,
        sync_store: SyncStoreResource,
    ) -> dg.Output:
        org = organizations.for_partition(context.partition_key)
        store = open_store(sync_store, crm, metakocka)
        bind_unchanged_pairs(sync_plan, store=store, organization_id=org.id)
        crm_client = crm.client()
        mk_client = metakocka_client(metakocka, crm_client, store, org)
        common = {
            "store": store,
            "organization_id": org.id,
            "run_id": context.run.run_id,
            "claim_ttl_s": sync_store.claim_ttl_s,
        }
        with ThreadPoolExecutor(2, thread_name_prefix="push") as pool:
            to_metakocka = pool.submit(
                push_to_metakocka,
                sync_plan,
                client=mk_client,
                # documents at once (SYNC_PUSH_CONCURRENCY); the client keeps the requests in
                # flight within Metakocka's allowance
                concurrency=organizations.push_concurrency,
                on_progress=_progress_logger(context, "Metakocka"),
                crm=crm_client,  # reads again what a full sweep summarised (sync/rereads.py)
                **common,
            )
            to_crm = pool.submit(
                push_to_crm,
                sync_plan,
                client=crm_client,
                # the CRM is another API with its own allowance: as many as its client sends
                concurrency=crm.max_concurrent_requests,
                on_progress=_progress_logger(context, "CRM"),
                metakocka=mk_client,
                **common,
            )
        pushes = Pushes()
        for direction, future, client, system in (
            (CRM_TO_METAKOCKA, to_metakocka, mk_client, "Metakocka"),
            (METAKOCKA_TO_CRM, to_crm, crm_client, "the CRM"),
        ):
            outcomes = future.result()
            pushes.outcomes[direction] = outcomes
            pushes.metadata[direction] = _record(
                context, store, org.id, outcomes, client, system, direction
            )
        return dg.Output(
            pushes,
            metadata={
                f"{direction}_{name}": value
                for direction, metadata in pushes.metadata.items()
                for name, value in metadata.items()
            },
        )

    @dg.asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        description="Creates and updates in Metakocka: this run's outcomes (from sync_pushes).",
    )
    def metakocka_push(sync_pushes: Pushes) -> dg.Output:
        return dg.Output(
            sync_pushes.outcomes[CRM_TO_METAKOCKA],
            metadata=sync_pushes.metadata[CRM_TO_METAKOCKA],
        )

    @dg.asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        description="Creates and updates in the CRM: this run's outcomes (from sync_pushes).",
    )
    def crm_push(sync_pushes: Pushes) -> dg.Output:
        return dg.Output(
            sync_pushes.outcomes[METAKOCKA_TO_CRM],
            metadata=sync_pushes.metadata[METAKOCKA_TO_CRM],
        )

    return [sync_pushes, metakocka_push, crm_push]


def _record(
    context, store, organization_id: str, outcomes: list[PushOutcome], client, system, direction
) -> dict:
    """Log this direction's failures, close the errors of what synced; the asset metadata."""
    store.errors.log(
        error_rows(
            organization_id=organization_id,
            run_id=context.run.run_id,
            outcomes=outcomes,
            requested_by=requested_by(context),
        )
    )
    # The failures the retry policy absorbed, one resolved row per error type (sync/run_errors.py).
    store.errors.log(
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
    store.errors.resolve_for_documents(
        organization_id,
        crm_document_ids=[o.crm_document_id for o in ok],
        metakocka_ids=[o.metakocka_id for o in ok],
        note=f"synced by run {context.run.run_id}",
    )
    by_result = {
        result: sum(o.result == result for o in outcomes) for result in (OK, FAILED, SKIPPED)
    }
    stats = client.stats.snapshot()
    return {
        "created": sum(o.result == OK and o.action.startswith("create") for o in outcomes),
        "updated": sum(o.result == OK and o.action.startswith("update") for o in outcomes),
        "failed": by_result[FAILED],
        "skipped": by_result[SKIPPED],
        "api_calls": stats["total_calls"],
        "retries": stats["total_retries"],
        "retry_wait_s": stats["retry_wait_s"],
    }


def _progress_logger(context, system: str):
    """Log n of N as pushes complete (about every 5 %), visible in the UI while the run is live."""

    def report(done: int, total: int) -> None:
        step = max(1, total // 20)
        if done == total or done % step == 0:
            context.log.info(f"pushed {done} of {total} documents to {system}")

    return report
