"""One way to record what a run did to some documents into sync_status: the nightly's
incremental run (the `sync_status` asset) and on-demand syncs (`sync/targeted.py`) both upsert
the rows of the documents they looked at, and leave every other row as it was. (A full sweep
re-materialises the organization's rows instead: `sync/status_sweep.py`.)

Only the rows that differ from the documents' current ones are written (`store/status_diff.py`):
a document that ends as it was keeps its row untouched.
"""

from collections.abc import Callable, Iterable

import pandas as pd

from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.status_diff import changed_status_rows
from sync_pipeline.sync.export.outcomes import PushOutcome
from sync_pipeline.sync.extract import Quarantined
from sync_pipeline.sync.record import status_rows


def upsert_statuses(
    store: SyncStore,
    organization_id: str,
    *,
    crm_ids: Iterable[str],
    metakocka_ids: Iterable[str],
    plan: pd.DataFrame,
    outcomes: list[PushOutcome],
    quarantined: list[Quarantined],
    through: Callable[[Iterable[dict]], Iterable[dict]] = lambda rows: rows,
) -> tuple[list[dict], list[dict]]:
    """(the status rows of the documents looked at: these ids, and those their push outcomes
    add, after the run; those of them that changed, which are written). `through` sees every
    row as it goes by (the step's tally)."""
    crm_ids = {*crm_ids, *(o.crm_document_id for o in outcomes if o.crm_document_id)}
    mk_ids = {*metakocka_ids, *(o.metakocka_id for o in outcomes if o.metakocka_id)}
    previous = store.status.for_ids(organization_id, crm_ids, mk_ids)
    rows = status_rows(
        organization_id=organization_id,
        plan=plan,
        outcomes=outcomes,
        quarantined=quarantined,
        links=store.links.for_ids(organization_id, crm_ids, mk_ids),
        previous=previous,
    )
    rows = list(through(rows))
    changed = changed_status_rows(rows, previous)
    store.status.upsert(organization_id, changed)
    return rows, changed
