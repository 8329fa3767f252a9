"""Country names as both systems may write them, to ISO 3166-1 alpha-2 codes.

Metakocka answers with a partner's ``country`` as an English or Slovenian name when it gives
no ``country_iso_2`` (metakocka-api.md section 4); the CRM's contacts keep a free-text country.
The canonical document holds the code.
"""

COUNTRY_CODES = {
    "slovenia": "SI", "slovenija": "SI", "croatia": "HR", "hrvaška": "HR", "hrvatska": "HR",
    "austria": "AT", "avstrija": "AT", "germany": "DE", "nemčija": "DE", "italy": "IT",
    "italija": "IT", "hungary": "HU", "madžarska": "HU", "serbia": "RS", "srbija": "RS",
    "bosnia and herzegovina": "BA", "montenegro": "ME", "north macedonia": "MK",
    "united kingdom": "GB", "northern ireland": "XI", "united states": "US", "france": "FR",
    "spain": "ES", "czech republic": "CZ", "czechia": "CZ", "slovakia": "SK", "poland": "PL",
    "switzerland": "CH", "netherlands": "NL", "belgium": "BE",
}  # fmt: skip


def known_country_code(name: str) -> str | None:
    """The code of a country given by code or by a name in `COUNTRY_CODES`; None otherwise."""
    text = name.strip()
    if len(text) == 2 and text.isalpha():
        return text.upper()
    return COUNTRY_CODES.get(text.lower())


def country_code(name: str) -> str:
    """The code, or the name as it was when it is not known (validation then names it)."""
    return known_country_code(name) or name.strip()
