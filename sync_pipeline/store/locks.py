"""Transaction-scoped locks of the sync database.

`sync_status` is written by delete-then-insert: the nightly run re-materialises a whole
organization, an on-demand run replaces its documents' rows. Two such transactions at once on
PostgreSQL (READ COMMITTED) each delete what they saw, and the second one's insert then collides
with the rows the first one just committed (a unique violation that fails the run). So every
writer of an organization's status rows first takes that organization's lock; the transaction's
end releases it. SQLite needs none: it runs one write transaction at a time.
"""

import sqlalchemy as sa

STATUS_LOCK_SPACE = "sync_status"


def lock_organization_status(conn: sa.Connection, organization_id: str) -> None:
    """Wait for, and hold until the transaction ends, the right to write the org's status rows."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtext(:space), hashtext(:organization))"),
        {"space": STATUS_LOCK_SPACE, "organization": organization_id},
    )
