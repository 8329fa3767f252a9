"""Document totals with Metakocka's rounding, shared by the seeder and the simulated UI edit.

Why: a seeded or edited CRM header must agree with what Metakocka computes for the same lines,
or every linked document would look changed. Line net = round_half_up(qty * price *
(1 - disc/100), 2); tax per rate = round_half_up(sum of nets at that rate * rate/100, 2);
total = subtotal + tax. Amounts are integer cents (exact, and fast enough to seed 100,000
documents per organization); half-up means away from zero on a tie, as ``Decimal.ROUND_HALF_UP``.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache


def to_decimal(value: object) -> Decimal:
    return Decimal(repr(value) if isinstance(value, float) else str(value))


@lru_cache(maxsize=1 << 16)
def line_net_cents(quantity: object, unit_price: object, discount_percent: object = None) -> int:
    """Net line total in cents, rounded half up (cached: seeded lines repeat a lot)."""
    net = to_decimal(quantity) * to_decimal(unit_price) * 100
    if discount_percent:
        net *= 1 - to_decimal(discount_percent) / 100
    return int(net.quantize(Decimal(1), ROUND_HALF_UP))


def tax_cents(net_cents: int, rate: object) -> int:
    """Tax on ``net_cents`` at ``rate`` percent, rounded half up to a cent."""
    return _tax_at_ratio(net_cents, _rate_ratio(rate))


def totals_cents(lines: Iterable[tuple[int, object]]) -> tuple[int, int, int]:
    """(subtotal, tax, total) in cents from ``(line net cents, tax rate percent)`` pairs."""
    by_rate: dict[tuple[int, int], int] = {}
    for net, rate in lines:
        ratio = _rate_ratio(rate)
        by_rate[ratio] = by_rate.get(ratio, 0) + net
    subtotal = sum(by_rate.values())
    tax = sum(_tax_at_ratio(net, ratio) for ratio, net in by_rate.items())
    return subtotal, tax, subtotal + tax


def item_totals(items: Iterable[dict]) -> tuple[int, int, int]:
    """Totals in cents of CRM item rows (``quantity``, ``unit_price``, ``discount_percent``,
    ``tax_rate``)."""
    return totals_cents(
        (
            line_net_cents(i["quantity"], i["unit_price"], i.get("discount_percent")),
            i.get("tax_rate") or 0,
        )
        for i in items
    )


@lru_cache(maxsize=64)
def _rate_ratio(rate: object) -> tuple[int, int]:
    return to_decimal(rate).as_integer_ratio()


def _tax_at_ratio(net_cents: int, ratio: tuple[int, int]) -> int:
    return _div_half_up(net_cents * ratio[0], ratio[1] * 100)


def _div_half_up(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(abs(numerator), denominator)
    quotient += 2 * remainder >= denominator
    return quotient if numerator >= 0 else -quotient
