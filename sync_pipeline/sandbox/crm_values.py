"""How the sandbox CRM reads a JSON value into a column, and how it fails: PostgreSQL's rules.

PostgREST turns a request body into rows with ``json_populate_recordset``: each JSON value is
read by the column type's input function, so a bad uuid is ``22P02``, a date that does not parse
``22007``, a string over ``character varying(n)`` ``22001`` and a number past ``numeric(p, s)``
``22003``, with PostgreSQL's messages (``test_crm_constraints_match_postgres`` compares them with
the real server). Errors render as PostgREST renders them: HTTP status and
``{code, message, details, hint}``.

Values are stored the way they are served, so reads cost nothing: uuids as lower-case strings,
dates as ``YYYY-MM-DD``, timestamps in UTC as PostgreSQL prints them
(``2026-11-01T07:00:00.5+00:00``: no trailing zeros in the fraction; with one offset for all they
sort correctly as text), numerics
as JSON numbers rounded to the column's scale (as ``to_json`` serves them).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sync_pipeline.sandbox.crm_ddl import Column, Table

INT4_MAX = 2**31 - 1
UUID_INPUT = re.compile(r"\s*(\{?)([0-9a-fA-F]{4}(?:-?[0-9a-fA-F]{4}){7})(\}?)\s*")
"""PostgreSQL's uuid input: 32 hex digits, a hyphen allowed after any group of four, optional
braces (uuid.c, string_to_uuid)."""
BOOLEANS = {
    **dict.fromkeys(("t", "true", "y", "yes", "on", "1"), True),
    **dict.fromkeys(("f", "false", "n", "no", "off", "0"), False),
}
"""Spellings PostgreSQL's boolean input accepts (bool.c, boolin)."""
DATE_SHAPE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}")


class PgError(Exception):
    """An error as PostgREST renders it: HTTP status plus ``{code, message, details, hint}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.hint = details, hint

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "details": self.details,
            "hint": self.hint,
            "message": self.message,
        }


def new_uuid() -> str:
    return str(uuid.uuid4())


def format_timestamp(moment: datetime) -> str:
    """A timestamptz as PostgreSQL prints it in UTC: the fraction without trailing zeros."""
    text = moment.astimezone(UTC).isoformat(timespec="microseconds")
    head, frac_and_zone = text[:19], text[19:]  # "YYYY-MM-DDTHH:MM:SS", ".ffffff+00:00"
    fraction = frac_and_zone[1:7].rstrip("0")
    return f"{head}.{fraction}+00:00" if fraction else f"{head}+00:00"


def printed_timestamp(text: str | None) -> str | None:
    """``text`` itself, if it is a timestamptz as PostgreSQL prints it (`format_timestamp`);
    the store holds no other form (rows loaded without coercion are checked with this)."""
    if text is not None and format_timestamp(parse_timestamp(text)) != text:
        raise ValueError(f"not a timestamp as PostgreSQL prints it: {text!r} (format_timestamp)")
    return text


def parse_timestamp(text: str) -> datetime:
    moment = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def coerce(table: str, col: Column, value: Any) -> Any:
    """Read one JSON value into ``col`` as PostgreSQL would, or raise its error."""
    if value is None:
        return None
    kind = col.type
    if kind == "jsonb":
        return value
    if kind == "text[]":
        return _text_array(value)
    text = _as_input_text(value)
    if kind in ("text", "character varying"):
        if col.length is not None and len(text) > col.length:
            raise PgError(400, "22001", f"value too long for type character varying({col.length})")
        return text
    if kind == "uuid":
        match = UUID_INPUT.fullmatch(text)
        if match is None or (match.group(1) == "{") != (match.group(3) == "}"):
            raise _syntax("uuid", text)
        return str(uuid.UUID(match.group(2).replace("-", "")))
    if kind == "numeric":
        return coerce_numeric(col, text)
    if kind == "integer":
        try:
            number = int(text.strip())
        except ValueError:
            raise _syntax("integer", text) from None
        if abs(number) > INT4_MAX:
            raise PgError(400, "22003", f'value "{text}" is out of range for type integer')
        return number
    if kind == "boolean":
        flag = BOOLEANS.get(text.strip().lower())
        if flag is None:
            raise _syntax("boolean", text)
        return flag
    if kind == "date":
        stripped = text.strip()
        try:
            return (
                date.fromisoformat(stripped)
                if len(stripped) == 10
                else parse_timestamp(stripped).date()
            ).isoformat()
        except ValueError:
            if DATE_SHAPE.match(stripped):  # the right shape, a day or month that does not exist
                raise PgError(
                    400, "22008", f'date/time field value out of range: "{text}"'
                ) from None
            raise PgError(400, "22007", f'invalid input syntax for type date: "{text}"') from None
    if kind == "timestamp with time zone":
        try:
            return format_timestamp(parse_timestamp(text))
        except ValueError:
            raise PgError(
                400, "22007", f'invalid input syntax for type timestamp with time zone: "{text}"'
            ) from None
    raise AssertionError(f"unknown column type {kind}")


def coerce_payload(table: Table, payload: dict[str, Any]) -> dict[str, Any]:
    """A written JSON object read column by column; an unknown key is PostgREST's PGRST204."""
    out = {}
    for key, value in payload.items():
        col = table.by_name.get(key)
        if col is None:
            raise unknown_column(table.name, key)
        out[key] = coerce(table.name, col, value)
    return out


def unknown_column(table: str, column: str) -> PgError:
    return PgError(
        400, "PGRST204", f"Could not find the '{column}' column of '{table}' in the schema cache"
    )


def coerce_numeric(col: Column, value: Any) -> int | float:
    """Numbers and numeric strings alike; rounded half away from zero to the column's scale."""
    text = value if isinstance(value, str) else _as_input_text(value)
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        raise _syntax("numeric", text) from None
    if not number.is_finite():
        raise _syntax("numeric", text)
    if col.scale is not None:
        number = number.quantize(Decimal(1).scaleb(-col.scale), ROUND_HALF_UP)
        if col.precision is not None and number.adjusted() >= col.precision - col.scale:
            raise PgError(
                400,
                "22003",
                "numeric field overflow",
                f"A field with precision {col.precision}, scale {col.scale} must round "
                f"to an absolute value less than 10^{col.precision - col.scale}.",
            )
    return int(number) if number == number.to_integral_value() else float(number)


def filter_value(col: Column, text: str) -> Any:
    """A filter literal in the stored representation, so comparisons are plain ``<`` / ``==``.

    A numeric literal is compared unrounded (PostgreSQL casts it to plain ``numeric``)."""
    if col.type == "numeric":
        try:
            number = Decimal(text.strip())
        except InvalidOperation:
            raise _syntax("numeric", text) from None
        return int(number) if number == number.to_integral_value() else float(number)
    if col.type in ("jsonb", "text[]"):
        raise PgError(400, "42883", f"operator does not exist: {col.type} = unknown")
    return coerce("", col, text)


def _as_input_text(value: Any) -> str:
    """The text a JSON value hands to a type's input function (json_populate_record)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _text_array(value: Any) -> list[str]:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return [item.strip().strip('"') for item in value[1:-1].split(",") if item.strip()]
    if not isinstance(value, list):
        raise PgError(
            400,
            "22P02",
            f'malformed array literal: "{_as_input_text(value)}"',
            'Array value must start with "{" or dimension information.',
        )
    return [None if v is None else _as_input_text(v) for v in value]


def _syntax(kind: str, text: str) -> PgError:
    return PgError(400, "22P02", f'invalid input syntax for type {kind}: "{text}"')
