"""The organization's Metakocka status map in a run, and every unmapped status reported.

The mapper reads a document's status with the standard map (`metakocka/statuses.py`): it
does not know the organization's settings, and sensors and listings map documents too. Before
the plan compares Metakocka's status with the CRM's, `with_organization_statuses` re-reads them
with the organization's own map (`metakocka_statuses` in SYNC_ORGANIZATIONS), so the nightly
reconciliation and an on-demand sync (both plan through `sync/planning.py`) map alike.

A status the map does not know leaves the CRM's status as it is (`domain/ownership.py`: a
Metakocka status of None changes nothing), and is never dropped silently:
- the plan's `unmapped_status` column holds the reason (`mark_unmapped_statuses`);
- sync_error_log holds one open `warning` row per document and status, closed once the
  document's status maps (a new map, or a new status in Metakocka) (`record_status_warnings`);
- sync_status.metakocka_status shows the label as read (`sync/record.py`);
- the sync report counts the open warnings by status (`unmapped_status_counts`).
"""

from dataclasses import replace

import pandas as pd

from sync_pipeline.domain.directions import METAKOCKA_TO_CRM
from sync_pipeline.domain.document import CRM_DOCUMENT_TYPES
from sync_pipeline.domain.summary import DocumentSummary, SummaryKind, was_read
from sync_pipeline.domain.text import text_or_none
from sync_pipeline.metakocka.statuses import (
    STANDARD,
    StatusMap,
    status_of,
    unmapped_reason,
)
from sync_pipeline.store.error_log import ErrorLog
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.tables import WARNING
from sync_pipeline.sync.validate import ValidatedSide

UNMAPPED_STATUS = "unmapped_status"
"""Plan column: why the Metakocka document's status has no CRM status; None when it has one
(or the document has no status, or its status is mapped to `keep`)."""
UNMAPPED_KIND = "unmapped_metakocka_status"
"""`details.kind` of the warning rows about an unmapped status."""


def with_organization_statuses(side: ValidatedSide, statuses: StatusMap) -> ValidatedSide:
    """Metakocka's side with each document's CRM status read with the organization's map."""
    if statuses == STANDARD or side.valid.empty:
        return side
    kinds: dict[int, SummaryKind] = {}
    documents = [_read_with(doc, statuses, kinds) for doc in side.valid["document"]]
    valid = side.valid.assign(document=pd.Series(documents, index=side.valid.index, dtype=object))
    return ValidatedSide(side.side, valid, side.quarantined)


def _read_with(doc, statuses: StatusMap, kinds: dict):
    if not was_read(doc):  # an incremental run's unread counterpart
        return doc
    status = statuses.crm_status(status_of(doc))
    if status == doc.status:
        return doc
    if isinstance(doc, DocumentSummary):  # still one kind for all its summaries
        kind = kinds.get(id(doc.kind))
        if kind is None:
            kind = kinds[id(doc.kind)] = replace(doc.kind, status=status)
        return replace(doc, kind=kind)
    return replace(doc, status=status)


def mark_unmapped_statuses(plan: pd.DataFrame, statuses: StatusMap) -> pd.DataFrame:
    """The plan with `unmapped_status`: the reason for each Metakocka document of a CRM type
    whose status the map does not know, else None."""
    documents = plan["metakocka_document"] if "metakocka_document" in plan else [None] * len(plan)
    reasons = [
        unmapped_reason(status_of(doc))
        if was_read(doc)
        and doc.document_type in CRM_DOCUMENT_TYPES  # a credit note's status reaches no CRM
        and statuses.is_unmapped(status_of(doc))
        else None
        for doc in documents
    ]
    return plan.assign(**{UNMAPPED_STATUS: pd.Series(reasons, index=plan.index, dtype=object)})


def record_status_warnings(
    store: SyncStore,
    organization_id: str,
    plan: pd.DataFrame,
    *,
    run_id: str | None,
    requested_by: str | None = None,
) -> int:
    """Open a warning for each unmapped status of the plan (once per document and status), and
    close those of documents read again whose status now maps or changed. Returns the number of
    warnings opened."""
    current = _current_warnings(plan)
    open_rows = store.errors.open_frame(organization_id, WARNING)
    open_rows = open_rows.loc[
        open_rows["details"].map(lambda d: isinstance(d, dict) and d.get("kind") == UNMAPPED_KIND)
    ]
    still_open = set(zip(open_rows["metakocka_id"], open_rows["message"], strict=True))
    stale = {
        mk_id for mk_id, message in still_open if mk_id in current and current[mk_id] != message
    }
    if stale:
        store.errors.resolve_for_documents(
            organization_id,
            metakocka_ids=stale,
            only_types=[WARNING],
            note=f"the Metakocka status maps to a CRM status now (run {run_id})",
        )
        still_open = {(mk_id, message) for mk_id, message in still_open if mk_id not in stale}
    rows = [
        _warning_row(row, organization_id, run_id, requested_by)
        for row in _unmapped_rows(plan)
        if (text_or_none(row.metakocka_id), row.unmapped_status) not in still_open
    ]
    return store.errors.log(rows)


def _warning_row(row, organization_id: str, run_id: str | None, requested_by: str | None) -> dict:
    doc = row.metakocka_document  # whole or summarised
    status = status_of(doc)
    return {
        "organization_id": organization_id,
        "run_id": run_id,
        "direction": METAKOCKA_TO_CRM,
        "crm_document_id": text_or_none(row.crm_document_id),
        "metakocka_id": text_or_none(row.metakocka_id),
        "error_type": WARNING,
        "message": row.unmapped_status,
        "details": {
            "kind": UNMAPPED_KIND,
            "status_code": status.label,
            "status_desc": status.desc,
            "document_type": doc.document_type,
            "metakocka_count_code": doc.metakocka_count_code,
        },
        "requested_by": requested_by,
    }


def _current_warnings(plan: pd.DataFrame) -> dict[str, str | None]:
    """{mk_id: its warning now, or None} of every Metakocka document this run read."""
    if "metakocka_document" not in plan or UNMAPPED_STATUS not in plan:
        return {}
    return {
        text_or_none(mk_id): reason
        for mk_id, doc, reason in zip(
            plan["metakocka_id"], plan["metakocka_document"], plan[UNMAPPED_STATUS], strict=True
        )
        if was_read(doc)
    }


def _unmapped_rows(plan: pd.DataFrame):
    if UNMAPPED_STATUS not in plan:
        return []
    return plan.loc[plan[UNMAPPED_STATUS].notna()].itertuples(index=False)


def unmapped_status_counts(errors: ErrorLog, organization_id: str) -> pd.DataFrame:
    """The organization's open unmapped-status warnings by status: `status_code`,
    `status_desc`, `documents`, most documents first (what the sync report shows)."""
    rows = [
        (mk_id, details.get("status_code"), details.get("status_desc"))
        for mk_id, details in errors.open_warning_details(organization_id, UNMAPPED_KIND)
    ]
    columns = ["status_code", "status_desc"]
    frame = pd.DataFrame(rows, columns=["metakocka_id", *columns])
    counts = (
        frame.groupby(columns, dropna=False)["metakocka_id"]
        .nunique()
        .rename("documents")
        .reset_index()
        .sort_values(["documents", "status_code"], ascending=[False, True], ignore_index=True)
    )
    counts[columns] = counts[columns].astype(object).where(counts[columns].notna(), None)
    return counts
