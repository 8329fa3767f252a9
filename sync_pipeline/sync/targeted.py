"""On-demand sync of named documents: the nightly steps (extract, validate, plan, push, record),
run on a handful of documents and their counterparts instead of a whole organization.

What is read: the named documents, and everything the plan needs to judge them correctly. The
plan treats a linked document that is missing from its input as deleted, and pairs unlinked
documents by the ids they claim, so the document set is closed over links and claims before
planning (`collect_documents`):
- a document's link names its counterpart, which is read too;
- an unlinked Metakocka document claims a CRM id (its `buyer_order`, or the id a Metakocka-born
  document gets in the CRM), which is read too;
- an unlinked CRM document may already have a Metakocka twin carrying its reference, which is
  looked up by that reference (the same search the exactly-once create makes).
Only the links among the documents read are handed to the plan.

What is written: the pushes of the request's direction (the other direction's actions are left
`pending` and reported), the error log, and the sync_status rows of these documents only.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pandas as pd

from sync_pipeline.crm.client import CrmClient
from sync_pipeline.domain.document import SalesDocument, crm_id_for_metakocka_document
from sync_pipeline.domain.hashing import DEFAULT_PRECISION, Precision, content_hash
from sync_pipeline.domain.sync_request import BOTH, CRM_TO_METAKOCKA, METAKOCKA_TO_CRM
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.metakocka.statuses import STANDARD, StatusMap
from sync_pipeline.store.document_queries import links_for, status_for, upsert_status
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.resolutions import (
    APPLIED,
    consume_resolutions,
    pending_resolutions,
    settle_unused_resolutions,
)
from sync_pipeline.store.tables import LINK_LINKED
from sync_pipeline.sync.change_order import metakocka_change_order
from sync_pipeline.sync.export.outcomes import OK, TO_CRM_ACTIONS, TO_METAKOCKA_ACTIONS, PushOutcome
from sync_pipeline.sync.export.to_crm import push_to_crm
from sync_pipeline.sync.export.to_metakocka import push_to_metakocka
from sync_pipeline.sync.export.unchanged_pairs import bind_unchanged_pairs
from sync_pipeline.sync.extract import (
    CRM,
    METAKOCKA,
    Extraction,
    Quarantined,
    crm_context,
    extract_crm,
    extract_metakocka,
)
from sync_pipeline.sync.metakocka_reads import Found, find_metakocka_twins, read_metakocka_document
from sync_pipeline.sync.planning import plan_sync
from sync_pipeline.sync.record import error_rows, status_rows
from sync_pipeline.sync.statuses import record_status_warnings
from sync_pipeline.sync.validate import validate_extraction

MAX_ROUNDS = 4
"""Rounds of the closure over links and claims; real data closes in two."""


@dataclass
class DocumentSet:
    """The named documents, their counterparts, and the links among them."""

    organization_id: str
    crm: dict[str, Found] = field(default_factory=dict)
    metakocka: dict[str, Found] = field(default_factory=dict)
    links: pd.DataFrame | None = None
    requested_crm: list[str] = field(default_factory=list)
    requested_metakocka: list[str] = field(default_factory=list)
    precision: Precision = DEFAULT_PRECISION
    """What the CRM keeps of a number (`Extraction.precision`)."""

    def extraction(self, side: str) -> Extraction:
        found = self.crm if side == CRM else self.metakocka
        extraction = Extraction(side, self.organization_id, precision=self.precision)
        for doc in found.values():
            if isinstance(doc, SalesDocument):
                extraction.documents.append(doc)
            elif isinstance(doc, Quarantined):
                extraction.unmappable.append(doc)
        return extraction

    @property
    def not_found(self) -> list[str]:
        """Requested ids that neither system nor the link table knows."""
        links = self.links if self.links is not None else pd.DataFrame()
        linked_crm = set(links.get("crm_document_id", pd.Series(dtype=object)).dropna())
        linked_mk = set(links.get("metakocka_id", pd.Series(dtype=object)).dropna())
        return [
            i for i in self.requested_crm if self.crm.get(i) is None and i not in linked_crm
        ] + [
            i
            for i in self.requested_metakocka
            if self.metakocka.get(i) is None and i not in linked_mk
        ]


@dataclass
class TargetedSyncResult:
    plan: pd.DataFrame
    outcomes: list[PushOutcome]
    quarantined: list[Quarantined]
    status_rows: list[dict]
    not_found: list[str]
    held_back: int
    """Plan rows that need a push in the direction this request does not cover."""
    dry_run: bool

    @property
    def failed(self) -> list[PushOutcome]:
        return [o for o in self.outcomes if o.result != OK]


def collect_documents(
    organization_id: str,
    *,
    crm_ids: Iterable[str] = (),
    metakocka_ids: Iterable[str] = (),
    crm: CrmClient,
    metakocka: MetakockaClient,
    store: SyncStore,
    known_metakocka: dict[str, Found] | None = None,
    known_crm: dict[str, Found] | None = None,
) -> DocumentSet:
    """Read the named documents and close the set over links and claims (see the module doc)."""
    docs = DocumentSet(organization_id, precision=crm_context(crm, organization_id).precision)
    docs.requested_crm, docs.requested_metakocka = list(crm_ids), list(metakocka_ids)
    known_metakocka, known_crm = dict(known_metakocka or {}), dict(known_crm or {})
    link_frames: list[pd.DataFrame] = []
    mk_types: dict[str, str] = {}
    linked_crm: set[str] = set()
    linked_mk: set[str] = set()
    pending_crm, pending_mk = set(docs.requested_crm), set(docs.requested_metakocka)
    unlinked_searched: set[str] = set()

    for _ in range(MAX_ROUNDS):
        if not pending_crm and not pending_mk:
            break
        # 1. Links of the new ids; a link's other end joins this round (links are one-to-one).
        links = links_for(store.engine, organization_id, pending_crm, pending_mk)
        link_frames.append(links)
        for link in links.itertuples(index=False):
            crm_id, mk_id = _text(link.crm_document_id), _text(link.metakocka_id)
            if crm_id and crm_id not in docs.crm:
                pending_crm.add(crm_id)
            if mk_id and mk_id not in docs.metakocka:
                pending_mk.add(mk_id)
            if mk_id and link.metakocka_doc_type:
                mk_types[mk_id] = link.metakocka_doc_type
            if crm_id and mk_id and link.state == LINK_LINKED:
                linked_crm.add(crm_id)
                linked_mk.add(mk_id)

        # 2. Read what is new on each side.
        new_crm = sorted(pending_crm - docs.crm.keys())
        new_mk = sorted(pending_mk - docs.metakocka.keys())
        docs.crm.update(_read_crm(crm, organization_id, new_crm, known_crm))
        for mk_id in new_mk:
            if mk_id in known_metakocka:
                docs.metakocka[mk_id] = known_metakocka[mk_id]
            else:
                docs.metakocka[mk_id] = read_metakocka_document(
                    metakocka, organization_id, mk_id, mk_types.get(mk_id)
                )

        # 3. Claims of unlinked Metakocka documents name CRM ids to read next round.
        pending_crm, pending_mk = set(), set()
        for mk_id in new_mk:
            doc = docs.metakocka[mk_id]
            if doc is None or mk_id in linked_mk:
                continue
            claims = {doc.crm_document_id, crm_id_for_metakocka_document(organization_id, mk_id)}
            pending_crm |= {c for c in claims if c and c not in docs.crm}

        # 4. An unlinked CRM document may have a twin in Metakocka that carries its reference.
        for crm_id in new_crm:
            doc = docs.crm[crm_id]
            if not isinstance(doc, SalesDocument) or crm_id in linked_crm:
                continue
            if crm_id in unlinked_searched:
                continue
            unlinked_searched.add(crm_id)
            for twin in find_metakocka_twins(metakocka, organization_id, doc):
                if twin.metakocka_id not in docs.metakocka:
                    docs.metakocka[twin.metakocka_id] = twin
                    pending_mk.add(twin.metakocka_id)  # its link is read next round

    all_links = pd.concat(link_frames, ignore_index=True) if link_frames else None
    docs.links = _links_among(all_links, set(docs.crm), set(docs.metakocka))
    return docs


def _links_among(links: pd.DataFrame | None, crm_ids: set[str], mk_ids: set[str]) -> pd.DataFrame:
    """Links whose documents were both read (an unfinished create needs only its CRM side)."""
    if links is None or links.empty:
        return pd.DataFrame(columns=links.columns if links is not None else [])
    links = links.drop_duplicates(subset=["crm_document_id", "metakocka_id"])
    crm_ok = links["crm_document_id"].isin(crm_ids)
    mk_ok = links["metakocka_id"].isin(mk_ids) | links["metakocka_id"].isna()
    return links.loc[crm_ok & mk_ok].reset_index(drop=True)


def _read_crm(
    client: CrmClient, organization_id: str, ids: list[str], known: dict[str, Found]
) -> dict[str, Found]:
    found: dict[str, Found] = {i: known[i] for i in ids if i in known}
    missing = [i for i in ids if i not in known]
    if missing:
        extraction = extract_crm(client, organization_id, ids=missing)
        for doc in extraction.documents:
            found[doc.crm_document_id] = doc
        for q in extraction.unmappable:
            if q.crm_document_id:
                found[q.crm_document_id] = q
    return {i: found.get(i) for i in ids}


def sync_documents(
    organization_id: str,
    direction: str,
    *,
    crm_ids: Iterable[str] = (),
    metakocka_ids: Iterable[str] = (),
    all_unsynced: bool = False,
    crm: CrmClient,
    metakocka: MetakockaClient,
    store: SyncStore,
    dry_run: bool = False,
    run_id: str | None = None,
    requested_by: str | None = None,
    concurrency: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
    conflict_policy: str = "manual",
    statuses: StatusMap = STANDARD,
) -> TargetedSyncResult:
    """Sync the named documents (and, with `all_unsynced`, every unsynced document of the
    direction's source side) in `direction`; `dry_run` plans and writes nothing.

    The plan is the nightly's: field ownership, the organization's `conflict_policy`, its
    Metakocka status map (`statuses`) and the operators' pending conflict resolutions apply to
    these documents as they would there."""
    crm_ids, metakocka_ids = list(crm_ids), list(metakocka_ids)
    known_mk: dict[str, Found] = {}
    known_crm: dict[str, Found] = {}
    if all_unsynced:
        links = store.links_frame(organization_id)
        if direction in (METAKOCKA_TO_CRM, BOTH):
            precision = crm_context(crm, organization_id).precision
            extraction = extract_metakocka(metakocka, organization_id, precision=precision)
            unsynced = unsynced_documents(extraction, links)
            known_mk = {d.metakocka_id: d for d in unsynced}
            metakocka_ids += [i for i in known_mk if i not in metakocka_ids]
        if direction in (CRM_TO_METAKOCKA, BOTH):
            extraction = extract_crm(crm, organization_id)
            unsynced = unsynced_documents(extraction, links)
            known_crm = {d.crm_document_id: d for d in unsynced}
            crm_ids += [i for i in known_crm if i not in crm_ids]

    docs = collect_documents(
        organization_id,
        crm_ids=crm_ids,
        metakocka_ids=metakocka_ids,
        crm=crm,
        metakocka=metakocka,
        store=store,
        known_metakocka=known_mk,
        known_crm=known_crm,
    )
    crm_side = validate_extraction(docs.extraction(CRM))
    mk_side = validate_extraction(docs.extraction(METAKOCKA))
    quarantined = [*crm_side.quarantined, *mk_side.quarantined]
    resolutions = pending_resolutions(store.engine, organization_id)
    plan = plan_sync(
        organization_id,
        crm_side,
        mk_side,
        docs.links,
        conflict_policy=conflict_policy,
        resolutions=resolutions,
        change_order=metakocka_change_order(metakocka),
        statuses=statuses,
    )
    allowed = _allowed_actions(direction)
    held_back = int(
        plan["action"].isin([*TO_METAKOCKA_ACTIONS, *TO_CRM_ACTIONS]).sum()
        - plan["action"].isin(allowed).sum()
    )
    if dry_run:
        return TargetedSyncResult(plan, [], quarantined, [], docs.not_found, held_back, True)

    settle_unused_resolutions(store.engine, plan, resolutions, run_id=run_id)
    bind_unchanged_pairs(plan, store=store, organization_id=organization_id)
    outcomes: list[PushOutcome] = []
    progress = _overall_progress(plan, allowed, on_progress)
    if direction in (CRM_TO_METAKOCKA, BOTH):
        outcomes += push_to_metakocka(
            plan,
            client=metakocka,
            store=store,
            organization_id=organization_id,
            concurrency=concurrency,
            on_progress=progress,
        )
    if direction in (METAKOCKA_TO_CRM, BOTH):
        outcomes += push_to_crm(
            plan,
            client=crm,
            store=store,
            organization_id=organization_id,
            concurrency=concurrency,
            on_progress=progress,
        )
    rows = _record(store, organization_id, docs, plan, outcomes, quarantined, run_id, requested_by)
    consume_resolutions(
        store.engine, applied_resolutions(plan, outcomes), run_id=run_id, outcome=APPLIED
    )
    return TargetedSyncResult(plan, outcomes, quarantined, rows, docs.not_found, held_back, False)


def _record(store, organization_id, docs, plan, outcomes, quarantined, run_id, requested_by):
    store.log_errors(
        error_rows(
            organization_id=organization_id,
            run_id=run_id,
            open_errors=store.open_errors(organization_id),
            outcomes=outcomes,
            quarantined=quarantined,
            plan=plan,
            requested_by=requested_by,
        )
    )
    record_status_warnings(store, organization_id, plan, run_id=run_id, requested_by=requested_by)
    crm_ids = {*docs.crm, *(o.crm_document_id for o in outcomes if o.crm_document_id)}
    mk_ids = {*docs.metakocka, *(o.metakocka_id for o in outcomes if o.metakocka_id)}
    rows = status_rows(
        organization_id=organization_id,
        plan=plan,
        outcomes=outcomes,
        quarantined=quarantined,
        links=links_for(store.engine, organization_id, crm_ids, mk_ids),
        previous=status_for(store.engine, organization_id, crm_ids, mk_ids),
    )
    upsert_status(store.engine, organization_id, rows)
    synced = [r for r in rows if r["status"] == "synced"]
    store.resolve_errors(
        organization_id,
        crm_document_ids=[r["crm_document_id"] for r in synced],
        metakocka_ids=[r["metakocka_id"] for r in synced],
        note=f"synced by run {run_id}" if run_id else "synced on demand",
    )
    return rows


def applied_resolutions(plan: pd.DataFrame, outcomes: list[PushOutcome]) -> list:
    """Operator resolutions whose winner's content this run wrote."""
    if "conflict_resolution_id" not in plan:
        return []
    written = {(o.crm_document_id, o.metakocka_id) for o in outcomes if o.result == OK}
    rows = plan.loc[plan["conflict_resolution_id"].notna()]
    return [
        r.conflict_resolution_id
        for r in rows.itertuples(index=False)
        if (_text(r.crm_document_id), _text(r.metakocka_id)) in written
    ]


def unsynced_documents(extraction: Extraction, links: pd.DataFrame) -> list[Found]:
    """Documents of one side whose content is not yet on the other side: no confirmed link, or a
    content hash that differs from the one stored at the last sync; unreadable ones too."""
    key = "crm_document_id" if extraction.side == CRM else "metakocka_id"
    linked = links.loc[links["state"] == LINK_LINKED]
    hash_by_id = dict(zip(linked[key].astype(str), linked["content_hash"], strict=True))
    out: list[Found] = []
    for doc in extraction.documents:
        doc_id = getattr(doc, key)
        if hash_by_id.get(doc_id) != content_hash(doc, extraction.precision):
            out.append(doc)
    out += [q for q in extraction.unmappable if getattr(q, key)]
    return out


def _allowed_actions(direction: str) -> tuple[str, ...]:
    if direction == CRM_TO_METAKOCKA:
        return TO_METAKOCKA_ACTIONS
    if direction == METAKOCKA_TO_CRM:
        return TO_CRM_ACTIONS
    return (*TO_METAKOCKA_ACTIONS, *TO_CRM_ACTIONS)


def _overall_progress(plan: pd.DataFrame, allowed, on_progress):
    """One "n of N" over both directions (each push reports its own count)."""
    if on_progress is None:
        return None
    total = int(plan["action"].isin(allowed).sum())
    state = {"done": 0}

    def report(_done: int, _total: int) -> None:
        state["done"] += 1
        on_progress(state["done"], total)

    return report


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return None
    return str(value)
