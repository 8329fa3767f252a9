"""PostgREST queries run against the sandbox CRM store: filtering, ordering, paging, shaping.

Why separate from parsing (``postgrest_parse``): this is the hot path when a client pages through
100,000 documents per organization, so it uses the store's indexes (primary key, foreign-key
columns, the documents' ``(updated_at, id)`` order per organization), bisects that order for
keyset paging, and skips sorting when the requested order is the store's own. Comparisons follow
SQL's three-valued logic (NULL never equals, not even under ``neq``).

``max_rows`` (Supabase's ``db-max-rows``) caps every result: the top level and, per parent row,
every embedded list (PostgREST's ``treeRestrictRange`` applies it to each node of the read plan;
PostgREST issue #2776: an embed is cut silently, with a 200 and no count).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from itertools import islice
from typing import Any

from sync_pipeline.sandbox.crm_engine import change_key
from sync_pipeline.sandbox.crm_store import DOCS, CrmState, Row
from sync_pipeline.sandbox.postgrest_parse import (
    Condition,
    Logic,
    OrderKey,
    ReadQuery,
    SelectField,
)

ORDERED_TABLE, ORDER_COLUMNS = DOCS, ("updated_at", "id")
"""The one ordered index of the store (``crm_store``: documents by organization)."""
COMPARISONS = {
    "eq": operator.eq,
    "neq": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
Predicate = Callable[[Row], bool | None]


def compile_where(where: list[Condition | Logic]) -> Predicate | None:
    """One predicate for the AND of ``where``; a row passes only when it returns True."""
    if not where:
        return None
    return _compile(Logic("and", where)) if len(where) > 1 else _compile(where[0])


def matching_rows(state: CrmState, query: ReadQuery) -> list[Row]:
    """Every row the filters select, in natural order (PATCH and DELETE act on these)."""
    rows, pred, _ = _candidates(state, query)
    return list(rows) if pred is None else [r for r in rows if pred(r) is True]


def read_rows(
    state: CrmState, query: ReadQuery, *, count: bool, max_rows: int | None
) -> tuple[list[Row], int | None]:
    """The page of rows a GET returns, plus the total when ``count`` (``Prefer: count=exact``).

    When the requested order is the store's natural one, no sort happens and, without a count,
    the scan stops once the page is full: paging 100,000 documents stays linear.
    """
    rows, pred, natural = _candidates(state, query)
    limit = _capped(query.limit, max_rows)
    stop = None if limit is None else query.offset + limit
    if natural:
        matched = rows if pred is None else (r for r in rows if pred(r) is True)
        if not count:
            return list(islice(matched, query.offset, stop)), None
        matched = list(matched)
    else:
        matched = rows if pred is None else [r for r in rows if pred(r) is True]
        matched = _sorted(matched, query.order)
    return matched[query.offset : stop], len(matched)


def project(
    state: CrmState,
    table: str,
    rows: list[Row],
    select: list[SelectField],
    max_rows: int | None = None,
) -> list[Row]:
    """Rows shaped as ``select`` asks. The result may share the store's own dicts (no copies
    on the hot path): serialise it before releasing ``state.lock``."""
    if len(select) == 1 and select[0].name == "*":
        return rows
    out = []
    for row in rows:
        shaped: Row = {}
        for f in select:
            if f.name == "*":
                shaped.update(row)
            elif f.relation is None:
                shaped[f.alias or f.name] = row[f.name]
            elif f.relation.kind == "many":
                children = state.tables[f.name].children(f.relation.column, row["id"])
                shaped[f.alias or f.name] = project(
                    state, f.name, _embedded(children, f, max_rows), f.children, max_rows
                )
            else:
                parent = state.tables[f.name].rows.get(row[f.relation.column])
                shaped[f.alias or f.name] = (
                    None
                    if parent is None
                    else project(state, f.name, [parent], f.children, max_rows)[0]
                )
        out.append(shaped)
    return out


# -- internals -------------------------------------------------------------------------------
def _capped(limit: int | None, max_rows: int | None) -> int | None:
    if max_rows is None:
        return limit
    return max_rows if limit is None else min(limit, max_rows)


def _embedded(children: list[Row], f: SelectField, max_rows: int | None) -> list[Row]:
    pred = compile_where(f.where)
    if pred is not None:
        children = [c for c in children if pred(c) is True]
    if f.order:
        children = _sorted(children, f.order)
    limit = _capped(f.limit, max_rows)
    return children[f.offset : None if limit is None else f.offset + limit]


def _candidates(state: CrmState, query: ReadQuery):
    """(rows to scan, the predicate for what the narrowing does not already guarantee, whether
    the rows come in the requested order).

    The narrowing: the documents' ordered index when the filters pin organizations (bisected at
    the lower bound on ``updated_at``), else the primary key or a foreign-key column's index for
    ``eq`` / ``in`` filters, else every row."""
    data = state.tables[query.table]
    natural = _natural(query)
    used, rows = None, None
    for cond in query.where:
        if not isinstance(cond, Condition) or cond.negate:
            continue
        if cond.column == data.ordered_by and cond.op in ("eq", "in", "is"):
            partitions = list(cond.value) if cond.op == "in" else [cond.value]
            used, rows = cond, _ordered_rows(state, query, partitions)
            break
        if cond.op in ("eq", "in") and (cond.column == data.pk or cond.column in data.fk_index):
            values = [cond.value] if cond.op == "eq" else sorted(cond.value, key=str)
            if cond.column == data.pk:
                found = [data.rows.get(v) for v in values]
                rows = [r for r in found if r is not None]
            else:
                index = data.fk_index[cond.column]
                rows = [r for v in values for r in index.get(v, {}).values()]
            if data.ordered_by is not None:
                rows.sort(key=change_key, reverse=_descending(query))
            used = cond
            break
    if rows is None:
        if data.ordered_by is not None:
            rows = _ordered_rows(state, query, list(data.ordered))
        else:
            rows = list(data.rows.values())
    return rows, compile_where([c for c in query.where if c is not used]), natural


def _ordered_rows(state: CrmState, query: ReadQuery, partitions: list) -> list[Row]:
    """The documents of ``partitions`` in ``(updated_at, id)`` order (or reversed), started at
    the lower bound the filters put on ``updated_at`` (keyset paging) by bisection."""
    ordered = state.tables[DOCS].ordered
    parts = [ordered[p] for p in partitions if p in ordered]
    lo, hi = _bounds(Logic("and", query.where), "updated_at")
    out: list[Row] = []
    for part in parts:
        start = 0 if lo is None else part.bisect_key_left((False, lo, ""))
        stop = len(part) if hi is None else part.bisect_key_right((False, hi, "\uffff"))
        if _wants_nulls_only(query):
            start, stop = part.bisect_key_left((True, "", "")), len(part)
        out.extend(part.islice(start, stop))
    if len(parts) > 1:
        out.sort(key=change_key)
    return out[::-1] if _descending(query) else out


def _descending(query: ReadQuery) -> bool:
    """Is the requested order the documents' natural order reversed?"""
    return _natural(query) and bool(query.order) and query.order[0].desc


def _wants_nulls_only(query: ReadQuery) -> bool:
    return any(
        isinstance(c, Condition)
        and c.column == "updated_at"
        and c.op == "is"
        and c.value is None
        and not c.negate
        for c in query.where
    )


def _bounds(node: Condition | Logic, column: str) -> tuple[Any, Any]:
    """Inclusive (low, high) limits that ``node`` puts on ``column`` (None: no limit known).

    Lets keyset paging (``or=(updated_at.gt.T,and(updated_at.eq.T,id.gt.I))``) start at T by
    bisection instead of rescanning the organization's documents on every page.
    """
    if node.negate:
        return None, None
    if isinstance(node, Condition):
        if node.column != column or node.op not in COMPARISONS:
            return None, None
        return (
            {"gt": node.value, "gte": node.value, "eq": node.value}.get(node.op),
            {"lt": node.value, "lte": node.value, "eq": node.value}.get(node.op),
        )
    parts = [_bounds(child, column) for child in node.children]
    lows, highs = [p[0] for p in parts], [p[1] for p in parts]
    if node.op == "and":
        known_lows = [v for v in lows if v is not None]
        known_highs = [v for v in highs if v is not None]
        return (max(known_lows) if known_lows else None, min(known_highs) if known_highs else None)
    return (
        None if None in lows or not lows else min(lows),
        None if None in highs or not highs else max(highs),
    )


def _natural(query: ReadQuery) -> bool:
    """Is the requested order the store's own (documents: ``updated_at, id``; others: none)?"""
    if not query.order:
        return True
    if query.table != ORDERED_TABLE:
        return False
    cols = tuple(k.column for k in query.order)
    if cols not in (ORDER_COLUMNS, ORDER_COLUMNS[:1]):
        return False
    first = query.order[0]
    same_direction = len({k.desc for k in query.order}) == 1
    return same_direction and first.nulls_last != first.desc


def _sorted(rows: list[Row], order: list[OrderKey]) -> list[Row]:
    rows = list(rows)
    for key in reversed(order):
        col, none_high = key.column, key.nulls_last != key.desc
        rows.sort(key=lambda r, c=col, h=none_high: ((r[c] is None) == h, r[c]), reverse=key.desc)
    return rows


def _compile(node: Condition | Logic) -> Predicate:
    if isinstance(node, Logic):
        parts = [_compile(c) for c in node.children]
        fold = _and if node.op == "and" else _or
        pred: Predicate = lambda r: fold(p(r) for p in parts)  # noqa: E731
    else:
        pred = _compile_condition(node)
    if node.negate:
        inner = pred
        pred = lambda r: None if (v := inner(r)) is None else not v  # noqa: E731
    return pred


def _compile_condition(cond: Condition) -> Predicate:
    col, value = cond.column, cond.value
    if cond.op == "is":
        if value is None:
            return lambda r: r[col] is None
        return lambda r: r[col] is value
    if cond.op == "in":
        return lambda r: None if (x := r[col]) is None else x in value
    if cond.op in ("like", "ilike"):
        return lambda r: None if (x := r[col]) is None else bool(value.fullmatch(str(x)))
    compare = COMPARISONS[cond.op]
    return lambda r: None if (x := r[col]) is None else compare(x, value)


def _and(values: Any) -> bool | None:
    result: bool | None = True
    for v in values:
        if v is False:
            return False
        if v is None:
            result = None
    return result


def _or(values: Any) -> bool | None:
    result: bool | None = False
    for v in values:
        if v is True:
            return True
        if v is None:
            result = None
    return result
