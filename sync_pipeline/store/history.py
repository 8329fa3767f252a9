"""What the sync report and the freshness check remember between runs: when each organization's
last reconciliation got through (`reconciliation_runs`) and its daily counts by status
(`sync_status_history`)."""

from datetime import UTC, date, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from sync_pipeline.store.clock import utcnow
from sync_pipeline.store.tables import (
    SYNC_STATUSES,
    reconciliation_runs,
    sync_status,
    sync_status_history,
)


class History:
    """`reconciliation_runs` and `sync_status_history`."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def record_reconciliation(
        self, organization_id: str, run_id: str | None, summary: dict | None = None
    ) -> datetime:
        """Note that a reconciliation of the organization got through (what freshness reads)."""
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                reconciliation_runs.insert().values(
                    organization_id=organization_id,
                    run_id=run_id,
                    finished_at=now,
                    summary=summary,
                )
            )
        return now

    def last_reconciliations(self) -> dict[str, datetime]:
        """organization_id -> when its last successful reconciliation finished (UTC): the later
        of its last `reconciliation_runs` row and its last sync_status re-materialisation (so a
        check running inside a reconciliation, before the report, already sees that
        reconciliation)."""
        runs = sa.select(
            reconciliation_runs.c.organization_id, sa.func.max(reconciliation_runs.c.finished_at)
        ).group_by(reconciliation_runs.c.organization_id)
        statuses = sa.select(
            sync_status.c.organization_id, sa.func.max(sync_status.c.updated_at)
        ).group_by(sync_status.c.organization_id)
        last: dict[str, datetime] = {}
        with self.engine.connect() as conn:
            for org, at in [*conn.execute(runs).all(), *conn.execute(statuses).all()]:
                at = _utc(at)
                if at is not None and (org not in last or at > last[org]):
                    last[org] = at
        return last

    def snapshot(
        self, organization_id: str, counts: dict[str, int], *, run_id: str | None, day: date
    ) -> None:
        """Store the day's counts by status (a later run the same day replaces them)."""
        now = utcnow()
        rows = [
            {
                "organization_id": organization_id,
                "snapshot_date": day,
                "status": status,
                "documents": int(counts.get(status, 0)),
                "recorded_at": now,
                "run_id": run_id,
            }
            for status in SYNC_STATUSES
        ]
        # Two runs of one organization finishing at once race on the day's rows; the snapshot is
        # last-writer-wins, so the loser of the race simply writes again.
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        sync_status_history.delete().where(
                            sync_status_history.c.organization_id == organization_id,
                            sync_status_history.c.snapshot_date == day,
                        )
                    )
                    conn.execute(sync_status_history.insert(), rows)
                return
            except IntegrityError:
                if attempt == 2:
                    raise

    def daily_counts(self, organization_id: str, since: date) -> pd.DataFrame:
        """Daily counts since `since`: one row per day, one column per status."""
        query = sa.select(
            sync_status_history.c.snapshot_date,
            sync_status_history.c.status,
            sync_status_history.c.documents,
        ).where(
            sync_status_history.c.organization_id == organization_id,
            sync_status_history.c.snapshot_date >= since,
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame(rows, columns=["snapshot_date", "status", "documents"])
        wide = frame.pivot_table(
            index="snapshot_date",
            columns="status",
            values="documents",
            aggfunc="sum",
            fill_value=0,
        )
        return wide.reindex(columns=list(SYNC_STATUSES), fill_value=0).sort_index()


def _utc(value):
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
