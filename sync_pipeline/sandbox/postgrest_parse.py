"""PostgREST's query language, parsed: filters, select/embedding, order and ranges.

Why a parser of our own: clients (ours, and PostgREST's official ones) build these query strings,
so the simulator has to read them the way PostgREST does and reject what PostgREST rejects (an
unknown column is ``42703``, a malformed filter ``PGRST100``, an unknown relationship
``PGRST200``). Supported: ``col=[not.]op.value`` with ``eq neq gt gte lt lte like ilike in is``;
``or=(...)`` / ``and=(...)`` trees (nested, negatable); ``select`` with column lists, aliases and
embedding along foreign keys in both directions (``items(*)``, ``items!fk_column(*)``), with
``<embed>.order``, ``<embed>.limit``, ``<embed>.offset`` and filters on an embed's columns;
``order`` with several keys, ``asc|desc`` and ``nullsfirst|nullslast``; ``limit``/``offset``
intersected with a ``Range`` header. Filter values are read into the store's representation
here, so evaluation (``postgrest_query``) compares plain Python values. Reference:
https://docs.postgrest.org/en/v12/references/api/tables_views.html and
https://docs.postgrest.org/en/v12/references/api/resource_embedding.html.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sync_pipeline.sandbox.crm_ddl import Table
from sync_pipeline.sandbox.crm_store import CrmState
from sync_pipeline.sandbox.crm_values import PgError, filter_value

RESERVED_PARAMS = frozenset({"select", "order", "limit", "offset", "on_conflict", "columns"})
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


@dataclass(frozen=True)
class Relation:
    """How an embedded table joins its parent: ``many`` (the child table's ``column`` references
    the parent) or ``one`` (the parent's ``column`` references the embedded table)."""

    table: str
    kind: str
    column: str


@dataclass
class SelectField:
    name: str  # "*" for all columns
    alias: str | None = None
    children: list[SelectField] | None = None  # an embedded resource when not None
    relation: Relation | None = None
    where: list[Condition | Logic] = field(default_factory=list)
    order: list[OrderKey] = field(default_factory=list)
    offset: int = 0
    limit: int | None = None


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
    state: CrmState, table: str, params: list[tuple[str, str]], range_header: str | None = None
) -> ReadQuery:
    """Read query parameters (and the ``Range`` header) into a :class:`ReadQuery`."""
    spec = state.public_table(table)
    query = ReadQuery(table)
    limit = offset = None
    embedded: list[tuple[str, str]] = []
    for key, value in params:
        if key == "select":
            query.select = parse_select(state, spec, value)
        elif key == "order":
            query.order = parse_order(spec, value)
        elif key in ("limit", "offset"):
            number = _non_negative_int(key, value)
            limit, offset = (number, offset) if key == "limit" else (limit, number)
        elif key in RESERVED_PARAMS:
            continue
        elif key in ("or", "and", "not.or", "not.and"):
            query.where.append(_parse_logic(spec, key.rsplit(".", 1)[-1], value, "not." in key))
        elif "." in key:
            embedded.append((key, value))
        else:
            query.where.append(parse_condition(spec, key, value))
    for key, value in embedded:
        _apply_embedded_param(state, query, key, value)
    query.offset, query.limit = _combine_range(offset, limit, range_header)
    return query


def parse_condition(spec: Table, column: str, text: str, *, in_logic: bool = False) -> Condition:
    """One ``column=[not.]op.value`` filter. A top-level value runs to the end of the parameter,
    quotes and all (PostgREST's ``pSingleVal``); inside ``or=(...)`` / ``and=(...)`` and an
    ``in.(...)`` list, a value may be double-quoted and is read without its quotes
    (``pLogicSingleVal``, ``pListElement``, ``pQuotedValue`` in ApiRequest/QueryParams.hs)."""
    col = _column(spec, column)
    value_of = _unquote if in_logic else (lambda raw: raw)
    negate = text.startswith("not.")
    if negate:
        text = text[4:]
    op, dot, raw = text.partition(".")
    if not dot or op not in OPERATORS:
        raise _filter_error(text)
    if op == "is":
        value = {"null": None, "true": True, "false": False, "unknown": None}.get(raw.lower(), ...)
        if value is ...:
            raise _filter_error(text)
        if isinstance(value, bool) and col.type != "boolean":
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
        return Condition(column, op, {filter_value(col, _unquote(v)) for v in items}, negate)
    if op in ("like", "ilike"):
        pattern = "".join(
            ".*" if ch in "*%" else "." if ch == "_" else re.escape(ch) for ch in value_of(raw)
        )
        flags = re.IGNORECASE | re.DOTALL if op == "ilike" else re.DOTALL
        return Condition(column, op, re.compile(pattern, flags), negate)
    return Condition(column, op, filter_value(col, value_of(raw)), negate)


def parse_select(state: CrmState, spec: Table, text: str) -> list[SelectField]:
    text = re.sub(r"\s+", "", text)
    if not text:
        return [SelectField("*")]
    fields_ = []
    for part in _split_top(text):
        alias, name = None, part
        head = part.split("(", 1)[0]
        if ":" in head and "::" not in head:
            alias, name = part.split(":", 1)
        if "::" in name or "->" in name or not name:
            raise PgError(400, "PGRST100", f'"failed to parse select parameter ({text})"')
        if name == "*":
            fields_.append(SelectField("*"))
        elif "(" in name:
            target, sub = name.split("(", 1)
            if not sub.endswith(")"):
                raise PgError(400, "PGRST100", f'"failed to parse select parameter ({text})"')
            relation = resolve_relation(state, spec, target)
            children = parse_select(state, state.public_table(relation.table), sub[:-1])
            fields_.append(SelectField(relation.table, alias, children, relation))
        else:
            _column(spec, name)
            fields_.append(SelectField(name, alias))
    return fields_


def resolve_relation(state: CrmState, spec: Table, target: str) -> Relation:
    """The foreign key an embed ``target`` (``table`` or ``table!hint``) follows from ``spec``.

    PostgREST finds relationships in the schema cache: a table whose foreign key references
    ``spec`` (one-to-many), or one that ``spec`` references (many-to-one); a ``!hint`` names the
    foreign-key column or constraint when there are several."""
    name, _, hint = target.partition("!")
    other = state.specs.get(name)
    candidates: list[Relation] = []
    if other is not None and other.schema == "public":
        for fk in other.foreign_keys:
            if fk.table == spec.name and fk.schema == "public" and hint in ("", fk.column, fk.name):
                candidates.append(Relation(name, "many", fk.column))
        for fk in spec.foreign_keys:
            if fk.table == name and fk.schema == "public" and hint in ("", fk.column, fk.name):
                candidates.append(Relation(name, "one", fk.column))
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        raise PgError(
            300,
            "PGRST201",
            f"Could not embed because more than one relationship was found for '{spec.name}' "
            f"and '{name}'",
            hint=f"Try changing '{name}' to one of: "
            + ", ".join(f"'{name}!{c.column}'" for c in candidates),
        )
    raise PgError(
        400,
        "PGRST200",
        f"Could not find a relationship between '{spec.name}' and '{name}' in the schema cache",
        f"Searched for a foreign key relationship between '{spec.name}' and '{name}' in the "
        "schema 'public', but no matches were found.",
    )


def parse_order(spec: Table, text: str) -> list[OrderKey]:
    keys = []
    for part in filter(None, re.sub(r"\s+", "", text).split(",")):
        column, *mods = part.split(".")
        _column(spec, column)
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


def _apply_embedded_param(state: CrmState, query: ReadQuery, key: str, value: str) -> None:
    """``<embed>.order``, ``<embed>.limit``, ``<embed>.offset`` or a filter ``<embed>.<col>``."""
    path, _, last = key.rpartition(".")
    embed = next(
        (f for f in query.select if f.children is not None and path in (f.name, f.alias)), None
    )
    if embed is None or "." in path:
        raise PgError(
            400,
            "PGRST108",
            f"'{path}' is not an embedded resource in this request",
            hint=f"Verify that '{path}' is included in the 'select' query parameter.",
        )
    spec = state.public_table(embed.name)
    if last == "order":
        embed.order = parse_order(spec, value)
    elif last in ("limit", "offset"):
        setattr(embed, last, _non_negative_int(key, value))
    elif last in ("or", "and"):
        embed.where.append(_parse_logic(spec, last, value, False))
    else:
        embed.where.append(parse_condition(spec, last, value))


def _column(spec: Table, name: str):
    col = spec.by_name.get(name)
    if col is None:
        raise PgError(400, "42703", f"column {spec.name}.{name} does not exist")
    return col


def _parse_logic(spec: Table, op: str, text: str, negate: bool) -> Logic:
    if not (text.startswith("(") and text.endswith(")")) or len(text) < 3:
        raise _filter_error(text)
    children: list[Condition | Logic] = []
    for part in _split_top(text[1:-1]):
        m = re.fullmatch(r"(not\.)?(and|or)(\(.*\))", part, re.DOTALL)
        if m:
            children.append(_parse_logic(spec, m.group(2), m.group(3), bool(m.group(1))))
            continue
        column, dot, rest = part.partition(".")
        if not dot:
            raise _filter_error(part)
        children.append(parse_condition(spec, column, rest, in_logic=True))
    return Logic(op, children, negate)


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
