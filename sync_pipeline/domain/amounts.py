"""Amounts by Metakocka's rule: a line's amount, tax per rate, and a document's totals.

Why a module of its own: the CRM's totals are written from these (for a document the pipeline
writes to the CRM), validation compares them with the sums Metakocka states, and both must use
the one rule Metakocka uses, or a document is off by a cent. The rule, as metakocka-api.md
(sections 4 and 5) and the sandbox (`sandbox/metakocka_sums.py`) read it; where the docs are
silent the reading is ours, written down in docs/metakocka.md:

- a line's amount is quantity x its price x (1 - its discount), rounded half up to cents; the
  price is the net `price`, or the gross `price_with_tax` for a line entered gross (Metakocka
  recommends gross prices for web shops);
- amounts are summed per tax rate, net lines and gross lines apart;
- the document's discount comes off those sums: `discount_percent` of each sum, rounded to cents,
  then `discount_value` split over the (positive) sums in proportion to them, to the cent (the
  largest remainders get the odd cents), so it comes off in each sum's own terms: net from net
  lines, gross from gross lines (a web shop's coupon is gross);
- tax is rounded once per sum: net x rate on net lines, extracted from the gross sum
  (gross x rate / (100 + rate)) on gross lines, so a gross line keeps its gross price to the cent;
- the subtotal (Metakocka's `sum_basic`) is the net of every sum, the total (`sum_all`) the
  subtotal plus the tax (on gross lines: exactly their gross sum).

What Metakocka states about a document it sent (`StatedTotals`) is kept beside this and wins
wherever a total is written (`booked`): these derived totals may be compared with it, never
put in its place.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
HUNDRED = Decimal(100)

NET_PRICE_PLACES = 6
"""Decimals of a net unit price derived from a gross one. For a gross price in cents and a tax
rate with at most one decimal, the exact quotient is never nearer than 0.0004 cent to a half
cent, so rounding the 6-decimal value to the CRM's cents gives the cent of the exact quotient
(no double rounding)."""


def round_cents(value: Decimal) -> Decimal:
    """Round half up to cents, the way invoices are rounded."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def net_from_gross(gross_price: Decimal, tax_rate: Decimal) -> Decimal:
    """The net unit price of a gross one at `tax_rate` percent, to `NET_PRICE_PLACES`."""
    net = gross_price * HUNDRED / (HUNDRED + tax_rate)
    return net.quantize(Decimal(1).scaleb(-NET_PRICE_PLACES), rounding=ROUND_HALF_UP)


def tax_on(amount: Decimal, tax_rate: Decimal, *, gross: bool) -> Decimal:
    """Tax at `tax_rate` percent on a net amount, or the tax contained in a gross one."""
    if gross:
        return round_cents(amount * tax_rate / (HUNDRED + tax_rate))
    return round_cents(amount * tax_rate / HUNDRED)


class PricedLine(Protocol):
    """What the totals need of a line (`document.DocumentLine`)."""

    tax_rate: Decimal

    @property
    def amount(self) -> Decimal: ...
    @property
    def undiscounted_amount(self) -> Decimal: ...
    @property
    def gross_price(self) -> Decimal | None: ...


@dataclass(frozen=True)
class Totals:
    """A document's totals in its currency, rounded to cents."""

    subtotal: Decimal
    """Net, after every discount (Metakocka's `sum_basic`)."""
    discount: Decimal
    """What the discounts took off (`sum_discount`)."""
    tax: Decimal
    """Σ of the tax per rate (Σ `sum_tax_*`)."""
    total: Decimal
    """With tax (`sum_all`)."""


def document_totals(
    lines: Iterable[PricedLine], discount_percent: Decimal = ZERO, discount_value: Decimal = ZERO
) -> Totals:
    """The totals of `lines` less the document's discount, by Metakocka's rule (the module's
    docstring)."""
    sums: dict[tuple[Decimal, bool], Decimal] = {}
    undiscounted = ZERO
    for line in lines:
        key = (line.tax_rate, line.gross_price is not None)
        sums[key] = sums.get(key, ZERO) + line.amount
        undiscounted += line.undiscounted_amount
    sums = less_document_discount(sums, discount_percent, discount_value)
    subtotal = tax = ZERO
    for (rate, gross), amount in sums.items():
        rate_tax = tax_on(amount, rate, gross=gross)
        subtotal += amount - rate_tax if gross else amount
        tax += rate_tax
    return Totals(
        subtotal=subtotal,
        discount=undiscounted - sum(sums.values(), ZERO),
        tax=tax,
        total=subtotal + tax,
    )


def less_document_discount(sums: dict, percent: Decimal, value: Decimal) -> dict:
    """`sums` (in the order given) less `percent` of each, then less their share of `value`."""
    after = {key: amount - round_cents(amount * percent / HUNDRED) for key, amount in sums.items()}
    shares = split_in_proportion(round_cents(value), after)
    return {key: amount - shares.get(key, ZERO) for key, amount in after.items()}


def split_in_proportion(value: Decimal, amounts: dict) -> dict:
    """`value` split over the positive `amounts` in proportion to them, in whole cents adding up
    to `value` exactly: each gets its share rounded down, and the cents left over go one each to
    the largest remainders (the earliest first on a tie). With no positive amount, the first
    amount takes it all."""
    cents = int(abs(value) * 100)
    weights = {key: int(amount * 100) for key, amount in amounts.items() if amount > 0}
    if not cents or not amounts:
        return {}
    if not weights:
        return {next(iter(amounts)): value}
    whole = sum(weights.values())
    parts = {key: divmod(cents * weight, whole) for key, weight in weights.items()}
    shares = {key: share for key, (share, _) in parts.items()}
    left = cents - sum(shares.values())
    for key in sorted(parts, key=lambda k: -parts[k][1])[:left]:
        shares[key] += 1
    sign = -1 if value < 0 else 1
    return {key: Decimal(sign * share).scaleb(-2) for key, share in shares.items()}


@dataclass(frozen=True)
class StatedTotals:
    """The sums Metakocka sent with a document (get_document / search, metakocka-api.md section
    5), to the cent as it sent them; None where it sent none."""

    subtotal: Decimal | None = None
    """`sum_basic`."""
    discount: Decimal | None = None
    """`sum_discount`."""
    tax_by_code: tuple[tuple[str, Decimal], ...] = ()
    """Every `sum_tax_<code>` as (code, tax), e.g. ("ex4", 10.16)."""
    total: Decimal | None = None
    """`sum_all`."""
    paid: Decimal | None = None
    """`sum_paid`, else the sum of the payments it listed (`mark_paid`)."""

    @property
    def tax(self) -> Decimal | None:
        """Σ `sum_tax_*`; else `sum_all - sum_basic` (the examples' identity); else None."""
        if self.tax_by_code:
            return sum((tax for _, tax in self.tax_by_code), ZERO)
        if self.total is not None and self.subtotal is not None:
            return self.total - self.subtotal
        return None


def booked(derived: Totals, stated: StatedTotals | None) -> Totals:
    """The totals to write: Metakocka's own sums wherever it stated them, derived ones only
    where it stated none (a document the CRM created, or a sum Metakocka left out)."""
    if stated is None:
        return derived
    total = derived.total if stated.total is None else stated.total
    tax = derived.tax if stated.tax is None else stated.tax
    return Totals(
        subtotal=total - tax if stated.subtotal is None else stated.subtotal,
        discount=derived.discount if stated.discount is None else stated.discount,
        tax=tax,
        total=total,
    )
