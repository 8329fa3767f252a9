"""The content hash: what "this document changed" means for the sync.

The plan compares each side's hash with the hash stored at the last successful sync, so the hash
must cover exactly the content that is synced, in a form both systems give back unchanged:
- no ids, numbers, status, timestamps, totals (derived) or side-specific extras;
- decimals by value ("1" == "1.00" == "1.0000"), unit prices to the 4 decimals both systems keep;
- texts stripped, an empty text equal to a missing one, e-mail in lower case, country in upper case;
- the defaults a system fills in equal to leaving the value out (unit "kos", country "SI").
If any of this were stricter, a document written to the other side would read back "changed" and
echo between the systems forever.
"""

import hashlib
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from sync_pipeline.domain.document import (
    DEFAULT_UNIT,
    HOME_COUNTRY,
    Customer,
    DocumentLine,
    SalesDocument,
)

UNIT_PRICE_STEP = Decimal("0.0001")


def content_hash(doc: SalesDocument) -> str:
    """A 32-character hex digest of the synced content of `doc`."""
    content = [
        doc.document_type,
        _date(doc.document_date),
        _date(doc.due_date),
        _upper(doc.currency),
        _text(doc.notes),
        _customer(doc.customer),
        [_line(line) for line in doc.lines],
    ]
    # repr of nested lists of str/None is unambiguous (quoted, escaped) and cheaper than JSON.
    return hashlib.blake2b(repr(content).encode(), digest_size=16).hexdigest()


# Customers, numbers and whole lines repeat across an organization's documents, and all of them
# are immutable: each is turned into its hashed form once (a nightly run hashes every document of
# both systems). The cached lists are only ever read, by `repr`.


@lru_cache(maxsize=65536)
def _customer(customer: Customer) -> list:
    return [
        _text(customer.name),
        _lower(customer.email),
        _text(customer.tax_id),
        _text(customer.address),
        _text(customer.post_code),
        _text(customer.city),
        _upper(customer.country) or HOME_COUNTRY,
    ]


@lru_cache(maxsize=65536)
def _line(line: DocumentLine) -> list:
    return [
        _text(line.description),
        _number(line.quantity),
        _unit_price(line.unit_price),
        _number(line.discount_percent or Decimal(0)),
        _number(line.tax_rate),
        _text(line.product_code),
        _text(line.unit) or DEFAULT_UNIT,
    ]


@lru_cache(maxsize=65536)
def _unit_price(value: Decimal) -> str:
    return _number(value.quantize(UNIT_PRICE_STEP, rounding=ROUND_HALF_UP))


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


@lru_cache(maxsize=65536)
def _number(value: Decimal) -> str:
    text = format(Decimal(value).normalize(), "f")
    return "0" if text == "-0" else text
