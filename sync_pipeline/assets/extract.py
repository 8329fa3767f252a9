"""Extract assets: the organization's sales documents, read from both systems at once.

One step reads both sides, because what an incremental run must read on one side depends on what
changed on the other. The step picks the run's window (`incremental.choose_window`: a full sweep
or an incremental run) and hands it to `sync/run_documents.py`, which gathers the documents by
the strategy the window calls for. The two outputs are the two assets downstream steps know,
each a `RunSide` carrying the run's `SyncScope`.

A side that cannot be read (bad credentials, a forbidden IP, an answer that stays malformed after
the retries) is not a crashed run: the step logs ONE open row for the organization in
sync_error_log with the error's type, yields no output, and so every later step of the run is
skipped. Nothing is planned from half the picture, and sync_status keeps its last state.
"""

from datetime import timedelta

import dagster as dg
from pydantic import Field

from sync_pipeline.adapters.errors import SyncError
from sync_pipeline.assets.common import credentials_problem, open_store, requested_by
from sync_pipeline.io_managers import RESOURCE_KEY as RECONCILIATION_IO_MANAGER
from sync_pipeline.resources import (
    CrmResource,
    MetakockaResource,
    OrganizationsResource,
    SyncStoreResource,
)
from sync_pipeline.sync.extract import (
    CRM,
    METAKOCKA,
    Extraction,
    change_detection,
    crm_context,
    crm_schema_summary,
)
from sync_pipeline.sync.incremental import EXTRACT_OP, FULL_SWEEP_EVERY, choose_window
from sync_pipeline.sync.run_documents import SYSTEM_NAMES, attempt, gather_run_documents
from sync_pipeline.sync.run_errors import retried_failure_rows, step_failure_row

GROUP = "extract"
CREDENTIALS_SYSTEM = "the CRM's metakocka_credentials"


class ExtractionConfig(dg.Config):
    """Launchpad settings of the extraction (all optional)."""

    full_sweep: bool = Field(
        default=False,
        description="Read every document of both systems (a full sweep: the only kind of run "
        "that notices deletions). Otherwise the run is incremental (only what changed since the "
        "organization's cursor), unless it has no cursor yet or its last full sweep is older "
        "than full_sweep_every_days.",
    )
    full_sweep_every_days: float = Field(
        default=FULL_SWEEP_EVERY.days,
        description="An incremental run turns into a full sweep when the last one is this old.",
    )


def build_extract_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.multi_asset(
        name=EXTRACT_OP,
        partitions_def=partitions_def,
        group_name=GROUP,
        outs={
            "crm_sales_documents": dg.AssetOut(
                is_required=False,
                io_manager_key=RECONCILIATION_IO_MANAGER,
                description="The organization's sales documents in the CRM (PostgREST, paged by "
                "updated_at,id), mapped to canonical form; unreadable rows are kept for "
                "quarantine. All of them on a full sweep; on an incremental run, those changed "
                "since the cursor and the counterparts of changed Metakocka documents.",
            ),
            "metakocka_sales_documents": dg.AssetOut(
                is_required=False,
                io_manager_key=RECONCILIATION_IO_MANAGER,
                description="The organization's sales documents in its Metakocka company "
                "(search, result_type doc, 100 per page, one doc_type at a time), mapped to "
                "canonical form. All of them on a full sweep; on an incremental run, those "
                "changed since the cursor and the counterparts of changed CRM documents.",
            ),
        },
        description="Reads both systems side by side: everything (full sweep), or what changed "
        "since the organization's change cursor plus what the plan needs to judge it "
        "(incremental). If a system cannot be read, one error row is logged and the run's "
        "later steps skip.",
    )
    def extract_sales_documents(
        context: dg.AssetExecutionContext,
        config: ExtractionConfig,
        crm: CrmResource,
        metakocka: MetakockaResource,
        organizations: OrganizationsResource,
        sync_store: SyncStoreResource,
    ):
        org = organizations.for_partition(context.partition_key)
        store = open_store(sync_store, crm, metakocka)
        crm_client = crm.client()
        schema = attempt(crm_client.schema)  # which published schema; refuse to run on none
        if isinstance(schema, SyncError):
            _log_failure(context, store, org.id, SYSTEM_NAMES[CRM], schema)
            return
        context.log.info(crm_schema_summary(schema))
        try:  # from METAKOCKA_SECRET_KEYS, or the CRM's metakocka_credentials (run start)
            mk_client = metakocka.client_for(org, crm_client, store=store)
        except SyncError as exc:  # none, several, unusable, or unreadable: one row, skip
            _log_failure(context, store, org.id, CREDENTIALS_SYSTEM, exc)
            return
        except KeyError as exc:
            raise dg.Failure(description=credentials_problem(org, exc)) from None
        context.log.info(
            f"Metakocka company {mk_client.company_id}, credentials from "
            f"{mk_client.credentials_origin}"
        )
        window = choose_window(
            store.cursors.read(org.id),
            full_sweep=config.full_sweep,
            full_sweep_every=timedelta(days=config.full_sweep_every_days),
            crm_changes_tracked=schema.change_tracking,
        )
        context.log.info(f"{'full sweep' if window.full else 'incremental run'}: {window.reason}")
        precision = crm_context(crm_client, org.id).precision
        try:
            gathered = gather_run_documents(
                org.id,
                window,
                crm=crm_client,
                metakocka=mk_client,
                store=store,
                precision=precision,
                read_concurrency=metakocka.max_concurrent_requests,
            )
            for system, exc in gathered.failures:
                _log_failure(context, store, org.id, system, exc)
            if gathered.failures:
                return
            scope = gathered.crm.scope
            for name, extraction, client in (
                ("crm_sales_documents", gathered.crm, crm_client),
                ("metakocka_sales_documents", gathered.metakocka, mk_client),
            ):
                yield dg.Output(
                    extraction,
                    output_name=name,
                    metadata={
                        "documents": extraction.documents_read,
                        "unreadable": extraction.unreadable,
                        **_lean_metadata(extraction),
                        "api_calls": client.stats.snapshot()["total_calls"],
                        "retries": client.stats.snapshot()["total_retries"],
                        "crm_schema": schema.profile.name,
                        "metakocka_company": mk_client.company_id,
                        "metakocka_credentials": mk_client.credentials_origin,
                        "crm_change_detection": change_detection(schema),
                        **scope.metadata(),
                    },
                )
        finally:
            for side, client in ((CRM, crm_client), (METAKOCKA, mk_client)):
                store.errors.log(
                    retried_failure_rows(
                        client.stats,
                        organization_id=org.id,
                        run_id=context.run.run_id,
                        system=SYSTEM_NAMES[side],
                        step="extraction",
                        requested_by=requested_by(context),
                    )
                )

    return [extract_sales_documents]


def _lean_metadata(extraction: Extraction) -> dict:
    """How many documents a full sweep kept whole (the rest: summaries, sync/lean.py)."""
    if extraction.lean is None:
        return {}
    return {"documents_held_whole": extraction.lean.held}


def _log_failure(context, store, organization_id: str, system: str, exc: SyncError) -> None:
    store.errors.log(
        [
            step_failure_row(
                exc,
                organization_id=organization_id,
                run_id=context.run.run_id,
                system=system,
                step="extraction",
                requested_by=requested_by(context),
            )
        ]
    )
    context.log.error(
        f"extraction from {system} failed ({exc.error_type}): {exc}. Logged once in "
        "sync_error_log; the rest of this run is skipped and sync_status keeps its last state."
    )
