"""Extract assets: every sales document of the organization, read from each system.

A side that cannot be read (bad credentials, a forbidden IP, an answer that stays malformed after
the retries) is not a crashed run: the step logs ONE open row for the organization in
sync_error_log with the error's type, yields no output, and so every later step of the run is
skipped. Nothing is planned from half the picture, and sync_status keeps its last state.
"""

import dagster as dg

from sync_pipeline.adapters.errors import SyncError
from sync_pipeline.assets.common import open_store, requested_by
from sync_pipeline.resources import (
    CrmResource,
    MetakockaResource,
    OrganizationsResource,
    SyncStoreResource,
)
from sync_pipeline.sync.extract import extract_crm, extract_metakocka
from sync_pipeline.sync.run_errors import retried_failure_rows, step_failure_row

GROUP = "extract"


def build_extract_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        output_required=False,
        description="All sales documents of the organization in the CRM (PostgREST, paged by "
        "updated_at,id), mapped to canonical form; unreadable rows are kept for quarantine. "
        "If the CRM cannot be read, one error row is logged and the run's later steps skip.",
    )
    def crm_sales_documents(
        context: dg.AssetExecutionContext,
        crm: CrmResource,
        metakocka: MetakockaResource,
        sync_store: SyncStoreResource,
    ):
        client = crm.client()
        result = _extract(
            context,
            open_store(sync_store, crm, metakocka),
            client,
            "the CRM",
            lambda: extract_crm(client, context.partition_key),
        )
        if result is not None:
            yield result

    @dg.asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        output_required=False,
        description="All sales documents of the organization's Metakocka company (search, "
        "result_type doc, 100 per page, one doc_type at a time), mapped to canonical form. "
        "If Metakocka cannot be read, one error row is logged and the run's later steps skip.",
    )
    def metakocka_sales_documents(
        context: dg.AssetExecutionContext,
        metakocka: MetakockaResource,
        crm: CrmResource,
        organizations: OrganizationsResource,
        sync_store: SyncStoreResource,
    ):
        org = organizations.get(context.partition_key)
        client = metakocka.client(org.metakocka_company_id)
        result = _extract(
            context,
            open_store(sync_store, crm, metakocka),
            client,
            "Metakocka",
            lambda: extract_metakocka(client, org.id),
        )
        if result is not None:
            yield result

    return [crm_sales_documents, metakocka_sales_documents]


def _extract(context, store, client, system: str, extract) -> dg.Output | None:
    org_id, run_id, who = context.partition_key, context.run.run_id, requested_by(context)
    try:
        extraction = extract()
    except SyncError as exc:
        store.log_errors(
            [
                step_failure_row(
                    exc,
                    organization_id=org_id,
                    run_id=run_id,
                    system=system,
                    step="extraction",
                    requested_by=who,
                )
            ]
        )
        context.log.error(
            f"extraction from {system} failed ({exc.error_type}): {exc}. Logged once in "
            "sync_error_log; the rest of this run is skipped and sync_status keeps its last state."
        )
        return None
    finally:
        store.log_errors(
            retried_failure_rows(
                client.stats,
                organization_id=org_id,
                run_id=run_id,
                system=system,
                step="extraction",
                requested_by=who,
            )
        )
    return dg.Output(
        extraction,
        metadata={
            "documents": len(extraction.documents),
            "unreadable": len(extraction.unmappable),
            "api_calls": client.stats.snapshot()["total_calls"],
            "retries": client.stats.snapshot()["total_retries"],
        },
    )
