"""The ``search`` call of the simulated Metakocka: paging, ordering, result shapes (§7).

Why its own module: paging is what the pipeline's extraction depends on (100 per page, sorted by
mk_id, ``result_all_records`` as a string, ids-only unless ``result_type: doc``), and the rules
are easier to check in one screen. Filtering itself lives in ``metakocka_index``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sync_pipeline.sandbox.metakocka_index import FILTER_TYPES, CompanyStore, SearchFilter
from sync_pipeline.sandbox.metakocka_values import invalid, is_true

MAX_PAGE = 100  # records per call since 2020 (§7); also the default when limit is absent


def search_page(
    comp: CompanyStore,
    doc_type: str,
    req: dict[str, Any],
    render: Callable[[dict, dict], dict],
    echo_requested_limit: bool = False,
) -> dict[str, Any]:
    """One page of matches. ``echo_requested_limit`` (quirks mode) echoes the caller's limit
    instead of the page size actually used, as some MK answers do."""
    flt = SearchFilter.parse(doc_type, req, comp.status_register)
    limit = _int_param(req, "limit", MAX_PAGE)
    offset = _int_param(req, "offset", 0)
    direction = str(req.get("order_direction") or "asc").lower()
    if direction not in ("asc", "desc"):
        raise invalid("order_direction", req.get("order_direction"), "asc,desc")
    if limit < 1:
        raise invalid("limit", req.get("limit"))
    if offset < 0:
        raise invalid("offset", req.get("offset"))
    page_size = min(limit, MAX_PAGE)
    ids = comp.matching_ids(doc_type, flt)
    total = len(ids)
    if direction == "asc":
        page = ids[offset : offset + page_size]
    else:
        end = max(0, total - offset)
        page = ids[max(0, end - page_size) : end][::-1]
    if str(req.get("result_type", "")).lower() == "doc":
        result = [render(comp.docs[i], req) for i in page]
    else:
        show_status = is_true(req.get("show_status_code"))
        result = [_stub(comp.docs[i], show_status) for i in page]
    return {
        "opr_code": "0",
        "result_all_records": str(total),
        "result_count": str(len(page)),
        "offset": str(offset),
        "limit": str(limit if echo_requested_limit else page_size),
        "result": result,
    }


def discovery(doc_types: Iterable[str]) -> dict[str, Any]:
    """``search_query_advance_discovery``: the filter types per doc_type."""
    return {
        "opr_code": "0",
        "doc_type_list": [
            {
                "doc_type": t,
                "query_advance_type_list": [
                    {"type": f}
                    for f in FILTER_TYPES
                    if not (t == "sales_offer" and f.startswith("doc_date"))
                ],
            }
            for t in doc_types
        ],
    }


def _int_param(req: dict[str, Any], name: str, default: int) -> int:
    value = req.get(name)
    if value in (None, ""):
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        raise invalid(name, value) from None


def _stub(doc: dict, show_status: bool) -> dict[str, str]:
    stub = {"mk_id": doc["mk_id"], "opr_code": "0", "count_code": doc["count_code"]}
    if show_status and doc.get("status_code"):
        stub["status_code"] = doc["status_code"]
    return stub
