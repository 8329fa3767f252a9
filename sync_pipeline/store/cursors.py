"""The nightly reconciliation's change cursors: one row per organization in `sync_cursors`.

An incremental run reads only what changed on each side since its cursor (CRM `updated_at`,
Metakocka last change); a full sweep reads everything, which is the only way to notice a deletion.
The cursor is written at the very end of a reconciliation (after sync_status), so a run that dies
halfway leaves it where it was and the next run reads the same window again.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipeline.store.tables import sync_cursors


@dataclass(frozen=True)
class SyncCursor:
    crm_changed_since: datetime | None
    metakocka_changed_since: datetime | None
    last_full_sweep_at: datetime | None


class Cursors:
    """The organizations' change cursors (`sync_cursors`)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def read(self, organization_id: str) -> SyncCursor | None:
        """The organization's cursor, or None before its first completed reconciliation."""
        query = sa.select(sync_cursors).where(sync_cursors.c.organization_id == organization_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        return SyncCursor(
            crm_changed_since=_utc(row["crm_changed_since"]),
            metakocka_changed_since=_utc(row["metakocka_changed_since"]),
            last_full_sweep_at=_utc(row["last_full_sweep_at"]),
        )

    def save(self, organization_id: str, cursor: SyncCursor, *, run_id: str | None = None) -> None:
        """Insert or replace the organization's cursor (one short transaction)."""
        values = {
            "crm_changed_since": cursor.crm_changed_since,
            "metakocka_changed_since": cursor.metakocka_changed_since,
            "last_full_sweep_at": cursor.last_full_sweep_at,
            "updated_at": datetime.now(UTC),
            "run_id": run_id,
        }
        where = sync_cursors.c.organization_id == organization_id
        with self.engine.begin() as conn:
            if not conn.execute(sync_cursors.update().where(where).values(**values)).rowcount:
                conn.execute(
                    sync_cursors.insert().values(organization_id=organization_id, **values)
                )


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without their zone; every one stored here is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
