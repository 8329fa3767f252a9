"""Fresh AI CRM rows (PostgREST JSON) <-> canonical `SalesDocument`.

Read side: a `sales_documents` row with its `sales_document_items` embedded; numeric columns may
come as JSON numbers or as strings, timestamps as ISO timestamptz. Write side: the `sales_documents`
row and its `sales_document_items` rows, ready for an upsert.

Item ids are derived from the document id and the line's position, so writing the same document
twice is an upsert of the same rows, and reading it back restores the line order even though
PostgREST does not promise the order of embedded rows (another order would change the content hash).
"""

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from sync_pipeline.domain.document import (
    Customer,
    DocumentLine,
    MappingError,
    SalesDocument,
)
from sync_pipeline.domain.interning import shared_decimals

CUSTOMER_COLUMNS = {
    "name": "customer_name",
    "email": "customer_email",
    "tax_id": "customer_tax_id",
    "address": "customer_address",
    "post_code": "customer_post_code",
    "city": "customer_city",
    "country": "customer_country",
}
"""Customer field -> sales_documents column (the CRM keeps the partner on the document)."""


def crm_item_id(document_id: str, index: int) -> str:
    """The id of the `index`-th (0-based) item the pipeline writes for a document."""
    return str(uuid.uuid5(uuid.UUID(document_id), str(index)))


def crm_row_to_canonical(row: dict) -> SalesDocument:
    """Read a CRM row; `MappingError` names the column when a value cannot be read."""
    if not isinstance(row, dict):
        raise MappingError(f"row: expected a JSON object, got {type(row).__name__}")
    document_id = _uuid(row, "id")
    items = row.get("sales_document_items") or []
    if not isinstance(items, list):
        raise MappingError(f"sales_document_items: expected a list, got {items!r}")
    country = _text(row.get("customer_country"))
    customer = {field: _text(row.get(column)) for field, column in CUSTOMER_COLUMNS.items()}
    return SalesDocument(
        organization_id=_uuid(row, "organization_id"),
        document_type=_text(row.get("document_type")),
        document_date=_date(row, "document_date"),
        due_date=_date(row, "due_date"),
        customer=Customer(
            **customer | {"name": customer["name"] or "", "country": country and country.upper()}
        ),
        lines=tuple(
            _line(item, number)
            for number, item in enumerate(_in_written_order(document_id, items), start=1)
        ),
        currency=(_text(row.get("currency")) or "EUR").upper(),
        notes=_text(row.get("notes")),
        status=_text(row.get("status")),
        document_number=_text(row.get("document_number")),
        crm_document_id=document_id,
        updated_at=_timestamp(row, "updated_at"),
    )


def canonical_to_crm_row(doc: SalesDocument, *, crm_document_id: str) -> tuple[dict, list[dict]]:
    """The `sales_documents` row and its `sales_document_items` rows for an upsert.

    Amounts are written as strings (exact; PostgreSQL reads them into numeric columns). A document
    born in Metakocka has no CRM number, so it is numbered with its Metakocka `count_code`.
    """
    customer = doc.customer
    row = {
        "id": crm_document_id,
        "organization_id": doc.organization_id,
        "document_type": doc.document_type,
        "document_number": doc.document_number or doc.metakocka_count_code,
        "document_date": doc.document_date.isoformat(),
        "due_date": doc.due_date.isoformat() if doc.due_date else None,
        **{column: getattr(customer, field) for field, column in CUSTOMER_COLUMNS.items()},
        "currency": doc.currency,
        "subtotal_amount": _plain(doc.subtotal),
        "tax_amount": _plain(doc.tax_amount),
        "total_amount": _plain(doc.total),
        "status": doc.status,
        "notes": doc.notes,
    }
    items = [
        {
            "id": crm_item_id(crm_document_id, index),
            "document_id": crm_document_id,
            "product_id": None,
            "product_code": line.product_code,
            "description": line.description,
            "quantity": _plain(line.quantity),
            "unit": line.unit,
            "unit_price": _plain(line.unit_price),
            "discount_percent": _plain(line.discount_percent),
            "tax_rate": _plain(line.tax_rate),
            "total_amount": _plain(line.net_amount),
        }
        for index, line in enumerate(doc.lines)
    ]
    return row, items


def _in_written_order(document_id: str, items: list) -> list:
    """Items the pipeline wrote in their written order, then the others in the order received."""
    written = {crm_item_id(document_id, index): index for index in range(len(items))}

    def rank(position: int) -> tuple[int, int]:
        item = items[position]
        item_id = str(item.get("id")) if isinstance(item, dict) else None
        return written.get(item_id, len(items)), position

    return [items[position] for position in sorted(range(len(items)), key=rank)]


def _line(item, number: int) -> DocumentLine:
    where = f"sales_document_items line {number}"
    if not isinstance(item, dict):
        raise MappingError(f"{where}: expected an object, got {item!r}")
    return DocumentLine(
        description=_text(item.get("description")) or "",
        quantity=_required_decimal(item, "quantity", where),
        unit_price=_required_decimal(item, "unit_price", where),
        tax_rate=_required_decimal(item, "tax_rate", where),
        discount_percent=_decimal(item, "discount_percent", where) or Decimal(0),
        product_code=_text(item.get("product_code")),
        unit=_text(item.get("unit")),
    )


def _text(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _uuid(row: dict, column: str) -> str:
    try:
        return str(uuid.UUID(str(row[column])))
    except KeyError:
        raise MappingError(f"{column}: missing") from None
    except ValueError:
        raise MappingError(f"{column}: not a uuid: {row[column]!r}") from None


def _decimal(record: dict, column: str, where: str) -> Decimal | None:
    return _decimal_value(record.get(column), column, where)


@shared_decimals  # equal values share one Decimal (domain/interning.py)
def _decimal_value(value, column: str, where: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise MappingError(f"{where} {column}: not a number: {value!r}")
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise MappingError(f"{where} {column}: not a number: {value!r}") from None
    if not number.is_finite():
        raise MappingError(f"{where} {column}: not a finite number: {value!r}")
    return number


def _required_decimal(record: dict, column: str, where: str) -> Decimal:
    number = _decimal(record, column, where)
    if number is None:
        raise MappingError(f"{where} {column}: missing")
    return number


def _date(row: dict, column: str) -> date | None:
    text = _text(row.get(column))
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        raise MappingError(f"{column}: not a date: {text!r}") from None


def _timestamp(row: dict, column: str) -> datetime | None:
    text = _text(row.get(column))
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MappingError(f"{column}: not a timestamp: {text!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _plain(value: Decimal) -> str:
    """A decimal as PostgreSQL reads it: no exponent ("100", not "1E+2")."""
    text = format(value.normalize(), "f")
    return "0" if text == "-0" else text
