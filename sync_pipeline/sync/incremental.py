"""Incremental reconciliation: read what changed since the organization's cursor, plus exactly what
the plan needs to judge those documents, and leave every other document (and its status) alone.

The window. A run is a *full sweep* (read everything) when asked to, when the organization has no
cursor yet (its first reconciliation), or when the last full sweep is older than
`full_sweep_every` (a week by default): deletions are only visible to a full sweep. Otherwise it
is *incremental*: the CRM by `updated_at >= cursor`, Metakocka by `last_change_from = cursor`.
After a run each cursor moves to the run's start minus `OVERLAP`, so a write that lands while a run
reads, or a server clock that runs a few minutes off ours, is read again rather than missed
(reading a document twice costs nothing: its hash equals its link's). The CRM's cursor stops
earlier if the newest `updated_at` the run saw is earlier (its server's clock rules those
times); Metakocka's documents carry no change time (metakocka-api.md section 5), so its cursor is
the run's own clock window alone.

The plan treats a linked document missing from its input as deleted, and pairs unlinked documents
by the ids they claim; so an incremental run closes the changed documents over links and claims
before planning (`close_over_changes`, through `sync/document_set.py` with its `since_cursor`
strategy), and hands the plan only the links among them:
- echoes are left out (`as_synced` against `Links.in_sync`): a CRM document whose content hash
  equals its link's stored hash and whose pair is `synced` is the pipeline's own write (or a
  change to fields that are not synced content), or, in a CRM with no trigger on `updated_at`
  (every document read on every run), simply unchanged; it needs nothing unless its counterpart
  changed, and then it is that counterpart, as if the read had not met it. A read by
  `updated_at` meets a few documents and their echoes are found after it, by id; a whole read
  leaves them out as it reads (`extract_crm`'s `in_sync`), and one of them whose counterpart
  changed is read again by id. (A change of the CRM's copy of a Metakocka-owned field, e.g.
  `status`, is therefore put back by the next full sweep, not by an incremental run. Changed
  Metakocka documents are always planned: their status and number are outside the hash.) A
  whole read that kept its echoes until after the read held every CRM document mapped until
  the run planned (about 540 MiB at 100,000 per side, against 230 for a read by `updated_at`);
  loading every in-sync pair for a read by `updated_at` would cost it 0.19 s of CPU at 100,000
  pairs, about 15 % of such a run's CPU;
- documents whose last push failed or was left pending, unfinished creates, and pairs with an
  operator's pending conflict resolution are read again, whether they changed or not;
- a link's other end is read (CRM in batches of ids; Metakocka one `get_document` per id, or one
  full read when that costs fewer calls), and so is every CRM id an unlinked Metakocka document
  claims. Except the Metakocka side of a CRM edit whose pair is `synced` and whose Metakocka
  document did not change: it stands in the plan as its link recorded it (`LinkedCounterpart`),
  and the push reads it just before the replace (`sync/counterparts.py`);
- an unlinked CRM document may have a Metakocka twin carrying its reference. A document no
  completed run has seen (no sync_status row) was created after the previous run read Metakocka,
  so any twin was created after that too and is among the changed Metakocka documents: no look-up.
  An older unlinked one (a conflict, an invalid document, a create that failed) is looked up.
- a deletion is only ever reported by a full sweep: a document whose linked counterpart no longer
  exists, or whose reference names a CRM document that no longer exists, is left out of an
  incremental run (its status row stays as it was) together with whatever it pairs with.
"""

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta

import pandas as pd

from sync_pipeline.crm.client import CrmClient
from sync_pipeline.domain.plan import KNOWN_ABSENT
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.store.cursors import SyncCursor
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.sync.counterparts import LinkedCounterpart
from sync_pipeline.sync.document_set import (
    DocumentSet,
    as_extraction,
    found_by_id,
    since_cursor,
)
from sync_pipeline.sync.extract import CRM, METAKOCKA, Extraction, as_synced

EXTRACT_OP = "extract_sales_documents"
"""The op (multi-asset) that reads both systems; its config holds `full_sweep`."""
OVERLAP = timedelta(minutes=15)
FULL_SWEEP_EVERY = timedelta(days=7)


def sweep_run_config(full: bool) -> dict:
    """Run config of the nightly job that asks for a full sweep (True) or leaves it to the
    cursor (False: incremental unless a full sweep is due)."""
    return {"ops": {EXTRACT_OP: {"config": {"full_sweep": full}}}}


@dataclass(frozen=True)
class SyncWindow:
    """What a reconciliation reads: everything (`full`), or what changed since the two times."""

    full: bool
    started_at: datetime
    reason: str
    crm_since: datetime | None = None
    metakocka_since: datetime | None = None
    last_full_sweep_at: datetime | None = None


def choose_window(
    cursor: SyncCursor | None,
    *,
    full_sweep: bool = False,
    now: datetime | None = None,
    full_sweep_every: timedelta = FULL_SWEEP_EVERY,
    crm_changes_tracked: bool = True,
) -> SyncWindow:
    """``crm_changes_tracked`` False (no trigger keeps the CRM's ``updated_at``, docs/crm.md):
    an incremental run reads every CRM document and finds its edits by their content hash; only
    Metakocka is read by its change cursor."""
    now = now or datetime.now(UTC)
    last_full = cursor.last_full_sweep_at if cursor else None

    def full(reason: str) -> SyncWindow:
        return SyncWindow(True, now, reason, last_full_sweep_at=last_full)

    if full_sweep:
        return full("a full sweep was asked for")
    if cursor is None or cursor.crm_changed_since is None or cursor.metakocka_changed_since is None:
        return full("no change cursor yet (the organization's first reconciliation)")
    if last_full is None or now - last_full >= full_sweep_every:
        return full(f"the last full sweep is older than {full_sweep_every}")
    if not crm_changes_tracked:
        return SyncWindow(
            False,
            now,
            "incremental: Metakocka since the cursor; every CRM document, compared by content "
            "(no trigger keeps the CRM's updated_at: docs/crm-setup.sql)",
            crm_since=None,
            metakocka_since=cursor.metakocka_changed_since,
            last_full_sweep_at=last_full,
        )
    return SyncWindow(
        False,
        now,
        "incremental: only what changed since the cursor",
        crm_since=cursor.crm_changed_since,
        metakocka_since=cursor.metakocka_changed_since,
        last_full_sweep_at=last_full,
    )


def next_cursor(window: SyncWindow, crm: Extraction) -> SyncCursor:
    """Where the next incremental run reads from, given the CRM documents this run's window read
    (before any counterpart was added): see the module docstring."""
    return SyncCursor(
        crm_changed_since=_since(window, crm, window.crm_since),
        metakocka_changed_since=_since(window, None, window.metakocka_since),
        last_full_sweep_at=window.started_at if window.full else window.last_full_sweep_at,
    )


def _since(
    window: SyncWindow, extraction: Extraction | None, previous: datetime | None
) -> datetime:
    """The run's start minus `OVERLAP`, or earlier from the newest change time `extraction`
    shows (None: the side shows none); never behind the `previous` cursor."""
    newest = (extraction.newest_updated_at() if extraction is not None else None) or (
        window.started_at
    )
    since = min(window.started_at, newest) - OVERLAP
    return since if previous is None else max(since, previous)


@dataclass
class SyncScope:
    """What a reconciliation covers; `links` is None for a full sweep (every link)."""

    window: SyncWindow
    next_cursor: SyncCursor | None = None
    """Saved when the reconciliation completes (the sync_status step)."""
    links: pd.DataFrame | None = None
    changed: dict[str, int] = field(default_factory=dict)
    echoes: int = 0
    retried: int = 0
    counterparts_read: dict[str, int] = field(default_factory=dict)
    counterparts_known_by_link: int = 0
    metakocka_full_read: bool = False
    left_for_full_sweep: list[str] = field(default_factory=list)

    @property
    def incremental(self) -> bool:
        return not self.window.full

    def metadata(self) -> dict:
        if not self.incremental:
            return {"mode": "full sweep", "why": self.window.reason}
        return {
            "mode": "incremental",
            "crm_changed_since": str(self.window.crm_since),
            "metakocka_changed_since": str(self.window.metakocka_since),
            "changed_crm": self.changed.get(CRM, 0),
            "changed_metakocka": self.changed.get(METAKOCKA, 0),
            "echoes_skipped": self.echoes,
            "retried": self.retried,
            "counterparts_read_crm": self.counterparts_read.get(CRM, 0),
            "counterparts_read_metakocka": self.counterparts_read.get(METAKOCKA, 0),
            "counterparts_read_by_the_push": self.counterparts_known_by_link,
            "metakocka_full_read": self.metakocka_full_read,
            "left_for_full_sweep": len(self.left_for_full_sweep),
        }


@dataclass
class RunSide(Extraction):
    """One side of what a reconciliation plans: its extraction, with what the run covers and,
    on the Metakocka side of an incremental run, the unchanged counterparts that stand in as
    their links recorded them (read by the push: `sync/counterparts.py`)."""

    scope: SyncScope | None = None
    known_by_link: list[LinkedCounterpart] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        extraction: Extraction,
        scope: SyncScope,
        known_by_link: list[LinkedCounterpart] | None = None,
    ) -> "RunSide":
        read = {f.name: getattr(extraction, f.name) for f in fields(Extraction)}
        return cls(**read, scope=scope, known_by_link=known_by_link or [])


def close_over_changes(
    organization_id: str,
    window: SyncWindow,
    crm_changed: Extraction,
    metakocka_changed: Extraction,
    *,
    crm: CrmClient,
    metakocka: MetakockaClient,
    store: SyncStore,
    read_concurrency: int = 2,
    cursor: SyncCursor | None = None,
) -> tuple[RunSide, RunSide]:
    """The documents an incremental run plans, and the links among them (module docstring);
    `cursor`: where the next run reads from, saved once this one completes."""
    precision = crm_changed.precision
    docs = DocumentSet(
        organization_id,
        since_cursor(read_concurrency),
        crm=crm,
        metakocka=metakocka,
        store=store,
        precision=precision,
    )
    crm_found = found_by_id(crm_changed)
    mk_found = found_by_id(metakocka_changed)
    changed = {CRM: len(crm_found) + crm_changed.left_out, METAKOCKA: len(mk_found)}
    in_sync = store.links.in_sync(organization_id, crm_found)
    echoes = {i for i, doc in crm_found.items() if as_synced(doc, in_sync, precision)}
    scope = SyncScope(
        window, next_cursor=cursor, changed=changed, echoes=crm_changed.left_out + len(echoes)
    )
    synced_crm = _synced(store, organization_id, crm_found)
    retry_crm, retry_mk = _to_retry(store, organization_id)
    seeds_crm = (set(crm_found) - echoes) | retry_crm
    seeds_mk = set(mk_found) | retry_mk
    scope.retried = len(retry_crm - set(crm_found)) + len(retry_mk - set(mk_found))
    # A CRM edit of a pair left in sync: its unchanged Metakocka side is read by the push.
    by_link = (set(crm_found) - echoes - retry_crm) & synced_crm
    docs.grow(seeds_crm, seeds_mk, known_crm=crm_found, known_mk=mk_found, by_link=by_link)
    scope.counterparts_read = {CRM: docs.read_crm, METAKOCKA: docs.read_mk}
    scope.counterparts_known_by_link = docs.linked_counterparts
    scope.metakocka_full_read = docs.mk_complete
    crm_docs, mk_docs, links, left = docs.without_deletions()
    scope.links, scope.left_for_full_sweep = links, left
    crm_side, _ = as_extraction(CRM, organization_id, crm_docs, precision)
    mk_side, known_by_link = as_extraction(METAKOCKA, organization_id, mk_docs, precision)
    return RunSide.of(crm_side, scope), RunSide.of(mk_side, scope, known_by_link)


def _synced(store: SyncStore, organization_id: str, crm_found: dict) -> set[str]:
    """CRM ids whose pair the last run that judged it left `synced`."""
    status = store.status.for_ids(organization_id, crm_found, [])
    return set(status.loc[status["status"] == "synced", "crm_document_id"].dropna())


def _to_retry(store: SyncStore, organization_id: str) -> tuple[set, set]:
    """Documents read again although unchanged: failed or pending pushes, unfinished creates
    and writes (`store/retries.py`), pairs an operator resolved."""
    crm_ids, mk_ids = store.retries.documents(organization_id)
    for resolution in store.resolutions.pending(organization_id):
        crm_ids.add(resolution.crm_document_id)
        mk_ids.add(resolution.metakocka_id)
    crm_ids.discard(None)
    mk_ids.discard(None)
    return crm_ids, mk_ids


def mark_known_absent(
    plan: pd.DataFrame, scope: SyncScope | None, store: SyncStore, organization_id: str
) -> pd.DataFrame:
    """Flag the creates in Metakocka that need no look-up before they are sent (`KNOWN_ABSENT`).

    The look-up before a create (`create_document_exactly_once`) is a search, and Metakocka runs
    one search at a time per company: on a run with many creates it was half of the calls. It
    guards against a document an earlier attempt created without its link being written. This
    run's extraction already answers that for a CRM document with no link row at all (no intent:
    nobody ever tried to create it): a full sweep read every Metakocka document, and the plan
    creates only what no Metakocka document claims, so a CRM document with no link row is
    absent. An incremental run read only what Metakocka's search says changed in its window; a
    document created by someone else (the CRM's own sync, an earlier attempt whose answer was
    lost) outside that window would be missed, and the create would make a second copy where
    Metakocka's opt-in duplicate check is off. So an incremental run trusts its extraction only
    when it read Metakocka whole (`SyncScope.metakocka_full_read`); otherwise every create keeps
    its look-up, and so does every retry (docs/exactly-once.md).
    """
    plan[KNOWN_ABSENT] = False
    creates = plan["action"] == "create_in_metakocka"
    if not creates.any():
        return plan
    if scope is not None and scope.incremental and not scope.metakocka_full_read:
        return plan
    ids = [i for i in plan.loc[creates, "crm_document_id"] if i]
    known = set(store.links.for_ids(organization_id, ids, [])["crm_document_id"])
    plan.loc[creates, KNOWN_ABSENT] = ~plan.loc[creates, "crm_document_id"].isin(known)
    return plan
