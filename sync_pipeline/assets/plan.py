"""The sync plan: a vectorised diff of both sides against document_links, one action per
document."""

import dagster as dg
import pandas as pd

from sync_pipeline.assets.common import open_store, requested_by
from sync_pipeline.assets.validate import ValidatedDocuments
from sync_pipeline.domain.plan import ACTIONS
from sync_pipeline.resources import CrmResource, MetakockaResource, SyncStoreResource
from sync_pipeline.sync.planning import plan_sync
from sync_pipeline.sync.record import INVALID, error_rows

GROUP = "plan"


def build_plan_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        description="Each document classified by comparing content hashes with the hash stored "
        "at its last sync: create/update each way, unchanged, conflict (both sides changed), "
        "deleted_in_crm / deleted_in_metakocka, invalid. Conflicts and deletions are reported, "
        "never acted on.",
    )
    def sync_plan(
        context: dg.AssetExecutionContext,
        validated_sales_documents: ValidatedDocuments,
        sync_store: SyncStoreResource,
        crm: CrmResource,
        metakocka: MetakockaResource,
    ) -> dg.Output:
        org_id = context.partition_key
        store = open_store(sync_store, crm, metakocka)
        plan = plan_sync(
            org_id,
            validated_sales_documents.crm,
            validated_sales_documents.metakocka,
            store.links_frame(org_id),
        )
        store.log_errors(
            error_rows(
                organization_id=org_id,
                run_id=context.run.run_id,
                plan=plan,
                open_errors=store.open_errors(org_id, "conflict"),
                requested_by=requested_by(context),
            )
        )
        return dg.Output(plan, metadata=plan_metadata(plan))

    return [sync_plan]


def plan_metadata(plan: pd.DataFrame) -> dict:
    counts = plan["action"].value_counts()
    metadata = {action: int(counts.get(action, 0)) for action in (*ACTIONS, INVALID)}
    metadata["documents"] = len(plan)
    return metadata
