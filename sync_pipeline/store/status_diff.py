"""Which sync_status rows a reconciliation really needs to write.

Most documents of a nightly run end exactly as they were (in sync, and in sync before), so their
rows would be rewritten with the same content. Comparing first and writing only the differences
makes re-materialising 100,000 rows of an organization in sync a no-op instead of deleting and
inserting them all.
"""

from datetime import UTC, datetime

import pandas as pd

STATUS_CONTENT = (
    "crm_document_id",
    "metakocka_id",
    "document_type",
    "crm_document_number",
    "metakocka_count_code",
    "status",
    "last_direction",
    "last_synced_at",
    "last_attempt_at",
    "attempts",
    "last_error",
    "metakocka_status",
)
"""The sync_status columns that say something about the document (not `id` or `updated_at`)."""


def changed_status_rows(rows: list[dict], previous: pd.DataFrame) -> list[dict]:
    """The rows that differ from the document's current sync_status row (`previous`: the rows as
    they are, in the columns of the table)."""
    before = {}
    if not previous.empty:
        columns = [previous[name].array for name in STATUS_CONTENT]
        for values in zip(*columns, strict=True):
            key = tuple(map(_comparable, values))
            before[(_text(values[0]), _text(values[1]))] = key
    return [
        row
        for row in rows
        if before.get((row["crm_document_id"], row["metakocka_id"]))
        != tuple(_comparable(row.get(name)) for name in STATUS_CONTENT)
    ]


def _comparable(value):
    """One form per value whatever the database gave back (SQLite drops the time zone)."""
    if value is None or value is pd.NaT or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return value


def _text(value) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return None
    return str(value)
