"""Turn a run's plan, push outcomes and quarantine into error-log rows and sync_status rows.

sync_status is re-materialised from scratch for the organization at the end of every reconciliation:
one row per document known on either side, so analysts never see a stale row for a document that has
since been linked, fixed or deleted. The attempt counter and last sync time carry over from the
previous materialisation.
"""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from sync_pipeline.domain.conflicts import conflict_details
from sync_pipeline.domain.directions import CRM_TO_METAKOCKA, METAKOCKA_TO_CRM
from sync_pipeline.domain.document import CRM_DOCUMENT_TYPES
from sync_pipeline.domain.summary import was_read
from sync_pipeline.domain.text import text_or_none
from sync_pipeline.metakocka.statuses import status_of
from sync_pipeline.store.status_diff import STATUS_CONTENT
from sync_pipeline.sync.export.outcomes import (
    FAILED,
    OK,
    TO_CRM_ACTIONS,
    TO_METAKOCKA_ACTIONS,
    PushOutcome,
)
from sync_pipeline.sync.extract import CRM, METAKOCKA, Quarantined

INVALID = "invalid"
"""Plan action for a document (or the counterpart of one) that failed validation: never pushed."""
NO_CRM_TYPE = "no_crm_type"
"""Plan action (and status) for a Metakocka document of a type the CRM has none for (a credit
note): reported, never pushed, never retried."""

STATUS_BY_ACTION = {
    "unchanged": "synced",
    "conflict": "conflict",
    "deleted_in_crm": "deleted_in_crm",
    "deleted_in_metakocka": "deleted_in_metakocka",
    INVALID: "invalid",
    NO_CRM_TYPE: NO_CRM_TYPE,
}
REPORTED_REASONS = ("conflict", "deleted_in_crm", "deleted_in_metakocka", NO_CRM_TYPE)
"""Statuses whose row carries the plan's reason in `last_error`."""


def mark_invalid_pairs(plan: pd.DataFrame, quarantined: list[Quarantined]) -> pd.DataFrame:
    """A document whose own side or counterpart failed validation is `invalid`, whatever else.

    Without this, a linked document whose CRM copy is invalid would look deleted in the CRM, and an
    unlinked Metakocka copy of an invalid CRM document would be created in the CRM a second time.
    """
    bad_crm = {q.crm_document_id for q in quarantined if q.crm_document_id}
    bad_mk = {q.metakocka_id for q in quarantined if q.metakocka_id}
    hit = plan["crm_document_id"].isin(bad_crm) | plan["metakocka_id"].isin(bad_mk)
    plan = plan.copy()
    plan.loc[hit, "action"] = INVALID
    plan.loc[hit, "reason"] = "document or its counterpart failed validation"
    return plan


def mark_no_crm_type(plan: pd.DataFrame) -> pd.DataFrame:
    """A Metakocka document the CRM has no type for (a credit note: only Metakocka has them) is
    `no_crm_type`, whatever else, unless it already failed validation."""
    if plan.empty or "metakocka_document" not in plan:
        return plan
    hit = plan["metakocka_document"].map(
        lambda doc: was_read(doc) and doc.document_type not in CRM_DOCUMENT_TYPES
    ).astype(bool) & (plan["action"] != INVALID)
    if not hit.any():
        return plan
    plan = plan.copy()
    plan.loc[hit, "action"] = NO_CRM_TYPE
    plan.loc[hit, "reason"] = [
        f"a Metakocka {doc.document_type.replace('_', ' ')} ({doc.metakocka_doc_type}): the CRM "
        f"has no document type for it ({', '.join(CRM_DOCUMENT_TYPES)}); not synced"
        for doc in plan.loc[hit, "metakocka_document"]
    ]
    return plan


def error_rows(
    *,
    organization_id: str,
    run_id: str | None,
    open_errors: pd.DataFrame | None = None,
    outcomes: list[PushOutcome] = (),
    quarantined: list[Quarantined] = (),
    plan: pd.DataFrame | None = None,
    requested_by: str | None = None,
    read_again: Callable[[object, object], tuple] | None = None,
) -> list[dict]:
    """One row per failure of this run; validation and conflict rows only when not already open.
    `read_again`: (CRM version, Metakocka version) of a new conflict -> the same, whole where a
    full sweep summarised them (`sync.rereads.WholeDocuments.for_differences`)."""
    rows: list[dict] = []
    for outcome in outcomes:
        if outcome.result != FAILED:
            continue
        rows.append(
            {
                "organization_id": organization_id,
                "run_id": run_id,
                "direction": outcome.direction,
                "crm_document_id": outcome.crm_document_id,
                "metakocka_id": outcome.metakocka_id,
                "error_type": outcome.error_type or "internal",
                "message": outcome.message or "failed",
                "details": {"action": outcome.action},
                "stack_trace": outcome.stack_trace,
                "requested_by": requested_by,
            }
        )
    already_open = _open_keys(open_errors)
    for q in quarantined:
        message = "; ".join(q.reasons)
        key = ("validation", q.crm_document_id, q.metakocka_id, message)
        if key in already_open:
            continue
        rows.append(
            {
                "organization_id": organization_id,
                "run_id": run_id,
                "direction": CRM_TO_METAKOCKA if q.side == CRM else METAKOCKA_TO_CRM,
                "crm_document_id": q.crm_document_id,
                "metakocka_id": q.metakocka_id,
                "error_type": "validation",
                "message": message,
                "details": {
                    "side": q.side,
                    "document_type": q.document_type,
                    "document_number": q.document_number,
                    "failed_checks": list(q.reasons),
                },
                "requested_by": requested_by,
            }
        )
    conflicts = plan.loc[plan["action"] == "conflict"] if plan is not None else plan
    for row in [] if conflicts is None else conflicts.itertuples(index=False):
        crm_id, mk_id = text_or_none(row.crm_document_id), text_or_none(row.metakocka_id)
        message = f"conflict: {row.reason}"
        if ("conflict", crm_id, mk_id, message) in already_open:
            continue
        crm_doc = getattr(row, "crm_document", None)
        mk_doc = getattr(row, "metakocka_document", None)
        if read_again is not None:
            crm_doc, mk_doc = read_again(crm_doc, mk_doc)
        rows.append(
            {
                "organization_id": organization_id,
                "run_id": run_id,
                "direction": None,
                "crm_document_id": crm_id,
                "metakocka_id": mk_id,
                "error_type": "conflict",
                "message": message,
                "details": {
                    "crm_hash": row.crm_hash,
                    "metakocka_hash": row.metakocka_hash,
                    "conflict_policy": getattr(row, "conflict_policy", None),
                    **conflict_details(crm_doc, mk_doc),
                },
                "requested_by": requested_by,
            }
        )
    return rows


def _open_keys(open_errors: pd.DataFrame) -> set[tuple]:
    if open_errors is None or open_errors.empty:
        return set()
    return {
        (r.error_type, text_or_none(r.crm_document_id), text_or_none(r.metakocka_id), r.message)
        for r in open_errors.itertuples(index=False)
    }


STATUS_ROW_COLUMNS = ("organization_id", *STATUS_CONTENT, "updated_at")
"""The keys of a row `each_status_row` makes (sync_status's columns but its `id`)."""


def status_rows(**arguments) -> list[dict]:
    """One sync_status row per document known on either side, after this run's pushes (the
    arguments of `each_status_row`)."""
    return list(each_status_row(**arguments))


def each_status_row(
    *,
    organization_id: str,
    plan: pd.DataFrame,
    outcomes: list[PushOutcome],
    quarantined: list[Quarantined],
    links: pd.DataFrame,
    previous: pd.DataFrame,
    now: datetime | None = None,
    seen: "PairsMade | None" = None,
) -> Iterator[dict]:
    """`status_rows` one at a time: a full sweep compares each with the document's current row
    and keeps only the differences (`sync/status_sweep.py`), never 100,000 rows at once. `seen`:
    the (CRM id, Metakocka id) of the rows made so far, when the plan comes in slices (a row is
    made once per pair)."""
    now = now or datetime.now(UTC)
    by_crm = {o.crm_document_id: o for o in outcomes if o.crm_document_id}
    by_mk = {o.metakocka_id: o for o in outcomes if o.metakocka_id}
    reasons_by_crm = {q.crm_document_id: q for q in quarantined if q.crm_document_id}
    reasons_by_mk = {q.metakocka_id: q for q in quarantined if q.metakocka_id}
    crm_ids = [text_or_none(value) for value in plan["crm_document_id"]]
    mk_ids = [text_or_none(value) for value in plan["metakocka_id"]]
    found = [by_crm.get(c) or by_mk.get(m) for c, m in zip(crm_ids, mk_ids, strict=True)]
    for i, outcome in enumerate(found):
        if outcome is not None:
            crm_ids[i] = crm_ids[i] or outcome.crm_document_id
            mk_ids[i] = mk_ids[i] or outcome.metakocka_id
    link_rows = _Lookup(links)
    link_at = link_rows.positions(crm_ids, mk_ids)
    linked = [link_rows.get(p, "state") == "linked" for p in link_at]
    for i in np.flatnonzero(linked):
        mk_ids[i] = mk_ids[i] or text_or_none(link_rows.get(link_at[i], "metakocka_id"))
        crm_ids[i] = crm_ids[i] or text_or_none(link_rows.get(link_at[i], "crm_document_id"))
    prev_rows = _Lookup(previous)
    prev_at = prev_rows.positions(crm_ids, mk_ids)

    seen = PairsMade() if seen is None else seen
    for i, row in enumerate(plan.itertuples(index=False)):
        crm_id, mk_id, outcome = crm_ids[i], mk_ids[i], found[i]
        if not seen.first_time(crm_id, mk_id):
            continue
        link, prev = link_rows.row(link_at[i]), prev_rows.row(prev_at[i])
        doc = _first_document(row)
        invalid = reasons_by_crm.get(crm_id) or reasons_by_mk.get(mk_id)  # its number, type
        status, direction, error = _status_of(
            row, outcome, reasons_by_crm, reasons_by_mk, crm_id, mk_id
        )
        attempted = outcome is not None and outcome.attempted_at is not None
        yield {
            "organization_id": organization_id,
            "crm_document_id": crm_id,
            "metakocka_id": mk_id,
            "document_type": doc.document_type
            if doc
            else link.get("document_type") or (invalid.document_type if invalid else None),
            "crm_document_number": _crm_number(row)
            or link.get("crm_document_number")
            or _quarantined_number(invalid, CRM),
            "metakocka_count_code": (outcome.metakocka_count_code if outcome else None)
            or _mk_count_code(row)
            or link.get("metakocka_count_code")
            or _quarantined_number(invalid, METAKOCKA),
            "status": status,
            "last_direction": direction or prev.get("last_direction"),
            "last_synced_at": _ts(link.get("last_synced_at"))
            if linked[i]
            else _ts(prev.get("last_synced_at")),
            "last_attempt_at": outcome.attempted_at
            if attempted
            else _ts(prev.get("last_attempt_at")),
            "attempts": int(prev.get("attempts") or 0) + (1 if attempted else 0),
            "last_error": error,
            "updated_at": now,
            "metakocka_status": _metakocka_status(row, prev, mk_id),
        }


class PairsMade:
    """The (CRM id, Metakocka id) pairs a status row has been made for, either id None.

    A full sweep remembers every pair until its last slice (`sync/status_sweep.py`). As a set
    of tuples that was a tuple and a set slot a pair, about 100 bytes (the status step's peak
    rose by 12 MiB at 100,000 per side); here each CRM id maps to its Metakocka id, both the
    objects the row's ids already are, and only a CRM id met with several Metakocka ids (or
    None, for the documents of one side only) holds a set of them."""

    def __init__(self):
        self._mk_by_crm: dict = {}

    def first_time(self, crm_id: str | None, mk_id: str | None) -> bool:
        """Is this pair new? (Then it is remembered.)"""
        known = self._mk_by_crm.get(crm_id, _UNSEEN)
        if known is _UNSEEN:
            self._mk_by_crm[crm_id] = mk_id
            return True
        if type(known) is _Several:
            if mk_id in known:
                return False
            known.add(mk_id)
            return True
        if known == mk_id:
            return False
        self._mk_by_crm[crm_id] = _Several((known, mk_id))
        return True


class _Several(set):
    """The Metakocka ids (or None) seen with one CRM id, when there is more than one."""


_UNSEEN = object()


def _quarantined_number(invalid: Quarantined | None, side: str) -> str | None:
    """The number a quarantined document of `side` was read with (it has no mapped document)."""
    return invalid.document_number if invalid is not None and invalid.side == side else None


def _metakocka_status(row, prev, mk_id: str | None) -> str | None:
    """Metakocka's status label as this run read it; as last read when this run did not read
    the document (an incremental run's unchanged counterpart, an unreadable document)."""
    doc = getattr(row, "metakocka_document", None)
    if was_read(doc):
        return status_of(doc).label
    return text_or_none(prev.get("metakocka_status")) if mk_id else None


def _status_of(row, outcome, reasons_by_crm, reasons_by_mk, crm_id, mk_id):
    action = row.action
    pushes = (*TO_METAKOCKA_ACTIONS, *TO_CRM_ACTIONS)
    if outcome is not None and action not in pushes and outcome.action in pushes:
        # The run redid a write that a dead or failed run left half-done in the CRM
        # (`push._unfinished_crm_writes`), whatever the plan made of the half-written copy (often
        # `invalid`: a document whose lines never arrived). What the redo did is the status.
        action = outcome.action
    if action in TO_METAKOCKA_ACTIONS or action in TO_CRM_ACTIONS:
        direction = CRM_TO_METAKOCKA if action in TO_METAKOCKA_ACTIONS else METAKOCKA_TO_CRM
        if outcome is None:
            return "pending", direction, None
        if outcome.result == OK:
            return "synced", direction, None
        if outcome.result == FAILED:
            return "failed", direction, f"{outcome.error_type}: {outcome.message}"
        return "pending", direction, outcome.message
    if outcome is not None and action in ("deleted_in_crm", "deleted_in_metakocka"):
        # propagate_deletes: the counterpart was deleted too (or that failed, or was refused).
        direction = CRM_TO_METAKOCKA if action == "deleted_in_crm" else METAKOCKA_TO_CRM
        if outcome.result == FAILED:
            return "failed", direction, f"{outcome.error_type}: {outcome.message}"
        return action, direction, outcome.message
    if action == INVALID:
        q = reasons_by_crm.get(crm_id) or reasons_by_mk.get(mk_id)
        return "invalid", None, "; ".join(q.reasons) if q else row.reason
    status = STATUS_BY_ACTION.get(action, "pending")
    error = row.reason if status in REPORTED_REASONS else None
    return status, None, error


def _first_document(row):
    for name in ("crm_document", "metakocka_document"):
        doc = getattr(row, name, None)
        if doc is not None and not (isinstance(doc, float) and pd.isna(doc)):
            return doc
    return None


def _crm_number(row):
    doc = getattr(row, "crm_document", None)
    return getattr(doc, "document_number", None) if doc is not None else None


def _mk_count_code(row):
    doc = getattr(row, "metakocka_document", None)
    return getattr(doc, "metakocka_count_code", None) if doc is not None else None


class _Lookup:
    """The rows of a frame (links, or the previous sync_status rows) found by a document's ids:
    by its CRM id, else by its Metakocka id, the last row of each id (as a dict by id would),
    located for all documents at once (hash lookups on the id columns) and read only when used."""

    def __init__(self, frame: pd.DataFrame | None):
        empty = frame is None or frame.empty
        # Python lists: an element of a pandas array costs a method call and a boxing each.
        self._columns = {} if empty else {name: frame[name].tolist() for name in frame.columns}

    def positions(self, crm_ids: list, mk_ids: list) -> np.ndarray:
        """Per document, the position of its row (-1: none)."""
        at = self._by("crm_document_id", crm_ids)
        missing = at < 0
        if missing.any():
            at[missing] = self._by("metakocka_id", [mk_ids[i] for i in np.flatnonzero(missing)])
        return at

    def _by(self, column: str, ids: list) -> np.ndarray:
        values = self._columns.get(column)
        if values is None:
            return np.full(len(ids), -1, dtype=np.int64)
        keys = pd.Index([text_or_none(value) for value in values], dtype=object)
        last = ~keys.duplicated(keep="last") & keys.notna() & (keys != "")
        index, rows = keys[last], np.flatnonzero(last)
        found = index.get_indexer(pd.Index(ids, dtype=object))
        return np.where(found >= 0, rows[found], -1)

    def get(self, position: int, name: str, default=None):
        values = self._columns.get(name)
        return default if values is None or position < 0 else values[position]

    def row(self, position: int) -> "_Row":
        return _Row(self, position)


class _Row:
    """One row of a `_Lookup`: `.get(column)` like the dict it stands for (empty at -1)."""

    __slots__ = ("_lookup", "_position")

    def __init__(self, lookup: _Lookup, position: int):
        self._lookup, self._position = lookup, position

    def get(self, name: str, default=None):
        return self._lookup.get(self._position, name, default)


def _ts(value):
    if value is None or value is pd.NaT or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value
