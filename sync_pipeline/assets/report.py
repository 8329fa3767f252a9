"""Reporting assets: sync_status re-materialised for the organization, and this run's error
summary."""

from collections import Counter
from collections.abc import Iterable, Iterator

import dagster as dg
import pandas as pd

from sync_pipeline.assets.common import open_store
from sync_pipeline.assets.validate import ValidatedDocuments
from sync_pipeline.resources import (
    CrmResource,
    MetakockaResource,
    OrganizationsResource,
    SyncStoreResource,
)
from sync_pipeline.sync.crm_mirror import mirror_to_crm, owners_in_plan
from sync_pipeline.sync.run_errors import resolve_earlier_step_failures
from sync_pipeline.sync.status_sweep import sweep_status
from sync_pipeline.sync.status_upserts import upsert_statuses

GROUP = "report"
CHECK_NO_DUPLICATE_LINKS = "no_duplicate_links"


def build_report_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        description="The `sync_status` table: one row per document known on either side, "
        "re-materialised for the organization after the pushes of a full sweep; an incremental "
        "run upserts the rows of the documents it looked at. Then the change cursor moves on.",
        check_specs=[
            dg.AssetCheckSpec(
                CHECK_NO_DUPLICATE_LINKS,
                asset="sync_status",
                description="No CRM document and no Metakocka document is linked twice.",
            )
        ],
    )
    def sync_status(
        context: dg.AssetExecutionContext,
        validated_sales_documents: ValidatedDocuments,
        sync_plan: pd.DataFrame,
        metakocka_push: list,
        crm_push: list,
        propagated_deletions: list,
        sync_store: SyncStoreResource,
        crm: CrmResource,
        metakocka: MetakockaResource,
        organizations: OrganizationsResource,
    ):
        org = organizations.for_partition(context.partition_key)
        org_id = org.id
        store = open_store(sync_store, crm, metakocka)
        outcomes = [*metakocka_push, *crm_push, *propagated_deletions]
        scope = validated_sales_documents.scope
        tally = _StatusTally(store.errors.open_frame(org_id))
        if scope is not None and scope.incremental:
            # Only the documents this run looked at: every other row stays as it was.
            _, changed = upsert_statuses(
                store,
                org_id,
                crm_ids=sync_plan["crm_document_id"].dropna(),
                metakocka_ids=sync_plan["metakocka_id"].dropna(),
                plan=sync_plan,
                outcomes=outcomes,
                quarantined=validated_sales_documents.quarantined,
                through=tally.through,
            )
        else:
            # Every document's row, made and compared with its current row a slice at a time:
            # only the differences are kept and written (sync/status_sweep.py).
            changed, gone = sweep_status(
                store,
                org_id,
                sync_plan,
                outcomes=outcomes,
                quarantined=validated_sales_documents.quarantined,
                through=tally.through,
            )
            store.status.write(org_id, changed, gone=gone)
        if scope is not None and scope.next_cursor is not None:
            store.cursors.save(org_id, scope.next_cursor, run_id=context.run.run_id)
        tally.resolve_errors_of_synced(store, org_id, context.run.run_id)
        resolve_earlier_step_failures(
            store.errors, org_id, context.run.run_id, f"run {context.run.run_id} got through"
        )
        # the CRM's own mapping table and error log, for its UI (sync/crm_mirror.py)
        mirrored = mirror_to_crm(
            crm.client(),
            store,
            org,
            changed,
            run_id=context.run.run_id,
            known_owners=owners_in_plan(sync_plan, outcomes, org),
        )
        if mirrored.failed:
            context.log.warning(f"the CRM's mapping table was not updated: {mirrored.failed}")
        mode = "incremental" if scope is not None and scope.incremental else "full sweep"
        yield dg.Output(
            None,
            metadata={
                "mode": mode,
                "documents": tally.rows,
                **dict(tally.counts),
                **mirrored.metadata(),
            },
        )
        yield _no_duplicate_links(store, org_id)

    @dg.asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        deps=["sync_status"],
        description="The `sync_error_log` table (append-only): this run's new rows by error type, "
        "and the organization's open errors.",
    )
    def sync_error_log(
        context: dg.AssetExecutionContext,
        sync_store: SyncStoreResource,
        crm: CrmResource,
        metakocka: MetakockaResource,
        organizations: OrganizationsResource,
    ) -> dg.MaterializeResult:
        org_id = organizations.for_partition(context.partition_key).id
        store = open_store(sync_store, crm, metakocka)
        by_type = store.errors.new_by_type(org_id, context.run.run_id)
        open_errors = store.errors.open_count(org_id)
        return dg.MaterializeResult(
            metadata={
                "new_errors": sum(by_type.values()),
                "open_errors": open_errors,
                **{f"new_{k}": v for k, v in by_type.items()},
            }
        )

    return [sync_status, sync_error_log]


class _StatusTally:
    """What the step reports of its status rows, gathered as they go by (a full sweep does not
    keep them): the count per status, and the documents now `synced` that have open errors."""

    def __init__(self, open_errors: pd.DataFrame):
        self.rows = 0
        self.counts: Counter[str] = Counter()
        self._open = not open_errors.empty
        self._open_crm = set(open_errors["crm_document_id"].dropna()) if self._open else set()
        self._open_mk = set(open_errors["metakocka_id"].dropna()) if self._open else set()
        self._synced_crm: list[str] = []
        self._synced_mk: list[str] = []

    def through(self, rows: Iterable[dict]) -> Iterator[dict]:
        for row in rows:
            self.rows += 1
            self.counts[row["status"]] += 1
            if row["status"] == "synced":
                if row["crm_document_id"] in self._open_crm:
                    self._synced_crm.append(row["crm_document_id"])
                if row["metakocka_id"] in self._open_mk:
                    self._synced_mk.append(row["metakocka_id"])
            yield row

    def resolve_errors_of_synced(self, store, org_id: str, run_id: str) -> None:
        """Close open errors of documents that are now `synced` (e.g. a conflict an operator
        fixed)."""
        if not self._open:
            return
        store.errors.resolve_for_documents(
            org_id,
            crm_document_ids=self._synced_crm,
            metakocka_ids=self._synced_mk,
            note=f"document in sync as of run {run_id}",
        )


def _no_duplicate_links(store, org_id: str) -> dg.AssetCheckResult:
    duplicates = store.links.duplicate_count(org_id)
    return dg.AssetCheckResult(
        check_name=CHECK_NO_DUPLICATE_LINKS,
        passed=duplicates == 0,
        metadata={"duplicate_ids": duplicates},
    )
