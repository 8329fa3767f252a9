"""What the reconciliation's report assets count in the sync tables (assets/report.py): a run's
new errors and the organization's open ones."""

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipeline.store.tables import sync_error_log


def new_errors_by_type(engine: Engine, organization_id: str, run_id: str) -> dict[str, int]:
    """The error rows the run wrote for the organization, counted per error type."""
    query = (
        sa.select(sync_error_log.c.error_type, sa.func.count())
        .where(
            sync_error_log.c.organization_id == organization_id,
            sync_error_log.c.run_id == run_id,
        )
        .group_by(sync_error_log.c.error_type)
    )
    with engine.connect() as conn:
        return dict(conn.execute(query).all())


def open_error_count(engine: Engine, organization_id: str) -> int:
    """The organization's errors nobody (and no later run) has resolved yet."""
    query = sa.select(sa.func.count()).where(
        sync_error_log.c.organization_id == organization_id,
        sync_error_log.c.resolved_at.is_(None),
    )
    with engine.connect() as conn:
        return conn.execute(query).scalar_one()
