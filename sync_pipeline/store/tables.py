"""The sync database's tables (SQLAlchemy Core).

Column names of sync_status and sync_error_log are a contract: analysts query them (see the
README's table dictionary).

`document_links` is the binder: the one place where a CRM id meets a Metakocka id. Its two unique
constraints make a duplicate link impossible at the database level, whatever the code does.
"""

import sqlalchemy as sa

metadata = sa.MetaData()

ID = sa.String(64)

# Link states. A create is recorded as an *intent* before it is sent, so a crash between the remote
# write and the binding leaves a trace that the next run resolves by lookup instead of re-creating.
LINK_CREATING_IN_METAKOCKA = "creating_in_metakocka"
LINK_CREATING_IN_CRM = "creating_in_crm"
LINK_LINKED = "linked"

document_links = sa.Table(
    "document_links",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("organization_id", ID, nullable=False),
    sa.Column("crm_document_id", ID, nullable=True),
    sa.Column("metakocka_id", ID, nullable=True),
    sa.Column("document_type", sa.String(32), nullable=True),
    sa.Column("metakocka_doc_type", sa.String(40), nullable=True),
    sa.Column("crm_document_number", sa.String(120), nullable=True),
    sa.Column("metakocka_count_code", sa.String(120), nullable=True),
    sa.Column("content_hash", sa.String(64), nullable=True),
    sa.Column("state", sa.String(32), nullable=False, server_default=LINK_LINKED),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("organization_id", "crm_document_id", name="uq_links_org_crm"),
    sa.UniqueConstraint("organization_id", "metakocka_id", name="uq_links_org_mk"),
)

SYNC_STATUSES = (
    "synced",
    "pending",
    "failed",
    "conflict",
    "invalid",
    "deleted_in_crm",
    "deleted_in_metakocka",
    "no_crm_type",
)

sync_status = sa.Table(
    "sync_status",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("organization_id", ID, nullable=False, index=True),
    sa.Column("crm_document_id", ID, nullable=True),
    sa.Column("metakocka_id", ID, nullable=True),
    sa.Column("document_type", sa.String(32), nullable=True),
    sa.Column("crm_document_number", sa.String(120), nullable=True),
    sa.Column("metakocka_count_code", sa.String(120), nullable=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("last_direction", sa.String(32), nullable=True),
    sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # Metakocka's status label (`status_code`) as last read; the CRM's status may differ (its
    # map: docs/metakocka.md). Text: a company's label has no documented length.
    sa.Column("metakocka_status", sa.Text, nullable=True),
    sa.UniqueConstraint("organization_id", "crm_document_id", name="uq_status_org_crm"),
    sa.UniqueConstraint("organization_id", "metakocka_id", name="uq_status_org_mk"),
    sa.Index("ix_sync_status_org_status", "organization_id", "status"),
    # Analysts' look-ups (docs/analysts.md): the oldest unsynced documents, a document by number.
    sa.Index("ix_sync_status_status_attempt", "status", "last_attempt_at"),
    sa.Index("ix_sync_status_org_crm_number", "organization_id", "crm_document_number"),
    sa.Index("ix_sync_status_org_mk_count_code", "organization_id", "metakocka_count_code"),
)

WARNING = "warning"
"""An error type that is not a failure: the document synced, but something in it could not be
carried over as it is (an unmapped Metakocka status). A successful sync does not close it; the
check that raised it does."""
ERROR_TYPES = (
    "validation",
    "transient",
    "rate_limited",
    "rejected",
    "auth",
    "conflict",
    "not_found",
    "internal",
    WARNING,
)

sync_error_log = sa.Table(
    "sync_error_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("organization_id", ID, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("direction", sa.String(32), nullable=True),
    sa.Column("crm_document_id", ID, nullable=True),
    sa.Column("metakocka_id", ID, nullable=True),
    sa.Column("error_type", sa.String(32), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("details", sa.JSON, nullable=True),
    sa.Column("stack_trace", sa.Text, nullable=True),
    sa.Column("requested_by", sa.String(200), nullable=True),
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("resolution_note", sa.Text, nullable=True),
    sa.Index("ix_error_log_org_occurred", "organization_id", "occurred_at"),
    sa.Index("ix_error_log_org_crm", "organization_id", "crm_document_id"),
    sa.Index("ix_error_log_org_mk", "organization_id", "metakocka_id"),
    # Analysts' look-ups (docs/analysts.md): open errors by type, a run's errors, errors per day.
    sa.Index(
        "ix_error_log_open_by_type",
        "organization_id",
        "error_type",
        postgresql_where=sa.text("resolved_at IS NULL"),
        sqlite_where=sa.text("resolved_at IS NULL"),
    ),
    sa.Index("ix_error_log_run", "run_id"),
    sa.Index("ix_error_log_occurred", "occurred_at"),
)

# On-demand sync requests (the CRM's buttons, webhooks, the change sensor): a durable queue that
# the request sensor turns into `sync_documents` runs. See sync_pipeline/store/requests.py.
REQUEST_STATES = ("queued", "launched", "done", "failed")

sync_requests = sa.Table(
    "sync_requests",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("organization_id", ID, nullable=False),
    sa.Column("direction", sa.String(32), nullable=False),
    sa.Column("document_ids", sa.JSON, nullable=False),
    sa.Column("all_unsynced", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("requested_by", sa.String(200), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("run_key", sa.String(80), nullable=True),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("idempotency_key", sa.String(200), nullable=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    # The fingerprint while the request is queued, NULL afterwards: the unique constraint then
    # refuses a second identical queued request (NULLs never collide, in SQLite and PostgreSQL).
    sa.Column("queued_fingerprint", sa.String(64), nullable=True),
    sa.UniqueConstraint("organization_id", "idempotency_key", name="uq_requests_org_idem"),
    sa.UniqueConstraint("organization_id", "queued_fingerprint", name="uq_requests_org_queued"),
    sa.Index("ix_sync_requests_state_created", "state", "created_at"),
    sa.Index("ix_sync_requests_run_key", "run_key"),
)

# Claims: which run is pushing which document right now (sync_pipeline/store/claims.py). A push
# claims a document before any remote call and releases it after binding; a claim held by another
# live run makes a run leave the document `pending`; a claim whose owner stopped heartbeating
# lapses. The primary key makes the claim exclusive in the database itself.
sync_claims = sa.Table(
    "sync_claims",
    metadata,
    sa.Column("organization_id", ID, primary_key=True),
    sa.Column("crm_document_id", ID, primary_key=True),
    sa.Column("claimed_by", sa.String(120), nullable=False),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("action", sa.String(32), nullable=True),
    sa.Index("ix_sync_claims_claimed_by", "claimed_by"),
)

# Conflict resolutions (sync_pipeline/store/resolutions.py): an operator's pick of the winning
# side for one conflicting pair (`sync-pipeline conflicts resolve`, or the nightly job's launchpad
# config). The next run carries it out once and marks it consumed.
conflict_resolutions = sa.Table(
    "conflict_resolutions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("organization_id", ID, nullable=False),
    sa.Column("crm_document_id", ID, nullable=False),
    sa.Column("metakocka_id", ID, nullable=False),
    sa.Column("winner", sa.String(16), nullable=False),
    sa.Column("resolved_by", sa.String(200), nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("consumed_by_run", sa.String(64), nullable=True),
    sa.Column("outcome", sa.String(32), nullable=True),
    sa.Index("ix_conflict_resolutions_org_crm", "organization_id", "crm_document_id"),
)

# Reporting (sync_pipeline/store/history.py): one row per successful reconciliation (the
# freshness check reads the latest per organization), and a daily snapshot of sync_status counts
# (the last run of a day wins) for the sync report's 30-day plot.
reconciliation_runs = sa.Table(
    "reconciliation_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("organization_id", ID, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("summary", sa.JSON, nullable=True),
    sa.Index("ix_reconciliation_runs_org_finished", "organization_id", "finished_at"),
)

sync_status_history = sa.Table(
    "sync_status_history",
    metadata,
    sa.Column("organization_id", ID, primary_key=True),
    sa.Column("snapshot_date", sa.Date, primary_key=True),
    sa.Column("status", sa.String(32), primary_key=True),
    sa.Column("documents", sa.Integer, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
)

# Change cursors of the nightly reconciliation (sync_pipeline/store/cursors.py): per organization,
# from which CRM `updated_at` and Metakocka last change the next incremental run reads, and when
# the last full sweep (the run that reads everything and so can see deletions) finished.
sync_cursors = sa.Table(
    "sync_cursors",
    metadata,
    sa.Column("organization_id", ID, primary_key=True),
    sa.Column("crm_changed_since", sa.DateTime(timezone=True), nullable=True),
    sa.Column("metakocka_changed_since", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_full_sweep_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
)
