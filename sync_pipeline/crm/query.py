"""How the pipeline writes PostgREST filters: quoting, id lists, the request-line budget.

PostgREST reads a top-level filter value to the end of its parameter, but a value inside an
``in.(...)`` list or an ``or=(...)`` / ``and=(...)`` tree ends at the next comma or parenthesis
unless it is double-quoted (``pListElement`` / ``pLogicSingleVal`` / ``pQuotedValue`` in
ApiRequest/QueryParams.hs, v12 and v13): so list and tree values are always quoted here.
Supabase's gateway refuses a request line of about 8 KB (fresh-crm.md section 5; postgrest-js
issue #423): ids go `IDS_PER_QUERY` at a time.
"""

from collections.abc import Iterable
from datetime import datetime

IDS_PER_QUERY = 100
"""Ids per ``in.(...)`` filter: 100 quoted uuids are about 3.9 KB of the request line."""
MAX_REQUEST_LINE = 7500
"""Bytes of path and query string a request may have (Supabase refuses about 8 KB)."""


def quoted(value) -> str:
    """A value for a list or a logic tree: in double quotes, backslash-escaped inside."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def in_filter(values: Iterable) -> str:
    """``in.(...)`` with each value quoted, so any id or code is read as itself."""
    return "in.(" + ",".join(quoted(v) for v in values) + ")"


def chunks(values: list, size: int = IDS_PER_QUERY) -> list[list]:
    return [values[start : start + size] for start in range(0, len(values), size)]


def iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required (a naive one is ambiguous)")
    return moment.isoformat()
