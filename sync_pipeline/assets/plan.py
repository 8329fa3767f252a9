"""The sync plan: a vectorised diff of both sides against document_links, one action per
document."""

import dagster as dg
import pandas as pd
from pydantic import Field

from sync_pipeline.assets.common import metakocka_client, open_store, requested_by
from sync_pipeline.assets.validate import ValidatedDocuments
from sync_pipeline.domain.plan import ACTIONS
from sync_pipeline.io_managers import RESOURCE_KEY as RECONCILIATION_IO_MANAGER
from sync_pipeline.resources import (
    CrmResource,
    MetakockaResource,
    OrganizationsResource,
    SyncStoreResource,
)
from sync_pipeline.store.resolutions import ResolutionRefused
from sync_pipeline.sync.change_order import metakocka_change_order
from sync_pipeline.sync.incremental import mark_known_absent
from sync_pipeline.sync.planning import PLAN_LINK_COLUMNS, held_texts, plan_sync
from sync_pipeline.sync.record import INVALID, error_rows
from sync_pipeline.sync.rereads import WholeDocuments
from sync_pipeline.sync.run_errors import retried_failure_rows
from sync_pipeline.sync.statuses import UNMAPPED_STATUS, record_status_warnings


class SyncPlanConfig(dg.Config):
    """Launchpad settings of the plan (all optional)."""

    resolve_conflicts: dict[str, str] = Field(
        default_factory=dict,
        description="Conflicts to settle in this run: {document id (CRM id or Metakocka mk_id): "
        "'crm' | 'metakocka'}, the side whose content wins. Same as `sync-pipeline conflicts "
        "resolve`.",
    )


GROUP = "plan"


def build_plan_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        io_manager_key=RECONCILIATION_IO_MANAGER,
        description="Each document classified by comparing content hashes with the hash stored "
        "at its last sync: create/update each way, unchanged, conflict (both sides changed), "
        "deleted_in_crm / deleted_in_metakocka, invalid. Field ownership applies (Metakocka's "
        "own fields flow to the CRM only), conflicts follow the organization's conflict_policy "
        "and operators' resolutions, deletions are propagated only with propagate_deletes. "
        "Metakocka's statuses are read with the organization's map; an unmapped one keeps the "
        "CRM's status and gets a `warning` row in sync_error_log.",
    )
    def sync_plan(
        context: dg.AssetExecutionContext,
        config: SyncPlanConfig,
        validated_sales_documents: ValidatedDocuments,
        sync_store: SyncStoreResource,
        crm: CrmResource,
        metakocka: MetakockaResource,
        organizations: OrganizationsResource,
    ) -> dg.Output:
        org = organizations.for_partition(context.partition_key)
        org_id = org.id
        store = open_store(sync_store, crm, metakocka)
        for document_id, winner in config.resolve_conflicts.items():
            try:
                store.resolutions.resolve(
                    org_id,
                    document_id,
                    winner,
                    resolved_by=f"launchpad:{requested_by(context)}",
                )
            except ResolutionRefused as exc:
                raise dg.Failure(f"resolve_conflicts: {exc}") from None
        resolutions = store.resolutions.pending(org_id)
        scope = validated_sales_documents.scope
        # asks which side changed last
        mk_client = metakocka_client(metakocka, crm.client(), store, org)
        plan = plan_sync(
            org_id,
            validated_sales_documents.crm,
            validated_sales_documents.metakocka,
            # An incremental run plans its documents against their own links only: any other
            # link would look like a deletion (sync/incremental.py).
            scope.links
            if scope is not None and scope.incremental
            else store.links.frame(
                org_id,
                PLAN_LINK_COLUMNS,
                held=held_texts(validated_sales_documents.crm, validated_sales_documents.metakocka),
            ),
            conflict_policy=org.conflict_policy,
            resolutions=resolutions,
            change_order=metakocka_change_order(mk_client),
            statuses=org.metakocka_statuses,
        )
        plan = mark_known_absent(plan, scope, store, org_id)  # creates that need no look-up
        store.resolutions.settle_unused(plan, resolutions, run_id=context.run.run_id)
        # A new conflict's error row lists its differences: what a full sweep summarised is
        # read again for it (sync/rereads.py).
        with WholeDocuments(
            org_id, links=store.links, crm=crm.client(), metakocka=mk_client
        ) as whole:
            store.errors.log(
                error_rows(
                    organization_id=org_id,
                    run_id=context.run.run_id,
                    plan=plan,
                    open_errors=store.errors.open_frame(org_id, "conflict"),
                    requested_by=requested_by(context),
                    read_again=whole.for_differences,
                )
            )
        store.errors.log(  # the failures its retries absorbed (sync/run_errors.py)
            retried_failure_rows(
                mk_client.stats,
                organization_id=org_id,
                run_id=context.run.run_id,
                system="Metakocka",
                step="planning",
                requested_by=requested_by(context),
            )
        )
        record_status_warnings(
            store, org_id, plan, run_id=context.run.run_id, requested_by=requested_by(context)
        )
        return dg.Output(plan, metadata=plan_metadata(plan))

    return [sync_plan]


def plan_metadata(plan: pd.DataFrame) -> dict:
    counts = plan["action"].value_counts()
    metadata = {action: int(counts.get(action, 0)) for action in (*ACTIONS, INVALID)}
    metadata["documents"] = len(plan)
    metadata["unmapped_metakocka_statuses"] = (
        int(plan[UNMAPPED_STATUS].notna().sum()) if UNMAPPED_STATUS in plan else 0
    )
    if "conflict_resolution_id" in plan:
        metadata["conflicts_resolved_by_operator"] = int(
            plan["conflict_resolution_id"].notna().sum()
        )
    return metadata
