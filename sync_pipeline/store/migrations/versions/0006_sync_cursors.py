"""sync_cursors: where the next incremental reconciliation of an organization reads from
(store/cursors.py).

Revision ID: 0006_sync_cursors
Revises: 0005_conflicts_and_reporting
Create Date: 2026-11-25 15:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_sync_cursors"
down_revision = "0005_conflicts_and_reporting"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_cursors",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("crm_changed_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("metakocka_changed_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_full_sweep_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("organization_id"),
    )


def downgrade() -> None:
    op.drop_table("sync_cursors")
