"""Metakocka's amounts on the wire: line prices (net or gross), its own sums, and payments.

Why apart from `metakocka/mapping.py`: these are the values that were off by a cent or misread
(issue 16, item 4), and each has a reading the docs leave open, so each rule and its reason
sits here, once (docs/metakocka.md):

- a line carries `price` (net) or `price_with_tax` (gross) (metakocka-api.md section 4). A gross
  line is read as the net unit price derived from it (the CRM keeps net prices) and keeps its
  gross price, so writing it back sends `price_with_tax` again while the price is unchanged;
  where Metakocka answers with both, its net `price` is taken as it is;
- Metakocka's sums (`sum_basic`, `sum_discount`, every `sum_tax_<code>`, `sum_all`, `sum_paid`,
  section 5) are read to the cent into `StatedTotals`; an unreadable one is a `MappingError`,
  never a silent zero;
- a document's own discount (`discount_percent` / `discount_value`, section 4) is synced content
  like the lines' discounts; a replace that removes one says "0", since the docs do not say that
  leaving a field out of a replace clears it;
- payments (`mark_paid`, with `show_payment_detail`) may come in Slovenian decimals ("1.895,01",
  section 3) like any amount; they are Metakocka's (field ownership) and a replace sends them
  back unchanged, since on a replace "earlier payments are replaced" by the ones sent (section 4).
"""

from decimal import Decimal

from sync_pipeline.domain.amounts import ZERO, StatedTotals, net_from_gross
from sync_pipeline.domain.document import DocumentLine, MappingError, SalesDocument
from sync_pipeline.metakocka.wire import as_list, format_decimal, parse_decimal

PAYMENT_FIELDS = ("mark_paid",)
"""Header fields with Metakocka's payments: sent back unchanged by a full replace."""
SUM_TAX_PREFIX = "sum_tax_"
DISCOUNT_FIELDS = ("discount_percent", "discount_value")
"""The document's discount: a percentage, then an amount (metakocka-api.md section 4)."""


def read_line_price(raw: dict, tax_rate: Decimal, where: str) -> tuple[Decimal, Decimal | None]:
    """(net unit price, gross unit price or None) of a product_list line."""
    price = _decimal(raw, "price", where)
    gross = _decimal(raw, "price_with_tax", where)
    if price is None and gross is None:
        raise MappingError(f"{where} price: missing (neither price nor price_with_tax)")
    return (net_from_gross(gross, tax_rate) if price is None else price), gross


def line_price_fields(line: DocumentLine) -> dict:
    """`price_with_tax` for a line still priced by its gross price, else the net `price` (to 4
    decimals, as Metakocka keeps prices); never both, so Metakocka cannot pick the other one."""
    if line.gross_price is not None:
        return {"price_with_tax": format_decimal(line.gross_price)}
    return {"price": format_decimal(line.unit_price, 4)}


def read_document_discount(doc: dict) -> dict[str, Decimal]:
    """`discount_percent` and `discount_value` of a document (0 where there is none)."""
    return {key: _decimal(doc, key) or ZERO for key in DISCOUNT_FIELDS}


def document_discount_fields(doc: SalesDocument, current: SalesDocument | None) -> dict:
    """The document's discount to send: its own, and "0" where the Metakocka document being
    replaced (`current`) has one and `doc` has none."""
    fields = {}
    for key in DISCOUNT_FIELDS:
        value = getattr(doc, key)
        if value or (current is not None and getattr(current, key)):
            fields[key] = format_decimal(value)
    return fields


def read_stated_totals(doc: dict) -> StatedTotals:
    """Metakocka's own sums of a document, as it sent them (None where it sent none)."""
    taxes = []
    for key in doc:
        if key.startswith(SUM_TAX_PREFIX) and (tax := _decimal(doc, key)) is not None:
            taxes.append((key[len(SUM_TAX_PREFIX) :].lower(), tax))
    paid = _decimal(doc, "sum_paid")
    if paid is None:
        payments = [_decimal(p, "amount", "mark_paid") for p in as_list(doc.get("mark_paid"))]
        if any(amount is not None for amount in payments):
            paid = sum((amount for amount in payments if amount is not None), Decimal(0))
    return StatedTotals(
        subtotal=_decimal(doc, "sum_basic"),
        discount=_decimal(doc, "sum_discount"),
        tax_by_code=tuple(taxes),
        total=_decimal(doc, "sum_all"),
        paid=paid,
    )


def paid_in_full(stated: StatedTotals) -> bool:
    """Do the payments Metakocka records cover the document's total?"""
    return (
        stated.paid is not None
        and stated.total is not None
        and stated.total > 0
        and stated.paid >= stated.total
    )


def _decimal(record, key: str, where: str | None = None) -> Decimal | None:
    if not isinstance(record, dict):
        raise MappingError(f"{where or key}: expected an object, got {record!r}")
    try:
        return parse_decimal(record.get(key))
    except ValueError as exc:
        raise MappingError(f"{f'{where} ' if where else ''}{key}: {exc}") from None
