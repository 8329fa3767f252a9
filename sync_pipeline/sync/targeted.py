"""On-demand sync of named documents: the nightly steps (extract, validate, plan, push, record),
run on a handful of documents and their counterparts instead of a whole organization.

What is read: the named documents, and everything the plan needs to judge them correctly: the
document set closed over links, claims and twins (`sync/document_set.py`, its `NAMED_IDS`
strategy). Only the links among the documents read are handed to the plan.

What is written: the pushes of the request's direction (the other direction's actions are left
`pending` and reported), the error log, and the sync_status rows of these documents only.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd

from sync_pipeline.crm.client import CrmClient
from sync_pipeline.domain.hashing import content_hash
from sync_pipeline.domain.sync_request import BOTH, CRM_TO_METAKOCKA, METAKOCKA_TO_CRM
from sync_pipeline.domain.text import text_or_none
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.metakocka.statuses import STANDARD, StatusMap
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.resolutions import APPLIED
from sync_pipeline.store.tables import LINK_LINKED
from sync_pipeline.sync.change_order import metakocka_change_order
from sync_pipeline.sync.document_set import NAMED_IDS, DocumentSet, Found
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
from sync_pipeline.sync.planning import plan_sync
from sync_pipeline.sync.record import error_rows
from sync_pipeline.sync.status_upserts import upsert_statuses
from sync_pipeline.sync.statuses import record_status_warnings
from sync_pipeline.sync.validate import validate_extraction


@dataclass
class NamedDocuments:
    """The named documents, their counterparts, and the links among them."""

    documents: DocumentSet
    links: pd.DataFrame
    requested_crm: list[str]
    requested_metakocka: list[str]

    @property
    def not_found(self) -> list[str]:
        """Requested ids that neither system nor the link table knows."""
        linked_crm = set(self.links["crm_document_id"].dropna())
        linked_mk = set(self.links["metakocka_id"].dropna())
        crm, metakocka = self.documents.crm, self.documents.metakocka
        return [i for i in self.requested_crm if crm.get(i) is None and i not in linked_crm] + [
            i for i in self.requested_metakocka if metakocka.get(i) is None and i not in linked_mk
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
) -> NamedDocuments:
    """Read the named documents and close the set over links and claims (see the module doc)."""
    docs = DocumentSet(
        organization_id,
        NAMED_IDS,
        crm=crm,
        metakocka=metakocka,
        store=store,
        precision=crm_context(crm, organization_id).precision,
    )
    requested_crm, requested_mk = list(crm_ids), list(metakocka_ids)
    docs.grow(
        requested_crm,
        requested_mk,
        known_crm=dict(known_crm or {}),
        known_mk=dict(known_metakocka or {}),
    )
    links = docs.links_among(set(docs.crm), set(docs.metakocka))
    return NamedDocuments(docs, links, requested_crm, requested_mk)


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
        links = store.links.frame(organization_id)
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
    crm_side = validate_extraction(docs.documents.extraction(CRM))
    mk_side = validate_extraction(docs.documents.extraction(METAKOCKA))
    quarantined = [*crm_side.quarantined, *mk_side.quarantined]
    resolutions = store.resolutions.pending(organization_id)
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

    store.resolutions.settle_unused(plan, resolutions, run_id=run_id)
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
    store.resolutions.consume(applied_resolutions(plan, outcomes), run_id=run_id, outcome=APPLIED)
    return TargetedSyncResult(plan, outcomes, quarantined, rows, docs.not_found, held_back, False)


def _record(store, organization_id, docs, plan, outcomes, quarantined, run_id, requested_by):
    store.errors.log(
        error_rows(
            organization_id=organization_id,
            run_id=run_id,
            open_errors=store.errors.open_frame(organization_id),
            outcomes=outcomes,
            quarantined=quarantined,
            plan=plan,
            requested_by=requested_by,
        )
    )
    record_status_warnings(store, organization_id, plan, run_id=run_id, requested_by=requested_by)
    rows, _ = upsert_statuses(
        store,
        organization_id,
        crm_ids=docs.documents.crm,
        metakocka_ids=docs.documents.metakocka,
        plan=plan,
        outcomes=outcomes,
        quarantined=quarantined,
    )
    synced = [r for r in rows if r["status"] == "synced"]
    store.errors.resolve_for_documents(
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
        if (text_or_none(r.crm_document_id), text_or_none(r.metakocka_id)) in written
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
