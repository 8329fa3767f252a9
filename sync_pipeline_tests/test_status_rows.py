"""`StatusRows`: a full sweep's differing sync_status rows held as tuples, read back as the same
dicts; a row with other keys is refused, never cut to fit."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_pipeline.sync.record import STATUS_ROW_COLUMNS, PairsMade
from sync_pipeline.sync.status_rows import StatusRows


def row(n: int, **changes) -> dict:
    made = {name: f"{name}-{n}" for name in STATUS_ROW_COLUMNS}
    made.update(attempts=n, last_synced_at=datetime(2026, 12, 4, n, tzinfo=UTC), last_error=None)
    return made | changes


def test_rows_read_back_as_they_were_added():
    added = [row(n) for n in range(5)]
    rows = StatusRows(STATUS_ROW_COLUMNS, added[:3])
    rows.extend(added[3:])
    assert len(rows) == 5
    assert list(rows) == added
    assert rows[1] == added[1] and rows[-1] == added[-1]
    assert rows[1:4] == added[1:4]
    assert rows.column("crm_document_id") == [r["crm_document_id"] for r in added]


def test_adding_rows_leaves_the_first_rows_as_they_were():
    first = StatusRows(STATUS_ROW_COLUMNS, [row(1)])
    both = first + [row(2)]
    assert list(first) == [row(1)] and list(both) == [row(1), row(2)]
    assert StatusRows.of(STATUS_ROW_COLUMNS, first) is first
    assert list(StatusRows.of(STATUS_ROW_COLUMNS, [row(3)])) == [row(3)]


@pytest.mark.parametrize("wrong", [{"id": 7}, {}], ids=["an extra key", "a missing key"])
def test_a_row_with_other_keys_is_refused(wrong):
    bad = row(1) | wrong if wrong else {k: v for k, v in row(1).items() if k != "status"}
    with pytest.raises(ValueError, match="status row with keys"):
        StatusRows(STATUS_ROW_COLUMNS, [bad])


_IDS = st.sampled_from([None, "c1", "c2", "m1", "m2", "m3"])


@given(st.lists(st.tuples(_IDS, _IDS), max_size=40))
def test_pairs_made_answers_as_a_set_of_the_pairs_would(pairs):
    """`record.PairsMade` (what a full sweep remembers of the pairs it has made rows for)
    against the set of tuples it replaced: new exactly when the pair was not met before,
    whichever of its ids is None and however many Metakocka ids one CRM id is met with."""
    made, model = PairsMade(), set()
    for crm_id, mk_id in pairs:
        assert made.first_time(crm_id, mk_id) == ((crm_id, mk_id) not in model)
        model.add((crm_id, mk_id))
