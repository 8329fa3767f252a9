"""Analysts' indexes and reporting views (docs/analysts.md).

Views (plain SQL, so any BI tool can read them):
- report_status_daily: documents per organization, UTC day of their last sync activity, status;
- report_errors_daily: errors logged per organization, UTC day, error type;
- report_open_errors_by_type: open (unresolved) errors per organization and error type;
- report_oldest_unsynced: documents not in sync (pending, failed, conflict, invalid), with the time
  they have been waiting since.

A later change to a view is a new migration that replaces it (CREATE OR REPLACE / drop + create),
never an edit of this file.

Revision ID: 0003_analyst_indexes_and_views
Revises: 0002_sync_requests
Create Date: 2026-11-25 13:31:14.673789
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_analyst_indexes_and_views"
down_revision = "0002_sync_requests"
branch_labels = None
depends_on = None

VIEWS = (
    "report_status_daily",
    "report_errors_daily",
    "report_open_errors_by_type",
    "report_oldest_unsynced",
)


def _utc_day(column: str) -> str:
    """The UTC calendar day of a timestamp column, as a date (PostgreSQL) or 'YYYY-MM-DD' text."""
    if op.get_bind().dialect.name == "postgresql":
        return f"CAST(timezone('UTC', {column}) AS date)"
    return f"date({column})"


def _view_sql() -> dict[str, str]:
    activity = "COALESCE(last_attempt_at, last_synced_at, updated_at)"
    return {
        "report_status_daily": f"""
            SELECT organization_id,
                   {_utc_day(activity)} AS day,
                   status,
                   COUNT(*) AS documents
            FROM sync_status
            GROUP BY 1, 2, 3""",
        "report_errors_daily": f"""
            SELECT organization_id,
                   {_utc_day("occurred_at")} AS day,
                   error_type,
                   COUNT(*) AS errors,
                   SUM(CASE WHEN resolved_at IS NULL THEN 1 ELSE 0 END) AS still_open
            FROM sync_error_log
            GROUP BY 1, 2, 3""",
        "report_open_errors_by_type": """
            SELECT organization_id,
                   error_type,
                   COUNT(*) AS open_errors,
                   COUNT(DISTINCT COALESCE(crm_document_id, metakocka_id)) AS documents,
                   MIN(occurred_at) AS oldest_occurred_at,
                   MAX(occurred_at) AS newest_occurred_at
            FROM sync_error_log
            WHERE resolved_at IS NULL
            GROUP BY organization_id, error_type""",
        "report_oldest_unsynced": """
            SELECT u.*,
                   COALESCE(u.first_open_error_at, u.last_attempt_at, u.updated_at)
                       AS unsynced_since
            FROM (
                SELECT s.organization_id,
                       s.crm_document_id,
                       s.metakocka_id,
                       s.document_type,
                       s.crm_document_number,
                       s.metakocka_count_code,
                       s.status,
                       s.attempts,
                       s.last_direction,
                       s.last_attempt_at,
                       s.last_synced_at,
                       s.last_error,
                       s.updated_at,
                       (SELECT MIN(e.occurred_at)
                        FROM sync_error_log e
                        WHERE e.organization_id = s.organization_id
                          AND e.resolved_at IS NULL
                          AND (e.crm_document_id = s.crm_document_id
                               OR e.metakocka_id = s.metakocka_id)) AS first_open_error_at
                FROM sync_status s
                WHERE s.status IN ('pending', 'failed', 'conflict', 'invalid')
            ) u""",
    }


def upgrade() -> None:
    with op.batch_alter_table("sync_error_log", schema=None) as batch_op:
        batch_op.create_index("ix_error_log_occurred", ["occurred_at"], unique=False)
        batch_op.create_index(
            "ix_error_log_open_by_type",
            ["organization_id", "error_type"],
            unique=False,
            postgresql_where=sa.text("resolved_at IS NULL"),
            sqlite_where=sa.text("resolved_at IS NULL"),
        )
        batch_op.create_index("ix_error_log_run", ["run_id"], unique=False)

    with op.batch_alter_table("sync_status", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sync_status_org_crm_number",
            ["organization_id", "crm_document_number"],
            unique=False,
        )
        batch_op.create_index(
            "ix_sync_status_org_mk_count_code",
            ["organization_id", "metakocka_count_code"],
            unique=False,
        )
        batch_op.create_index(
            "ix_sync_status_status_attempt", ["status", "last_attempt_at"], unique=False
        )

    for name, select in _view_sql().items():
        op.execute(f"CREATE VIEW {name} AS {select}")


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")

    with op.batch_alter_table("sync_status", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_status_status_attempt")
        batch_op.drop_index("ix_sync_status_org_mk_count_code")
        batch_op.drop_index("ix_sync_status_org_crm_number")

    with op.batch_alter_table("sync_error_log", schema=None) as batch_op:
        batch_op.drop_index("ix_error_log_run")
        batch_op.drop_index(
            "ix_error_log_open_by_type",
            postgresql_where=sa.text("resolved_at IS NULL"),
            sqlite_where=sa.text("resolved_at IS NULL"),
        )
        batch_op.drop_index("ix_error_log_occurred")
