"""Which error-log rows an operator means (`sync-pipeline errors ... --type --document --since`)."""

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from sync_pipeline.store.tables import sync_error_log

OPEN, RESOLVED, ALL = "open", "resolved", "all"


@dataclass(frozen=True)
class ErrorFilter:
    organization_id: str | None = None
    error_type: str | None = None
    document_id: str | None = None
    """A CRM id or a Metakocka mk_id."""
    state: str = OPEN
    since: datetime | None = None
    until: datetime | None = None
    run_id: str | None = None

    def where(self) -> list:
        log = sync_error_log.c
        conditions = []
        if self.organization_id:
            conditions.append(log.organization_id == self.organization_id)
        if self.error_type:
            conditions.append(log.error_type == self.error_type)
        if self.document_id:
            conditions.append(
                sa.or_(
                    log.crm_document_id == self.document_id, log.metakocka_id == self.document_id
                )
            )
        if self.state == OPEN:
            conditions.append(log.resolved_at.is_(None))
        elif self.state == RESOLVED:
            conditions.append(log.resolved_at.is_not(None))
        if self.since:
            conditions.append(log.occurred_at >= self.since)
        if self.until:
            conditions.append(log.occurred_at < self.until)
        if self.run_id:
            conditions.append(log.run_id == self.run_id)
        return conditions
