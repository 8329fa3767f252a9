"""A full sweep re-materialises sync_status by writing only the differences; what a redone write
to the CRM makes of a document's status."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from sync_pipeline.domain.directions import METAKOCKA_TO_CRM
from sync_pipeline.store.status_diff import _comparable, _differs
from sync_pipeline.sync.export.outcomes import FAILED, OK, PushOutcome
from sync_pipeline.sync.record import status_rows

ORG = "00000000-0000-0000-0000-0000000000cc"


def _row(crm_id, mk_id, status="synced", **extra) -> dict:
    return {
        "organization_id": ORG,
        "crm_document_id": crm_id,
        "metakocka_id": mk_id,
        "document_type": "order",
        "crm_document_number": None,
        "metakocka_count_code": None,
        "status": status,
        "last_direction": None,
        "last_synced_at": datetime(2026, 11, 1, tzinfo=UTC),
        "last_attempt_at": None,
        "attempts": 0,
        "last_error": None,
        "updated_at": datetime.now(UTC),
        **extra,
    }


def test_only_differences_are_written(store):
    store.status.replace(ORG, [_row("c1", "m1"), _row("c2", None, "invalid"), _row("c3", "m3")])
    before = {r["crm_document_id"]: r for r in store.status.frame(ORG).to_dict("records")}

    rows = [
        _row("c1", "m1"),  # unchanged
        _row("c2", "m2"),  # got its twin: replaces the CRM-only row
        _row(None, "m4", "pending"),  # new
    ]  # c3 is gone
    written = store.status.replace(ORG, rows, previous=store.status.frame(ORG))
    assert written == 2
    after = {
        (_id(r["crm_document_id"]), _id(r["metakocka_id"])): r
        for r in store.status.frame(ORG).to_dict("records")
    }
    assert set(after) == {("c1", "m1"), ("c2", "m2"), (None, "m4")}
    assert after[("c1", "m1")]["id"] == before["c1"]["id"]  # left alone
    assert str(after[("c1", "m1")]["updated_at"]) == str(before["c1"]["updated_at"])
    assert after[("c2", "m2")]["status"] == "synced"


def _id(value):
    return None if value is None or value != value else value  # NaN: a missing id


def test_a_redone_crm_write_sets_the_status_whatever_the_plan_made_of_the_half_written_copy():
    """A write to the CRM that died between the document and its lines leaves a copy without
    lines; the next run plans it `invalid` but redoes the write from Metakocka
    (`push._unfinished_crm_writes`). The redo's outcome is the status: `synced` when it got
    through (its error rows are closed by it), `failed` when it did not; never `invalid`, which
    would hide a synced document, or a failure without its open error row."""
    plan = pd.DataFrame(
        {
            "crm_document_id": ["crm-redone", "crm-failed-again", "crm-bad"],
            "metakocka_id": [None, None, None],
            "action": ["invalid", "invalid", "invalid"],
            "reason": ["line_count: must be >= 1 (got 0)"] * 2 + ["customer_name: empty"],
        }
    )
    at = datetime.now(UTC)
    outcomes = [
        PushOutcome("create_in_crm", METAKOCKA_TO_CRM, OK, "crm-redone", "101", attempted_at=at),
        PushOutcome(
            "create_in_crm",
            METAKOCKA_TO_CRM,
            FAILED,
            "crm-failed-again",
            "102",
            error_type="transient",
            message="CRM POST sales_document_items: ReadTimeout",
            attempted_at=at,
        ),
    ]
    rows = status_rows(
        organization_id=ORG,
        plan=plan,
        outcomes=outcomes,
        quarantined=[],
        links=pd.DataFrame(),
        previous=pd.DataFrame(),
    )
    status = {r["crm_document_id"]: (r["status"], r["last_direction"]) for r in rows}
    assert status == {
        "crm-redone": ("synced", METAKOCKA_TO_CRM),
        "crm-failed-again": ("failed", METAKOCKA_TO_CRM),
        "crm-bad": ("invalid", None),  # not written by this run: still quarantined
    }


def test_the_quick_comparison_agrees_with_the_full_one():
    """`_differs` skips `_comparable` for equal texts and numbers: over every kind of value a
    status column holds, as read back from either database or made by the run, it says what
    comparing the comparable forms says."""
    moment = datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    values = [
        None,
        float("nan"),
        pd.NaT,
        "synced",
        "conflict",
        "",
        0,
        2,
        np.int64(2),
        2.0,
        True,
        moment,
        moment.replace(tzinfo=None),
        pd.Timestamp(moment),
        pd.Timestamp(moment.replace(tzinfo=None)),
        datetime(2026, 11, 2, tzinfo=UTC),
    ]
    for current in values:
        for made in values:
            expected = _comparable(current) != _comparable(made)
            assert _differs(current, made) == expected, (current, made)
