"""Remove credentials from text before it leaves a client: exception messages, details, log lines.

Both APIs carry a secret on every request (Metakocka in the JSON body, the CRM in two headers),
and errors often quote what was sent. `redact` is applied to every message and detail a client
raises and to everything the error log stores, so a secret cannot reach `sync_error_log` or a log
file even when a server or a library echoes the request back.
"""

import re
from collections.abc import Iterable

MASK = "***"

_CREDENTIAL = re.compile(
    r"""(?P<key>["']?\b(?:secret_key|apikey|api_key|authorization)\b["']?\s*[:=]\s*)"""
    r"""(?P<value>"[^"]*"|'[^']*'|(?:bearer\s+)?[^\s"'&,;})\]]+)""",
    re.IGNORECASE,
)
"""A credential-named key, then `:` or `=` (JSON, repr, header or query style), then its value."""

_BEARER = re.compile(r"\b(?P<key>bearer\s+)(?P<value>[\w.~+/=-]+)", re.IGNORECASE)
"""A bearer token quoted without its header name."""


def _mask(match: re.Match) -> str:
    value = match.group("value")
    quote = value[0] if value[0] in "\"'" else ""
    return match.group("key") + quote + MASK + quote


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return `text` with every given secret and every credential-looking value replaced by `***`.

    Known secret values are replaced wherever they occur (longest first, so a secret that contains
    another is masked whole); the pattern catches credentials whose value the caller does not know,
    e.g. `"secret_key": "..."`, `apikey: ...`, `Authorization: Bearer ...` and `?apikey=...`.
    """
    for secret in sorted(_variants(secrets), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _BEARER.sub(_mask, _CREDENTIAL.sub(_mask, text))


def _variants(secrets: Iterable[str]) -> set[str]:
    """Each secret as it may be quoted: as is, without surrounding whitespace (a key read from a
    file often ends in a newline, and an error may show it stripped), and escaped as `repr` shows
    it (`requests` quotes an invalid header value that way: 'key\\n')."""
    variants = set()
    for secret in secrets:
        if not secret:
            continue
        variants.add(secret)
        for form in (secret, secret.strip()):
            variants.update(v for v in (form, repr(form)[1:-1]) if len(v) >= 4)
    return variants


def redact_details(details: dict, secrets: Iterable[str] = ()) -> dict:
    """Redact every string inside an error's `details` (nested dicts and lists included)."""
    secrets = tuple(secrets)

    def clean(value):
        if isinstance(value, str):
            return redact(value, secrets)
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [clean(item) for item in value]
        return value

    return clean(details)
