"""The canonical sales document: the one shape both systems are translated to and from.

Mappers turn a CRM row or a Metakocka JSON document into a `SalesDocument`, and back. Everything the
pipeline decides (hashes, plans, conflicts) is decided on this shape, so it imports nothing but the
standard library and the domain's own arithmetic: no HTTP, no Dagster, no database.

Totals are *derived*, never compared: both systems recompute them (Metakocka always does on write),
so comparing stored totals would report differences that are only rounding. The rule is the one
Metakocka uses (`domain/amounts.py`). A document read from Metakocka also carries the sums
Metakocka stated (`stated_totals`): those, not the derived ones, are what the pipeline writes
(`booked_totals`).
"""

import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property

from sync_pipeline.domain.amounts import (
    HUNDRED,
    StatedTotals,
    Totals,
    booked,
    document_totals,
    net_from_gross,
    round_cents,
    tax_on,
)

DOCUMENT_TYPES = ("offer", "order", "invoice", "credit_note", "proforma")
"""The canonical vocabulary: the CRM's types, plus the credit note only Metakocka has."""

CRM_DOCUMENT_TYPES = ("invoice", "offer", "order", "proforma")
"""The types the CRM has (sm/60's CHECK); a Metakocka credit note has none of them."""

CRM_STATUSES = ("draft", "sent", "paid", "overdue", "cancelled")
"""The CRM's statuses (sm/60's CHECK), the canonical ones. The CRM's own code also writes
``canceled``, which is read as ``cancelled``."""

DEFAULT_UNIT = "kos"
"""A line without a unit counts pieces: Metakocka needs a unit, and "kos" is its "piece"."""

HOME_COUNTRY = "SI"
"""Metakocka is a Slovenian ERP: a customer without a country is domestic (it answers "SI")."""

EXTERNAL_REF_PREFIX = "FC"
"""Prefix of the compact CRM id written into Metakocka's `buyer_order` (max 30 characters)."""


class MappingError(ValueError):
    """A record from either system cannot be expressed as a `SalesDocument`.

    `reason` is written for a person (it names the field and the value), because it ends up in the
    error log of a quarantined document.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Customer:
    """The buyer, as both systems keep it on the document (Metakocka's `partner`)."""

    name: str
    email: str | None = None
    tax_id: str | None = None
    address: str | None = None
    post_code: str | None = None
    city: str | None = None
    country: str | None = None
    """ISO 3166-1 alpha-2 code, upper case (e.g. `SI`)."""
    metakocka_partner_id: str | None = field(default=None, compare=False)
    """The Metakocka partner this customer is (`mk_id`), where known: it pins the partner on a
    write instead of letting Metakocka match or create one. Not synced content."""
    metakocka_partner_code: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class DocumentLine:
    """One line item. `unit_price` is net; `discount_percent` and `tax_rate` are percentages."""

    description: str
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal
    discount_percent: Decimal = Decimal("0")
    product_code: str | None = None
    """Article code Metakocka matches products by."""
    unit: str | None = None
    service: bool = field(default=False, compare=False)
    """A service product (shipping, labour): Metakocka takes a negative quantity only for one."""
    price_with_tax: Decimal | None = field(default=None, compare=False)
    """The gross unit price the line was entered with in Metakocka (`price_with_tax`), where it
    was: kept so that writing the line back sends the same gross price, not the net one (rounded
    to the CRM's cents, 19.99 gross would come back as 19.9958). Not synced content: `unit_price`
    is, and this counts only while it is the net price derived from it (`gross_price`)."""

    @property
    def gross_price(self) -> Decimal | None:
        """The gross price this line is priced by, or None for a net line: `price_with_tax`, as
        long as `unit_price` is still the net price derived from it (at the CRM's cents; a CRM
        user who changed the price or the tax rate made it a net line)."""
        gross = self.price_with_tax
        if gross is None or round_cents(self.unit_price) != round_cents(
            net_from_gross(gross, self.tax_rate)
        ):
            return None
        return gross

    @property
    def price(self) -> Decimal:
        """The price the line is priced by: its gross price on a gross line, else the net one."""
        gross = self.gross_price
        return self.unit_price if gross is None else gross

    @property
    def undiscounted_amount(self) -> Decimal:
        """Quantity x `price`, rounded to cents."""
        return round_cents(self.quantity * self.price)

    @property
    def amount(self) -> Decimal:
        """Quantity x `price` less the line's discount, rounded to cents."""
        return round_cents(self.quantity * self.price * (HUNDRED - self.discount_percent) / HUNDRED)

    @property
    def tax(self) -> Decimal:
        """The line's own tax: on its net amount, or contained in its gross one. (A document's
        tax is rounded per rate over the sums, so it need not be the sum of its lines'.)"""
        return tax_on(self.amount, self.tax_rate, gross=self.gross_price is not None)

    @property
    def net_amount(self) -> Decimal:
        return self.amount if self.gross_price is None else self.amount - self.tax


@dataclass(frozen=True)
class SalesDocument:
    """A sales document in canonical form, with its ids on either side (None where absent)."""

    organization_id: str
    document_type: str
    document_date: date
    customer: Customer
    lines: tuple[DocumentLine, ...]
    discount_percent: Decimal = Decimal(0)
    """The document's own discount (Metakocka's `discount_percent`), on top of the lines'."""
    discount_value: Decimal = Decimal(0)
    """An amount off the whole document (Metakocka's `discount_value`), after the percentage."""
    currency: str = "EUR"
    due_date: date | None = None
    notes: str | None = None
    status: str | None = None
    document_number: str | None = None
    """The CRM's own number; Metakocka's number is `metakocka_count_code`."""
    crm_document_id: str | None = None
    metakocka_id: str | None = None
    metakocka_count_code: str | None = None
    metakocka_doc_type: str | None = None
    updated_at: datetime | None = None
    """When the source side last changed it (CRM `updated_at`, Metakocka last change)."""
    source_extra: dict = field(default_factory=dict, compare=False, hash=False)
    """Side-specific fields the mappers keep for a round trip but that are not synced content."""
    stated_totals: StatedTotals | None = field(default=None, compare=False, hash=False)
    """The sums Metakocka sent with the document (None for a CRM document): derived from the
    same content, but Metakocka's to the cent, so never recomputed in their place."""

    @cached_property
    def totals(self) -> Totals:
        """Derived from the lines and the document's discount by Metakocka's rule
        (`domain/amounts.py`)."""
        return document_totals(self.lines, self.discount_percent, self.discount_value)

    @property
    def booked_totals(self) -> Totals:
        """What to write as the document's totals: Metakocka's own sums where it stated them,
        else the derived ones."""
        return booked(self.totals, self.stated_totals)

    @property
    def subtotal(self) -> Decimal:
        return self.totals.subtotal

    @property
    def tax_amount(self) -> Decimal:
        return self.totals.tax

    @property
    def total(self) -> Decimal:
        return self.totals.total


def crm_id_to_external_ref(crm_document_id: str) -> str:
    """Encode a CRM uuid into the 28-character reference stored in Metakocka's `buyer_order`.

    `buyer_order` holds at most 30 characters and a uuid has 36, so the 16 bytes are written in
    base32 (RFC 4648; case-insensitive, so a case-folding search in Metakocka cannot confuse two
    references), without its padding: `base64.b32encode`'s text, from the uuid's number.

    Every Metakocka document of a full sweep is checked against its reference, and the
    standard library's base32 (pure Python before 3.13) cost about 4 % of a sweep's CPU with
    the `UUID` objects around it; `test_mappers.py` checks these two against it.
    """
    bits = uuid.UUID(crm_document_id).int << 2  # 130 bits: 26 digits of 5, the last 2 bits 0
    pairs = _BASE32_PAIRS
    return EXTERNAL_REF_PREFIX + "".join([pairs[(bits >> shift) & 0x3FF] for shift in _PAIR_SHIFTS])


def external_ref_to_crm_id(external_ref: str | None) -> str | None:
    """Decode a `buyer_order` written by `crm_id_to_external_ref` (in any case); None for
    anything else. As `base64.b32decode` of it with its padding, the 2 bits past the uuid's 128
    are not looked at."""
    if not external_ref or not external_ref.upper().startswith(EXTERNAL_REF_PREFIX):
        return None
    body = external_ref[len(EXTERNAL_REF_PREFIX) :].upper()
    if not _BASE32_BODY.fullmatch(body):
        return None
    text = format(int(body.translate(_BASE32_AS_INT_DIGITS), 32) >> 2, "032x")
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
"""RFC 4648's base32 alphabet, digit by digit value."""
_BASE32_PAIRS = [high + low for high in _BASE32 for low in _BASE32]
"""Two digits by the 10 bits they write (the table `base64.b32encode` itself uses)."""
_PAIR_SHIFTS = range(120, -1, -10)
_BASE32_BODY = re.compile(f"[{_BASE32}]{{26}}")
_BASE32_AS_INT_DIGITS = str.maketrans(_BASE32, "0123456789abcdefghijklmnopqrstuv")
"""Each digit as `int(text, 32)` writes the same value."""


CRM_ID_NAMESPACE = uuid.UUID("6f1c3a52-4f7e-4b8e-9a57-0d3c2b6e1f10")


def crm_id_for_metakocka_document(organization_id: str, metakocka_id: str) -> str:
    """The CRM id a Metakocka-born document gets: deterministic, so re-creating it is an upsert.

    A create in the CRM that is retried after an unknown outcome writes the same row again instead
    of a second one; and a lost link can be rebuilt from the ids alone.
    """
    return str(uuid.uuid5(CRM_ID_NAMESPACE, f"{organization_id}:metakocka:{metakocka_id}"))
