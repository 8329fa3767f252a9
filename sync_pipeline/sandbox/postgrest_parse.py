"""PostgREST's query language, parsed: filters, select/embedding, order and ranges.

Why a parser of our own: the pipeline's CRM adapter builds exactly these query strings, so the
simulator has to read them the way PostgREST does and reject what PostgREST rejects (an unknown
column is ``42703``, a malformed filter ``PGRST100``). Supported: ``col=[not.]op.value`` with
``eq neq gt gte lt lte like ilike in is``; ``or=(...)`` / ``and=(...)`` trees (nested, negatable);
``select`` with column lists, aliases and embedding in both directions; ``order`` with several
keys, ``asc|desc`` and ``nullsfirst|nullslast``; ``limit``/``offset`` intersected with a ``Range``
header. Filter values are read into the store's representation here, so evaluation
(``postgrest_query``) compares plain Python values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sync_pipeline.sandbox.crm_schema import PgError, coerce, get_table
from sync_pipeline.sandbox.crm_store import DOCS, ITEMS

RESERVED_PARAMS = frozenset({"select", "order", "limit", "offset", "on_conflict", "columns"})
#: (from table, embedded name) -> (target table, "many" | "one")
RELATIONS = {(DOCS, ITEMS): (ITEMS, "many"), (ITEMS, DOCS): (DOCS, "one")}
OPERATORS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "in", "is", "like", "ilike"})


@dataclass
class Condition:
    column: str
    op: str
    value: Any
    negate: bool = False


@dataclass
class Logic:
    op: str  # "and" | "or"
    children: list[Condition | Logic]
    negate: bool = False


@dataclass
class SelectField:
    name: str  # "*" for all columns
    alias: str | None = None
    children: list[SelectField] | None = None  # an embedded resource when not None


@dataclass
class OrderKey:
    column: str
    desc: bool = False
    nulls_last: bool = True


@dataclass
class ReadQuery:
    table: str
    where: list[Condition | Logic] = field(default_factory=list)
    select: list[SelectField] = field(default_factory=lambda: [SelectField("*")])
    order: list[OrderKey] = field(default_factory=list)
    offset: int = 0
    limit: int | None = None


def parse_request(
    table: str, params: list[tuple[str, str]], range_header: str | None = None
) -> ReadQuery:
    """Read query parameters (and the ``Range`` header) into a :class:`ReadQuery`."""
    get_table(table)
    query = ReadQuery(table)
    limit = offset = None
    for key, value in params:
        if key == "select":
            query.select = parse_select(table, value)
        elif key == "order":
            query.order = parse_order(table, value)
        elif key in ("limit", "offset"):
            number = _non_negative_int(key, value)
            limit, offset = (number, offset) if key == "limit" else (limit, number)
        elif key in RESERVED_PARAMS:
            continue
        elif key in ("or", "and", "not.or", "not.and"):
            negate, op = key.startswith("not."), key.rsplit(".", 1)[-1]
            query.where.append(_parse_logic(table, op, value, negate))
        elif "." in key:
            raise PgError(
                400,
                "PGRST100",
                f'"failed to parse filter ({key})": filters on '
                "embedded resources are not supported by the sandbox",
            )
        else:
            query.where.append(parse_condition(table, key, value))
    query.offset, query.limit = _combine_range(offset, limit, range_header)
    return query


def parse_condition(table: str, column: str, text: str) -> Condition:
    col = get_table(table).column(column)
    negate = text.startswith("not.")
    if negate:
        text = text[4:]
    op, dot, raw = text.partition(".")
    if not dot or op not in OPERATORS:
        raise _filter_error(text)
    if op == "is":
        value = {
            "null": None,
            "not_null": "not_null",
            "true": True,
            "false": False,
            "unknown": None,
        }.get(raw.lower(), ...)
        if value is ...:
            raise _filter_error(text)
        if isinstance(value, bool):
            raise PgError(
                400,
                "42804",
                f"argument of IS {raw.upper()} must be type boolean, not type {col.type}",
            )
        return Condition(column, op, value, negate)
    if op == "in":
        if not (raw.startswith("(") and raw.endswith(")")):
            raise _filter_error(text)
        items = _split_top(raw[1:-1]) if raw[1:-1] else []
        return Condition(
            column, op, {_filter_value(table, col, _unquote(v)) for v in items}, negate
        )
    if op in ("like", "ilike"):
        pattern = "".join(
            ".*" if ch in "*%" else "." if ch == "_" else re.escape(ch) for ch in _unquote(raw)
        )
        flags = re.IGNORECASE | re.DOTALL if op == "ilike" else re.DOTALL
        return Condition(column, op, re.compile(pattern, flags), negate)
    return Condition(column, op, _filter_value(table, col, _unquote(raw)), negate)


def parse_select(table: str, text: str) -> list[SelectField]:
    text = re.sub(r"\s+", "", text)
    if not text:
        return [SelectField("*")]
    fields_ = []
    for part in _split_top(text):
        alias, name = None, part
        head = part.split("(", 1)[0]
        if ":" in head and "::" not in head:
            alias, name = part.split(":", 1)
        if "::" in name or not name:
            raise PgError(400, "PGRST100", f'"failed to parse select parameter ({text})"')
        if name == "*":
            fields_.append(SelectField("*"))
        elif "(" in name:
            relation, sub = name.split("(", 1)
            relation = relation.split("!", 1)[0]
            target = RELATIONS.get((table, relation))
            if target is None or not sub.endswith(")"):
                raise PgError(
                    400,
                    "PGRST200",
                    f"Could not find a relationship between '{table}' "
                    f"and '{relation}' in the schema cache",
                )
            fields_.append(SelectField(relation, alias, parse_select(target[0], sub[:-1])))
        else:
            get_table(table).column(name)
            fields_.append(SelectField(name, alias))
    return fields_


def parse_order(table: str, text: str) -> list[OrderKey]:
    keys = []
    for part in filter(None, re.sub(r"\s+", "", text).split(",")):
        column, *mods = part.split(".")
        get_table(table).column(column)
        key = OrderKey(column)
        for mod in mods:
            if mod in ("asc", "desc"):
                key.desc = mod == "desc"
                key.nulls_last = not key.desc
            elif mod in ("nullsfirst", "nullslast"):
                key.nulls_last = mod == "nullslast"
            else:
                raise PgError(400, "PGRST100", f'"failed to parse order ({text})"')
        keys.append(key)
    return keys


def _parse_logic(table: str, op: str, text: str, negate: bool) -> Logic:
    if not (text.startswith("(") and text.endswith(")")) or len(text) < 3:
        raise _filter_error(text)
    children: list[Condition | Logic] = []
    for part in _split_top(text[1:-1]):
        m = re.fullmatch(r"(not\.)?(and|or)(\(.*\))", part, re.DOTALL)
        if m:
            children.append(_parse_logic(table, m.group(2), m.group(3), bool(m.group(1))))
            continue
        column, dot, rest = part.partition(".")
        if not dot:
            raise _filter_error(part)
        children.append(parse_condition(table, column, rest))
    return Logic(op, children, negate)


def _filter_value(table: str, col: Any, text: str) -> Any:
    """A filter literal in the stored representation, so comparisons are plain ``<``/``==``."""
    if col.type == "numeric":  # compared unrounded, as a literal cast to plain numeric
        try:
            number = Decimal(text.strip())
        except InvalidOperation:
            raise PgError(
                400, "22P02", f'invalid input syntax for type numeric: "{text}"'
            ) from None
        return int(number) if number == number.to_integral_value() else float(number)
    return coerce(table, col, text)


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses and double quotes."""
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and quoted:
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if depth or quoted:
        raise _filter_error(text)
    parts.append(text[start:])
    return parts


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _non_negative_int(name: str, text: str) -> int:
    if not text.strip().isdigit():
        raise PgError(400, "PGRST100", f'"failed to parse {name} parameter ({text})"')
    return int(text)


def _combine_range(
    offset: int | None, limit: int | None, header: str | None
) -> tuple[int, int | None]:
    """Intersect ``offset``/``limit`` with a ``Range: a-b`` header, as PostgREST does."""
    lo, hi = offset or 0, None if limit is None else (offset or 0) + limit  # [lo, hi)
    m = re.fullmatch(r"\s*(\d+)-(\d*)\s*", header or "")
    if m:
        h_lo = int(m.group(1))
        h_hi = int(m.group(2)) + 1 if m.group(2) else None
        lo = max(lo, h_lo)
        hi = h_hi if hi is None else (hi if h_hi is None else min(hi, h_hi))
    return lo, None if hi is None else max(0, hi - lo)


def _filter_error(text: str) -> PgError:
    return PgError(
        400,
        "PGRST100",
        f'"failed to parse filter ({text})" (line 1, column 1)',
        "unexpected end of input or unknown operator",
    )
