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

from sync_pipeline.domain.document import DEFAULT_UNIT, HOME_COUNTRY, SalesDocument

UNIT_PRICE_STEP = Decimal("0.0001")


def content_hash(doc: SalesDocument) -> str:
    """A 32-character hex digest of the synced content of `doc`."""
    customer = doc.customer
    content = [
        doc.document_type,
        _date(doc.document_date),
        _date(doc.due_date),
        _upper(doc.currency),
        _text(doc.notes),
        [
            _text(customer.name),
            _lower(customer.email),
            _text(customer.tax_id),
            _text(customer.address),
            _text(customer.post_code),
            _text(customer.city),
            _upper(customer.country) or HOME_COUNTRY,
        ],
        [
            [
                _text(line.description),
                _number(line.quantity),
                _number(line.unit_price.quantize(UNIT_PRICE_STEP, rounding=ROUND_HALF_UP)),
                _number(line.discount_percent or Decimal(0)),
                _number(line.tax_rate),
                _text(line.product_code),
                _text(line.unit) or DEFAULT_UNIT,
            ]
            for line in doc.lines
        ],
    ]
    # repr of nested lists of str/None is unambiguous (quoted, escaped) and cheaper than JSON.
    return hashlib.blake2b(repr(content).encode(), digest_size=16).hexdigest()


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


def _number(value: Decimal) -> str:
    text = format(Decimal(value).normalize(), "f")
    return "0" if text == "-0" else text
