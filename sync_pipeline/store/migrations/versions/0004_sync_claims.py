"""sync_claims: which run is pushing which document right now (store/claims.py).

Revision ID: 0004_sync_claims
Revises: 0003_analyst_indexes_and_views
Create Date: 2026-11-25 14:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_sync_claims"
down_revision = "0003_analyst_indexes_and_views"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_claims",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("crm_document_id", sa.String(length=64), nullable=False),
        sa.Column("claimed_by", sa.String(length=120), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("organization_id", "crm_document_id"),
    )
    with op.batch_alter_table("sync_claims", schema=None) as batch_op:
        batch_op.create_index("ix_sync_claims_claimed_by", ["claimed_by"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sync_claims", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_claims_claimed_by")
    op.drop_table("sync_claims")
