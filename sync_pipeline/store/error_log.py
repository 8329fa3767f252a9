"""The error log as operators manage it (`sync-pipeline errors ...`): filter, resolve with a note,
statistics by type and day, CSV export; and the rows about whole runs (a failed Dagster run).

Resolving is refused for an error whose document is still failing: its sync_status is `failed`,
`invalid` or `conflict`, so the error still describes the document's state. Fix the document (or
resolve the conflict) and the next run closes the error itself.
"""

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipeline.adapters.redact import redact
from sync_pipeline.store.repository import utcnow
from sync_pipeline.store.tables import WARNING, sync_error_log, sync_status

OPEN, RESOLVED, ALL = "open", "resolved", "all"
STILL_FAILING = ("failed", "invalid", "conflict")
RUN_FAILED = "run_failed"
EXPORT_COLUMNS = [c.name for c in sync_error_log.columns]


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


def list_errors(engine: Engine, where: ErrorFilter, *, limit: int | None = 100) -> list[dict]:
    """Matching rows, newest first."""
    query = (
        sa.select(sync_error_log)
        .where(*where.where())
        .order_by(sync_error_log.c.occurred_at.desc(), sync_error_log.c.id.desc())
    )
    if limit:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


@dataclass(frozen=True)
class Refusal:
    error_id: int
    document_id: str | None
    status: str
    message: str


@dataclass(frozen=True)
class ResolveResult:
    resolved: list[int]
    refused: list[Refusal]
    missing: list[int]
    """Ids that are not open errors (unknown, or resolved already)."""


def resolve_errors(
    engine: Engine,
    *,
    note: str,
    ids: Iterable[int] = (),
    where: ErrorFilter | None = None,
    resolved_by: str | None = None,
) -> ResolveResult:
    """Resolve the open errors named by `ids` and/or matched by `where`, except those of a
    document that is still failing (returned as refusals)."""
    if not note or not note.strip():
        raise ValueError("a resolution note is required")
    ids = [int(i) for i in ids]
    conditions = [sync_error_log.c.resolved_at.is_(None)]
    selectors = []
    if ids:
        selectors.append(sync_error_log.c.id.in_(ids))
    if where is not None:
        selectors.append(sa.and_(*where.where()) if where.where() else sa.true())
    if not selectors:
        raise ValueError("name the errors to resolve (ids or filters)")
    query = sa.select(sync_error_log).where(*conditions, sa.or_(*selectors))
    text = note.strip() if not resolved_by else f"{note.strip()} (by {resolved_by})"
    with engine.begin() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        failing = _failing_documents(conn, rows)
        refused, allowed = [], []
        for row in rows:
            status = failing.get((row["organization_id"], row["crm_document_id"])) or failing.get(
                (row["organization_id"], row["metakocka_id"])
            )
            if status is None:
                allowed.append(row["id"])
                continue
            document = row["crm_document_id"] or row["metakocka_id"]
            refused.append(
                Refusal(
                    row["id"],
                    document,
                    status,
                    f"error {row['id']}: document {document} is still {status}; fix it (or "
                    "resolve the conflict) and the next run closes this error, or it cannot be "
                    "resolved by hand",
                )
            )
        for start in range(0, len(allowed), 500):
            conn.execute(
                sync_error_log.update()
                .where(sync_error_log.c.id.in_(allowed[start : start + 500]))
                .values(resolved_at=utcnow(), resolution_note=text)
            )
    found = {row["id"] for row in rows}
    return ResolveResult(sorted(allowed), refused, [i for i in ids if i not in found])


def _failing_documents(conn, rows: list[dict]) -> dict[tuple[str, str], str]:
    """(organization, document id) -> status, for the errors' documents still failing."""
    by_org: dict[str, set[str]] = {}
    for row in rows:
        for key in ("crm_document_id", "metakocka_id"):
            if row[key]:
                by_org.setdefault(row["organization_id"], set()).add(row[key])
    failing = {}
    for org, documents in by_org.items():
        documents = list(documents)
        for start in range(0, len(documents), 500):
            chunk = documents[start : start + 500]
            query = sa.select(
                sync_status.c.crm_document_id, sync_status.c.metakocka_id, sync_status.c.status
            ).where(
                sync_status.c.organization_id == org,
                sync_status.c.status.in_(STILL_FAILING),
                sa.or_(
                    sync_status.c.crm_document_id.in_(chunk),
                    sync_status.c.metakocka_id.in_(chunk),
                ),
            )
            for crm_id, mk_id, status in conn.execute(query):
                for document in (crm_id, mk_id):
                    if document:
                        failing[(org, document)] = status
    return failing


def error_statistics(engine: Engine, where: ErrorFilter) -> list[dict]:
    """Counts by day (UTC) and error type: total, still open, resolved."""
    day = sa.func.substr(sa.cast(sync_error_log.c.occurred_at, sa.String), 1, 10)
    open_ = sa.func.sum(sa.case((sync_error_log.c.resolved_at.is_(None), 1), else_=0))
    query = (
        sa.select(
            day.label("day"),
            sync_error_log.c.error_type,
            sa.func.count().label("total"),
            open_.label("open"),
        )
        .where(*where.where())
        .group_by(day, sync_error_log.c.error_type)
        .order_by(day.desc(), sync_error_log.c.error_type)
    )
    with engine.connect() as conn:
        return [
            {**dict(r), "open": int(r["open"] or 0), "resolved": r["total"] - int(r["open"] or 0)}
            for r in conn.execute(query).mappings()
        ]


def export_csv(engine: Engine, where: ErrorFilter, out) -> int:
    """Write every matching row (all columns, details as JSON) to the text stream `out`."""
    rows = list_errors(engine, where, limit=None)
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "details": _json(row.get("details"))})
    return len(rows)


def _json(value) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True, default=str)


# -- whole runs --------------------------------------------------------------------------------


def record_run_failure(
    engine: Engine,
    *,
    organization_id: str,
    run_id: str,
    job_name: str,
    message: str,
    stack_trace: str | None = None,
    requested_by: str | None = None,
    secrets: Iterable[str] = (),
) -> bool:
    """One open `internal` row for a failed Dagster run (idempotent per run; texts redacted)."""
    secrets = tuple(s for s in secrets if s)
    with engine.begin() as conn:
        exists = conn.execute(
            sa.select(sync_error_log.c.id).where(
                sync_error_log.c.run_id == run_id,
                sync_error_log.c.error_type == "internal",
                sync_error_log.c.crm_document_id.is_(None),
                sync_error_log.c.metakocka_id.is_(None),
                sync_error_log.c.details["kind"].as_string() == RUN_FAILED,
            )
        ).first()
        if exists:
            return False
        conn.execute(
            sync_error_log.insert().values(
                occurred_at=utcnow(),
                organization_id=organization_id,
                run_id=run_id,
                direction=None,
                error_type="internal",
                message=redact(message, secrets),
                details={"kind": RUN_FAILED, "job": job_name},
                stack_trace=redact(stack_trace, secrets) if stack_trace else None,
                requested_by=requested_by,
            )
        )
    return True


def resolve_run_failures(engine: Engine, organization_id: str, *, note: str) -> int:
    """Close the organization's open run failures: a later reconciliation got through."""
    with engine.begin() as conn:
        return conn.execute(
            sync_error_log.update()
            .where(
                sync_error_log.c.organization_id == organization_id,
                sync_error_log.c.resolved_at.is_(None),
                sync_error_log.c.crm_document_id.is_(None),
                sync_error_log.c.metakocka_id.is_(None),
                sync_error_log.c.details["kind"].as_string() == RUN_FAILED,
            )
            .values(resolved_at=utcnow(), resolution_note=note)
        ).rowcount


def document_errors(
    engine: Engine,
    organization_id: str,
    *,
    run_id: str | None = None,
    ids: Iterable[int] = (),
) -> list[dict]:
    """Error rows about a document: those a run wrote (`run_id`), or these `ids`."""
    about_a_document = sa.or_(
        sync_error_log.c.crm_document_id.is_not(None), sync_error_log.c.metakocka_id.is_not(None)
    )
    which = sync_error_log.c.run_id == run_id if run_id else sync_error_log.c.id.in_(list(ids))
    query = sa.select(sync_error_log).where(
        sync_error_log.c.organization_id == organization_id, about_a_document, which
    )
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query.order_by(sync_error_log.c.id)).mappings()]


def open_errors_of_kind(engine: Engine, organization_id: str, kind: str) -> list[dict]:
    """The organization's open run-level errors whose `details.kind` is `kind`."""
    query = sa.select(sync_error_log).where(
        sync_error_log.c.organization_id == organization_id,
        sync_error_log.c.resolved_at.is_(None),
        sync_error_log.c.details["kind"].as_string() == kind,
    )
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def resolve_error_ids(engine: Engine, ids: Iterable[int], *, note: str) -> int:
    ids = list(ids)
    if not ids:
        return 0
    with engine.begin() as conn:
        return conn.execute(
            sync_error_log.update()
            .where(sync_error_log.c.id.in_(ids), sync_error_log.c.resolved_at.is_(None))
            .values(resolved_at=utcnow(), resolution_note=note)
        ).rowcount


def open_warning_details(engine: Engine, organization_id: str, kind: str) -> list[tuple]:
    """(metakocka_id, details) of the organization's open `warning` rows whose `details.kind`
    is `kind`."""
    log = sync_error_log.c
    query = sa.select(log.metakocka_id, log.details).where(
        log.organization_id == organization_id,
        log.error_type == WARNING,
        log.resolved_at.is_(None),
        log.details["kind"].as_string() == kind,
    )
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query).all()]


def resolve_run_errors_of_kind(
    engine: Engine, organization_id: str, kind: str, *, except_run_id: str | None, note: str
) -> int:
    """Close the organization's open run-level rows (no document id) whose `details.kind` is
    `kind`, except those of `except_run_id`."""
    log = sync_error_log.c
    query = (
        sync_error_log.update()
        .where(
            log.organization_id == organization_id,
            log.resolved_at.is_(None),
            log.crm_document_id.is_(None),
            log.metakocka_id.is_(None),
            log.details["kind"].as_string() == kind,
            sa.or_(log.run_id.is_(None), log.run_id != except_run_id),
        )
        .values(resolved_at=utcnow(), resolution_note=note)
    )
    with engine.begin() as conn:
        return conn.execute(query).rowcount
