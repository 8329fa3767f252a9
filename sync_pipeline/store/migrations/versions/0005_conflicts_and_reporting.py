"""conflict_resolutions, reconciliation_runs, sync_status_history: operators' picks for
conflicts (store/resolutions.py), and what the sync report and the freshness check read
(store/reporting.py).

Revision ID: 0005_conflicts_and_reporting
Revises: 0004_sync_claims
Create Date: 2026-11-25 14:45:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_conflicts_and_reporting"
down_revision = "0004_sync_claims"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conflict_resolutions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("crm_document_id", sa.String(length=64), nullable=False),
        sa.Column("metakocka_id", sa.String(length=64), nullable=False),
        sa.Column("winner", sa.String(length=16), nullable=False),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consumed_by_run", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("conflict_resolutions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_conflict_resolutions_org_crm", ["organization_id", "crm_document_id"], unique=False
        )

    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reconciliation_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reconciliation_runs_org_finished",
            ["organization_id", "finished_at"],
            unique=False,
        )

    op.create_table(
        "sync_status_history",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("snapshot_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("documents", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("organization_id", "snapshot_date", "status"),
    )


def downgrade() -> None:
    op.drop_table("sync_status_history")
    with op.batch_alter_table("reconciliation_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_reconciliation_runs_org_finished")
    op.drop_table("reconciliation_runs")
    with op.batch_alter_table("conflict_resolutions", schema=None) as batch_op:
        batch_op.drop_index("ix_conflict_resolutions_org_crm")
    op.drop_table("conflict_resolutions")
