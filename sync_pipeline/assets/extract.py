"""Extract assets: every sales document of the organization, read from each system."""

import dagster as dg

from sync_pipeline.resources import CrmResource, MetakockaResource, OrganizationsResource
from sync_pipeline.sync.extract import Extraction, extract_crm, extract_metakocka

GROUP = "extract"


def build_extract_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        description="All sales documents of the organization in the CRM (PostgREST, paged by "
        "updated_at,id), mapped to canonical form; unreadable rows are kept for quarantine.",
    )
    def crm_sales_documents(context: dg.AssetExecutionContext, crm: CrmResource) -> dg.Output:
        extraction = extract_crm(crm.client(), context.partition_key)
        return _output(extraction)

    @dg.asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        description="All sales documents of the organization's Metakocka company (search, "
        "result_type doc, 100 per page, one doc_type at a time), mapped to canonical form.",
    )
    def metakocka_sales_documents(
        context: dg.AssetExecutionContext,
        metakocka: MetakockaResource,
        organizations: OrganizationsResource,
    ) -> dg.Output:
        org = organizations.get(context.partition_key)
        extraction = extract_metakocka(metakocka.client(org.metakocka_company_id), org.id)
        return _output(extraction)

    return [crm_sales_documents, metakocka_sales_documents]


def _output(extraction: Extraction) -> dg.Output:
    return dg.Output(
        extraction,
        metadata={
            "documents": len(extraction.documents),
            "unreadable": len(extraction.unmappable),
        },
    )
