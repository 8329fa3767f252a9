"""The documents a reconciliation plans, gathered by the strategy its window calls for.

The one entry point of the nightly job's extraction (`assets/extract.py`):
- a **full sweep** reads every document of both systems, reduced to what the plan needs as the
  pages arrive (`sync/lean.py`); it has nothing to close over;
- an **incremental run** reads what changed since the organization's cursor, then closes that
  over links, claims and twins (`sync/document_set.py`'s `since_cursor` strategy, through
  `incremental.close_over_changes`).
On-demand runs gather the documents they are named (`document_set.NAMED_IDS`, `sync/targeted.py`).

Both systems are read side by side (two threads: separate APIs). A system that cannot be read is
reported, not raised, with the name an operator knows it by, so the caller can log one row per
system and plan nothing from half the picture.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from sync_pipeline.adapters.errors import SyncError
from sync_pipeline.crm.client import CrmClient
from sync_pipeline.domain.hashing import Precision
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.sync.extract import CRM, METAKOCKA, Extraction, extract_crm, extract_metakocka
from sync_pipeline.sync.incremental import (
    RunSide,
    SyncScope,
    SyncWindow,
    close_over_changes,
    next_cursor,
)
from sync_pipeline.sync.lean import lean_sides
from sync_pipeline.sync.planning import PLAN_LINK_COLUMNS

SYSTEM_NAMES = {CRM: "the CRM", METAKOCKA: "Metakocka"}
"""How a failed read names the system (in sync_error_log and the run's log)."""
COUNTERPARTS = "the changed documents' counterparts"
"""How a failed read names the incremental run's closure (reads of both systems)."""
T = TypeVar("T")


@dataclass
class RunDocuments:
    """What a reconciliation plans: both sides, or the reads that failed (then no side)."""

    crm: RunSide | None = None
    metakocka: RunSide | None = None
    failures: list[tuple[str, SyncError]] = field(default_factory=list)


def gather_run_documents(
    organization_id: str,
    window: SyncWindow,
    *,
    crm: CrmClient,
    metakocka: MetakockaClient,
    store: SyncStore,
    precision: Precision,
    read_concurrency: int,
) -> RunDocuments:
    """Read the run's documents from both systems, as the window says (module docstring);
    `read_concurrency`: Metakocka reads by id in flight while closing an incremental run."""
    lean, in_sync = {}, None
    if window.full:  # a full sweep keeps what the plan needs of each document as it reads
        lean = lean_sides(store.links.frame(organization_id, PLAN_LINK_COLUMNS), precision)
    elif window.crm_since is None:  # the whole CRM read: its echoes left out as they are read
        in_sync = store.links.in_sync(organization_id)
    reads: dict[str, Callable[[], Extraction]] = {
        CRM: lambda: extract_crm(
            crm,
            organization_id,
            updated_since=window.crm_since,
            lean=lean.get(CRM),
            in_sync=in_sync,
        ),
        METAKOCKA: lambda: extract_metakocka(
            metakocka,
            organization_id,
            changed_since=window.metakocka_since,
            precision=precision,
            lean=lean.get(METAKOCKA),
        ),
    }
    with ThreadPoolExecutor(len(reads), thread_name_prefix="extract") as pool:
        futures = {side: pool.submit(attempt, read) for side, read in reads.items()}
    results = {side: future.result() for side, future in futures.items()}
    failures = [(SYSTEM_NAMES[s], r) for s, r in results.items() if isinstance(r, SyncError)]
    if failures:
        return RunDocuments(failures=failures)
    crm_docs, mk_docs = results[CRM], results[METAKOCKA]
    cursor = next_cursor(window, crm_docs)  # from what the window read, not counterparts
    if window.full:
        scope = SyncScope(window, next_cursor=cursor)
        return RunDocuments(RunSide.of(crm_docs, scope), RunSide.of(mk_docs, scope))
    try:
        crm_side, mk_side = close_over_changes(
            organization_id,
            window,
            crm_docs,
            mk_docs,
            crm=crm,
            metakocka=metakocka,
            store=store,
            read_concurrency=read_concurrency,
            cursor=cursor,
        )
    except SyncError as exc:
        return RunDocuments(failures=[(COUNTERPARTS, exc)])
    return RunDocuments(crm_side, mk_side)


def attempt(read: Callable[[], T]) -> T | SyncError:
    """Run one read; a typed API failure is returned, to be reported by the caller's thread."""
    try:
        return read()
    except SyncError as exc:
        return exc
