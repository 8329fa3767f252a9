"""Fresh AI CRM rows (PostgREST JSON) <-> canonical `SalesDocument`, for either published schema.

Read side: a ``sales_documents`` row with all of its ``sales_document_items`` (read by
`crm.documents`), and the rows it refers to (`crm.directory`). Write side: a
`CrmDocumentWrite`: the columns to set and every line, only ever columns the CRM's profile has.

Where each canonical field lives in the CRM (docs/crm.md has the table):
- the customer's name, e-mail and address are the document's own columns (``customer_*`` in
  sm60, ``contact_*`` in fixed10); post code, city, country and the Metakocka partner come from
  the partner the pipeline kept on the document when it wrote it (below), else from its contact
  (``contacts``) and ``metakocka_contact_mappings``;
- a line's Metakocka product code is its product's ``metakocka_product_mappings.metakocka_code``,
  else the product's ``sku``, else the organization's service product code; a line with none
  of them cannot go to Metakocka: its document is quarantined with the reason
  (`MissingProductCode`), before any call;
- a line's discount is ``discount_rate`` (fixed10) or ``metadata.discount`` (sm60, where the
  CRM's own sync reads it: src/lib/integrations/metakocka/sales-document-sync.ts);
- what Metakocka has and the CRM has no column for (a partner's tax number, post code, city and
  country without a contact; the document's own discount; a line's code or unit the CRM's
  products do not give, whether it is a service product's, the gross price it was entered
  with: docs/metakocka.md) is kept in
  the row's ``metadata`` under ``"metakocka"``, so it is not lost and reads back the same: the
  rest of ``metadata`` is the CRM's and is written back unchanged.

Statuses and types are the CRM's CHECK vocabulary (``cancelled``; ``canceled``, which the CRM's
own code also writes, is read as ``cancelled``). Amounts are written with the CRM's 2 decimals:
line tax and gross total (``total_amount`` is with tax, as the CRM's sync service reads it),
document tax and total (and, fixed10, subtotal and discount): for a document from Metakocka,
Metakocka's own sums.

Line ids are derived from the document id and the line's position, so writing the same document
twice updates the same rows, and reading it back restores the line order (the CRM keeps none in
sm60: lines the pipeline did not write follow in ``sort_order`` (fixed10), creation, id order).
"""

import hashlib
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Protocol

from sync_pipeline.crm.documents import LINES_KEY, CrmDocumentWrite
from sync_pipeline.crm.profiles import ITEMS, CrmProfile, CrmSchema
from sync_pipeline.domain.countries import country_code
from sync_pipeline.domain.document import (
    CRM_DOCUMENT_TYPES,
    CRM_STATUSES,
    DEFAULT_UNIT,
    Customer,
    DocumentLine,
    MappingError,
    SalesDocument,
)
from sync_pipeline.domain.hashing import Precision
from sync_pipeline.domain.interning import shared_decimals
from sync_pipeline.domain.text import stripped_or_none

OURS = "metakocka"
"""The key of ``metadata`` where the pipeline keeps what the CRM has no column for."""
STATUS_SPELLINGS = {"canceled": "cancelled"}
CRM_OWNER = "crm_owner"
"""`SalesDocument.source_extra` key: the row's organization_id and user_id as read."""
CRM_METADATA = "crm_metadata"
"""`SalesDocument.source_extra` key: the row's ``metadata`` as read (written back unchanged)."""


class CrmLookups(Protocol):
    """The rows a document refers to (`crm.directory.CrmDirectory`)."""

    def contact(self, contact_id: str | None) -> dict | None: ...
    def partner_of_contact(self, contact_id: str | None) -> dict | None: ...
    def product(self, product_id: str | None) -> dict | None: ...
    def product_code(self, product_id: str | None) -> str | None: ...
    def contact_for_partner(self, partner_id: str | None) -> str | None: ...
    def product_for_code(self, code: str | None) -> str | None: ...


@dataclass(frozen=True)
class CrmContext:
    """What mapping one organization's CRM rows needs besides the rows."""

    organization_id: str
    schema: CrmSchema
    lookups: CrmLookups
    integration_user_id: str | None = None
    service_product_code: str | None = None

    @property
    def profile(self) -> CrmProfile:
        return self.schema.profile

    @property
    def precision(self) -> Precision:
        return Precision(quantity=self.profile.quantity_decimals)


class MissingProductCode(MappingError):
    """A CRM line that has no Metakocka product code by any of the rules."""


def crm_line_id(document_id: str, index: int) -> str:
    """The id of the `index`-th (0-based) line the pipeline writes for a document."""
    return crm_line_ids(document_id, index + 1)[index]


def crm_line_ids(document_id: str, count: int) -> list[str]:
    """`crm_line_id` of the first `count` lines: `uuid5(document id, str(index))`, with the
    document's id parsed once (a full sweep computes them for every CRM document)."""
    namespace = uuid.UUID(document_id).bytes
    return [_uuid5_text(namespace, str(index).encode()) for index in range(count)]


def _uuid5_text(namespace: bytes, name: bytes) -> str:
    """`str(uuid.uuid5(...))` without the `UUID` objects: the SHA-1 of namespace and name, its
    version and variant bits set (RFC 4122), in the 8-4-4-4-12 hex form."""
    raw = bytearray(hashlib.sha1(namespace + name).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50
    raw[8] = (raw[8] & 0x3F) | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# -- reading ---------------------------------------------------------------------------------


def crm_row_to_canonical(row: dict, ctx: CrmContext) -> SalesDocument:
    """Read a CRM row; `MappingError` names the column when a value cannot be read."""
    if not isinstance(row, dict):
        raise MappingError(f"row: expected a JSON object, got {type(row).__name__}")
    profile = ctx.profile
    document_id = _uuid(row, "id")
    document_type = stripped_or_none(row.get("document_type"))
    if document_type not in CRM_DOCUMENT_TYPES:
        raise MappingError(
            f"document_type: {document_type!r} is not a CRM document type "
            f"({', '.join(CRM_DOCUMENT_TYPES)})"
        )
    items = row.get(LINES_KEY) or []
    if not isinstance(items, list):
        raise MappingError(f"{LINES_KEY}: expected a list, got {items!r}")
    metadata = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
    ours = metadata.get(OURS) if isinstance(metadata.get(OURS), dict) else {}
    return SalesDocument(
        organization_id=ctx.organization_id,
        document_type=sys.intern(document_type),  # four words over every document
        document_date=_date(row, "document_date"),
        due_date=_date(row, "due_date"),
        customer=_customer(row, ctx, ours.get("partner") or {}),
        lines=tuple(
            _line(item, number, ctx)
            for number, item in enumerate(_in_written_order(document_id, items, profile), 1)
        ),
        **_document_discount(ours.get("discount")),
        currency=(stripped_or_none(row.get("currency")) or "EUR").upper(),
        notes=stripped_or_none(row.get("notes")),
        status=crm_status(row.get("status")),
        document_number=stripped_or_none(row.get("document_number")),
        crm_document_id=document_id,
        updated_at=_timestamp(row, "updated_at"),
        source_extra={
            CRM_OWNER: {
                "organization_id": stripped_or_none(row.get("organization_id")),
                "user_id": stripped_or_none(row.get("user_id")),
            },
            CRM_METADATA: metadata,
        },
    )


def _document_discount(kept) -> dict:
    """The document's own discount as the pipeline kept it (``metadata.metakocka.discount``)."""
    kept = kept if isinstance(kept, dict) else {}
    where = f"metadata.{OURS}.discount"
    return {
        f"discount_{key}": _decimal_value(kept.get(key), key, where) or Decimal(0)
        for key in ("percent", "value")
    }


def crm_status(value) -> str | None:
    """The CRM's status in its CHECK vocabulary (``canceled`` read as ``cancelled``); other
    values the CRM's code writes (``pending``, ``confirmed``) are kept as they are."""
    text = stripped_or_none(value)
    # a handful of words over every document: one object each (sys.intern)
    return sys.intern(STATUS_SPELLINGS.get(text.lower(), text.lower())) if text else None


def _customer(row: dict, ctx: CrmContext, kept: dict) -> Customer:
    columns = ctx.profile.customer
    contact_id = stripped_or_none(row.get(columns["contact"]))
    contact = ctx.lookups.contact(contact_id)
    if kept or contact is None:  # the document's own copy (written by the pipeline) first
        post_code, city, country = (
            stripped_or_none(kept.get(k)) for k in ("post_code", "city", "country")
        )
        partner = {"metakocka_id": kept.get("mk_id"), "metakocka_code": kept.get("code")}
    else:
        post_code = stripped_or_none(contact.get("postal_code") or contact.get("zip"))
        city, country = (
            stripped_or_none(contact.get("city")),
            stripped_or_none(contact.get("country")),
        )
        partner = ctx.lookups.partner_of_contact(contact_id) or {}
    return Customer(
        name=stripped_or_none(row.get(columns["name"])) or "",
        email=stripped_or_none(row.get(columns["email"])),
        tax_id=stripped_or_none(kept.get("tax_id")),
        address=stripped_or_none(row.get(columns["address"])),
        post_code=post_code,
        city=city,
        country=country_code(country) if country else None,
        metakocka_partner_id=stripped_or_none(partner.get("metakocka_id")),
        metakocka_partner_code=stripped_or_none(partner.get("metakocka_code")),
    )


def _in_written_order(document_id: str, items: list, profile: CrmProfile) -> list:
    """The pipeline's own lines by position; others after them by ``sort_order`` (fixed10),
    creation time and id (the CRM keeps no order of its own in sm60)."""
    written = {
        line_id: index for index, line_id in enumerate(crm_line_ids(document_id, len(items)))
    }

    def rank(item) -> tuple:
        if not isinstance(item, dict):
            return (0, len(items), "", "")
        sort = item.get(profile.line_sort) if profile.line_sort else 0
        return (
            sort if isinstance(sort, int) else 0,
            written.get(str(item.get("id")), len(items)),
            str(item.get("created_at") or ""),
            str(item.get("id")),
        )

    return sorted(items, key=rank)


def line_product_code(item: dict, ctx: CrmContext) -> tuple[str | None, bool]:
    """A CRM line's Metakocka product code by the rules (module docstring), and whether it is a
    service product's; ``(None, False)`` when no rule gives one."""
    metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
    ours = metadata.get(OURS) if isinstance(metadata.get(OURS), dict) else {}
    code = ctx.lookups.product_code(stripped_or_none(item.get("product_id"))) or stripped_or_none(
        ours.get("code")
    )
    if code is None and ctx.service_product_code:
        return ctx.service_product_code, True
    return code, bool(ours.get("service"))


def lines_without_product_code(row: dict, ctx: CrmContext) -> int:
    """How many lines of a CRM row (read with its lines) have no Metakocka product code: the
    mapping stops at the first, an operator wants to know them all."""
    items = row.get(LINES_KEY) if isinstance(row, dict) else None
    if not isinstance(items, list):
        return 0
    return sum(isinstance(item, dict) and line_product_code(item, ctx)[0] is None for item in items)


def _line(item, number: int, ctx: CrmContext) -> DocumentLine:
    where = f"sales_document_items line {number}"
    if not isinstance(item, dict):
        raise MappingError(f"{where}: expected an object, got {item!r}")
    profile = ctx.profile
    metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
    ours = metadata.get(OURS) if isinstance(metadata.get(OURS), dict) else {}
    product_id = stripped_or_none(item.get("product_id"))
    product = ctx.lookups.product(product_id)
    code, service = line_product_code(item, ctx)
    if code is None:
        description = stripped_or_none(item.get("description")) or ""
        why = (
            f"its product {product_id} has no Metakocka mapping and no SKU"
            if product_id
            else "it has no product"
        )
        raise MissingProductCode(
            f"line {number} ({description!r}): no Metakocka product code: {why}, and the "
            "organization has no service_product_code configured"
        )
    discount = (
        item.get(profile.line_discount) if profile.line_discount else metadata.get("discount")
    )
    return DocumentLine(
        description=stripped_or_none(item.get("description")) or "",
        quantity=_required_decimal(item, "quantity", where),
        unit_price=_required_decimal(item, "unit_price", where),
        tax_rate=_decimal_value(item.get("tax_rate"), "tax_rate", where) or Decimal(0),
        discount_percent=_decimal_value(discount, "discount", where) or Decimal(0),
        product_code=code,
        unit=stripped_or_none(ours.get("unit")) or stripped_or_none((product or {}).get("unit")),
        service=service,
        price_with_tax=_decimal_value(ours.get("price_with_tax"), "price_with_tax", where),
    )


# -- writing ---------------------------------------------------------------------------------


def canonical_to_crm_write(
    doc: SalesDocument,
    ctx: CrmContext,
    *,
    crm_document_id: str,
    create: bool,
    current: SalesDocument | None = None,
) -> CrmDocumentWrite:
    """The write that makes the CRM hold `doc`: a create (a document born in Metakocka, owned by
    the organization's integration user) or an update of ``current``, the CRM's document as
    read: its owner, number and contact are kept, and so is its ``metadata`` but for the
    pipeline's own key (an update whose CRM side could not be read leaves ``metadata`` alone).

    `MappingError` when the CRM cannot hold the document: a type it has no word for (a credit
    note), or no integration user to own a new one."""
    profile = ctx.profile
    if doc.document_type not in CRM_DOCUMENT_TYPES:
        raise MappingError(
            f"document_type: the CRM has no type for a Metakocka {doc.document_type!r}"
        )
    customer = doc.customer
    header = {
        "document_type": doc.document_type,
        "document_date": doc.document_date.isoformat(),
        "due_date": doc.due_date.isoformat() if doc.due_date else None,
        profile.customer["name"]: customer.name,
        profile.customer["email"]: customer.email,
        profile.customer["address"]: customer.address,
        "currency": doc.currency,
        "notes": doc.notes,
        **_totals(doc, profile),
    }
    contact_id = ctx.lookups.contact_for_partner(customer.metakocka_partner_id)
    if contact_id is not None:
        header[profile.customer["contact"]] = contact_id
    if doc.status in CRM_STATUSES:
        header["status"] = doc.status
    if create or current is not None:
        metadata = dict(current.source_extra.get(CRM_METADATA) or {}) if current else {}
        kept = metadata.get(OURS) if isinstance(metadata.get(OURS), dict) else {}
        kept = {**kept, "partner": _kept_partner(customer), "discount": _kept_discount(doc)}
        kept = {key: value for key, value in kept.items() if value}
        if kept:
            metadata[OURS] = kept
        else:
            metadata.pop(OURS, None)
        header["metadata"] = metadata or None
    if create:
        if not ctx.integration_user_id:
            raise MappingError(
                "no crm_integration_user_id configured for the organization: a document from "
                "Metakocka needs a CRM owner (sales_documents.user_id is NOT NULL)"
            )
        header = {
            "id": crm_document_id,
            "user_id": ctx.integration_user_id,
            "organization_id": ctx.organization_id,
            "document_number": doc.document_number or doc.metakocka_count_code,
            "status": header.pop("status", "draft"),
            **header,
        }
    owner = current.source_extra.get(CRM_OWNER) if current else None
    lines = [
        _line_row(line, index, crm_document_id, ctx, owner) for index, line in enumerate(doc.lines)
    ]
    return CrmDocumentWrite(crm_document_id, header, lines, create=create, owner=owner)


def _kept_partner(customer: Customer) -> dict:
    """What the CRM's document has no column for of the partner: it is the document's own copy
    of the partner, read back instead of its contact's (so a document copied from Metakocka
    reads back as it was, whatever the contact says today)."""
    kept = {
        "tax_id": customer.tax_id,
        "post_code": customer.post_code,
        "city": customer.city,
        "country": customer.country,
        "mk_id": customer.metakocka_partner_id,
        "code": customer.metakocka_partner_code,
    }
    return {k: v for k, v in kept.items() if v}


def _kept_discount(doc: SalesDocument) -> dict:
    """The document's own discount: neither published schema has a column for it (fixed10's
    ``discount_amount`` is the total of every discount, lines' included, in money), so it is
    kept where the pipeline keeps what the CRM has no column for; the totals written include
    it."""
    kept = {"percent": doc.discount_percent, "value": doc.discount_value}
    return {key: _plain(value) for key, value in kept.items() if value}


def _line_row(
    line: DocumentLine,
    index: int,
    document_id: str,
    ctx: CrmContext,
    owner: dict | None,
) -> dict:
    profile = ctx.profile
    product_id = ctx.lookups.product_for_code(line.product_code)
    product = ctx.lookups.product(product_id)
    row = {
        "id": crm_line_id(document_id, index),
        profile.item_parent: document_id,
        "product_id": product_id,
        "description": line.description,
        "quantity": _plain(line.quantity),
        "unit_price": _plain(line.unit_price),
        "tax_rate": _plain(line.tax_rate),
        "tax_amount": _plain(line.tax),
        "total_amount": _plain(line.net_amount + line.tax),
    }
    metadata: dict = {}
    if profile.line_discount:
        row[profile.line_discount] = _plain(line.discount_percent)
        row[profile.line_discount_amount] = _plain(line.undiscounted_amount - line.amount)
    elif line.discount_percent:
        metadata["discount"] = _plain(line.discount_percent)
    if profile.line_sort:
        row[profile.line_sort] = index
    ours = {}
    if product_id is None and line.product_code:
        ours["code"] = line.product_code
    derived_unit = stripped_or_none((product or {}).get("unit")) or DEFAULT_UNIT
    if (stripped_or_none(line.unit) or DEFAULT_UNIT) != derived_unit:
        ours["unit"] = line.unit
    if line.service:
        ours["service"] = True
    if line.gross_price is not None:
        ours["price_with_tax"] = _plain(line.gross_price)
    if ours:
        metadata[OURS] = ours
    row["metadata"] = metadata or None
    if ctx.schema.has(ITEMS, "organization_id"):
        row["organization_id"] = (owner or {}).get("organization_id") or ctx.organization_id
    return row


def _totals(doc: SalesDocument, profile: CrmProfile) -> dict:
    """Document amounts as the CRM keeps them: tax and total with tax (and fixed10's subtotal
    and discount). A document from Metakocka gets Metakocka's own sums, to the cent
    (`SalesDocument.booked_totals`), never ones recomputed from its lines."""
    booked = doc.booked_totals
    totals = {"tax_amount": _plain(booked.tax), "total_amount": _plain(booked.total)}
    if profile.subtotal:
        totals[profile.subtotal] = _plain(booked.subtotal)
    if profile.discount_amount:
        totals[profile.discount_amount] = _plain(booked.discount)
    return totals


# -- values ----------------------------------------------------------------------------------


def _uuid(row: dict, column: str) -> str:
    try:
        return str(uuid.UUID(str(row[column])))
    except KeyError:
        raise MappingError(f"{column}: missing") from None
    except ValueError:
        raise MappingError(f"{column}: not a uuid: {row[column]!r}") from None


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
    number = _decimal_value(record.get(column), column, where)
    if number is None:
        raise MappingError(f"{where} {column}: missing")
    return number


def _date(row: dict, column: str) -> date | None:
    text = stripped_or_none(row.get(column))
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        raise MappingError(f"{column}: not a date: {text!r}") from None


def _timestamp(row: dict, column: str) -> datetime | None:
    text = stripped_or_none(row.get(column))
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
