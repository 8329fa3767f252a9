"""The content hash: what "this document changed" means for the sync.

The plan compares each side's hash with the hash stored at the last successful sync, so the hash
must cover exactly the content that is synced, in a form both systems give back unchanged:
- no ids, numbers, status, timestamps, totals (derived) or side-specific extras;
- not the customer's tax number: no CRM table has a column for it (docs/crm.md), so it is
  Metakocka's partner register's, which fills it in on a document whose partner is pinned by its
  Metakocka id (the CRM's contact mapping): compared, it would make every such pair look changed;
- decimals by value ("1" == "1.00"), compared at the precision the CRM keeps (`Precision`: unit
  prices with 2 decimals in both published schemas, quantities with 2 or 3): a Metakocka price of
  1.2345 is stored in the CRM as 1.23, and the pair must then read as synced, not as changed
  (and must not be pushed back to Metakocka, rounded, on the next run);
- texts stripped, an empty text equal to a missing one, e-mail in lower case, country in upper case;
- the defaults a system fills in equal to leaving the value out (unit "kos", country "SI");
- the document's discount only where there is one, so a document without one hashes as it did
  before documents had discounts (a stored hash stays valid).
If any of this were stricter, a document written to the other side would read back "changed" and
echo between the systems forever.

`synced_content` is that normalised form: the hash is taken of it, and a conflict's differences
(`conflicts.field_differences`) are read from it field by field.
"""

import hashlib
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import NamedTuple

from sync_pipeline.domain.document import (
    DEFAULT_UNIT,
    HOME_COUNTRY,
    Customer,
    DocumentLine,
    SalesDocument,
)


@dataclass(frozen=True)
class Precision:
    """Decimals the CRM keeps (numeric(15, scale)): what two values may differ by and still be
    the same content."""

    quantity: int = 2
    unit_price: int = 2
    percent: int = 2
    """Tax rates and discounts: numeric(5,2)."""


DEFAULT_PRECISION = Precision()
"""The CRM's default schema (sm/60): quantities and prices with 2 decimals."""

HEADER_FIELDS = ("document_type", "document_date", "due_date", "currency", "notes")
DISCOUNT_FIELDS = ("discount_percent", "discount_value")
CUSTOMER_FIELDS = ("name", "email", "address", "post_code", "city", "country")
LINE_FIELDS = (
    "description",
    "quantity",
    "unit_price",
    "discount_percent",
    "tax_rate",
    "product_code",
    "unit",
)


class SyncedContent(NamedTuple):
    """A document's synced content in its one normalised form: what the content hash covers,
    and what a conflict's differences list field by field (`conflicts.field_differences`). Both
    read it from here, so a difference is listed exactly where the hashes differ."""

    header: tuple[str | None, ...]
    """The values of `HEADER_FIELDS`, in that order."""
    customer: list
    """The values of `CUSTOMER_FIELDS`, in that order."""
    lines: list[list]
    """Per line, the values of `LINE_FIELDS`, in that order."""
    discount: list
    """The values of `DISCOUNT_FIELDS` (`NO_DISCOUNT` for a document without one)."""
    discounted: bool
    """Whether the document has a discount of its own (only then is it hashed)."""


NO_DISCOUNT = ["0", "0"]
"""The discount of a document without one, normalised (both zero)."""


def synced_content(doc: SalesDocument, precision: Precision = DEFAULT_PRECISION) -> SyncedContent:
    """The synced content of `doc`, normalised (the module docstring says how)."""
    discounted = _is_discounted(doc)
    return SyncedContent(
        _header(doc),
        _customer(doc.customer),
        [_line(line, precision) for line in doc.lines],
        _discount(doc, precision) if discounted else NO_DISCOUNT,
        discounted,
    )


def content_hash(doc: SalesDocument, precision: Precision = DEFAULT_PRECISION) -> str:
    """A 32-character hex digest of the synced content of `doc`: of the `repr` of
    ``[*header, customer, lines]`` (and ``discount`` where there is one), the parts of
    `synced_content`. repr of nested lists of str/None is unambiguous (quoted, escaped) and
    cheaper than JSON.

    The text is put together from each customer's and line's own repr, made once (a list's repr
    is its items' reprs, joined by ", ", in brackets): a full sweep hashes every document of both
    systems, and re-writing the same lines' reprs was a third of a hash's time.
    `test_mappers.py` checks the digest is that of the repr of `synced_content`'s parts."""
    parts = [repr(value) for value in _header(doc)]
    parts.append(_customer_text(doc.customer))
    parts.append("[" + ", ".join([_line_text(line, precision) for line in doc.lines]) + "]")
    if _is_discounted(doc):
        parts.append(repr(_discount(doc, precision)))
    return hashlib.blake2b(f"[{', '.join(parts)}]".encode(), digest_size=16).hexdigest()


def _header(doc: SalesDocument) -> tuple[str | None, ...]:
    return (
        doc.document_type,
        _date(doc.document_date),
        _date(doc.due_date),
        _upper(doc.currency),
        _text(doc.notes),
    )


def _is_discounted(doc: SalesDocument) -> bool:
    return bool(doc.discount_percent or doc.discount_value)


# Customers, numbers and whole lines repeat across an organization's documents, and all of them
# are immutable: each is turned into its hashed form once (a nightly run hashes every document of
# both systems). The cached lists are only ever read (by `repr`, and field by field for a
# conflict).


@lru_cache(maxsize=65536)
def _customer(customer: Customer) -> list:
    return [
        _text(customer.name),
        _lower(customer.email),
        _text(customer.address),
        _text(customer.post_code),
        _text(customer.city),
        _upper(customer.country) or HOME_COUNTRY,
    ]


def _discount(doc: SalesDocument, precision: Precision) -> list:
    """Percent as the CRM keeps percentages, value as it keeps amounts (prices' decimals)."""
    return [
        _rounded(doc.discount_percent, precision.percent),
        _rounded(doc.discount_value, precision.unit_price),
    ]


@lru_cache(maxsize=65536)
def _line(line: DocumentLine, precision: Precision) -> list:
    return [
        _text(line.description),
        _rounded(line.quantity, precision.quantity),
        _rounded(line.unit_price, precision.unit_price),
        _rounded(line.discount_percent or Decimal(0), precision.percent),
        _rounded(line.tax_rate, precision.percent),
        _text(line.product_code),
        _text(line.unit) or DEFAULT_UNIT,
    ]


@lru_cache(maxsize=65536)
def _customer_text(customer: Customer) -> str:
    return repr(_customer(customer))


@lru_cache(maxsize=65536)
def _line_text(line: DocumentLine, precision: Precision) -> str:
    return repr(_line(line, precision))


@lru_cache(maxsize=65536)
def _rounded(value: Decimal, decimals: int) -> str:
    """Half away from zero, as PostgreSQL rounds into numeric(p, s); then by value."""
    step = Decimal(1).scaleb(-decimals)
    text = format(Decimal(value).quantize(step, rounding=ROUND_HALF_UP).normalize(), "f")
    return "0" if text == "-0" else text


def _text(value: str | None) -> str | None:
    return (value or "").strip() or None


def _lower(value: str | None) -> str | None:
    text = _text(value)
    return text and text.lower()


def _upper(value: str | None) -> str | None:
    text = _text(value)
    return text and text.upper()


def _date(value: date | None) -> str | None:
    return value.isoformat() if value else None
