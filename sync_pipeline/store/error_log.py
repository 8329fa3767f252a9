"""The error log (`sync_error_log`): every read and write of it, behind one class.

Rows are appended by the runs (a document's failure, a whole step's or run's) and closed when the
document later syncs, by the check that raised them, or by an operator (`sync-pipeline errors
...`: filter, resolve with a note, statistics by type and day, CSV export). Every text written is
redacted with the secrets the log knows: secrets never reach the table.

Resolving by hand is refused for an error whose document is still failing: its sync_status is
`failed`, `invalid` or `conflict`, so the error still describes the document's state. Fix the
document (or resolve the conflict) and the next run closes the error itself.
"""

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipeline.adapters.redact import redact
from sync_pipeline.store.clock import utcnow
from sync_pipeline.store.error_filter import ErrorFilter
from sync_pipeline.store.tables import WARNING, sync_error_log, sync_status

STILL_FAILING = ("failed", "invalid", "conflict")
RUN_FAILED = "run_failed"
EXPORT_COLUMNS = [c.name for c in sync_error_log.columns]
CHUNK = 500
"""Ids per `IN (...)` list."""


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


class ErrorLog:
    """`sync_error_log`, redacting every text it writes with the secrets it knows."""

    def __init__(self, engine: Engine, secrets: Iterable[str] = ()):
        self.engine = engine
        self._secrets = tuple(s for s in secrets if s)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Redact these too from now on (a secret learned after opening: the CRM's
        `metakocka_credentials`)."""
        self._secrets = tuple(dict.fromkeys([*self._secrets, *(s for s in secrets if s)]))

    # ----------------------------------------------------------------- a run's rows
    def log(self, rows: list[dict]) -> int:
        """Append error rows, redacting every text column (secrets never reach the table)."""
        if not rows:
            return 0
        now = utcnow()
        clean = []
        for row in rows:
            details = row.get("details")
            clean.append(
                {
                    "occurred_at": row.get("occurred_at") or now,
                    "organization_id": row["organization_id"],
                    "run_id": row.get("run_id"),
                    "direction": row.get("direction"),
                    "crm_document_id": row.get("crm_document_id"),
                    "metakocka_id": row.get("metakocka_id"),
                    "error_type": row["error_type"],
                    "message": redact(str(row["message"]), self._secrets),
                    "details": json.loads(redact(json.dumps(details, default=str), self._secrets))
                    if details is not None
                    else None,
                    "stack_trace": redact(row["stack_trace"], self._secrets)
                    if row.get("stack_trace")
                    else None,
                    "requested_by": row.get("requested_by"),
                    # A failure a retry already absorbed is logged resolved (sync/retried.py).
                    "resolved_at": row.get("resolved_at"),
                    "resolution_note": row.get("resolution_note"),
                }
            )
        with self.engine.begin() as conn:
            conn.execute(sync_error_log.insert(), clean)
        return len(clean)

    def open_frame(self, organization_id: str, error_type: str | None = None) -> pd.DataFrame:
        """The organization's open errors (of `error_type`), every column."""
        query = sa.select(sync_error_log).where(
            sync_error_log.c.organization_id == organization_id,
            sync_error_log.c.resolved_at.is_(None),
        )
        if error_type:
            query = query.where(sync_error_log.c.error_type == error_type)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return pd.DataFrame(rows, columns=[c.name for c in sync_error_log.columns])

    def resolve_for_documents(
        self,
        organization_id: str,
        *,
        crm_document_ids: Iterable[str] = (),
        metakocka_ids: Iterable[str] = (),
        note: str,
        only_types: Iterable[str] | None = None,
    ) -> int:
        """Close the open errors of documents that are now fine (chunked to keep IN lists small).

        Without `only_types`, every type but `warning`: a warning is about what the document
        holds (an unmapped Metakocka status), which a successful sync does not change, so only
        the check that raised it closes it (`only_types=[WARNING]`, sync/statuses.py).
        """
        resolved = 0
        now = utcnow()
        for column, ids in (
            (
                sync_error_log.c.crm_document_id,
                list(dict.fromkeys(i for i in crm_document_ids if i)),
            ),
            (sync_error_log.c.metakocka_id, list(dict.fromkeys(i for i in metakocka_ids if i))),
        ):
            for start in range(0, len(ids), CHUNK):
                query = (
                    sync_error_log.update()
                    .where(
                        sync_error_log.c.organization_id == organization_id,
                        sync_error_log.c.resolved_at.is_(None),
                        column.in_(ids[start : start + CHUNK]),
                    )
                    .values(resolved_at=now, resolution_note=note)
                )
                if only_types is not None:
                    query = query.where(sync_error_log.c.error_type.in_(list(only_types)))
                else:
                    query = query.where(sync_error_log.c.error_type != WARNING)
                with self.engine.begin() as conn:
                    resolved += conn.execute(query).rowcount
        return resolved

    def document_errors(
        self,
        organization_id: str,
        *,
        run_id: str | None = None,
        ids: Iterable[int] = (),
    ) -> list[dict]:
        """Error rows about a document: those a run wrote (`run_id`), or these `ids`."""
        about_a_document = sa.or_(
            sync_error_log.c.crm_document_id.is_not(None),
            sync_error_log.c.metakocka_id.is_not(None),
        )
        which = sync_error_log.c.run_id == run_id if run_id else sync_error_log.c.id.in_(list(ids))
        query = sa.select(sync_error_log).where(
            sync_error_log.c.organization_id == organization_id, about_a_document, which
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(sync_error_log.c.id)).mappings()
            return [dict(row) for row in rows]

    def resolve_ids(self, ids: Iterable[int], *, note: str) -> int:
        ids = list(ids)
        if not ids:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(
                sync_error_log.update()
                .where(sync_error_log.c.id.in_(ids), sync_error_log.c.resolved_at.is_(None))
                .values(resolved_at=utcnow(), resolution_note=note)
            ).rowcount

    def resolve_vanished(self, organization_id: str, note: str) -> int:
        """Close open document errors whose document is no longer known on either side (deleted
        on both, e.g. by hand): nothing is left to fix. Run after a full reconciliation only."""
        known_crm = sa.select(sync_status.c.crm_document_id).where(
            sync_status.c.organization_id == organization_id,
            sync_status.c.crm_document_id.is_not(None),
        )
        known_mk = sa.select(sync_status.c.metakocka_id).where(
            sync_status.c.organization_id == organization_id,
            sync_status.c.metakocka_id.is_not(None),
        )
        crm_gone = sa.and_(
            sync_error_log.c.crm_document_id.is_not(None),
            sync_error_log.c.crm_document_id.not_in(known_crm),
        )
        mk_gone = sa.and_(
            sync_error_log.c.metakocka_id.is_not(None),
            sync_error_log.c.metakocka_id.not_in(known_mk),
        )
        no_crm = sa.or_(sync_error_log.c.crm_document_id.is_(None), crm_gone)
        no_mk = sa.or_(sync_error_log.c.metakocka_id.is_(None), mk_gone)
        query = (
            sync_error_log.update()
            .where(
                sync_error_log.c.organization_id == organization_id,
                sync_error_log.c.resolved_at.is_(None),
                sa.or_(crm_gone, mk_gone),
                no_crm,
                no_mk,
            )
            .values(resolved_at=utcnow(), resolution_note=note)
        )
        with self.engine.begin() as conn:
            return conn.execute(query).rowcount

    # ----------------------------------------------------------------- rows of kinds
    def open_of_kind(self, organization_id: str, kind: str) -> list[dict]:
        """The organization's open run-level errors whose `details.kind` is `kind`."""
        query = sa.select(sync_error_log).where(
            sync_error_log.c.organization_id == organization_id,
            sync_error_log.c.resolved_at.is_(None),
            sync_error_log.c.details["kind"].as_string() == kind,
        )
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def open_warning_details(self, organization_id: str, kind: str) -> list[tuple]:
        """(metakocka_id, details) of the organization's open `warning` rows whose
        `details.kind` is `kind`."""
        log = sync_error_log.c
        query = sa.select(log.metakocka_id, log.details).where(
            log.organization_id == organization_id,
            log.error_type == WARNING,
            log.resolved_at.is_(None),
            log.details["kind"].as_string() == kind,
        )
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query).all()]

    def resolve_run_errors_of_kind(
        self, organization_id: str, kind: str, *, except_run_id: str | None, note: str
    ) -> int:
        """Close the organization's open run-level rows (no document id) whose `details.kind`
        is `kind`, except those of `except_run_id`."""
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
        with self.engine.begin() as conn:
            return conn.execute(query).rowcount

    # ----------------------------------------------------------------- whole runs
    def record_run_failure(
        self,
        *,
        organization_id: str,
        run_id: str,
        job_name: str,
        message: str,
        stack_trace: str | None = None,
        requested_by: str | None = None,
        secrets: Iterable[str] = (),
    ) -> bool:
        """One open `internal` row for a failed Dagster run (idempotent per run; texts redacted
        with the log's secrets and `secrets`)."""
        secrets = tuple(dict.fromkeys([*self._secrets, *(s for s in secrets if s)]))
        with self.engine.begin() as conn:
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

    def resolve_run_failures(self, organization_id: str, *, note: str) -> int:
        """Close the organization's open run failures: a later reconciliation got through."""
        with self.engine.begin() as conn:
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

    # ----------------------------------------------------------------- the run's report
    def new_by_type(self, organization_id: str, run_id: str) -> dict[str, int]:
        """The error rows the run wrote for the organization, counted per error type."""
        query = (
            sa.select(sync_error_log.c.error_type, sa.func.count())
            .where(
                sync_error_log.c.organization_id == organization_id,
                sync_error_log.c.run_id == run_id,
            )
            .group_by(sync_error_log.c.error_type)
        )
        with self.engine.connect() as conn:
            return dict(conn.execute(query).all())

    def open_count(self, organization_id: str) -> int:
        """The organization's errors nobody (and no later run) has resolved yet."""
        query = sa.select(sa.func.count()).where(
            sync_error_log.c.organization_id == organization_id,
            sync_error_log.c.resolved_at.is_(None),
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def top_open(self, organization_id: str, limit: int = 10) -> pd.DataFrame:
        """Open errors grouped by type and message, most frequent first, each with one of its
        documents (ids, and numbers from sync_status) so a reader can open it."""
        query = (
            sa.select(
                sync_error_log.c.error_type,
                sync_error_log.c.message,
                sa.func.count().label("errors"),
                sa.func.max(sync_error_log.c.occurred_at).label("last_seen"),
                sa.func.min(sync_error_log.c.crm_document_id).label("crm_document_id"),
                sa.func.min(sync_error_log.c.metakocka_id).label("metakocka_id"),
            )
            .where(
                sync_error_log.c.organization_id == organization_id,
                sync_error_log.c.resolved_at.is_(None),
            )
            .group_by(sync_error_log.c.error_type, sync_error_log.c.message)
            .order_by(sa.func.count().desc(), sa.func.max(sync_error_log.c.occurred_at).desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            crm_ids = [r.crm_document_id for r in rows if r.crm_document_id]
            mk_ids = [r.metakocka_id for r in rows if r.metakocka_id]
            numbers = conn.execute(
                sa.select(
                    sync_status.c.crm_document_id,
                    sync_status.c.metakocka_id,
                    sync_status.c.crm_document_number,
                    sync_status.c.metakocka_count_code,
                ).where(
                    sync_status.c.organization_id == organization_id,
                    sa.or_(
                        sync_status.c.crm_document_id.in_(crm_ids),
                        sync_status.c.metakocka_id.in_(mk_ids),
                    ),
                )
            ).all()
        by_crm = {n.crm_document_id: n for n in numbers if n.crm_document_id}
        by_mk = {n.metakocka_id: n for n in numbers if n.metakocka_id}
        frame = pd.DataFrame(
            rows,
            columns=[
                "error_type", "message", "errors", "last_seen", "crm_document_id", "metakocka_id"
            ],
        )  # fmt: skip
        status = [by_crm.get(r.crm_document_id) or by_mk.get(r.metakocka_id) for r in rows]
        frame["document_number"] = [
            (s.crm_document_number or s.metakocka_count_code) if s is not None else None
            for s in status
        ]
        return frame

    # ----------------------------------------------------------------- operators
    def matching(self, where: ErrorFilter, *, limit: int | None = 100) -> list[dict]:
        """Matching rows, newest first."""
        query = (
            sa.select(sync_error_log)
            .where(*where.where())
            .order_by(sync_error_log.c.occurred_at.desc(), sync_error_log.c.id.desc())
        )
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def resolve(
        self,
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
        with self.engine.begin() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
            failing = _failing_documents(conn, rows)
            refused, allowed = [], []
            for row in rows:
                status = failing.get(
                    (row["organization_id"], row["crm_document_id"])
                ) or failing.get((row["organization_id"], row["metakocka_id"]))
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
                        "resolve the conflict) and the next run closes this error, or it cannot "
                        "be resolved by hand",
                    )
                )
            for start in range(0, len(allowed), CHUNK):
                conn.execute(
                    sync_error_log.update()
                    .where(sync_error_log.c.id.in_(allowed[start : start + CHUNK]))
                    .values(resolved_at=utcnow(), resolution_note=text)
                )
        found = {row["id"] for row in rows}
        return ResolveResult(sorted(allowed), refused, [i for i in ids if i not in found])

    def statistics(self, where: ErrorFilter) -> list[dict]:
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
        with self.engine.connect() as conn:
            return [
                {
                    **dict(r),
                    "open": int(r["open"] or 0),
                    "resolved": r["total"] - int(r["open"] or 0),
                }
                for r in conn.execute(query).mappings()
            ]

    def export_csv(self, where: ErrorFilter, out) -> int:
        """Write every matching row (all columns, details as JSON) to the text stream `out`."""
        rows = self.matching(where, limit=None)
        writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "details": _json(row.get("details"))})
        return len(rows)


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
        for start in range(0, len(documents), CHUNK):
            chunk = documents[start : start + CHUNK]
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


def _json(value) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True, default=str)
