"""PostgREST queries run against the sandbox CRM store: filtering, ordering, paging, shaping.

Why separate from parsing (``postgrest_parse``): this is the hot path when the pipeline pages
through 100,000 documents per organization, so it uses the store's indexes (organization, id,
parent document), bisects the ``updated_at`` order for keyset paging, and skips sorting when the
requested order is the store's own. Comparisons follow SQL's three-valued logic (NULL never
equals, not even under ``neq``).
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from itertools import islice
from typing import Any

from sync_pipeline.sandbox.crm_store import DOCS, ITEMS, CrmState, Row
from sync_pipeline.sandbox.postgrest_parse import (
    RELATIONS,
    Condition,
    Logic,
    OrderKey,
    ReadQuery,
    SelectField,
)

#: Columns with an index in the store, and the ``CrmState.rows`` keyword that uses it.
INDEXED = {
    DOCS: {"id": "ids", "organization_id": "organization_ids"},
    ITEMS: {"id": "ids", "document_id": "document_ids"},
}
NATURAL_ORDER = {DOCS: ("updated_at", "id"), ITEMS: ()}
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
    rows, pred = _candidates(state, query)
    return rows if pred is None else [r for r in rows if pred(r) is True]


def read_rows(state: CrmState, query: ReadQuery, *, count: bool) -> tuple[list[Row], int | None]:
    """The page of rows a GET returns, plus the total when ``count`` (``Prefer: count=exact``).

    When the requested order is the store's natural one, no sort happens and, without a count,
    the scan stops once the page is full: paging 100,000 documents stays linear.
    """
    rows, pred = _candidates(state, query)
    natural, backwards = _natural(query)
    stop = None if query.limit is None else query.offset + query.limit
    if natural:
        ordered = reversed(rows) if backwards else rows
        matched = ordered if pred is None else (r for r in ordered if pred(r) is True)
        if not count:
            return list(islice(matched, query.offset, stop)), None
        matched = list(matched)
    else:
        matched = rows if pred is None else [r for r in rows if pred(r) is True]
        matched = _sorted(matched, query.order)
    return matched[query.offset : stop], len(matched)


def project(state: CrmState, table: str, rows: list[Row], select: list[SelectField]) -> list[Row]:
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
            elif f.children is None:
                shaped[f.alias or f.name] = row[f.name]
            else:
                target, kind = RELATIONS[(table, f.name)]
                if kind == "many":
                    shaped[f.alias or f.name] = project(
                        state, target, state.items_of(row["id"]), f.children
                    )
                else:
                    parent = state.document(row["document_id"])
                    shaped[f.alias or f.name] = (
                        None if parent is None else project(state, target, [parent], f.children)[0]
                    )
        out.append(shaped)
    return out


# -- internals -------------------------------------------------------------------------------
def _candidates(state: CrmState, query: ReadQuery) -> tuple[list[Row], Predicate | None]:
    """Rows to scan (narrowed by an index and by ``updated_at`` bounds) and the predicate for
    what the narrowing does not already guarantee."""
    used, hints = None, {}
    for cond in query.where:
        kw = INDEXED[query.table].get(getattr(cond, "column", None))
        if kw and not cond.negate and cond.op in ("eq", "in") and "ids" not in hints:
            used, hints = cond, {kw: [cond.value] if cond.op == "eq" else sorted(cond.value)}
    rows = state.rows(query.table, **hints)
    if query.table == DOCS and rows and _natural(query)[0]:
        lo, hi = _bounds(Logic("and", query.where), "updated_at")
        key = operator.itemgetter("updated_at")
        start = 0 if lo is None else bisect_left(rows, lo, key=key)
        stop = len(rows) if hi is None else bisect_right(rows, hi, key=key)
        if (start, stop) != (0, len(rows)):
            rows = rows[start:stop]
    return rows, compile_where([c for c in query.where if c is not used])


def _bounds(node: Condition | Logic, column: str) -> tuple[Any, Any]:
    """Inclusive (low, high) limits that ``node`` puts on ``column`` (None: no limit known).

    Lets keyset paging (``or=(updated_at.gt.T,and(updated_at.eq.T,id.gt.I))``) start at T by
    bisection instead of rescanning the organization's documents on every page.
    """
    if node.negate:
        return None, None
    if isinstance(node, Condition):
        if node.column != column:
            return None, None
        return (
            {"gt": node.value, "gte": node.value, "eq": node.value}.get(node.op),
            {"lt": node.value, "lte": node.value, "eq": node.value}.get(node.op),
        )
    parts = [_bounds(child, column) for child in node.children]
    lows, highs = [p[0] for p in parts], [p[1] for p in parts]
    if node.op == "and":
        known_lows, known_highs = (
            [v for v in lows if v is not None],
            [v for v in highs if v is not None],
        )
        return (max(known_lows) if known_lows else None, min(known_highs) if known_highs else None)
    return (
        None if None in lows or not lows else min(lows),
        None if None in highs or not highs else max(highs),
    )


def _natural(query: ReadQuery) -> tuple[bool, bool]:
    """(is the requested order the store's own?, is it reversed?)"""
    if not query.order:
        return True, False
    natural = NATURAL_ORDER[query.table]
    cols = tuple(k.column for k in query.order)
    if not natural or cols not in (natural, natural[:1]):
        return False, False
    desc = {k.desc for k in query.order}
    return len(desc) == 1, desc == {True}


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
        return (lambda r: r[col] is None) if value is None else (lambda r: r[col] is not None)
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
