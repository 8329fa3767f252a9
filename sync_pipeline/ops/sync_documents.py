"""The `sync_documents` job: sync one document or a list, in either direction, on demand.

Launched by the request sensor (from the API, the CLI, webhooks and the change sensor), or by an
operator from the launchpad with `SyncDocumentsConfig`. One op on the in-process executor: a
single-document run is latency-bound, and each extra step would cost more than the work itself.
The op runs the nightly path's use cases on the named documents only (`sync.targeted`) and
upserts their sync_status rows; it does not re-materialise the organization's assets.
"""

import dagster as dg
import pandas as pd

from sync_pipeline.adapters.errors import AuthError
from sync_pipeline.assets.common import open_store
from sync_pipeline.crm.credentials import CredentialsError
from sync_pipeline.ops.launch import SyncDocumentsConfig, launch_config
from sync_pipeline.resources import (
    CrmResource,
    MetakockaResource,
    OrganizationsResource,
    SyncStoreResource,
)
from sync_pipeline.runs import RUN_KEY_TAG, TAG_KIND, TAG_REQUESTED_BY, TAG_USER
from sync_pipeline.runs import SYNC_DOCUMENTS_JOB as JOB_NAME
from sync_pipeline.runs import SYNC_DOCUMENTS_OP as OP_NAME
from sync_pipeline.store.requests import SyncRequestQueue
from sync_pipeline.sync.crm_mirror import mirror_to_crm, owners_in_plan
from sync_pipeline.sync.export.outcomes import OK
from sync_pipeline.sync.extract import Quarantined
from sync_pipeline.sync.targeted import TargetedSyncResult, sync_documents

PLAN_ROWS_SHOWN = 100


def _progress_logger(context: dg.OpExecutionContext):
    """`synced n of N`: every document in a small batch, about every 5 % in a large one."""

    def report(done: int, total: int) -> None:
        step = 1 if total <= 40 else max(1, total // 20)
        if done == total or done % step == 0:
            context.log.info(f"synced {done} of {total} documents")

    return report


@dg.op(
    name=OP_NAME,
    description="Extract the named documents and their counterparts, validate, plan against "
    "their links, push in the requested direction, log errors, upsert their sync_status rows.",
)
def sync_documents_op(
    context: dg.OpExecutionContext,
    config: SyncDocumentsConfig,
    crm: CrmResource,
    metakocka: MetakockaResource,
    organizations: OrganizationsResource,
    sync_store: SyncStoreResource,
) -> dg.Output:
    run_id = context.run.run_id
    store = open_store(sync_store, crm, metakocka)
    queue = store.requests
    request_ids = served_requests(queue, context.run.tags)
    if request_ids:
        context.log.info(f"serving sync request(s) {', '.join(request_ids[:20])}")
    queue.claim(request_ids, run_id)
    try:
        org = organizations.get(config.organization_id)
        direction = config.direction.value
        crm_ids, mk_ids = config.document_ids_by_system()
        tags = context.run.tags
        requested_by = tags.get(TAG_REQUESTED_BY) or tags.get(TAG_USER) or "operator"
        context.log.info(
            f"{'planning' if config.dry_run else 'syncing'} {len(crm_ids) + len(mk_ids)} "
            f"document(s){' and every unsynced one' if config.all_unsynced else ''} "
            f"of {org.name} ({direction})"
        )
        crm_client = crm.client()
        mk_client = metakocka.client_for(org, crm_client, store=store)
        result = sync_documents(
            org.id,
            direction,
            crm_ids=crm_ids,
            metakocka_ids=mk_ids,
            all_unsynced=config.all_unsynced,
            crm=crm_client,
            metakocka=mk_client,
            store=store,
            dry_run=config.dry_run,
            run_id=run_id,
            requested_by=requested_by,
            concurrency=organizations.push_concurrency,
            on_progress=_progress_logger(context),
            conflict_policy=org.conflict_policy,
            statuses=org.metakocka_statuses,
        )
    except (KeyError, ValueError) as exc:
        queue.finish(request_ids, error=str(exc))
        raise dg.Failure(description=str(exc)) from None
    except AuthError as exc:  # unusable or refused credentials: say what to fix, no traceback
        message = str(exc) if isinstance(exc, CredentialsError) else f"{org.label}: {exc}"
        queue.finish(request_ids, error=message)
        raise dg.Failure(description=message) from None
    except Exception as exc:
        queue.finish(request_ids, error=f"{type(exc).__name__}: {exc}")
        raise
    for invalid in result.quarantined:
        context.log.warning(f"not synced, invalid: {invalid_text(invalid)}")
    metadata = result_metadata(result, direction)
    if not config.dry_run:
        # the CRM's own mapping table and error log, for its UI (sync/crm_mirror.py)
        mirrored = mirror_to_crm(
            crm_client,
            store,
            org,
            result.status_rows,
            run_id=run_id,
            known_owners=owners_in_plan(result.plan, result.outcomes, org),
        )
        if mirrored.failed:
            context.log.warning(f"the CRM's mapping table was not updated: {mirrored.failed}")
        metadata.update(mirrored.metadata())
        queue.finish(request_ids, error=request_error(result))
    return dg.Output(summary(result), metadata=metadata)


def served_requests(queue: SyncRequestQueue, tags) -> list[str]:
    """The sync requests a run serves: those the request sensor put in a run under this run's
    key (`mark_launched`). A run launched by hand has no key and serves none."""
    run_key = tags.get(RUN_KEY_TAG)
    return [request.id for request in queue.for_run(run_key=run_key)] if run_key else []


def invalid_text(invalid: Quarantined) -> str:
    """A quarantined document, by number and id, with every reason (what its owner must fix)."""
    names = [invalid.document_number, invalid.crm_document_id or invalid.metakocka_id]
    return f"{' '.join(n for n in names if n)}: {'; '.join(invalid.reasons)}"


def request_error(result: TargetedSyncResult) -> str | None:
    """Why a request did not fully succeed (None: every named document reached its outcome)."""
    problems = [f"invalid: {invalid_text(q)}" for q in result.quarantined[:20]]
    if result.not_found:
        problems.append(f"not found: {', '.join(result.not_found[:20])}")
    failed = result.failed
    if failed:
        first = failed[0]
        problems.append(
            f"{len(failed)} of {len(result.outcomes)} push(es) failed; first: "
            f"{first.crm_document_id or first.metakocka_id}: {first.error_type}: {first.message}"
        )
    return "; ".join(problems) or None


def summary(result: TargetedSyncResult) -> dict:
    statuses = pd.Series([r["status"] for r in result.status_rows], dtype=object)
    return {
        "actions": {k: int(v) for k, v in result.plan["action"].value_counts().items()},
        "pushed": sum(o.result == OK for o in result.outcomes),
        "failed": len(result.failed),
        "not_found": list(result.not_found),
        "held_back": result.held_back,
        "statuses": {k: int(v) for k, v in statuses.value_counts().items()},
        "dry_run": result.dry_run,
    }


def result_metadata(result: TargetedSyncResult, direction: str) -> dict:
    info = summary(result)
    metadata = {
        "documents": len(result.plan),
        "pushed": info["pushed"],
        "failed": info["failed"],
        "not_found": len(result.not_found),
        "held_back": dg.MetadataValue.int(result.held_back),
        "dry_run": result.dry_run,
        **{f"plan_{action}": n for action, n in info["actions"].items()},
        **{f"status_{status}": n for status, n in info["statuses"].items()},
        "plan": dg.MetadataValue.md(plan_markdown(result, direction)),
    }
    return metadata


def plan_markdown(result: TargetedSyncResult, direction: str) -> str:
    """The plan as a Markdown table (what a dry run shows in the UI)."""
    heading = "Plan (dry run: nothing was pushed)" if result.dry_run else "Plan"
    held = f"; {result.held_back} push(es) the other way held back" if result.held_back else ""
    lines = [
        f"**{heading}**, direction `{direction}`{held}",
        "",
        "| action | CRM id | Metakocka id | reason |",
        "| --- | --- | --- | --- |",
    ]
    for row in result.plan.head(PLAN_ROWS_SHOWN).itertuples(index=False):
        lines.append(
            f"| {row.action} | {row.crm_document_id or ''} | {row.metakocka_id or ''} | "
            f"{str(row.reason).replace('|', '/')} |"
        )
    if len(result.plan) > PLAN_ROWS_SHOWN:
        lines.append(f"| … | {len(result.plan) - PLAN_ROWS_SHOWN} more | | |")
    if result.not_found:
        lines += ["", f"Not found in either system: {', '.join(result.not_found)}"]
    if result.quarantined:
        lines += ["", "Invalid (fix them where they were written, then sync again):"]
        lines += [f"- {invalid_text(q)}" for q in result.quarantined[:PLAN_ROWS_SHOWN]]
    return "\n".join(lines)


def build_sync_documents_job() -> dg.JobDefinition:
    @dg.job(
        name=JOB_NAME,
        executor_def=dg.in_process_executor,
        description="On-demand sync of one document or a list, in either direction (the CRM's "
        "Sync buttons). Run config: organization_id, direction, document_ids, all_unsynced, "
        "dry_run (a launch with an empty or malformed id is refused). Upserts the sync_status "
        "rows of those documents only.",
        tags={TAG_KIND: "on_demand"},
        config=launch_config(),
    )
    def sync_documents_job():
        sync_documents_op()

    return sync_documents_job
