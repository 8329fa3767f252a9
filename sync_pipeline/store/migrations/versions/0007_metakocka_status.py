"""sync_status.metakocka_status: each document's Metakocka status label as last read
(docs/metakocka.md); and report_oldest_unsynced shows it too, and no longer counts an open
`warning` (a document that synced with an unmapped status) as the start of a wait.

Revision ID: 0007_metakocka_status
Revises: 0006_sync_cursors
Create Date: 2026-11-26 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_metakocka_status"
down_revision = "0006_sync_cursors"
branch_labels = None
depends_on = None

VIEW = "report_oldest_unsynced"


def _oldest_unsynced(with_metakocka_status: bool) -> str:
    """The view as 0003 made it, or (with_metakocka_status) as this revision makes it."""
    status_column = "s.metakocka_status," if with_metakocka_status else ""
    not_a_warning = "AND e.error_type <> 'warning'" if with_metakocka_status else ""
    return f"""
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
                       {status_column}
                       (SELECT MIN(e.occurred_at)
                        FROM sync_error_log e
                        WHERE e.organization_id = s.organization_id
                          AND e.resolved_at IS NULL
                          {not_a_warning}
                          AND (e.crm_document_id = s.crm_document_id
                               OR e.metakocka_id = s.metakocka_id)) AS first_open_error_at
                FROM sync_status s
                WHERE s.status IN ('pending', 'failed', 'conflict', 'invalid')
            ) u"""


def upgrade() -> None:
    op.execute(f"DROP VIEW IF EXISTS {VIEW}")
    with op.batch_alter_table("sync_status", schema=None) as batch_op:
        batch_op.add_column(sa.Column("metakocka_status", sa.Text(), nullable=True))
    op.execute(f"CREATE VIEW {VIEW} AS {_oldest_unsynced(True)}")


def downgrade() -> None:
    op.execute(f"DROP VIEW IF EXISTS {VIEW}")
    with op.batch_alter_table("sync_status", schema=None) as batch_op:
        batch_op.drop_column("metakocka_status")
    op.execute(f"CREATE VIEW {VIEW} AS {_oldest_unsynced(False)}")
