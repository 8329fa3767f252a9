"""Mirror what a run recorded into the CRM's own tables (`crm/mirror.py`), in the step
that records it: the nightly run's `sync_status` step, an on-demand run's recording.

Only what changed is written: the sync_status rows this run wrote (new or different), and the
error rows this run logged about documents. A mirror that fails (the CRM down, a constraint) does
not fail the step, because our sync database already holds the truth: it becomes one open error
row naming what was not mirrored, and the next run mirrors that too and closes the row.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from sync_pipeline.adapters.errors import SyncError
from sync_pipeline.crm.client import CrmClient
from sync_pipeline.crm.mapping import CRM_OWNER
from sync_pipeline.crm.mirror import (
    can_mirror,
    log_row,
    mapping_row,
    write_logs,
    write_mappings,
)
from sync_pipeline.domain.document import crm_id_for_metakocka_document
from sync_pipeline.domain.summary import was_read
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.sync.export.outcomes import OK
from sync_pipeline.sync.record import STATUS_ROW_COLUMNS
from sync_pipeline.sync.status_rows import StatusRows

MIRROR_FAILED = "crm_mirror"
"""`details.kind` of the open error row of a mirror that failed."""
SLICE = 5_000
"""Documents whose mapping rows are made and written at once. An organization's first run
mirrors every pair (100,000 and more); made at once, their mapping rows and their links as row
dicts held about 110 MiB beside the run's documents (its peak 538 -> 430 MiB at 100,000 per
side: docs/performance.md)."""


@dataclass
class MirrorResult:
    mappings: int = 0
    logs: int = 0
    skipped: list[str] = field(default_factory=list)
    """Why documents got no mapping row (no Metakocka id, not the organization's, no owner)."""
    failed: str | None = None

    def metadata(self) -> dict:
        return {
            "crm_mappings_written": self.mappings,
            "crm_error_logs_written": self.logs,
            "crm_mirror_failed": self.failed or "",
        }


def mirror_to_crm(
    crm: CrmClient,
    store: SyncStore,
    organization,
    status_rows: Sequence[dict],
    *,
    run_id: str | None,
    known_owners: dict[str, str] | None = None,
) -> MirrorResult:
    """Write the mapping rows of `status_rows` (and of what an earlier mirror could not write)
    and the CRM log rows of this run's document errors. `organization`: an `Organization`;
    `known_owners`: CRM id -> owner the run already knows (`owners_in_plan`); the others are
    read from the CRM."""
    result = MirrorResult()
    org_id = organization.id
    earlier = store.errors.open_of_kind(org_id, MIRROR_FAILED)
    pending_docs = {d for row in earlier for d in (row["details"] or {}).get("documents", [])}
    pending_errors = {e for row in earlier for e in (row["details"] or {}).get("error_ids", [])}
    rows = StatusRows.of(STATUS_ROW_COLUMNS, status_rows)  # a row is a dict only while used
    missing = sorted(pending_docs - set(rows.column("crm_document_id")))
    if missing:
        previous = _records(store.status.for_ids(org_id, missing, []))
        rows = rows + ({name: row[name] for name in STATUS_ROW_COLUMNS} for row in previous)
    at = {crm_id: i for i, crm_id in enumerate(rows.column("crm_document_id")) if crm_id}
    errors = store.errors.document_errors(org_id, run_id=run_id) if run_id else []
    if pending_errors:
        known = {e["id"] for e in errors}
        errors += [
            e
            for e in store.errors.document_errors(org_id, ids=pending_errors)
            if e["id"] not in known
        ]
    if not at and not errors:
        return result
    try:
        schema = crm.schema()
        if not can_mirror(schema):
            result.skipped.append("the CRM has no metakocka_sales_document_mappings table")
            return result
        mk_ids = rows.column("metakocka_id")
        paired = [crm_id for crm_id, i in at.items() if mk_ids[i]]
        result.skipped += [f"{crm_id}: no Metakocka document" for crm_id in at.keys() - {*paired}]
        owners, entity_of = _owners(crm, organization, paired, errors, known_owners or {})
        for start in range(0, len(paired), SLICE):
            part = paired[start : start + SLICE]
            mappings = _mappings(
                store, organization.id, part, {i: rows[at[i]] for i in part}, owners, result
            )
            result.mappings += write_mappings(crm, schema, mappings)
        logs = _logs(organization, errors, owners, entity_of)
        result.logs = write_logs(crm, schema, logs)
    except SyncError as exc:
        result.failed = str(exc)
        store.errors.log([_failure_row(org_id, run_id, exc, list(at), errors)])
        return result
    store.errors.resolve_ids(
        [row["id"] for row in earlier], note=f"mirrored by run {run_id or '-'}"
    )
    return result


def owners_in_plan(plan, outcomes, organization) -> dict[str, str]:
    """The owners of the CRM documents a run holds: as read, or the integration user for the
    documents it created in the CRM."""
    owners = {
        doc.crm_document_id: doc.source_extra[CRM_OWNER]["user_id"]
        for doc in plan.get("crm_document", ())
        if was_read(doc) and (doc.source_extra.get(CRM_OWNER) or {}).get("user_id")
    }
    if organization.crm_integration_user_id:
        owners.update(
            {
                o.crm_document_id: organization.crm_integration_user_id
                for o in outcomes
                if o.action == "create_in_crm" and o.result == OK and o.crm_document_id
            }
        )
    return owners


def _owners(crm, organization, paired: list[str], errors, known_owners):
    """(CRM id -> owner of every document a mapping or log row is about, error id -> the CRM id
    its log row is about): the run's known owners, the others read from the CRM."""
    org_id = organization.id
    entity_of = {
        e["id"]: e["crm_document_id"] or crm_id_for_metakocka_document(org_id, e["metakocka_id"])
        for e in errors
    }
    wanted = {*paired, *entity_of.values()}
    owners = {i: known_owners[i] for i in wanted if i in known_owners}
    owners |= crm.document_owners(org_id, sorted(wanted - set(owners)))
    return owners, entity_of


def _mappings(store, org_id, crm_ids, rows, owners, result) -> list[dict]:
    """The mapping rows of one slice of paired documents (their links read by id)."""
    links = store.links.for_ids(org_id, crm_ids, [])
    doc_types = {
        str(crm_id): doc_type if isinstance(doc_type, str) else None
        for crm_id, doc_type in zip(
            links["crm_document_id"], links["metakocka_doc_type"], strict=True
        )
    }
    mappings = []
    for crm_id in crm_ids:
        owner = owners.get(crm_id)
        if owner is None:  # deleted meanwhile, or not the organization's
            result.skipped.append(f"{crm_id}: not one of the organization's CRM documents")
            continue
        mappings.append(
            mapping_row(
                rows[crm_id], owner=owner, organization_id=org_id, doc_type=doc_types.get(crm_id)
            )
        )
    return mappings


def _logs(organization, errors, owners, entity_of) -> list[dict]:
    fallback = organization.crm_integration_user_id
    return [
        log_row(
            e,
            owner=owners.get(entity_of[e["id"]]) or fallback,
            organization_id=organization.id,
            entity_id=entity_of[e["id"]],
        )
        for e in errors
        if owners.get(entity_of[e["id"]]) or fallback
    ]


def _failure_row(org_id, run_id, exc: SyncError, documents: list[str], errors: list[dict]):
    return {
        "organization_id": org_id,
        "run_id": run_id,
        "error_type": exc.error_type,
        "message": f"the CRM's mapping table and error log were not updated: {exc}; the next "
        "run writes them",
        "details": {
            "kind": MIRROR_FAILED,
            "documents": documents,
            "error_ids": [e["id"] for e in errors],
        },
    }


def _records(frame) -> list[dict]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")
