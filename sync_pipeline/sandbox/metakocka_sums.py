"""The simulated Metakocka's sums and payments: how a document's ``sum_*`` come about.

Why its own module: this is where a client is most easily a cent off, and where the docs leave
most to the reader, so every rule says where it comes from (sections of
``/work/shared/metakocka-api.md``) and, where the docs are silent, takes the stricter reading: the
one a client that recomputes totals, or forgets a field, gets wrong.

- Lines carry ``price`` (net) **or** ``price_with_tax`` (gross, "Metakocka recommends gross for
  web shops", §4). A gross line is kept as entered: its amount is quantity x gross price x (1 -
  discount), rounded to cents, and its tax is extracted from the gross sum of its tax code, so a
  19.99 gross line stays 19.99 (docs silent on the rounding; the stricter reading: a client that
  recomputes gross totals from a net price rounded to cents is a cent off).
- The document's discount (``discount_percent`` / ``discount_value``, "document discount", §4;
  "the other documented option" for a coupon) is applied, not just stored: the percentage comes
  off each tax code's sum (rounded to cents), then the value is split over the positive sums in
  proportion, to the cent (odd cents to the largest remainders, the earliest first), in each
  sum's own terms (net from net lines, gross from gross lines). How Metakocka splits it is not
  documented; a percentage outside 0-100, a negative value, or a value larger than the document
  is refused (the stricter reading).
- Sums per §5: line amounts rounded half up to cents; tax rounded once per tax code over the sum
  of that code's amounts (net and gross lines apart); ``sum_basic`` = the net of everything,
  ``sum_all`` = ``sum_basic`` + Σ ``sum_tax_*`` (the identity of the examples), ``sum_discount`` =
  what the discounts took off.
- Payments: ``mark_paid`` entries (``payment_type``, ``date``, optional ``amount``: without one the
  entry pays what is left of ``sum_all``) make ``sum_paid`` (§4). "On update earlier payments are
  replaced" (§4): a replace (put_document with ``mk_id``) keeps only the payments it sends (the
  stricter reading of a full rewrite). ``show_payment_detail`` adds ``mark_paid[]`` with each
  ``amount`` (§5), and payment amounts "can use Slovenian format "1.895,01"" (§3): the sandbox
  answers them, and ``sum_paid``, that way whenever payments are shown.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sync_pipeline.sandbox.metakocka_values import (
    TAX_RATES,
    as_list,
    discount_factor,
    format_date,
    format_decimal,
    invalid,
    is_true,
    money,
    parse_date,
    parse_decimal,
    round2,
    slovenian,
    to_wire,
)


def document_discount(req: dict[str, Any]) -> dict[str, str]:
    """The stored ``discount_percent`` / ``discount_value`` of a request (those it gives)."""
    stored = {}
    for name in ("discount_percent", "discount_value"):
        if str(req.get(name) or "").strip():
            value = parse_decimal(req[name], name)
            if value < 0 or (name == "discount_percent" and value > 100):
                raise invalid(name, req[name])
            stored[name] = format_decimal(value)
    return stored


def compute_totals(lines: list[dict], discount: dict[str, str]) -> dict[str, str]:
    """``sum_basic``, ``sum_discount``, ``sum_tax_<code>`` and ``sum_all`` of stored lines and
    the document's stored discount."""
    sums: dict[tuple[str, bool], Decimal] = {}
    undiscounted = Decimal(0)
    for line in lines:
        gross = "price_with_tax" in line
        value = Decimal(line["amount"]) * Decimal(line["price_with_tax" if gross else "price"])
        undiscounted += round2(value)
        amount = round2(value * discount_factor(line.get("discount", "0"), "product_list"))
        sums[(line["tax"], gross)] = sums.get((line["tax"], gross), Decimal(0)) + amount
    sums = _less_document_discount(sums, discount)
    basic = Decimal(0)
    tax_by_code: dict[str, Decimal] = {}
    for (code, gross), amount in sums.items():
        rate = TAX_RATES[code]
        tax = round2(amount * rate / (1 + rate)) if gross else round2(amount * rate)
        basic += amount - tax if gross else amount
        tax_by_code[code] = tax_by_code.get(code, Decimal(0)) + tax
    totals = {"sum_basic": money(basic), "sum_discount": money(undiscounted - sum(sums.values()))}
    for code in sorted(tax_by_code):
        totals[f"sum_tax_{code.lower()}"] = money(tax_by_code[code])
    totals["sum_all"] = money(basic + sum(tax_by_code.values()))
    return totals


def _less_document_discount(sums: dict, discount: dict[str, str]) -> dict:
    percent = Decimal(discount.get("discount_percent", "0"))
    value = Decimal(discount.get("discount_value", "0"))
    after = {key: amount - round2(amount * percent / 100) for key, amount in sums.items()}
    cents = int(round2(value) * 100)
    weights = {key: int(amount * 100) for key, amount in after.items() if amount > 0}
    if cents > sum(weights.values()):
        raise invalid("discount_value", discount["discount_value"], "at most the document's amount")
    if not cents:
        return after
    whole = sum(weights.values())
    parts = {key: divmod(cents * weight, whole) for key, weight in weights.items()}
    shares = {key: share for key, (share, _) in parts.items()}
    for key in sorted(parts, key=lambda k: -parts[k][1])[: cents - sum(shares.values())]:
        shares[key] += 1
    return {key: amount - Decimal(shares.get(key, 0)) / 100 for key, amount in after.items()}


def payments(raw: Any, sum_all: str) -> tuple[list[dict], str]:
    """The stored ``mark_paid`` entries of a request (amounts filled in) and ``sum_paid``."""
    stored: list[dict] = []
    paid = Decimal(0)
    for i, entry in enumerate(as_list(raw)):
        where = f"mark_paid[{i}]"
        entry = to_wire(entry)
        if not isinstance(entry, dict):
            raise invalid(where, entry)
        for name in ("payment_type", "date"):
            if not str(entry.get(name) or "").strip():
                raise invalid(f"{where}.{name}", entry.get(name))
        if str(entry.get("amount") or "").strip():
            amount = parse_decimal(entry["amount"], f"{where}.amount")
        else:
            amount = max(Decimal(sum_all) - paid, Decimal(0))
        paid += amount
        stored.append(
            {
                "payment_type": str(entry["payment_type"]).strip(),
                "date": format_date(parse_date(entry["date"], f"{where}.date")),
                "amount": money(amount),
            }
        )
    return stored, money(paid)


def show_payments(doc: dict[str, Any], req: dict[str, Any]) -> dict[str, Any]:
    """A rendered document as ``show_payment_detail`` wants it: ``mark_paid[]`` and ``sum_paid``
    in Slovenian decimals; without the flag, no ``mark_paid`` (it is opt-in, §5)."""
    if not is_true(req.get("show_payment_detail")):
        doc.pop("mark_paid", None)
        return doc
    doc["mark_paid"] = [{**p, "amount": slovenian(p["amount"])} for p in doc.get("mark_paid", [])]
    doc["sum_paid"] = slovenian(doc["sum_paid"])
    return doc
