"""The documents a run plans when it does not read everything: its seeds, closed over links,
counterparts, claims and twins. One way for both kinds of such runs; what differs is the
`Strategy`:
- `NAMED_IDS` (an on-demand sync, `sync/targeted.py`): the seeds are the named documents;
- `since_cursor` (the nightly's incremental run, `sync/incremental.py`): the seeds are what
  changed since the organization's cursor, minus echoes, plus what is retried.
(A full sweep reads every document of both systems and has nothing to close over; which of
the three a nightly run is, its window decides: `sync/run_documents.py`.)

Why close the set at all: the plan treats a linked document missing from its input as deleted,
and pairs unlinked documents by the ids they claim, so
- a document's link names its counterpart, which is read too (links are one-to-one); except a
  counterpart that may stand in as its link recorded it (`LinkedCounterpart`, read by the push:
  `sync/counterparts.py`);
- an unlinked Metakocka document claims a CRM id (its `buyer_order`, or the id a Metakocka-born
  document gets in the CRM), which is read too;
- an unlinked CRM document may already have a Metakocka twin carrying its reference, looked up
  by that reference (the same search the exactly-once create makes). A run that read
  Metakocka's changes skips the CRM documents no completed run has seen (no sync_status row):
  such a document was created after the previous run read Metakocka, so any twin was created
  after that too and is among the changes already read.
Only the links among the documents read are handed to the plan.
"""

from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd

from sync_pipeline.crm.client import CrmClient
from sync_pipeline.domain.document import SalesDocument, crm_id_for_metakocka_document
from sync_pipeline.domain.hashing import Precision
from sync_pipeline.domain.text import text_or_none
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.metakocka.reads import read_every_document
from sync_pipeline.store.links import LINK_COLUMNS
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.tables import LINK_LINKED
from sync_pipeline.sync.counterparts import LinkedCounterpart, full_read_is_cheaper
from sync_pipeline.sync.extract import CRM, Extraction, Quarantined, extract_crm
from sync_pipeline.sync.metakocka_reads import (
    find_metakocka_twins,
    map_metakocka,
    read_metakocka_document,
)

MAX_ROUNDS = 4
"""Rounds of the closure over links and claims; real data closes in two."""

Found = SalesDocument | Quarantined | LinkedCounterpart | None
"""A document as gathered: mapped, unreadable, standing in by its link, or absent (None)."""


@dataclass(frozen=True)
class Strategy:
    """How a run gathers what its plan needs around its seeds (module docstring)."""

    read_metakocka_changes: bool
    """The run read Metakocka's changes: twins of CRM documents no run has seen are among them."""
    read_concurrency: int = 1
    """Metakocka reads by id in flight."""
    at_scale: bool = False
    """Many documents: the two systems are read side by side, and one full read of the company
    replaces Metakocka's reads by id when it takes fewer calls. (A handful, on demand: one read
    after the other, in the order asked.)"""


NAMED_IDS = Strategy(read_metakocka_changes=False)


def since_cursor(read_concurrency: int) -> Strategy:
    """The nightly's incremental run, with `read_concurrency` Metakocka reads in flight."""
    return Strategy(read_metakocka_changes=True, read_concurrency=read_concurrency, at_scale=True)


def found_by_id(extraction: Extraction) -> dict[str, Found]:
    """The extraction's documents (mapped or not) by their id on its side."""
    key = "crm_document_id" if extraction.side == CRM else "metakocka_id"
    found: dict[str, Found] = {getattr(d, key): d for d in extraction.documents}
    found.update({getattr(q, key): q for q in extraction.unmappable if getattr(q, key)})
    return found


def as_extraction(
    side: str, organization_id: str, docs: Iterable[Found], precision: Precision
) -> tuple[Extraction, list[LinkedCounterpart]]:
    """Gathered documents as one side's extraction, and the counterparts standing in by link."""
    extraction = Extraction(side, organization_id, precision=precision)
    by_link: list[LinkedCounterpart] = []
    for doc in docs:
        if isinstance(doc, SalesDocument):
            extraction.documents.append(doc)
        elif isinstance(doc, Quarantined):
            extraction.unmappable.append(doc)
        elif isinstance(doc, LinkedCounterpart):
            by_link.append(doc)
    return extraction, by_link


class DocumentSet:
    """The documents of one run, grown from its seeds over links, claims and twins."""

    def __init__(
        self,
        organization_id: str,
        strategy: Strategy,
        *,
        crm: CrmClient,
        metakocka: MetakockaClient,
        store: SyncStore,
        precision: Precision,
    ):
        self.organization_id, self.strategy, self.store = organization_id, strategy, store
        self.precision = precision
        self.crm_client, self.mk_client = crm, metakocka
        self.read_concurrency = max(1, strategy.read_concurrency)
        self.crm: dict[str, Found] = {}
        self.metakocka: dict[str, Found] = {}
        self.link_frames: list[pd.DataFrame] = []
        self.mk_types: dict[str, str] = {}
        self.linked_crm: set[str] = set()
        self.linked_mk: set[str] = set()
        self.mk_complete = False
        """Every document of the company was read, once a full read was cheaper."""
        self.mk_everything: dict[str, dict] = {}
        self.read_crm = self.read_mk = self.linked_counterparts = 0

    def grow(
        self,
        seeds_crm: Iterable[str],
        seeds_mk: Iterable[str],
        *,
        known_crm: dict[str, Found],
        known_mk: dict[str, Found],
        by_link: Collection[str] = (),
    ) -> None:
        """Close the set over links and claims from the seeds; `known_*`: documents already
        read; `by_link`: CRM ids whose unchanged Metakocka counterpart stands in as its link
        recorded it (`_stands_in`)."""
        seeds_mk = set(seeds_mk)
        pending_crm, pending_mk = set(seeds_crm), set(seeds_mk)
        for _ in range(MAX_ROUNDS):
            if not pending_crm and not pending_mk:
                break
            links = self.store.links.for_ids(self.organization_id, pending_crm, pending_mk)
            self.link_frames.append(links)
            for link in links.itertuples(index=False):
                crm_id = text_or_none(link.crm_document_id)
                mk_id = text_or_none(link.metakocka_id)
                if crm_id and crm_id not in self.crm:
                    pending_crm.add(crm_id)
                if mk_id and mk_id not in self.metakocka:
                    pending_mk.add(mk_id)
                if mk_id and link.metakocka_doc_type:
                    self.mk_types[mk_id] = link.metakocka_doc_type
                if crm_id in by_link and self._stands_in(link, mk_id, known_mk, seeds_mk):
                    self.metakocka[mk_id] = self._linked_counterpart(link, crm_id, mk_id)
                    self.linked_counterparts += 1
                if crm_id and mk_id and link.state == LINK_LINKED:
                    self.linked_crm.add(crm_id)
                    self.linked_mk.add(mk_id)
            new_crm = sorted(pending_crm - self.crm.keys())
            new_mk = sorted(pending_mk - self.metakocka.keys())
            self._read(new_crm, known_crm, new_mk, known_mk)

            pending_crm, pending_mk = set(), set()
            for mk_id in new_mk:  # what unlinked Metakocka documents claim
                doc = self.metakocka[mk_id]
                if doc is None or mk_id in self.linked_mk:
                    continue
                claims = {
                    doc.crm_document_id,
                    crm_id_for_metakocka_document(self.organization_id, mk_id),
                }
                pending_crm |= {c for c in claims if c and c not in self.crm}
            for twin in self._twins(new_crm):
                if twin.metakocka_id not in self.metakocka:
                    self.metakocka[twin.metakocka_id] = twin
                    self.read_mk += 1
                    pending_mk.add(twin.metakocka_id)  # its link is read next round

    def _read(self, new_crm: list[str], known_crm: dict, new_mk: list[str], known_mk: dict):
        if not self.strategy.at_scale:
            self._read_crm(new_crm, known_crm)
            self._read_mk(new_mk, known_mk)
            return
        # Two APIs: the counterparts on each side are read side by side.
        with ThreadPoolExecutor(1, thread_name_prefix="crm-counterparts") as pool:
            crm_read = pool.submit(self._read_crm, new_crm, known_crm)
            self._read_mk(new_mk, known_mk)
            crm_read.result()

    def _stands_in(self, link, mk_id, known_mk: dict, seeds_mk: set) -> bool:
        """May this link's Metakocka side, the counterpart of a CRM edit, stand in unread (module
        docstring of `sync/counterparts.py`)? Not when it changed or is retried itself."""
        return (
            bool(mk_id)
            and link.state == LINK_LINKED
            and text_or_none(link.content_hash) is not None
            and mk_id not in known_mk
            and mk_id not in seeds_mk
            and mk_id not in self.metakocka
        )

    def _linked_counterpart(self, link, crm_id: str, mk_id: str) -> LinkedCounterpart:
        return LinkedCounterpart(
            metakocka_id=mk_id,
            crm_document_id=crm_id,
            content_hash=str(link.content_hash),
            metakocka_doc_type=text_or_none(link.metakocka_doc_type),
            document_type=text_or_none(link.document_type),
            metakocka_count_code=text_or_none(link.metakocka_count_code),
            precision=self.precision,
        )

    def _read_crm(self, ids: list[str], known: dict) -> None:
        missing = [i for i in ids if i not in known]
        self.crm.update({i: known[i] for i in ids if i in known})
        if not missing:
            return
        found = found_by_id(extract_crm(self.crm_client, self.organization_id, ids=missing))
        self.crm.update({i: found.get(i) for i in missing})
        self.read_crm += len(missing)

    def _read_mk(self, ids: list[str], known: dict) -> None:
        missing = [i for i in ids if i not in known]
        self.metakocka.update({i: known[i] for i in ids if i in known})
        if (
            missing
            and self.strategy.at_scale
            and not self.mk_complete
            and full_read_is_cheaper(
                self.store.links, self.organization_id, len(missing), self.read_concurrency
            )
        ):
            self.mk_everything = read_every_document(self.mk_client)
            self.mk_complete = True
        if self.mk_complete:
            # Map only what is asked for: the full read is there to save calls, and mapping
            # every document of the company would cost more CPU than the reads it saved.
            wanted = [self.mk_everything[i] for i in missing if i in self.mk_everything]
            known.update(found_by_id(map_metakocka(wanted, self.organization_id)))
            self.metakocka.update({i: known.get(i) for i in missing})
            return
        if not missing:
            return

        def read(mk_id: str) -> Found:
            return read_metakocka_document(
                self.mk_client, self.organization_id, mk_id, self.mk_types.get(mk_id)
            )

        with ThreadPoolExecutor(self.read_concurrency, thread_name_prefix="mk-read") as pool:
            self.metakocka.update(zip(missing, pool.map(read, missing), strict=True))
        self.read_mk += len(missing)

    def _twins(self, new_crm: list[str]) -> list:
        """Look-ups of Metakocka twins of the new unlinked CRM documents (module docstring)."""
        candidates = [
            i
            for i in new_crm
            if isinstance(self.crm.get(i), SalesDocument) and i not in self.linked_crm
        ]
        if not candidates or self.mk_complete:
            return []
        if self.strategy.read_metakocka_changes:
            seen = self.store.status.for_ids(self.organization_id, candidates, [])
            seen_ids = set(seen["crm_document_id"].dropna())
            candidates = [i for i in candidates if i in seen_ids]
        twins = []
        for crm_id in candidates:
            twins += [
                t
                for t in find_metakocka_twins(
                    self.mk_client, self.organization_id, self.crm[crm_id]
                )
                if t is not None
            ]
        return twins

    # -- what goes to the plan ----------------------------------------------------------------
    def links(self) -> pd.DataFrame:
        """Every link the closure read, once each."""
        if not self.link_frames:
            return pd.DataFrame(columns=LINK_COLUMNS)
        return pd.concat(self.link_frames, ignore_index=True).drop_duplicates(
            subset=["crm_document_id", "metakocka_id"]
        )

    def links_among(self, crm_ids: set[str], mk_ids: set[str]) -> pd.DataFrame:
        """Links whose documents are both among these (an unfinished create needs only its CRM
        side)."""
        links = self.links()
        crm_ok = links["crm_document_id"].isin(crm_ids)
        mk_ok = links["metakocka_id"].isin(mk_ids) | links["metakocka_id"].isna()
        return links.loc[crm_ok & mk_ok].reset_index(drop=True)

    def extraction(self, side: str) -> Extraction:
        """One side's documents read (mapped or not), as an extraction."""
        found = self.crm if side == CRM else self.metakocka
        extraction, _ = as_extraction(side, self.organization_id, found.values(), self.precision)
        return extraction

    def without_deletions(self) -> tuple[list, list, pd.DataFrame, list[str]]:
        """Documents and links for the plan, minus what only a full sweep may judge: a linked
        document whose counterpart is gone, and whatever pairs with it."""
        links = self.links()
        crm_ok = {i for i, d in self.crm.items() if d is not None}
        mk_ok = {i for i, d in self.metakocka.items() if d is not None}
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
                doc = self.metakocka[mk_id]
                if mk_id in linked_mk or not isinstance(doc, SalesDocument):
                    continue
                ref = doc.crm_document_id
                derived = crm_id_for_metakocka_document(self.organization_id, mk_id)
                if (ref and ref not in crm_ok) or derived in left:
                    mk_ok.discard(mk_id)
                    left.add(mk_id)
                    changed = True
        return (
            [self.crm[i] for i in sorted(crm_ok)],
            [self.metakocka[i] for i in sorted(mk_ok)],
            self.links_among(crm_ok, mk_ok),
            sorted(left),
        )
