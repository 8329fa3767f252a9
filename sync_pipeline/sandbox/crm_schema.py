"""The sandbox CRM's table definitions, value coercion and PostgreSQL-style errors.

Why a module of its own: the store (writes), the query layer (filters) and the HTTP app all need
the same answer to "what is column X and how does PostgreSQL read this value?". Keeping the types
and error shapes here makes the simulator fail where the real Supabase table fails
(``22P02`` for a bad uuid, ``23502`` for a missing required value, ...) and nowhere else.

Values are stored the way they are served, so reads cost nothing: uuids as lower-case strings,
dates as ``YYYY-MM-DD``, timestamps as ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00`` (UTC, fixed width, so
they sort as strings), numerics as JSON numbers (int or float, rounded to the column's scale).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any


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
            "message": self.message,
            "details": self.details,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # uuid | text | date | timestamptz | numeric
    nullable: bool = True
    scale: int | None = None  # numeric(p, scale)
    precision: int | None = None
    length: int | None = None  # char(n)
    allowed: frozenset[str] | None = None  # CHECK (col IN (...))


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: str = "id"

    @property
    def by_name(self) -> dict[str, Column]:
        return {c.name: c for c in self.columns}

    def column(self, name: str) -> Column:
        col = COLUMNS[self.name].get(name)
        if col is None:
            raise PgError(400, "42703", f"column {self.name}.{name} does not exist")
        return col


DOCUMENT_TYPES = frozenset({"offer", "order", "invoice", "credit_note", "proforma"})
STATUSES = frozenset({"draft", "sent", "paid", "overdue", "canceled"})

SALES_DOCUMENTS = Table(
    "sales_documents",
    (
        Column("id", "uuid", nullable=False),
        Column("organization_id", "uuid", nullable=False),
        Column("document_type", "text", nullable=False, allowed=DOCUMENT_TYPES),
        Column("document_number", "text"),
        Column("document_date", "date", nullable=False),
        Column("due_date", "date"),
        Column("customer_name", "text"),
        Column("customer_email", "text"),
        Column("customer_tax_id", "text"),
        Column("customer_address", "text"),
        Column("customer_post_code", "text"),
        Column("customer_city", "text"),
        Column("customer_country", "text"),
        Column("currency", "text", nullable=False, length=3),
        Column("subtotal_amount", "numeric", scale=2, precision=15),
        Column("tax_amount", "numeric", scale=2, precision=15),
        Column("total_amount", "numeric", scale=2, precision=15),
        Column("status", "text", nullable=False, allowed=STATUSES),
        Column("notes", "text"),
        Column("created_at", "timestamptz", nullable=False),
        Column("updated_at", "timestamptz", nullable=False),
        Column("created_by", "uuid"),
        Column("updated_by", "uuid"),
    ),
)

SALES_DOCUMENT_ITEMS = Table(
    "sales_document_items",
    (
        Column("id", "uuid", nullable=False),
        Column("document_id", "uuid", nullable=False),
        Column("product_id", "uuid"),
        Column("product_code", "text"),
        Column("description", "text", nullable=False),
        Column("quantity", "numeric", nullable=False),
        Column("unit", "text"),
        Column("unit_price", "numeric", nullable=False, scale=4, precision=15),
        Column("discount_percent", "numeric"),
        Column("tax_rate", "numeric", nullable=False),
        Column("total_amount", "numeric", scale=2, precision=15),
    ),
)

TABLES: dict[str, Table] = {t.name: t for t in (SALES_DOCUMENTS, SALES_DOCUMENT_ITEMS)}
COLUMNS: dict[str, dict[str, Column]] = {t.name: t.by_name for t in TABLES.values()}
#: Column defaults the server fills in when an insert leaves the column out.
STATIC_DEFAULTS = {
    "sales_documents": {"currency": "EUR", "status": "draft"},
    "sales_document_items": {},  # no default tax rate: a line without one is a client bug
}


def get_table(name: str) -> Table:
    table = TABLES.get(name)
    if table is None:
        raise PgError(
            404, "PGRST205", f"Could not find the table 'public.{name}' in the schema cache"
        )
    return table


def new_uuid() -> str:
    return str(uuid.uuid4())


def format_timestamp(moment: datetime) -> str:
    """The one stored/served timestamp form: UTC, microseconds, fixed width (sorts as text)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_timestamp(text: str) -> datetime:
    moment = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def coerce(table: str, col: Column, value: Any) -> Any:
    """Read one JSON value into column ``col`` as PostgreSQL would, or raise its error."""
    if value is None:
        return None
    kind = col.type
    if kind == "text":
        text = value if isinstance(value, str) else _json_scalar_text(table, col, value)
        if col.length is not None and len(text) > col.length:
            raise PgError(400, "22001", f"value too long for type character({col.length})")
        return text
    if isinstance(value, (dict, list)) or isinstance(value, bool):
        raise _syntax(kind, value)
    text = str(value).strip()
    if kind == "uuid":
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise _syntax("uuid", value) from None
    if kind == "numeric":
        return coerce_numeric(col, value)
    if kind == "date":
        try:
            return (
                date.fromisoformat(text) if len(text) == 10 else parse_timestamp(text).date()
            ).isoformat()
        except ValueError:
            raise PgError(400, "22007", f'invalid input syntax for type date: "{value}"') from None
    if kind == "timestamptz":
        try:
            return format_timestamp(parse_timestamp(text))
        except ValueError:
            raise PgError(
                400, "22007", f'invalid input syntax for type timestamp with time zone: "{value}"'
            ) from None
    raise AssertionError(kind)


def coerce_numeric(col: Column, value: Any) -> int | float:
    """Numbers and numeric strings both work; the result is rounded to the column's scale."""
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise _syntax("numeric", value) from None
    if not number.is_finite():
        raise _syntax("numeric", value)
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
        return float(number)
    return int(number) if number == number.to_integral_value() else float(number)


def coerce_payload(table: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A written JSON object read column by column; an unknown key is PostgREST's PGRST204."""
    columns = COLUMNS[table]
    out = {}
    for key, value in payload.items():
        col = columns.get(key)
        if col is None:
            message = f"Could not find the '{key}' column of '{table}' in the schema cache"
            raise PgError(400, "PGRST204", message)
        out[key] = coerce(table, col, value)
    return out


def check_row(table: Table, row: dict[str, Any]) -> None:
    """NOT NULL and CHECK constraints of one complete row (PostgreSQL's order: columns first)."""
    for col in table.columns:
        value = row.get(col.name)
        if value is None:
            if not col.nullable:
                raise PgError(
                    400,
                    "23502",
                    f'null value in column "{col.name}" of relation '
                    f'"{table.name}" violates not-null constraint',
                    "Failing row contains (...).",
                )
        elif col.allowed is not None and value not in col.allowed:
            raise PgError(
                400,
                "23514",
                f'new row for relation "{table.name}" violates check '
                f'constraint "{table.name}_{col.name}_check"',
                "Failing row contains (...).",
            )


def _json_scalar_text(table: str, col: Column, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    raise PgError(400, "22P02", f"invalid input syntax for column {table}.{col.name}")


def _syntax(kind: str, value: Any) -> PgError:
    return PgError(400, "22P02", f'invalid input syntax for type {kind}: "{value}"')


def unique_violation(table: str, key: str) -> PgError:
    return PgError(
        409,
        "23505",
        f'duplicate key value violates unique constraint "{table}_pkey"',
        f"Key (id)=({key}) already exists.",
    )


def foreign_key_violation(document_id: str | None, *, referenced: bool = False) -> PgError:
    """A line pointing at a missing document, or (``referenced``) a document id change that
    would orphan its lines."""
    docs, items = SALES_DOCUMENTS.name, SALES_DOCUMENT_ITEMS.name
    constraint = f'"{items}_document_id_fkey"'
    if referenced:
        return PgError(
            409,
            "23503",
            f'update or delete on table "{docs}" violates foreign key constraint {constraint} '
            f'on table "{items}"',
            f'Key (id)=({document_id}) is still referenced from table "{items}".',
        )
    return PgError(
        409,
        "23503",
        f'insert or update on table "{items}" violates foreign key constraint {constraint}',
        f'Key (document_id)=({document_id}) is not present in table "{docs}".',
    )
