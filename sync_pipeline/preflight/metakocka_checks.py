"""The preflight's Metakocka checks: the company's credentials, its statuses, its duplicate check.

- **Credentials**: one harmless read, a search for one sales order id (metakocka-api.md section
  7), answers whether the host is Metakocka's API and whether it accepts the company id and
  secret (opr_code 3; 4 when the company allows the API only from some addresses: section 8).
- **Statuses**: a status is an entry of the company's own register (section 5); the preflight
  reads the ones its documents carry (the first run's extraction) and says which the
  organization's map does not know (`metakocka/statuses.py`): those documents keep the
  CRM's status and get a warning row, every run.
- **The duplicate-buyer_order check** (section 10, option 2: "Preverjanje edinstvene številke
  naročila kupca") is a setting no read call returns; the only way to learn it through the API is
  a put_document that it refuses, i.e. a write. So the preflight says it is unknown, and adds what
  the documents show: buyer orders already held by several documents of one type were made while
  it was off.
"""

from collections import Counter, defaultdict

import pandas as pd

from sync_pipeline.adapters.errors import AuthError, RejectedError, SyncError
from sync_pipeline.domain.document import SalesDocument
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.metakocka.mapping import PASSTHROUGH_KEY
from sync_pipeline.metakocka.statuses import (
    KEEP,
    MetakockaStatus,
    StatusMap,
    status_of,
)
from sync_pipeline.preflight.findings import BLOCKER, METAKOCKA, OK, WARN, Finding
from sync_pipeline.sync.extract import Extraction
from sync_pipeline.sync.statuses import UNMAPPED_STATUS

EXAMPLES = 3
"""Document numbers shown per finding."""
CONNECTION = "connection"


def check_credentials(client: MetakockaClient, base_url: str) -> Finding:
    """One search for one sales order id: reachable, and the company id and secret accepted."""
    company = client.company_id
    check = CONNECTION
    try:
        next(iter(client.search("sales_order", result_type=None, page_size=1)), None)
    except AuthError as exc:
        return Finding(
            METAKOCKA,
            check,
            BLOCKER,
            f"Metakocka refused company {company}: {exc}",
            "METAKOCKA_SECRET_KEYS must map the company id to the API key of Metakocka's "
            "settings (Dodatne nastavitve > API); for opr_code 4, allow this machine's IP "
            "address there",
        )
    except RejectedError as exc:
        return Finding(
            METAKOCKA,
            check,
            BLOCKER,
            f"{base_url} did not answer as Metakocka's API: {exc}",
            "METAKOCKA_BASE_URL is the host only (https://main.metakocka.si); calls go to "
            "/rest/eshop/v1/...",
        )
    except SyncError as exc:
        return Finding(
            METAKOCKA,
            check,
            BLOCKER,
            f"Metakocka cannot be reached at {base_url}: {exc}",
            "Check METAKOCKA_BASE_URL and that this machine reaches it (Metakocka is briefly "
            "away during its upgrades: try again)",
        )
    return Finding(
        METAKOCKA,
        check,
        OK,
        f"{base_url} answered a search of company {company}",
    )


def status_finding(extraction: Extraction, plan: pd.DataFrame, statuses: StatusMap) -> Finding:
    """The statuses the company's documents carry, what each maps to, and those with no map."""
    check = "statuses"
    seen = Counter(
        _register_entry(status_of(doc)) for doc in extraction.documents if status_of(doc).known
    )
    table = [
        {
            "status_code": status.label,
            "status_desc": status.desc,
            "documents": count,
            "maps_to": _maps_to(status, statuses),
        }
        for status, count in seen.most_common()
    ]
    unmapped = _unmapped(plan)
    data = {"seen": table, "unmapped": unmapped}
    if not unmapped:
        if not table:
            none = "the company's documents carry no status"
            return Finding(METAKOCKA, check, OK, none, data=data)
        shown = "; ".join(f"{_name(row)} -> {row['maps_to']} ({row['documents']})" for row in table)
        return Finding(METAKOCKA, check, OK, f"every status maps: {shown}", data=data)
    described = "; ".join(
        f"{_name(row)} on {row['documents']} document(s) ({', '.join(row['examples'])})"
        for row in unmapped
    )
    example = unmapped[0]["status_desc"] or unmapped[0]["status_code"]
    return Finding(
        METAKOCKA,
        check,
        WARN,
        f"{len(unmapped)} status(es) have no CRM status: {described}. Those documents keep "
        "the CRM's status (a new one is a draft), and each gets a warning row in "
        "sync_error_log",
        "Map them in the organization's SYNC_ORGANIZATIONS entry, e.g. "
        f'"metakocka_statuses": {{"{example}": "sent"}} (draft, sent, paid, overdue, '
        "cancelled or keep): docs/metakocka.md",
        data,
    )


def duplicate_check_finding(extraction: Extraction) -> Finding:
    """Unknown by a read; buyer orders several documents of one type share say it was off."""
    check = "duplicate check"
    holders: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
    for doc in extraction.documents:
        buyer_order = _buyer_order(doc)
        if buyer_order:
            holders[(doc.metakocka_doc_type or "", buyer_order)].append(
                doc.metakocka_count_code or str(doc.metakocka_id)
            )
    shared = {key: numbers for key, numbers in holders.items() if len(numbers) > 1}
    fix = (
        "Look in Metakocka: Dodatne nastavitve > API > Nastavitve > 'Preverjanje edinstvene "
        "številke naročila kupca'. On is safer: Metakocka then refuses a second document with "
        "the same buyer order, which closes the last gap after a create whose answer was lost"
    )
    data = {
        "state": "unknown",
        "shared_buyer_orders": [
            {"doc_type": doc_type, "buyer_order": ref, "documents": numbers}
            for (doc_type, ref), numbers in sorted(shared.items())
        ],
    }
    if shared:
        (doc_type, ref), numbers = next(iter(sorted(shared.items())))
        return Finding(
            METAKOCKA,
            check,
            WARN,
            f"unknown, and it was off when {len(shared)} buyer order(s) went to more than one "
            f"document of one type (e.g. {ref!r} on {doc_type} {', '.join(numbers[:EXAMPLES])}): "
            "the first run pairs none of those documents (a conflict each)",
            fix,
            data,
        )
    return Finding(
        METAKOCKA,
        check,
        WARN,
        "unknown: Metakocka's API has no call that reads this setting, and only a write could "
        "test it; no buyer order is on two documents of one type",
        fix,
        data,
    )


def _unmapped(plan: pd.DataFrame) -> list[dict]:
    """The plan's unmapped statuses (`sync.statuses`), by status, with example numbers."""
    if UNMAPPED_STATUS not in plan:
        return []
    numbers: defaultdict[MetakockaStatus, list[str]] = defaultdict(list)
    for doc, reason in zip(plan["metakocka_document"], plan[UNMAPPED_STATUS], strict=True):
        if reason is not None and isinstance(doc, SalesDocument):
            numbers[_register_entry(status_of(doc))].append(
                doc.metakocka_count_code or str(doc.metakocka_id)
            )
    return [
        {
            "status_code": status.label,
            "status_desc": status.desc,
            "documents": len(found),
            "examples": sorted(found)[:EXAMPLES],
        }
        for status, found in sorted(numbers.items(), key=lambda item: -len(item[1]))
    ]


def _register_entry(status: MetakockaStatus) -> MetakockaStatus:
    """The status as the register has it, without the document's payments."""
    return MetakockaStatus(status.label, status.desc)


def _maps_to(status: MetakockaStatus, statuses: StatusMap) -> str:
    if statuses.is_unmapped(status):
        return "(none)"
    return statuses.crm_status(status) or KEEP


def _name(row: dict) -> str:
    label, desc = row["status_code"], row["status_desc"]
    return f"{label!r} ({desc})" if desc else repr(label)


def _buyer_order(doc: SalesDocument) -> str | None:
    value = doc.source_extra.get(PASSTHROUGH_KEY, {}).get("buyer_order")
    text = "" if value is None else str(value).strip()
    return text or None
