"""Assemble the inputs of the pure plan from validated sides and the link table, then run it.

Invalid documents take part in the matching (by their ids only), so that their counterparts are
recognised and held back rather than re-created or reported deleted.
"""

import pandas as pd

from sync_pipeline.domain.conflicts import (
    MANUAL,
    ChangeOrder,
    Resolution,
    apply_conflict_policy,
    by_updated_at,
)
from sync_pipeline.domain.interning import texts_held
from sync_pipeline.domain.ownership import apply_ownership
from sync_pipeline.domain.plan import build_sync_plan
from sync_pipeline.metakocka.mapping import ISSUED_BILL, is_issued_bill
from sync_pipeline.metakocka.statuses import STANDARD, StatusMap
from sync_pipeline.store.tables import LINK_CREATING_IN_METAKOCKA, LINK_LINKED
from sync_pipeline.sync.extract import CRM, METAKOCKA, Quarantined
from sync_pipeline.sync.record import mark_invalid_pairs, mark_no_crm_type
from sync_pipeline.sync.statuses import mark_unmapped_statuses, with_organization_statuses
from sync_pipeline.sync.validate import ValidatedSide

INVALID_HASH = "invalid"
PLAN_LINK_COLUMNS = ["crm_document_id", "metakocka_id", "content_hash", "state"]
"""What the plan reads of the links (`plan_links`; `Links.frame`)."""
CRM_COLUMNS = ["crm_document_id", "content_hash", "updated_at", "document"]
METAKOCKA_COLUMNS = ["metakocka_id", "crm_document_id", "content_hash", "updated_at", "document"]


def plan_sync(
    organization_id: str,
    crm: ValidatedSide,
    metakocka: ValidatedSide,
    links: pd.DataFrame,
    *,
    conflict_policy: str = MANUAL,
    resolutions: list[Resolution] | tuple = (),
    change_order: ChangeOrder = by_updated_at,
    statuses: StatusMap = STANDARD,
) -> pd.DataFrame:
    """The plan, after field ownership and the conflict policy (and operator `resolutions`),
    with Metakocka's statuses read with the organization's map (`statuses`, sync/statuses.py).
    `change_order` tells which side changed last (`sync/change_order.py` asks Metakocka)."""
    metakocka = with_organization_statuses(metakocka, statuses)
    quarantined = [*crm.quarantined, *metakocka.quarantined]
    crm_frame = _with_invalid(crm.valid[CRM_COLUMNS], crm.quarantined, CRM)
    mk_frame = _with_invalid(metakocka.valid[METAKOCKA_COLUMNS], metakocka.quarantined, METAKOCKA)
    plan = build_sync_plan(crm_frame, mk_frame, plan_links(links), organization_id)
    plan = mark_no_crm_type(mark_invalid_pairs(plan, quarantined))
    plan = apply_ownership(plan, organization_id)
    plan = apply_conflict_policy(plan, conflict_policy, resolutions, change_order)
    return mark_unmapped_statuses(keep_issued_bills(plan), statuses)


def held_texts(crm: ValidatedSide, metakocka: ValidatedSide) -> dict[str, dict[str, str]]:
    """The ids and content hashes both sides' documents hold, by link column: a full sweep reads
    the organization's links for its plan with these objects instead of copies of them
    (`Links.frame`'s `held`). The links' texts are the same ids and hashes (a summary's hash is
    its link's own: `sync/lean.py`); read as copies, the plan step's peak was 335 -> 328 MiB at
    100,000 per side and 1,602 -> 1,527 MiB at 1,000,000 (docs/performance.md).

    One table serves the three columns: it swaps equal texts only, whichever column they come
    from, and a dict's table grows by doubling: three of 100,000 texts each hold 11.0 MiB, one
    of the 300,000 7.3 MiB (tracemalloc), while the links are read (one of the plan step's two
    peaks, docs/performance.md)."""
    crm_docs, mk_docs = crm.valid, metakocka.valid
    texts = texts_held(
        crm_docs["crm_document_id"],
        mk_docs["crm_document_id"],
        mk_docs["metakocka_id"],
        crm_docs["content_hash"],
        mk_docs["content_hash"],
    )
    return dict.fromkeys(("crm_document_id", "metakocka_id", "content_hash"), texts)


def keep_issued_bills(plan: pd.DataFrame) -> pd.DataFrame:
    """A replace of a bill Metakocka has issued becomes a `conflict` with the reason, whatever
    planned it (a CRM edit, a conflict policy, an operator's pick): an issued invoice is
    immutable. The push checks again on what it reads just before a replace."""
    if plan.empty or "metakocka_document" not in plan:
        return plan
    issued = (plan["action"] == "update_in_metakocka") & plan["metakocka_document"].map(
        is_issued_bill
    ).astype(bool)
    if issued.any():
        plan = plan.copy()
        plan.loc[issued, "action"] = "conflict"
        plan.loc[issued, "reason"] = ISSUED_BILL
    return plan


def plan_links(links: pd.DataFrame) -> pd.DataFrame:
    """Links as the plan sees them: confirmed links, and create intents without a Metakocka id.

    An intent whose Metakocka id is unknown is exactly an "unfinished create": the plan schedules
    the create again and the push resolves it by lookup before sending anything.
    """
    usable = links.loc[links["state"].isin([LINK_LINKED, LINK_CREATING_IN_METAKOCKA])].copy()
    usable.loc[usable["state"] != LINK_LINKED, "metakocka_id"] = None
    return usable[["crm_document_id", "metakocka_id", "content_hash"]].reset_index(drop=True)


def _with_invalid(valid: pd.DataFrame, quarantined: list[Quarantined], side: str) -> pd.DataFrame:
    if not quarantined:
        return valid.reset_index(drop=True)
    extra = pd.DataFrame(
        {
            "crm_document_id": [q.crm_document_id for q in quarantined],
            "metakocka_id": [q.metakocka_id for q in quarantined],
            "content_hash": INVALID_HASH,
            "updated_at": pd.NaT,
            "document": None,
        }
    )
    if side == CRM:
        extra = extra.loc[extra["crm_document_id"].notna()]
    else:
        extra = extra.loc[extra["metakocka_id"].notna()]
    frame = pd.concat([valid, extra[valid.columns]], ignore_index=True)
    return frame
