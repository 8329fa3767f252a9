"""The deletion step: documents deleted on one side since the last sync (see `sync/deletions.py`).

Reported always; propagated (counterpart deleted, link dropped) only for an organization with
`propagate_deletes`.
"""

import dagster as dg

from sync_pipeline.assets.common import metakocka_client, open_store, requested_by
from sync_pipeline.resources import (
    CrmResource,
    MetakockaResource,
    OrganizationsResource,
    SyncStoreResource,
)
from sync_pipeline.sync.deletions import deleted_rows, deletion_error_rows, propagate_deletions
from sync_pipeline.sync.export.outcomes import FAILED, OK, SKIPPED

GROUP = "push"


def build_deletion_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        description="Documents deleted on one side (deleted_in_crm / deleted_in_metakocka). "
        "Only reported (one open not_found error each), unless the organization sets "
        "propagate_deletes: then, once the absence is confirmed by a direct look-up, the "
        "counterpart is deleted (Metakocka: sales orders only) and the link dropped.",
    )
    def propagated_deletions(
        context: dg.AssetExecutionContext,
        sync_plan,
        crm: CrmResource,
        metakocka: MetakockaResource,
        organizations: OrganizationsResource,
        sync_store: SyncStoreResource,
    ) -> dg.Output:
        org = organizations.for_partition(context.partition_key)
        store = open_store(sync_store, crm, metakocka)
        outcomes = []
        if org.propagate_deletes and not deleted_rows(sync_plan).empty:
            crm_client = crm.client()
            outcomes = propagate_deletions(
                sync_plan,
                crm=crm_client,
                metakocka=metakocka_client(metakocka, crm_client, store, org),
                store=store,
                organization_id=org.id,
            )
        store.errors.log(
            deletion_error_rows(
                sync_plan,
                outcomes,
                organization_id=org.id,
                run_id=context.run.run_id,
                open_errors=store.errors.open_frame(org.id),
                requested_by=requested_by(context),
            )
        )
        done = [o for o in outcomes if o.result == OK]
        store.errors.resolve_for_documents(
            org.id,
            crm_document_ids=[o.crm_document_id for o in done],
            metakocka_ids=[o.metakocka_id for o in done],
            note=f"deleted on both sides by run {context.run.run_id}",
        )
        deleted = deleted_rows(sync_plan)
        return dg.Output(
            outcomes,
            metadata={
                "deleted_in_crm": int((deleted["action"] == "deleted_in_crm").sum()),
                "deleted_in_metakocka": int((deleted["action"] == "deleted_in_metakocka").sum()),
                "propagate_deletes": org.propagate_deletes,
                "propagated": len(done),
                "refused": sum(o.result == SKIPPED for o in outcomes),
                "failed": sum(o.result == FAILED for o in outcomes),
            },
        )

    return [propagated_deletions]
