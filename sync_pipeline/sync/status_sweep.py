"""A full sweep's sync_status rows, made and compared with the current ones a slice at a time.

A full sweep re-materialises one row per document known on either side. Made at once, that
held every link and every current status row of the organization beside the run's documents
(100,000 of each and more). Here the plan is taken `SLICE` rows at a time: the links and current
rows of that slice's documents are read by id, its status rows made (`record.each_status_row`)
and compared with them (`status_diff.compare_status`), and only the differences are kept, as
tuples (`sync/status_rows.py`). What is written, in one transaction at the end as before, is the
same: the rows that changed, and the deletion of the rows no document names any more.
"""

import numpy as np
import pandas as pd

from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.status_diff import compare_status
from sync_pipeline.sync.export.outcomes import PushOutcome
from sync_pipeline.sync.extract import Quarantined
from sync_pipeline.sync.record import STATUS_ROW_COLUMNS, PairsMade, each_status_row
from sync_pipeline.sync.status_rows import StatusRows

SLICE = 2_000
"""Plan rows made and compared at once (their links and current rows are read by id, 500 ids
a query whatever the slice: a smaller slice costs no more queries). Each slice's links and
current rows are held as Python lists while it is compared, a few MB per 1,000 rows."""


def sweep_status(
    store: SyncStore,
    organization_id: str,
    plan: pd.DataFrame,
    *,
    outcomes: list[PushOutcome],
    quarantined: list[Quarantined],
    through=lambda rows: rows,
) -> tuple[StatusRows, list[int]]:
    """(the status rows that differ from the documents' current ones, the ids of the current
    rows no document names any more): what `Statuses.write` writes. `through` sees every
    row as it goes by (the step's tally)."""
    current = store.status.row_ids(organization_id)
    named = np.zeros(len(current), dtype=bool)
    by_crm = {o.crm_document_id: o for o in outcomes if o.crm_document_id}
    by_mk = {o.metakocka_id: o for o in outcomes if o.metakocka_id}
    seen = PairsMade()
    changed = StatusRows(STATUS_ROW_COLUMNS)
    for start in range(0, len(plan), SLICE):
        part = plan.iloc[start : start + SLICE]
        crm_ids, mk_ids = _ids(part, by_crm, by_mk)
        links = store.links.for_ids(organization_id, crm_ids, mk_ids)
        crm_ids += [i for i in links["crm_document_id"] if i]  # ids a link fills in
        mk_ids += [i for i in links["metakocka_id"] if i]
        previous = store.status.for_ids(organization_id, crm_ids, mk_ids)
        rows = each_status_row(
            organization_id=organization_id,
            plan=part,
            outcomes=outcomes,
            quarantined=quarantined,
            links=links,
            previous=previous,
            seen=seen,
        )
        differ, kept = compare_status(through(rows), previous)
        changed.extend(differ)
        kept = np.asarray(sorted(kept), dtype=np.int64)
        at = np.searchsorted(current, kept)
        known = at < len(current)
        known[known] = current[at[known]] == kept[known]  # not a row made since `current`
        named[at[known]] = True
    return changed, [int(row_id) for row_id in current[~named]]


def _ids(part: pd.DataFrame, by_crm: dict, by_mk: dict) -> tuple[list, list]:
    """The ids the slice's rows name, and those their push outcomes add."""
    crm_ids = [i for i in part["crm_document_id"] if isinstance(i, str)]
    mk_ids = [i for i in part["metakocka_id"] if isinstance(i, str)]
    found = [by_crm.get(i) for i in crm_ids] + [by_mk.get(i) for i in mk_ids]
    crm_ids += [o.crm_document_id for o in found if o is not None and o.crm_document_id]
    mk_ids += [o.metakocka_id for o in found if o is not None and o.metakocka_id]
    return crm_ids, mk_ids
