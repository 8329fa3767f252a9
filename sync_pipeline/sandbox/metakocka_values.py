"""Value rules of the simulated Metakocka: registers, wire formats, quirks (sums and payments:
``metakocka_sums``).

Why a separate module: these are the facts a client most often gets wrong (string-typed
scalars, two decimal formats, two date formats with a Ljubljana offset), so
they live in one small place that the store and the tests can read. References are to
``/work/shared/metakocka-api.md`` sections.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

DOC_TYPES = (
    "sales_offer",
    "sales_order",
    "sales_bill_domestic",
    "sales_bill_foreign",
    "sales_bill_credit_note",
    "sales_bill_prepaid",
)
BILL_TYPES = frozenset(t for t in DOC_TYPES if t.startswith("sales_bill_"))

#: Auto numbering (§4): caller's count_code wins; otherwise prefix + per-company sequence.
COUNT_CODE_PREFIX = {
    "sales_offer": "PON-",
    "sales_order": "PP-",
    "sales_bill_domestic": "1-MK-",
    "sales_bill_foreign": "1-MK-",
    "sales_bill_prepaid": "1-MK-",
    "sales_bill_credit_note": "DOB-",
}

CURRENCIES = frozenset({"EUR", "USD", "GBP", "CHF", "CZK", "HUF", "PLN", "RSD", "BAM"})

#: Tax register of the sandbox companies: code -> rate. EX4 works out to 22 % (§4 [I]).
TAX_RATES = {
    "220": Decimal("0.22"),
    "EX4": Decimal("0.22"),
    "095": Decimal("0.095"),
    "050": Decimal("0.05"),
    "000": Decimal("0"),
}
#: ``tax_factor`` -> code (the first code with that rate).
TAX_BY_FACTOR = {
    Decimal("0.22"): "220",
    Decimal("0.095"): "095",
    Decimal("0.05"): "050",
    Decimal("0"): "000",
}
DEFAULT_TAX = "220"

#: The status register each sandbox company starts with: localized label -> internal code.
#: The register is the company's own (§5: ``status_code`` in a response is "the localized label
#: from the company register", ``status_desc`` (since 12.8.2025) "the internal code"), so a test
#: may give a company another one (``MetakockaState.set_status_register``). The codes are those
#: the docs name (§5: ``new_order`` labelled "Novo naročilo", ``created``, ``shipped``, ``open``,
#: ``active``; §8: ``active``, ``finished``, ``deleted``) and issue 16's ``in_process`` and
#: ``canceled``; the other labels are Slovenian, as a Slovenian company's would be.
STANDARD_STATUS_REGISTER: dict[str, str | None] = {
    "Novo naročilo": "new_order",
    "Ustvarjeno": "created",
    "Odprto": "open",
    "Aktivno": "active",
    "V obdelavi": "in_process",
    "Poslano": "shipped",
    "Zaključeno": "finished",
    "Preklicano": "canceled",
    "Izbrisano": "deleted",
}

#: ``partner.country`` may be an English or local name or an ISO code (§4).
_COUNTRY_NAMES = {
    "SI": "slovenia slovenija",
    "HR": "croatia hrvaška hrvatska",
    "AT": "austria avstrija österreich",
    "DE": "germany nemčija deutschland",
    "IT": "italy italija italia",
    "HU": "hungary madžarska",
    "RS": "serbia srbija",
    "BA": "bosnia_and_herzegovina bosna_in_hercegovina",
    "ME": "montenegro",
    "MK": "north_macedonia",
    "GB": "united_kingdom great_britain",
    "XI": "northern_ireland",
    "US": "united_states usa",
    "FR": "france francija",
    "ES": "spain španija",
    "CZ": "czech_republic czechia češka",
    "PL": "poland poljska",
    "CH": "switzerland švica",
    "SK": "slovakia slovaška",
    "NL": "netherlands nizozemska",
    "BE": "belgium belgija",
    "DK": "denmark",
    "SE": "sweden",
    "NO": "norway",
    "FI": "finland",
    "IE": "ireland",
    "PT": "portugal",
    "GR": "greece",
    "RO": "romania",
    "BG": "bulgaria",
    "LU": "luxembourg",
    "LT": "lithuania",
    "LV": "latvia",
    "EE": "estonia",
    "CY": "cyprus",
    "MT": "malta",
}
COUNTRY_ISO = {
    name.replace("_", " "): iso for iso, names in _COUNTRY_NAMES.items() for name in names.split()
}


class MkError(Exception):
    """An API-level failure: rendered as HTTP 200 ``{"opr_code": code, "opr_desc": desc, ...}``."""

    def __init__(self, opr_code: str, opr_desc: str | None, **extra: Any) -> None:
        super().__init__(opr_desc or extra.get("opr_desc_app") or opr_code)
        self.body: dict[str, Any] = {"opr_code": opr_code}
        if opr_desc is not None:
            self.body["opr_desc"] = opr_desc
        self.body.update(extra)


def invalid(param: str, value: Any, valid: str | None = None) -> MkError:
    text = f"Paramether '{param}' has invalid value : {value}"
    return MkError("2", f"{text}. Valid values : {valid}" if valid else text)


# -- scalars ------------------------------------------------------------------------------
def to_wire(value: Any) -> Any:
    """Turn request JSON into MK's all-strings form (§3); None/null members are dropped."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_decimal(Decimal(repr(value)))
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value if v is not None]
    return str(value)


def as_list(value: Any) -> list:
    """A list, a bare object (one-element list, §3) or nothing -> list."""
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def parse_decimal(value: Any, param: str) -> Decimal:
    """Accept numbers, ``"19.99"``, ``"19,99"`` and ``"1.895,01"`` (§3)."""
    if isinstance(value, bool) or value is None:
        raise invalid(param, value)
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    text = str(value).strip().replace(" ", "")
    if "," in text and "." in text:
        text = (
            text.replace(".", "").replace(",", ".")
            if text.rfind(",") > text.rfind(".")
            else text.replace(",", "")
        )
    elif "," in text:
        text = text.replace(",", ".")
    try:
        result = Decimal(text)
    except InvalidOperation:
        raise invalid(param, value) from None
    if not result.is_finite():
        raise invalid(param, value)
    return result


def format_decimal(value: Decimal) -> str:
    """Shortest plain form: ``Decimal("100.00")`` -> ``"100"``, ``19.990`` -> ``"19.99"``."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def money(value: Decimal) -> str:
    return str(round2(value))


def round2(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def slovenian(text: str) -> str:
    """``"1895.01"`` -> ``"1.895,01"`` (quirks mode).

    The decimal part is always written (``"1.895,0"``): without it a thousands separator would be
    indistinguishable from a decimal point. A value already written so is left as it is.
    """
    if "," in text:
        return text
    sign, body = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, _, frac = body.partition(".")
    groups = f"{int(whole):,}".replace(",", ".")
    return f"{sign}{groups},{frac or '0'}"


# -- dates --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _last_sunday(year: int, month: int) -> date:
    last = date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() + 1) % 7)


def ljubljana_offset(moment: datetime | date) -> int:
    """Hours east of UTC in Europe/Ljubljana (EU rule: summer time between the last Sundays
    of March and October, 01:00 UTC). Hand-rolled so the sandbox needs no tz database."""
    if isinstance(moment, datetime):
        utc = moment.astimezone(UTC)
        start, end = _summer_time_utc(utc.year)
        return 2 if start <= utc < end else 1
    return 2 if _last_sunday(moment.year, 3) <= moment < _last_sunday(moment.year, 10) else 1


@functools.lru_cache(maxsize=256)
def _summer_time_utc(year: int) -> tuple[datetime, datetime]:
    one = timedelta(hours=1)
    return (
        datetime.combine(_last_sunday(year, 3), datetime.min.time(), UTC) + one,
        datetime.combine(_last_sunday(year, 10), datetime.min.time(), UTC) + one,
    )


_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:$|[T +\-Z])")
_SI_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")


def parse_date(value: Any, param: str) -> date:
    """``"2014-09-13+02:00"``, ``"2014-09-13"`` (also a timestamp's date) or ``"13.09.2014"``."""
    text = str(value).strip()
    try:
        if m := _ISO_DATE.match(text):
            return date(int(m[1]), int(m[2]), int(m[3]))
        if m := _SI_DATE.match(text):
            return date(int(m[3]), int(m[2]), int(m[1]))
    except ValueError:
        pass
    raise invalid(param, value)


def format_date(d: date) -> str:
    return f"{d.isoformat()}+0{ljubljana_offset(d)}:00"


def parse_timestamp(value: Any, param: str) -> datetime:
    """An aware UTC datetime from ``"2024-09-12T12:13:15+02:00"``; naive times and bare
    dates (either format) are read as Ljubljana local time."""
    text = str(value).strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        day = parse_date(text, param)
        moment = datetime(day.year, day.month, day.day)
        if m := re.search(r"([+-]\d{2}:\d{2})$", text):
            moment = datetime.fromisoformat(f"{day.isoformat()}T00:00:00{m[1]}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC) - timedelta(hours=ljubljana_offset(moment.date()))
    return moment.astimezone(UTC)


def format_timestamp(moment: datetime) -> str:
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    off = ljubljana_offset(utc)
    return f"{(utc + timedelta(hours=off)):%Y-%m-%dT%H:%M:%S}+0{off}:00"


def now_utc() -> datetime:
    """Now, to whole seconds: the wire shows seconds, so filters on last_change stay exact."""
    return datetime.now(UTC).replace(microsecond=0)


# -- registers ----------------------------------------------------------------------------
def resolve_status(
    register: dict[str, str | None], value: Any, param: str = "status_code"
) -> str | None:
    """A status named in a request -> its register label; empty -> None (no status).

    Only the label is accepted, exactly: statuses "are matched by their description text" (§4),
    ``change_document_status`` takes the "register description" (§6), and a response's
    ``status_code`` is that label (§5). The docs never say a write may name the internal code
    (``status_desc``) or change the case, so the stricter reading refuses both, with the
    opr_code 2 answer listing the valid values (§8's example).
    """
    text = str(value).strip()
    if not text:
        return None
    if text not in register:
        raise invalid(param, text, ",".join(register))
    return text


def country_iso(value: Any) -> str:
    text = str(value or "").strip()
    if not text:
        return "SI"
    if len(text) == 2 and text.isalpha():
        return text.upper()
    iso = COUNTRY_ISO.get(text.lower())
    if iso is None:
        raise invalid("country", text)
    return iso


def resolve_tax(line: dict, where: str) -> str:
    if line.get("tax") not in (None, ""):
        code = str(line["tax"]).strip().upper()
        if code not in TAX_RATES:
            raise invalid(f"{where}.tax", line["tax"], ",".join(TAX_RATES))
        return code
    if line.get("tax_factor") not in (None, ""):
        factor = parse_decimal(line["tax_factor"], f"{where}.tax_factor")
        code = TAX_BY_FACTOR.get(factor.normalize()) or TAX_BY_FACTOR.get(factor)
        if code is None:
            raise invalid(f"{where}.tax_factor", line["tax_factor"])
        return code
    return DEFAULT_TAX


def discount_factor(value: Any, where: str) -> Decimal:
    """``"10"`` -> 0.9; cascaded ``"22;23"`` -> 0.78 * 0.77 (§4)."""
    factor = Decimal(1)
    for part in str(value).split(";"):
        if part.strip():
            pct = parse_decimal(part, f"{where}.discount")
            if not Decimal(0) <= pct <= Decimal(100):
                raise invalid(f"{where}.discount", value)
            factor *= 1 - pct / 100
    return factor


# -- quirks -------------------------------------------------------------------------------
_QUIRK_DATES = ("doc_date", "duo_payment")
_QUIRK_DECIMALS = ("sum_all", "sum_paid", "sum_basic")


def apply_quirks(doc: dict) -> dict:
    """Reshape an outgoing document the way MK sometimes does (§3): one-element lists as a
    bare object, some decimals in Slovenian format, dates as dd.mm.yyyy."""
    out = dict(doc)
    for key, value in doc.items():
        if isinstance(value, list):
            items = [_quirk_line(v) if key == "product_list" else v for v in value]
            out[key] = items[0] if len(items) == 1 else items
    for key in _QUIRK_DATES:
        if isinstance(out.get(key), str) and _ISO_DATE.match(out[key]):
            out[key] = parse_date(out[key], key).strftime("%d.%m.%Y")
    for key in _QUIRK_DECIMALS:
        if isinstance(out.get(key), str):
            out[key] = slovenian(out[key])
    return out


def _quirk_line(line: Any) -> Any:
    if not isinstance(line, dict):
        return line
    prices = ("price", "price_with_tax")
    return {**line, **{k: slovenian(line[k]) for k in prices if isinstance(line.get(k), str)}}
