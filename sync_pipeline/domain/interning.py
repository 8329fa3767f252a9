"""One object per repeated value in the documents a run holds in memory.

A nightly full sweep holds every document of an organization from both systems at once (100,000
per side). Most of their values repeat: the same customer's name and address on every document
for that customer, the same product description, unit and code on thousands of lines, the same
tax rates, discounts, quantities and prices. Read naively, each repetition is its own object
(a short `str` costs 50-100 bytes, a `Decimal` 104): most of a mapped document's memory. Both
are immutable, so one object per value can stand for all of them (docs/performance.md).
"""

from collections.abc import Callable, Iterable
from decimal import Decimal
from functools import wraps

MAX_SHARED = 20_000
"""Values remembered per cache; past that, new values are simply not shared (memory stays
bounded whatever the data: a full sweep keeps few documents whole, `sync/lean.py`, so a cache
of every price and sum it read would outweigh what it shares)."""


def shared_decimals(parse: Callable[..., Decimal | None]) -> Callable[..., Decimal | None]:
    """Wrap a parser `parse(value, *context) -> Decimal | None` so that equal raw values give the
    same `Decimal` object. Only successful parses are kept; a value that fails raises as before.
    The raw value's type is part of the key (`True` is not `1`)."""
    cache: dict = {}

    @wraps(parse)
    def parse_shared(value, *context):
        key = (type(value), value)
        try:
            number = cache.get(key)
        except TypeError:  # an unhashable value: let the parser say what is wrong with it
            return parse(value, *context)
        if number is None:
            number = parse(value, *context)
            if number is not None and len(cache) < MAX_SHARED:
                cache[key] = number
        return number

    parse_shared.cache = cache  # type: ignore[attr-defined]
    return parse_shared


class TextInterner:
    """Replaces the texts of decoded JSON records by one shared `str` per value.

    Keys in `unique_keys` hold values that never repeat (ids, numbers, timestamps): they are left
    alone, so the interner's own table only holds texts worth sharing.
    """

    def __init__(self, unique_keys: frozenset[str] = frozenset()):
        self._texts: dict[str, str] = {}
        self._unique = unique_keys

    def record(self, record: dict) -> dict:
        texts, unique, value_of = self._texts, self._unique, self._value
        out = {}
        for key, value in record.items():
            if isinstance(value, str):
                if key not in unique:
                    value = texts.setdefault(value, value)
            elif isinstance(value, dict | list):
                value = value_of(value)
            out[key] = value
        if len(texts) > MAX_SHARED:
            texts.clear()
        return out

    def _value(self, value):
        if isinstance(value, dict):
            return self.record(value)
        if isinstance(value, list):
            return [self._value(item) for item in value]
        if isinstance(value, str):
            return self._texts.setdefault(value, value)
        return value


def texts_held(*columns: Iterable) -> dict[str, str]:
    """{text: the object} over the texts of `columns` (other values skipped): looking a text up
    gives back the object already held, so a copy read again can be dropped for it."""
    return {value: value for column in columns for value in column if isinstance(value, str)}
