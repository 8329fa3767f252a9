"""Readers and writers for Metakocka's wire conventions (metakocka-api.md §3).

Metakocka sends nearly every scalar as a string, mixes decimal formats ("19.99", "19,99",
"1.895,01"), sends a one-element list as a bare object, and writes dates with the Ljubljana UTC
offset ("2014-09-13+02:00") or as "23.03.2022". These helpers read every documented form and write
the one form that is always accepted, so the mapper itself never deals with a quirk.

Readers raise `ValueError` with a readable message for a value they cannot read; the mapper turns
that into a `MappingError` naming the field.
"""

import re
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from sync_pipeline.domain.interning import shared_decimals

LJUBLJANA = ZoneInfo("Europe/Ljubljana")

_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:$|[T ]|[+-]\d{2}:?\d{2}$|Z$)")
_DATE_WITH_OFFSET = re.compile(r"(\d{4}-\d{2}-\d{2})([+-]\d{2}:\d{2}|Z)")
_SLOVENIAN_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})$")
_TRUE = frozenset({"true", "1", "yes", "da"})
_FALSE = frozenset({"false", "0", "no", "ne"})


@shared_decimals  # equal values share one Decimal (domain/interning.py)
def parse_decimal(value) -> Decimal | None:
    """Read a number in any form Metakocka uses; None for a missing or empty value.

    With both separators present the last one is the decimal separator ("1.895,01" and
    "1,895.01" are both 1895.01). A lone separator is decimal: "19,99" is 19.99, and "1,895" is
    1.895 (Metakocka's Slovenian format), while several equal separators group thousands.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return _finite(Decimal(repr(value)), value)
    text = str(value).strip().replace(" ", "").replace("\u00a0", "")
    if not text:
        return None
    if "," in text and "." in text:
        thousands, decimal = (".", ",") if text.rfind(",") > text.rfind(".") else (",", ".")
        text = text.replace(thousands, "").replace(decimal, ".")
    else:
        for separator in (",", "."):
            count = text.count(separator)
            if count > 1:
                text = text.replace(separator, "")
            elif count == 1:
                text = text.replace(separator, ".")
    try:
        return _finite(Decimal(text), value)
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None


def _finite(number: Decimal, original) -> Decimal:
    if not number.is_finite():
        raise ValueError(f"not a finite number: {original!r}")
    return number


def format_decimal(value: Decimal, places: int | None = None) -> str:
    """Write a decimal with a dot and no exponent; `places` fixes the decimals (rounded half up).

    Without `places` the shortest exact form is written ("100", "19.99"), so nothing is lost.
    """
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    else:
        value = value.normalize()
    text = format(value, "f")
    return text[1:] if text.startswith("-") and not value else text


def as_list(value) -> list:
    """A list stays a list; a bare object is a one-element list; None (or "") is empty."""
    if value is None or value == "":
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def parse_mk_date(value) -> date | None:
    """The calendar date of "2014-09-13+02:00", "2014-09-13", "23.03.2022" or a timestamp.

    A timestamp's date is the date as written (Ljubljana local time), not its UTC date.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        if match := _ISO_DATE.match(text):
            return date(int(match[1]), int(match[2]), int(match[3]))
        if match := _SLOVENIAN_DATE.match(text):
            return date(int(match[3]), int(match[2]), int(match[1]))
    except ValueError:
        pass
    raise ValueError(f"not a date: {value!r}")


def parse_mk_timestamp(value) -> datetime | None:
    """An aware UTC datetime; a time without an offset (or a bare date) is Ljubljana local time."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        if not text:
            return None
        # A date with an offset first: Python would read "2014-09-13+02:00" as 02:00 o'clock.
        if match := _DATE_WITH_OFFSET.fullmatch(text):
            moment = datetime.fromisoformat(f"{match[1]}T00:00:00{match[2]}")
        else:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                day = parse_mk_date(text)
                moment = datetime(day.year, day.month, day.day)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LJUBLJANA)
    return moment.astimezone(UTC)


def format_mk_date(value: date) -> str:
    """Write "YYYY-MM-DD+01:00" in winter, "+02:00" in summer (Ljubljana's offset that midnight)."""
    offset = datetime(value.year, value.month, value.day, tzinfo=LJUBLJANA).strftime("%z")
    return f"{value.isoformat()}{offset[:3]}:{offset[3:]}"


def format_mk_timestamp(value: datetime) -> str:
    """Write "2024-09-12T12:13:15+02:00": Ljubljana local time to the second; naive is refused."""
    if value.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return value.astimezone(LJUBLJANA).replace(microsecond=0).isoformat()


def parse_bool(value) -> bool | None:
    """Read "true"/"false" (and real booleans, "1"/"0", "da"/"ne"); None for a missing value."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r}")
