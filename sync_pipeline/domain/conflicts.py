"""Conflicts: a document whose synced content changed on both sides since the last sync (or, by
field ownership, CRM-owned content changed in Metakocka).

What happens to one is the organization's `conflict_policy`:
- `manual` (default): the document is held as `conflict`, nothing is pushed, and the error log
  gets the field-by-field difference of the two versions, until an operator picks a side
  (`sync-pipeline conflicts resolve`, or the nightly job's launchpad config);
- `crm_wins` / `metakocka_wins`: that side's content is pushed to the other;
- `newest_wins`: the side changed last wins. Metakocka returns no change time, so which side is
  newer is asked of Metakocka by a `ChangeOrder` (`sync/change_order.py`); when it cannot tell,
  the conflict is held as under `manual`, with the reason.
An unlinked pair adopted with two different versions (`plan.ADOPTED_UNDECIDED`) is settled the
same way under every policy: its newer side wins (the plan's rule 2), else it is held.
An operator's resolution is used once and wins over the policy. Conflicts that are not about
content (an ambiguous match by external id: one document on one side) are never resolved here.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sync_pipeline.domain.document import SalesDocument
from sync_pipeline.domain.hashing import (
    CUSTOMER_FIELDS,
    DEFAULT_PRECISION,
    DISCOUNT_FIELDS,
    HEADER_FIELDS,
    LINE_FIELDS,
    Precision,
    synced_content,
)
from sync_pipeline.domain.plan import (
    ACTIONS,
    ADOPTED_UNDECIDED,
    UPDATE_IN_CRM,
    UPDATE_IN_METAKOCKA,
)
from sync_pipeline.domain.policies import (  # noqa: F401 - re-exported
    CONFLICT_POLICIES,
    CRM_WINS,
    MANUAL,
    METAKOCKA_WINS,
    NEWEST_WINS,
    WINNER_CRM,
    WINNER_METAKOCKA,
    WINNERS,
)
from sync_pipeline.domain.summary import was_read

ChangeOrder = Callable[[SalesDocument, SalesDocument], tuple[str | None, str]]
"""(CRM version, Metakocka version) -> (the side changed last, or None when unknown; why)."""


def by_updated_at(crm: SalesDocument, metakocka: SalesDocument) -> tuple[str | None, str]:
    """The `ChangeOrder` of two versions that both carry their change time (tests, and any
    source that knows it); Metakocka's documents do not (`sync/change_order.py`)."""
    if crm.updated_at and metakocka.updated_at and crm.updated_at != metakocka.updated_at:
        newer = WINNER_CRM if crm.updated_at > metakocka.updated_at else WINNER_METAKOCKA
        return newer, f"{newer} changed it last"
    return None, "neither version is known to be newer"


@dataclass(frozen=True)
class Resolution:
    """An operator's choice for one conflicting pair, stored until a run has carried it out."""

    id: int | None
    crm_document_id: str
    metakocka_id: str
    winner: str
    resolved_by: str | None = None


def resolvable(plan: pd.DataFrame) -> np.ndarray:
    """Conflict rows with a document on both sides: the ones a winner can settle."""
    if plan.empty or "crm_document" not in plan or "metakocka_document" not in plan:
        return np.zeros(len(plan), dtype=bool)
    both = [
        was_read(c) and was_read(m)
        for c, m in zip(plan["crm_document"], plan["metakocka_document"], strict=True)
    ]
    return (plan["action"].to_numpy(dtype=object) == "conflict") & np.asarray(both, dtype=bool)


def apply_conflict_policy(
    plan: pd.DataFrame,
    policy: str = MANUAL,
    resolutions: list[Resolution] | tuple = (),
    change_order: ChangeOrder = by_updated_at,
) -> pd.DataFrame:
    """Turn settled conflicts into updates; adds `conflict_resolution_id` (the stored resolution
    a row carries out, else None) and `conflict_policy` (the policy in force) columns.
    `change_order` says which side is newer, for `newest_wins` and undecided adoptions."""
    if policy not in CONFLICT_POLICIES:
        raise ValueError(f"conflict policy must be one of {CONFLICT_POLICIES}, got {policy!r}")
    # Whole columns are replaced below, never written into: a shallow copy leaves the caller's
    # frame as it was (pandas' copy-on-write), where a deep one copied the plan's object columns
    # (about 23 MiB at 100,000 per side, the plan step's peak: docs/performance.md).
    plan = plan.copy(deep=False)
    plan["conflict_resolution_id"] = pd.Series(
        np.full(len(plan), None, dtype=object), index=plan.index
    )
    plan["conflict_policy"] = policy
    rows = np.flatnonzero(resolvable(plan))
    if not len(rows):
        return plan
    by_pair = {(r.crm_document_id, r.metakocka_id): r for r in resolutions}
    action = plan["action"].to_numpy(dtype=object).copy()
    reason = plan["reason"].to_numpy(dtype=object).copy()
    resolution_ids = plan["conflict_resolution_id"].to_numpy(dtype=object).copy()
    crm_ids, mk_ids = plan["crm_document_id"].to_numpy(), plan["metakocka_id"].to_numpy()
    crm_docs = plan["crm_document"].to_numpy(dtype=object)
    mk_docs = plan["metakocka_document"].to_numpy(dtype=object)
    for i in rows:
        resolution = by_pair.get((str(crm_ids[i]), str(mk_ids[i])))
        if resolution is not None:
            winner = resolution.winner
            why = f"resolved by {resolution.resolved_by or 'an operator'}: {winner} wins"
            resolution_ids[i] = resolution.id
        elif str(reason[i]).startswith(ADOPTED_UNDECIDED) and policy in (MANUAL, NEWEST_WINS):
            winner, why = change_order(crm_docs[i], mk_docs[i])
            why = f"the newer side wins: {why}"
        else:
            winner, why = policy_winner(policy, crm_docs[i], mk_docs[i], change_order)
        if winner is None:
            if why:
                reason[i] = f"{reason[i]}; {why}"
            continue
        action[i] = ACTIONS[UPDATE_IN_METAKOCKA if winner == WINNER_CRM else UPDATE_IN_CRM]
        reason[i] = f"{reason[i]}; {why}"
    plan["action"] = pd.Series(action, index=plan.index, dtype=object)
    plan["reason"] = pd.Series(reason, index=plan.index, dtype=object)
    plan["conflict_resolution_id"] = pd.Series(resolution_ids, index=plan.index, dtype=object)
    return plan


def policy_winner(
    policy: str,
    crm: SalesDocument,
    metakocka: SalesDocument,
    change_order: ChangeOrder = by_updated_at,
) -> tuple[str | None, str]:
    """The side `policy` picks for one conflict (None: hold it for an operator), and why."""
    if policy == CRM_WINS:
        return WINNER_CRM, f"conflict_policy {policy}: crm wins"
    if policy == METAKOCKA_WINS:
        return WINNER_METAKOCKA, f"conflict_policy {policy}: metakocka wins"
    if policy == NEWEST_WINS:
        winner, why = change_order(crm, metakocka)
        verdict = f"{winner} wins" if winner else "held for an operator"
        return winner, f"conflict_policy {policy}: {verdict} ({why})"
    return None, ""


# -- the difference of two versions, for the error log -----------------------------------------


def field_differences(
    crm: SalesDocument, metakocka: SalesDocument, precision: Precision = DEFAULT_PRECISION
) -> list[dict]:
    """Every synced field whose value differs, as `{"field", "crm", "metakocka"}` (JSON-ready).

    Values are the content hash's own (`hashing.synced_content`: a number by value at the CRM's
    precision, a blank text as missing, the defaults a system fills in as given), so only real
    differences are listed.
    """
    left, right = synced_fields(crm, precision), synced_fields(metakocka, precision)
    return [
        {"field": name, "crm": left.get(name), "metakocka": right.get(name)}
        for name in dict.fromkeys([*left, *right])
        if left.get(name) != right.get(name)
    ]


def synced_fields(doc: SalesDocument, precision: Precision = DEFAULT_PRECISION) -> dict:
    """The synced content flattened to ``field -> normalised text``, exactly as hashed."""
    content = synced_content(doc, precision)
    fields = {
        **dict(zip(HEADER_FIELDS, content.header, strict=True)),
        **dict(zip(DISCOUNT_FIELDS, content.discount, strict=True)),
        **{
            f"customer.{name}": value
            for name, value in zip(CUSTOMER_FIELDS, content.customer, strict=True)
        },
        "lines": str(len(content.lines)),
    }
    for number, values in enumerate(content.lines, start=1):
        fields |= {
            f"lines[{number}].{name}": value
            for name, value in zip(LINE_FIELDS, values, strict=True)
        }
    return fields


def conflict_details(crm, metakocka, precision: Precision = DEFAULT_PRECISION) -> dict:
    """What the error log keeps about a conflict: both versions' change times and their field
    differences (empty for a conflict that is not about content, e.g. an ambiguous match)."""
    if not (isinstance(crm, SalesDocument) and isinstance(metakocka, SalesDocument)):
        return {}
    differences = field_differences(crm, metakocka, precision)
    return {
        "crm_updated_at": crm.updated_at.isoformat() if crm.updated_at else None,
        "metakocka_updated_at": metakocka.updated_at.isoformat() if metakocka.updated_at else None,
        "differences": differences[:MAX_DIFFERENCES],
        "differences_total": len(differences),
    }


MAX_DIFFERENCES = 200
"""Differences kept in one error row (a document with hundreds of changed lines stays readable)."""
