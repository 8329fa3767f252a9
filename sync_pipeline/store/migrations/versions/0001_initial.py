"""The seed's tables: document_links (the binder), sync_status and sync_error_log.

A database created by `metadata.create_all` before migrations existed is at this revision
(`sync_pipeline.store.migrate.upgrade` stamps it).

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-25 13:30:10.567492
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "document_links",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("crm_document_id", sa.String(length=64), nullable=True),
        sa.Column("metakocka_id", sa.String(length=64), nullable=True),
        sa.Column("document_type", sa.String(length=32), nullable=True),
        sa.Column("metakocka_doc_type", sa.String(length=40), nullable=True),
        sa.Column("crm_document_number", sa.String(length=120), nullable=True),
        sa.Column("metakocka_count_code", sa.String(length=120), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=32), server_default="linked", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("organization_id", "crm_document_id", name="uq_links_org_crm"),
        sa.UniqueConstraint("organization_id", "metakocka_id", name="uq_links_org_mk"),
    )
    op.create_table(
        "sync_error_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("direction", sa.String(length=32), nullable=True),
        sa.Column("crm_document_id", sa.String(length=64), nullable=True),
        sa.Column("metakocka_id", sa.String(length=64), nullable=True),
        sa.Column("error_type", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("stack_trace", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sync_error_log", schema=None) as batch_op:
        batch_op.create_index(
            "ix_error_log_org_crm", ["organization_id", "crm_document_id"], unique=False
        )
        batch_op.create_index(
            "ix_error_log_org_mk", ["organization_id", "metakocka_id"], unique=False
        )
        batch_op.create_index(
            "ix_error_log_org_occurred", ["organization_id", "occurred_at"], unique=False
        )

    op.create_table(
        "sync_status",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("crm_document_id", sa.String(length=64), nullable=True),
        sa.Column("metakocka_id", sa.String(length=64), nullable=True),
        sa.Column("document_type", sa.String(length=32), nullable=True),
        sa.Column("crm_document_number", sa.String(length=120), nullable=True),
        sa.Column("metakocka_count_code", sa.String(length=120), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("last_direction", sa.String(length=32), nullable=True),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("organization_id", "crm_document_id", name="uq_status_org_crm"),
        sa.UniqueConstraint("organization_id", "metakocka_id", name="uq_status_org_mk"),
    )
    with op.batch_alter_table("sync_status", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sync_status_org_status", ["organization_id", "status"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_sync_status_organization_id"), ["organization_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_status", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_status_organization_id"))
        batch_op.drop_index("ix_sync_status_org_status")

    op.drop_table("sync_status")
    with op.batch_alter_table("sync_error_log", schema=None) as batch_op:
        batch_op.drop_index("ix_error_log_org_occurred")
        batch_op.drop_index("ix_error_log_org_mk")
        batch_op.drop_index("ix_error_log_org_crm")

    op.drop_table("sync_error_log")
    op.drop_table("document_links")
