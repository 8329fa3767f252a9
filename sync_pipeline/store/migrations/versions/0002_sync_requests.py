"""sync_requests: the durable queue of on-demand sync requests.

The queue's first code created its table itself (`create(checkfirst=True)`); a database where it
did so keeps that table.

Revision ID: 0002_sync_requests
Revises: 0001_initial
Create Date: 2026-11-25 13:30:15.276356
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0002_sync_requests"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if not context.is_offline_mode() and sa.inspect(op.get_bind()).has_table("sync_requests"):
        return
    op.create_table(
        "sync_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=32), nullable=False),
        sa.Column("document_ids", sa.JSON(), nullable=False),
        sa.Column("all_unsynced", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("run_key", sa.String(length=80), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("queued_fingerprint", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("organization_id", "idempotency_key", name="uq_requests_org_idem"),
        sa.UniqueConstraint("organization_id", "queued_fingerprint", name="uq_requests_org_queued"),
    )
    with op.batch_alter_table("sync_requests", schema=None) as batch_op:
        batch_op.create_index("ix_sync_requests_run_key", ["run_key"], unique=False)
        batch_op.create_index(
            "ix_sync_requests_state_created", ["state", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_requests_state_created")
        batch_op.drop_index("ix_sync_requests_run_key")

    op.drop_table("sync_requests")
