"""The validated frames: pandera checks on both sides; invalid documents are quarantined, not
dropped."""

from dataclasses import dataclass

import dagster as dg

from sync_pipeline.assets.common import open_store, requested_by
from sync_pipeline.io_managers import RESOURCE_KEY as RECONCILIATION_IO_MANAGER
from sync_pipeline.resources import CrmResource, MetakockaResource, SyncStoreResource
from sync_pipeline.sync.extract import Quarantined
from sync_pipeline.sync.incremental import RunSide, SyncScope
from sync_pipeline.sync.planning import PLAN_LINK_COLUMNS
from sync_pipeline.sync.record import error_rows
from sync_pipeline.sync.validate import ValidatedSide, synced_hashes, validate_extraction

GROUP = "validate"
CHECK_EVERY_INVALID_REPORTED = "every_invalid_document_reported"
CHECK_METAKOCKA_TOTALS = "metakocka_totals_as_stated"


@dataclass
class ValidatedDocuments:
    crm: ValidatedSide
    metakocka: ValidatedSide
    scope: SyncScope | None = None
    """What this reconciliation covers (None: a full sweep, every link)."""

    @property
    def quarantined(self) -> list[Quarantined]:
        return [*self.crm.quarantined, *self.metakocka.quarantined]


def build_validate_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        io_manager_key=RECONCILIATION_IO_MANAGER,
        description="Both sides' documents checked against the pandera models (except those "
        "whose content is exactly what was last synced: they passed then). Each invalid "
        "document gets status `invalid` and a `validation` row in sync_error_log naming the "
        "failed checks; the others go on.",
        check_specs=[
            dg.AssetCheckSpec(
                CHECK_EVERY_INVALID_REPORTED,
                asset="validated_sales_documents",
                description="Every quarantined document has an open validation row in "
                "sync_error_log.",
            ),
            dg.AssetCheckSpec(
                CHECK_METAKOCKA_TOTALS,
                asset="validated_sales_documents",
                description="The totals derived from each Metakocka document's lines agree with "
                "the sums Metakocka sent (a warning: Metakocka's sums are what the CRM gets; "
                "docs/metakocka.md).",
            ),
        ],
    )
    def validated_sales_documents(
        context: dg.AssetExecutionContext,
        crm_sales_documents: RunSide,
        metakocka_sales_documents: RunSide,
        sync_store: SyncStoreResource,
        crm: CrmResource,
        metakocka: MetakockaResource,
    ):
        org_id = crm_sales_documents.organization_id
        store = open_store(sync_store, crm, metakocka)
        scope = crm_sales_documents.scope
        validated = ValidatedDocuments(
            *_validated(store, org_id, scope, crm_sales_documents, metakocka_sales_documents),
            scope=scope,
        )
        rows = error_rows(
            organization_id=org_id,
            run_id=context.run.run_id,
            quarantined=validated.quarantined,
            open_errors=store.errors.open_frame(org_id, "validation"),
            requested_by=requested_by(context),
        )
        store.errors.log(rows)
        for q in validated.quarantined:
            context.log.warning(
                f"quarantined {q.side} document {q.crm_document_id or q.metakocka_id}: "
                + "; ".join(q.reasons)
            )
        differences = validated.metakocka.totals_differences
        for mk_id, reasons in differences.items():
            context.log.warning(
                f"Metakocka document {mk_id}: totals differ from its own sums, which are kept: "
                + "; ".join(reasons)
            )
        yield dg.Output(
            validated,
            metadata={
                "crm_valid": len(validated.crm.valid),
                "metakocka_valid": len(validated.metakocka.valid),
                "crm_invalid": len(validated.crm.quarantined),
                "metakocka_invalid": len(validated.metakocka.quarantined),
                "new_validation_errors_logged": len(rows),
                "metakocka_totals_differ": len(differences),
            },
        )
        yield _every_invalid_reported(store, org_id, validated.quarantined)
        yield dg.AssetCheckResult(
            check_name=CHECK_METAKOCKA_TOTALS,
            passed=not differences,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "documents": len(differences),
                "sample": str(dict(list(differences.items())[:10])),
            },
        )

    return [validated_sales_documents]


def _validated(store, org_id, scope, *extractions: RunSide) -> list[ValidatedSide]:
    """Each side validated: a full sweep's already were, as they were read (sync/lean.py)."""
    if all(e.lean is not None for e in extractions):
        return [e.lean.validated for e in extractions]
    # Documents whose content is exactly what was last synced were checked back then.
    known = synced_hashes(
        scope.links
        if scope is not None and scope.incremental
        else store.links.frame(org_id, PLAN_LINK_COLUMNS)
    )
    return [
        validate_extraction(e, synced_hashes=known[e.side], known_by_link=e.known_by_link)
        for e in extractions
    ]


def _every_invalid_reported(store, org_id, quarantined) -> dg.AssetCheckResult:
    open_rows = store.errors.open_frame(org_id, "validation")
    reported = set(open_rows["crm_document_id"].dropna()) | set(open_rows["metakocka_id"].dropna())
    missing = [
        q.crm_document_id or q.metakocka_id
        for q in quarantined
        if (q.crm_document_id not in reported and q.metakocka_id not in reported)
    ]
    return dg.AssetCheckResult(
        check_name=CHECK_EVERY_INVALID_REPORTED,
        passed=not missing,
        metadata={
            "quarantined": len(quarantined),
            "unreported": len(missing),
            "unreported_sample": str(missing[:10]),
        },
    )
