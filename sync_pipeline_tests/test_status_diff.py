"""A full sweep re-materialises sync_status by writing only the differences."""

from datetime import UTC, datetime

import pytest

from sync_pipeline.store.repository import SyncStore

ORG = "00000000-0000-0000-0000-0000000000cc"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request):
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    store = SyncStore(url)
    store.create_schema()
    yield store
    store.dispose()


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
    store.replace_status(ORG, [_row("c1", "m1"), _row("c2", None, "invalid"), _row("c3", "m3")])
    before = {r["crm_document_id"]: r for r in store.status_frame(ORG).to_dict("records")}

    rows = [
        _row("c1", "m1"),  # unchanged
        _row("c2", "m2"),  # got its twin: replaces the CRM-only row
        _row(None, "m4", "pending"),  # new
    ]  # c3 is gone
    written = store.replace_status(ORG, rows, previous=store.status_frame(ORG))
    assert written == 2
    after = {
        (_id(r["crm_document_id"]), _id(r["metakocka_id"])): r
        for r in store.status_frame(ORG).to_dict("records")
    }
    assert set(after) == {("c1", "m1"), ("c2", "m2"), (None, "m4")}
    assert after[("c1", "m1")]["id"] == before["c1"]["id"]  # left alone
    assert str(after[("c1", "m1")]["updated_at"]) == str(before["c1"]["updated_at"])
    assert after[("c2", "m2")]["status"] == "synced"


def _id(value):
    return None if value is None or value != value else value  # NaN: a missing id
