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
before planning (`close_over_changes`), and hands the plan only the links among them:
- echoes are dropped first: a changed CRM document whose content hash equals its link's stored
  hash, whose counterpart did not change and whose status is `synced`, is the pipeline's own write
  (or a change to fields that are not synced content), and needs nothing. (A change of the CRM's
  copy of a Metakocka-owned field, e.g. `status`, is therefore put back by the next full sweep,
  not by an incremental run. Changed Metakocka documents are always planned: their status and
  number are outside the hash.);
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

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd
import sqlalchemy as sa

from sync_pipeline.crm.client import CrmClient
from sync_pipeline.domain.document import SalesDocument, crm_id_for_metakocka_document
from sync_pipeline.domain.hashing import Precision, content_hash
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.store.cursors import SyncCursor
from sync_pipeline.store.document_queries import links_for, status_for
from sync_pipeline.store.repository import LINK_COLUMNS, SyncStore
from sync_pipeline.store.resolutions import pending_resolutions
from sync_pipeline.store.tables import (
    LINK_CREATING_IN_METAKOCKA,
    LINK_LINKED,
    document_links,
    sync_claims,
    sync_status,
)
from sync_pipeline.sync.counterparts import (
    LinkedCounterpart,
    full_read_is_cheaper,
    read_every_metakocka_document,
)
from sync_pipeline.sync.extract import CRM, METAKOCKA, Extraction, Quarantined, extract_crm
from sync_pipeline.sync.metakocka_reads import (
    find_metakocka_twins,
    map_metakocka,
    read_metakocka_document,
)

EXTRACT_OP = "extract_sales_documents"
"""The op (multi-asset) that reads both systems; its config holds `full_sweep`."""
OVERLAP = timedelta(minutes=15)
FULL_SWEEP_EVERY = timedelta(days=7)
MAX_ROUNDS = 4
RETRIED_STATUSES = ("failed", "pending")

Found = SalesDocument | Quarantined | LinkedCounterpart | None


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
) -> tuple[Extraction, Extraction, SyncScope]:
    """The documents an incremental run plans, and the links among them (module docstring)."""
    precision = crm_changed.precision
    closure = _Closure(organization_id, store, crm, metakocka, read_concurrency, precision)
    crm_found = _found(crm_changed, CRM)
    mk_found = _found(metakocka_changed, METAKOCKA)
    scope = SyncScope(window, changed={CRM: len(crm_found), METAKOCKA: len(mk_found)})
    echoes = closure.echoes(crm_found, mk_found)
    scope.echoes = len(echoes)
    retry_crm, retry_mk = closure.to_retry()
    seeds_crm = (set(crm_found) - echoes) | retry_crm
    seeds_mk = set(mk_found) | retry_mk
    scope.retried = len(retry_crm - set(crm_found)) + len(retry_mk - set(mk_found))
    # A CRM edit of a pair left in sync: its unchanged Metakocka side is read by the push.
    by_link = (set(crm_found) - echoes - retry_crm) & closure.synced_crm
    closure.run(seeds_crm, seeds_mk, known_crm=crm_found, known_mk=mk_found, by_link=by_link)
    scope.counterparts_read = {CRM: closure.read_crm, METAKOCKA: closure.read_mk}
    scope.counterparts_known_by_link = closure.linked_counterparts
    scope.metakocka_full_read = closure.mk_complete
    crm_docs, mk_docs, links, left = closure.without_deletions()
    scope.links, scope.left_for_full_sweep = links, left
    return (
        _extraction(CRM, organization_id, crm_docs, precision),
        _extraction(METAKOCKA, organization_id, mk_docs, precision),
        scope,
    )


def _found(extraction: Extraction, side: str) -> dict[str, Found]:
    key = "crm_document_id" if side == CRM else "metakocka_id"
    found: dict[str, Found] = {getattr(d, key): d for d in extraction.documents}
    found.update({getattr(q, key): q for q in extraction.unmappable if getattr(q, key)})
    return found


def _extraction(
    side: str, organization_id: str, docs: Iterable[Found], precision: Precision
) -> Extraction:
    extraction = Extraction(side, organization_id, precision=precision)
    for doc in docs:
        if isinstance(doc, SalesDocument):
            extraction.documents.append(doc)
        elif isinstance(doc, Quarantined):
            extraction.unmappable.append(doc)
        elif isinstance(doc, LinkedCounterpart):
            extraction.known_by_link.append(doc)
    return extraction


def _linked_counterpart(link, crm_id: str, mk_id: str, precision: Precision) -> LinkedCounterpart:
    return LinkedCounterpart(
        metakocka_id=mk_id,
        crm_document_id=crm_id,
        content_hash=str(link.content_hash),
        metakocka_doc_type=_text(link.metakocka_doc_type),
        document_type=_text(link.document_type),
        metakocka_count_code=_text(link.metakocka_count_code),
        precision=precision,
    )


class _Closure:
    """The document set of an incremental run, grown over links and claims (module docstring)."""

    def __init__(self, organization_id, store, crm, metakocka, read_concurrency, precision):
        self.org, self.store, self.engine = organization_id, store, store.engine
        self.precision = precision
        self.crm_client, self.mk_client = crm, metakocka
        self.read_concurrency = max(1, read_concurrency)
        self.crm: dict[str, Found] = {}
        self.mk: dict[str, Found] = {}
        self.link_frames: list[pd.DataFrame] = []
        self.mk_types: dict[str, str] = {}
        self.linked_crm: set[str] = set()
        self.linked_mk: set[str] = set()
        self.mk_complete = False
        self.mk_everything: dict[str, dict] = {}
        """Every document of the company, unmapped, once a full read was cheaper."""
        self.read_crm = self.read_mk = self.linked_counterparts = 0
        self.synced_crm: set[str] = set()
        """CRM ids whose pair the last run that judged it left `synced` (set by `echoes`)."""

    # -- what to read -------------------------------------------------------------------------
    def echoes(self, crm_found: dict, mk_found: dict) -> set:
        """Changed CRM documents whose pair is exactly as the last sync left it.

        Only the CRM side can be judged without reading the other: a Metakocka document whose
        content hash is unchanged may still carry a new status or number (fields Metakocka owns,
        outside the hash, docs/field-ownership.md), so changed Metakocka documents are always
        planned, against their CRM counterparts (cheap to read: a hundred per call).
        """
        links = links_for(self.engine, self.org, crm_found, [])
        status = status_for(self.engine, self.org, crm_found, [])
        synced_crm = set(status.loc[status["status"] == "synced", "crm_document_id"].dropna())
        self.synced_crm = synced_crm
        linked = links.loc[
            (links["state"] == LINK_LINKED)
            & links["crm_document_id"].notna()
            & links["metakocka_id"].notna()
        ]
        echoes = set()
        for link in linked.itertuples(index=False):
            crm_id, mk_id = str(link.crm_document_id), str(link.metakocka_id)
            doc = crm_found.get(crm_id)
            if (
                mk_id not in mk_found
                and crm_id in synced_crm
                and isinstance(doc, SalesDocument)
                and content_hash(doc, self.precision) == link.content_hash
            ):
                echoes.add(crm_id)
        return echoes

    def to_retry(self) -> tuple[set, set]:
        """Documents read again although unchanged: failed or pending pushes, unfinished creates
        and writes, pairs an operator resolved."""
        crm_ids, mk_ids = set(), set()
        failed = sa.select(sync_status.c.crm_document_id, sync_status.c.metakocka_id).where(
            sync_status.c.organization_id == self.org,
            sync_status.c.status.in_(RETRIED_STATUSES),
        )
        intents = sa.select(document_links.c.crm_document_id).where(
            document_links.c.organization_id == self.org,
            document_links.c.state == LINK_CREATING_IN_METAKOCKA,
        )
        claimed = sa.select(sync_claims.c.crm_document_id).where(
            sync_claims.c.organization_id == self.org
        )
        with self.engine.connect() as conn:
            for crm_id, mk_id in conn.execute(failed):
                crm_ids.add(crm_id)
                mk_ids.add(mk_id)
            crm_ids.update(row[0] for row in conn.execute(intents))
            # a write another run left unfinished (store/claims.py) is resumed by the push
            crm_ids.update(row[0] for row in conn.execute(claimed))
        for resolution in pending_resolutions(self.engine, self.org):
            crm_ids.add(resolution.crm_document_id)
            mk_ids.add(resolution.metakocka_id)
        crm_ids.discard(None)
        mk_ids.discard(None)
        return crm_ids, mk_ids

    # -- the closure --------------------------------------------------------------------------
    def run(
        self, seeds_crm: set, seeds_mk: set, *, known_crm: dict, known_mk: dict, by_link: set
    ) -> None:
        """Grow the set from the seeds; `by_link`: CRM ids whose unchanged Metakocka counterpart
        stands in as its link recorded it (`_stands_in`)."""
        pending_crm, pending_mk = set(seeds_crm), set(seeds_mk)
        for _ in range(MAX_ROUNDS):
            if not pending_crm and not pending_mk:
                break
            links = links_for(self.engine, self.org, pending_crm, pending_mk)
            self.link_frames.append(links)
            for link in links.itertuples(index=False):
                crm_id, mk_id = _text(link.crm_document_id), _text(link.metakocka_id)
                if crm_id and crm_id not in self.crm:
                    pending_crm.add(crm_id)
                if mk_id and mk_id not in self.mk:
                    pending_mk.add(mk_id)
                if mk_id and link.metakocka_doc_type:
                    self.mk_types[mk_id] = link.metakocka_doc_type
                if crm_id in by_link and self._stands_in(link, mk_id, known_mk, seeds_mk):
                    self.mk[mk_id] = _linked_counterpart(link, crm_id, mk_id, self.precision)
                    self.linked_counterparts += 1
                if crm_id and mk_id and link.state == LINK_LINKED:
                    self.linked_crm.add(crm_id)
                    self.linked_mk.add(mk_id)
            new_crm = sorted(pending_crm - self.crm.keys())
            new_mk = sorted(pending_mk - self.mk.keys())
            # Two APIs: the counterparts on each side are read side by side.
            with ThreadPoolExecutor(1, thread_name_prefix="crm-counterparts") as pool:
                crm_read = pool.submit(self._read_crm, new_crm, known_crm)
                self._read_mk(new_mk, known_mk)
                crm_read.result()

            pending_crm, pending_mk = set(), set()
            for mk_id in new_mk:  # what unlinked Metakocka documents claim
                doc = self.mk[mk_id]
                if doc is None or mk_id in self.linked_mk:
                    continue
                claims = {doc.crm_document_id, crm_id_for_metakocka_document(self.org, mk_id)}
                pending_crm |= {c for c in claims if c and c not in self.crm}
            for twin in self._twins(new_crm):
                if twin.metakocka_id not in self.mk:
                    self.mk[twin.metakocka_id] = twin
                    self.read_mk += 1
                    pending_mk.add(twin.metakocka_id)

    def _stands_in(self, link, mk_id, known_mk: dict, seeds_mk: set) -> bool:
        """May this link's Metakocka side, the counterpart of a CRM edit, stand in unread (module
        docstring of `sync/counterparts.py`)? Not when it changed or is retried itself."""
        return (
            bool(mk_id)
            and link.state == LINK_LINKED
            and _text(link.content_hash) is not None
            and mk_id not in known_mk
            and mk_id not in seeds_mk
            and mk_id not in self.mk
        )

    def _read_crm(self, ids: list[str], known: dict) -> None:
        missing = [i for i in ids if i not in known]
        self.crm.update({i: known[i] for i in ids if i in known})
        if not missing:
            return
        extraction = extract_crm(self.crm_client, self.org, ids=missing)
        found = _found(extraction, CRM)
        self.crm.update({i: found.get(i) for i in missing})
        self.read_crm += len(missing)

    def _read_mk(self, ids: list[str], known: dict) -> None:
        missing = [i for i in ids if i not in known]
        self.mk.update({i: known[i] for i in ids if i in known})
        if (
            missing
            and not self.mk_complete
            and full_read_is_cheaper(self.engine, self.org, len(missing), self.read_concurrency)
        ):
            self.mk_everything = read_every_metakocka_document(self.mk_client)
            self.mk_complete = True
        if self.mk_complete:
            # Map only what is asked for: the full read is there to save calls, and mapping
            # every document of the company would cost more CPU than the reads it saved.
            wanted = [self.mk_everything[i] for i in missing if i in self.mk_everything]
            known.update(_found(map_metakocka(wanted, self.org), METAKOCKA))
            self.mk.update({i: known.get(i) for i in missing})
            return
        if not missing:
            return

        def read(mk_id: str) -> Found:
            return read_metakocka_document(
                self.mk_client, self.org, mk_id, self.mk_types.get(mk_id)
            )

        with ThreadPoolExecutor(self.read_concurrency, thread_name_prefix="mk-read") as pool:
            self.mk.update(zip(missing, pool.map(read, missing), strict=True))
        self.read_mk += len(missing)

    def _twins(self, new_crm: list[str]) -> list:
        """Look-ups of Metakocka twins, for unlinked CRM documents an earlier run has seen."""
        candidates = [
            i
            for i in new_crm
            if isinstance(self.crm.get(i), SalesDocument) and i not in self.linked_crm
        ]
        if not candidates or self.mk_complete:
            return []
        seen = status_for(self.engine, self.org, candidates, [])
        seen_ids = set(seen["crm_document_id"].dropna())
        twins = []
        for crm_id in candidates:
            if crm_id in seen_ids:
                twins += [
                    t
                    for t in find_metakocka_twins(self.mk_client, self.org, self.crm[crm_id])
                    if t is not None
                ]
        return twins

    # -- what goes to the plan ----------------------------------------------------------------
    def without_deletions(self) -> tuple[list, list, pd.DataFrame, list[str]]:
        """Documents and links for the plan, minus what only a full sweep may judge."""
        links = (
            pd.concat(self.link_frames, ignore_index=True).drop_duplicates(
                subset=["crm_document_id", "metakocka_id"]
            )
            if self.link_frames
            else pd.DataFrame(columns=LINK_COLUMNS)
        )
        crm_ok = {i for i, d in self.crm.items() if d is not None}
        mk_ok = {i for i, d in self.mk.items() if d is not None}
        complete = links.loc[
            (links["state"] == LINK_LINKED)
            & links["crm_document_id"].notna()
            & links["metakocka_id"].notna()
        ]
        pairs = list(zip(complete["crm_document_id"], complete["metakocka_id"], strict=True))
        linked_mk = {mk for _, mk in pairs}
        left: set = set()
        changed = True
        while changed:  # drop deletions, and whatever pairs with a dropped document
            changed = False
            for crm_id, mk_id in pairs:
                if (crm_id in crm_ok) != (mk_id in mk_ok):
                    for ok, doc_id in ((crm_ok, crm_id), (mk_ok, mk_id)):
                        if doc_id in ok:
                            ok.discard(doc_id)
                            left.add(doc_id)
                            changed = True
            for mk_id in list(mk_ok):
                doc = self.mk[mk_id]
                if mk_id in linked_mk or not isinstance(doc, SalesDocument):
                    continue
                ref = doc.crm_document_id
                derived = crm_id_for_metakocka_document(self.org, mk_id)
                if (ref and ref not in crm_ok) or derived in left:
                    mk_ok.discard(mk_id)
                    left.add(mk_id)
                    changed = True
        among = links.loc[
            links["crm_document_id"].isin(crm_ok)
            & (links["metakocka_id"].isin(mk_ok) | links["metakocka_id"].isna())
        ].reset_index(drop=True)
        return (
            [self.crm[i] for i in sorted(crm_ok)],
            [self.mk[i] for i in sorted(mk_ok)],
            among,
            sorted(left),
        )


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return None
    return str(value)


KNOWN_ABSENT = "metakocka_absent"
"""Plan column: True on a create in Metakocka that this run's extraction proves is not there yet."""


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
    known = set(links_for(store.engine, organization_id, ids, [])["crm_document_id"])
    plan.loc[creates, KNOWN_ABSENT] = ~plan.loc[creates, "crm_document_id"].isin(known)
    return plan
