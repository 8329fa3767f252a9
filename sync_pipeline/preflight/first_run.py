"""The first run, planned and not carried out: the nightly reconciliation's own steps, read-only.

The preflight extracts both systems whole (`sync.extract`), validates (`sync.validate`) and plans
(`sync.planning.plan_sync`, with the organization's conflict policy and status map, and
Metakocka asked which side changed last) exactly as the first nightly run will, against an empty
link table: before the first run the sync database links nothing, and the preflight neither opens
nor creates it. Nothing is pushed and nothing recorded. From that plan come:

- the lines with no Metakocka product code by the mapping rules (`crm.mapping`), which
  quarantine their documents before any call;
- the quarantined documents on each side, their reasons grouped into kinds (a reason with its
  document's numbers and values taken out), most frequent first, with example numbers;
- the Metakocka documents that already carry a CRM id in ``buyer_order`` (written by an earlier
  integration), and what the plan does with them: adopted as a pair (same content: linked as it
  is; different: the newer side wins; undecided: a conflict), or not (the CRM document is gone,
  or the claim is ambiguous);
- the plan's counts: creates and updates each way, conflicts, and what is never pushed;
- the whole-document writes its push would send to the CRM, mapped as the push maps them and
  not sent, which `estimate.py` counts requests with.
"""

import re
from collections import Counter, defaultdict
from dataclasses import dataclass

import pandas as pd

from sync_pipeline.crm.client import CrmClient
from sync_pipeline.crm.documents import CrmDocumentWrite
from sync_pipeline.domain.document import MappingError, SalesDocument
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.preflight.findings import DATA, OK, WARN, Finding
from sync_pipeline.settings import Organization
from sync_pipeline.store.links import LINK_COLUMNS
from sync_pipeline.sync.change_order import metakocka_change_order
from sync_pipeline.sync.export.crm_writes import crm_document_write, prefetch_metakocka_references
from sync_pipeline.sync.export.outcomes import TO_CRM_ACTIONS
from sync_pipeline.sync.extract import (
    CRM,
    Extraction,
    Quarantined,
    crm_context,
    extract_crm,
    extract_metakocka,
)
from sync_pipeline.sync.planning import plan_sync
from sync_pipeline.sync.record import INVALID, NO_CRM_TYPE
from sync_pipeline.sync.validate import ValidatedSide, validate_extraction

EXAMPLES = 3
TOP_REASONS = 5
PUSHES = ("create_in_metakocka", "update_in_metakocka", "create_in_crm", "update_in_crm")
NOT_PUSHED = (
    "unchanged",
    "conflict",
    INVALID,
    NO_CRM_TYPE,
    "deleted_in_crm",
    "deleted_in_metakocka",
)


@dataclass(frozen=True)
class CrmWrite:
    """A whole-document write the first run's push would send to the CRM (not sent)."""

    write: CrmDocumentWrite | None
    """None: the push cannot map the document (it fails alone, and nothing is sent for it)."""
    replaced_lines: int
    """The CRM's lines of an updated document that the new ones replace: all of them on a
    first run, where no line was written by the pipeline yet."""


@dataclass
class FirstRun:
    """Both sides as the first run reads and checks them, its plan, and its CRM writes."""

    crm: Extraction
    metakocka: Extraction
    crm_checked: ValidatedSide
    metakocka_checked: ValidatedSide
    plan: pd.DataFrame
    crm_writes: list[CrmWrite]
    """The whole-document writes, in the order the push batches them."""

    @property
    def quarantined(self) -> list[Quarantined]:
        return [*self.crm_checked.quarantined, *self.metakocka_checked.quarantined]

    def count(self, action: str) -> int:
        return int((self.plan["action"] == action).sum())

    def counts(self) -> dict[str, int]:
        return {action: self.count(action) for action in (*PUSHES, *NOT_PUSHED)}


def plan_first_run(crm: CrmClient, metakocka: MetakockaClient, org: Organization) -> FirstRun:
    """Read, check and plan the organization as its first nightly run will (module docstring)."""
    crm_side = extract_crm(crm, org.id)
    mk_side = extract_metakocka(metakocka, org.id, precision=crm_side.precision)
    crm_checked, mk_checked = validate_extraction(crm_side), validate_extraction(mk_side)
    plan = plan_sync(
        org.id,
        crm_checked,
        mk_checked,
        pd.DataFrame(columns=LINK_COLUMNS),  # before the first run, nothing is linked
        conflict_policy=org.conflict_policy,
        change_order=metakocka_change_order(metakocka),
        statuses=org.metakocka_statuses,
    )
    writes = crm_writes(crm, org.id, plan)
    return FirstRun(crm_side, mk_side, crm_checked, mk_checked, plan, writes)


def crm_writes(client: CrmClient, organization_id: str, plan: pd.DataFrame) -> list[CrmWrite]:
    """The plan's whole-document writes to the CRM, mapped as the push maps them
    (`push.crm_document_write`, after reading what they refer to); a write of only Metakocka's
    fields (`crm_fields`) is a single PATCH and needs no mapping."""
    rows = plan.loc[plan["action"].isin(TO_CRM_ACTIONS) & ~fields_only(plan)]
    if rows.empty:
        return []
    context = crm_context(client, organization_id)
    prefetch_metakocka_references(client, organization_id, rows.get("metakocka_document", ()))
    out = []
    for row in rows.itertuples(index=False):
        current = getattr(row, "crm_document", None)
        update = isinstance(current, SalesDocument) and row.action != "create_in_crm"
        replaced = len(current.lines) if update else 0
        try:
            out.append(CrmWrite(crm_document_write(row, context, organization_id)[1], replaced))
        except MappingError:
            out.append(CrmWrite(None, 0))
    return out


def fields_only(plan: pd.DataFrame) -> pd.Series:
    """Rows whose write to the CRM is just Metakocka's own fields (`domain/ownership.py`)."""
    if "crm_fields" not in plan:
        return pd.Series(False, index=plan.index)
    given = plan["crm_fields"].map(lambda value: isinstance(value, dict) and bool(value))
    return given.astype(bool)


def product_code_finding(run: FirstRun) -> Finding:
    check = "product codes"
    uncoded = run.crm.lines_without_product_code
    lines = sum(uncoded.values())
    documents = [q for q in run.crm.unmappable if q.crm_document_id in uncoded]
    data = {"lines_without_code": lines, "documents": len(documents)}
    if not lines:
        return Finding(
            DATA,
            check,
            OK,
            "every CRM line has a Metakocka product code (product mapping, SKU or the "
            "organization's service product)",
            data=data,
        )
    return Finding(
        DATA,
        check,
        WARN,
        f"{lines} CRM line(s) have no Metakocka product code, in {len(documents)} document(s) "
        f"({_examples(documents)}): those documents are quarantined before any call",
        "Give their products a metakocka_product_mappings row or a SKU, or set the "
        "organization's service_product_code (docs/crm.md)",
        data,
    )


def quarantine_finding(run: FirstRun) -> Finding:
    check = "quarantine"
    quarantined = run.quarantined
    by_side = Counter(q.side for q in quarantined)
    kinds: defaultdict[str, list[Quarantined]] = defaultdict(list)
    for q in quarantined:
        for kind in dict.fromkeys(reason_kind(r) for r in q.reasons):
            kinds[kind].append(q)
    top = sorted(kinds.items(), key=lambda item: (-len(item[1]), item[0]))[:TOP_REASONS]
    data = {
        "crm": by_side.get(CRM, 0),
        "metakocka": len(quarantined) - by_side.get(CRM, 0),
        "top_reasons": [
            {"reason": kind, "documents": len(docs), "examples": _numbers(docs)}
            for kind, docs in top
        ],
    }
    if not quarantined:
        return Finding(DATA, check, OK, "none: every document passes the checks", data=data)
    reasons = "; ".join(f"{kind} ({len(docs)}: {_examples(docs)})" for kind, docs in top)
    return Finding(
        DATA,
        check,
        WARN,
        f"{len(quarantined)} would be quarantined ({data['crm']} in the CRM, "
        f"{data['metakocka']} in Metakocka), never pushed, each with an error row. Top "
        f"reasons: {reasons}",
        "Fix each where it was written (the reason names the field); the next run checks it "
        "again. `sync-pipeline errors list --type validation` lists them after the first run",
        data,
    )


def adoption_finding(run: FirstRun) -> Finding:
    check = "existing copies"
    mk = run.metakocka_checked
    carrying = int(mk.valid["crm_document_id"].notna().sum()) + sum(
        1 for q in mk.quarantined if q.crm_document_id
    )
    plan = run.plan
    claimed = plan["metakocka_document"].map(
        lambda doc: isinstance(doc, SalesDocument) and doc.crm_document_id is not None
    )
    adopted = plan.loc[plan["link_missing"].astype(bool) & claimed & (plan["action"] != INVALID)]
    actions = adopted["action"].value_counts()
    equal = int(actions.get("unchanged", 0))
    updated = int(actions.get("update_in_metakocka", 0) + actions.get("update_in_crm", 0))
    held = int(actions.get("conflict", 0))
    rest = carrying - len(adopted)
    data = {
        "carry_crm_id": carrying,
        "adopted": len(adopted),
        "linked_as_they_are": equal,
        "updated": updated,
        "conflicts": held,
        "not_adopted": rest,
    }
    if not carrying:
        return Finding(
            DATA,
            check,
            OK,
            "no Metakocka document carries a CRM id in buyer_order: nothing to adopt",
            data=data,
        )
    found = (
        f"{carrying} Metakocka document(s) carry a CRM id in buyer_order; {len(adopted)} would "
        f"be adopted, none created twice ({equal} equal, linked as they are; {updated} brought "
        f"level by the newer side; {held} held as conflicts)"
    )
    if not rest and not held:
        return Finding(DATA, check, OK, found, data=data)
    if rest:
        found += (
            f"; {rest} not adopted (their CRM document is gone or quarantined, or the claim is "
            "shared): reported, never created again"
        )
    return Finding(
        DATA,
        check,
        WARN,
        found,
        "After the first run, `sync-pipeline conflicts list` shows the held and shared ones; "
        "pick a side with `sync-pipeline conflicts resolve`",
        data,
    )


def plan_finding(run: FirstRun) -> Finding:
    check = "plan"
    counts = run.counts()
    conflicts = run.plan.loc[run.plan["action"] == "conflict", "reason"]
    top = Counter(reason_kind(str(r)) for r in conflicts).most_common(TOP_REASONS)
    data = {**counts, "conflict_reasons": [{"reason": r, "documents": n} for r, n in top]}
    detail = (
        f"to Metakocka: {counts['create_in_metakocka']} create(s), "
        f"{counts['update_in_metakocka']} update(s); to the CRM: {counts['create_in_crm']} "
        f"create(s), {counts['update_in_crm']} update(s); {counts['unchanged']} already equal; "
        f"{counts['conflict']} conflict(s); never pushed: {counts[INVALID]} invalid, "
        f"{counts[NO_CRM_TYPE]} without a CRM type (credit notes), "
        f"{counts['deleted_in_crm'] + counts['deleted_in_metakocka']} whose counterpart is gone"
    )
    if not counts["conflict"]:
        return Finding(DATA, check, OK, detail, data=data)
    reasons = "; ".join(f"{reason} ({n})" for reason, n in top)
    return Finding(
        DATA,
        check,
        WARN,
        f"{detail}. Conflicts: {reasons}",
        "Nothing is pushed for a conflict: after the first run, pick a side with "
        "`sync-pipeline conflicts resolve`, or set the organization's conflict_policy",
        data,
    )


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
_GOT = re.compile(r"\s*\(got [^)]*\)")
_LINE = re.compile(r"\bline \d+")
_TIME = re.compile(r"\b\d{4}-\d{2}-\d{2}[T ][0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?")


def reason_kind(reason: str) -> str:
    """A reason without what is particular to its document (the value found, ids, quoted
    names, line numbers, times), so that documents with the same fault count together."""
    kind = _GOT.sub("", reason)
    kind = _TIME.sub("<time>", kind)
    kind = _UUID.sub("<id>", kind)
    kind = _QUOTED.sub("…", kind)
    return _LINE.sub("line N", kind).strip()


def _numbers(docs: list[Quarantined]) -> list[str]:
    return [q.document_number or q.crm_document_id or q.metakocka_id or "?" for q in docs][
        :EXAMPLES
    ]


def _examples(docs: list[Quarantined]) -> str:
    shown = _numbers(docs)
    more = len(docs) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")
