"""Conflicts as operators see them, and their resolutions (the `conflict_resolutions` table).

A resolution names the winning side of one conflicting pair. It waits (`consumed_at` null) until a
reconciliation carries it out; the run then marks it consumed, `applied` when the winner's
content was written, or `obsolete` when the pair was no longer in conflict. A second resolution of
the same pair before a run replaces the first.
"""

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipeline.domain.conflicts import WINNERS, Resolution
from sync_pipeline.store.clock import utcnow
from sync_pipeline.store.tables import conflict_resolutions, sync_error_log, sync_status

APPLIED = "applied"
OBSOLETE = "obsolete"


class ResolutionRefused(ValueError):
    """The document cannot be resolved (not in conflict, or not a two-sided conflict)."""


@dataclass(frozen=True)
class ConflictView:
    """One document in conflict: its sync_status row, the open conflict error, any pending pick."""

    crm_document_id: str | None
    metakocka_id: str | None
    document_type: str | None
    crm_document_number: str | None
    metakocka_count_code: str | None
    reason: str | None
    since: object
    differences: list
    pending_winner: str | None


class Resolutions:
    """The operators' picks of a winning side (`conflict_resolutions`), and the conflicts they
    pick from."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def conflicts(self, organization_id: str) -> list[ConflictView]:
        """The organization's documents in `conflict` as of the last reconciliation."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(sync_status)
                    .where(
                        sync_status.c.organization_id == organization_id,
                        sync_status.c.status == "conflict",
                    )
                    .order_by(sync_status.c.crm_document_id, sync_status.c.metakocka_id)
                )
                .mappings()
                .all()
            )
            errors = (
                conn.execute(
                    sa.select(sync_error_log)
                    .where(
                        sync_error_log.c.organization_id == organization_id,
                        sync_error_log.c.error_type == "conflict",
                        sync_error_log.c.resolved_at.is_(None),
                    )
                    .order_by(sync_error_log.c.occurred_at)
                )
                .mappings()
                .all()
            )
        pending = {(r.crm_document_id, r.metakocka_id): r for r in self.pending(organization_id)}
        latest = {}
        for error in errors:
            latest[(error["crm_document_id"], error["metakocka_id"])] = error
        views = []
        for row in rows:
            key = (row["crm_document_id"], row["metakocka_id"])
            error = latest.get(key) or {}
            resolution = pending.get(key)
            views.append(
                ConflictView(
                    crm_document_id=row["crm_document_id"],
                    metakocka_id=row["metakocka_id"],
                    document_type=row["document_type"],
                    crm_document_number=row["crm_document_number"],
                    metakocka_count_code=row["metakocka_count_code"],
                    reason=row["last_error"],
                    since=error.get("occurred_at"),
                    differences=(error.get("details") or {}).get("differences") or [],
                    pending_winner=resolution.winner if resolution else None,
                )
            )
        return views

    def resolve(
        self,
        organization_id: str,
        document_id: str,
        winner: str,
        *,
        resolved_by: str | None = None,
        note: str | None = None,
    ) -> Resolution:
        """Store the operator's pick for the document (its CRM id or Metakocka id) in conflict.

        Refused (`ResolutionRefused`) unless the document's sync_status is `conflict` with a
        document on both sides: an ambiguous match is fixed at the source (the duplicate in
        Metakocka), not by picking a side.
        """
        if winner not in WINNERS:
            raise ResolutionRefused(f"--winner must be one of {', '.join(WINNERS)}, got {winner!r}")
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(sync_status).where(
                        sync_status.c.organization_id == organization_id,
                        sa.or_(
                            sync_status.c.crm_document_id == document_id,
                            sync_status.c.metakocka_id == document_id,
                        ),
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise ResolutionRefused(
                f"document {document_id} is unknown in organization {organization_id} "
                "(give its CRM id or its Metakocka mk_id)"
            )
        if row["status"] != "conflict":
            raise ResolutionRefused(
                f"document {document_id} is not in conflict (status {row['status']}); "
                "nothing to resolve"
            )
        if not (row["crm_document_id"] and row["metakocka_id"]):
            raise ResolutionRefused(
                f"document {document_id} is in conflict without a counterpart "
                f"({row['last_error']}); fix the ambiguous match in Metakocka (buyer_order) "
                "instead of picking a side"
            )
        crm_id, mk_id = row["crm_document_id"], row["metakocka_id"]
        values = {
            "winner": winner,
            "resolved_by": resolved_by,
            "note": note,
            "created_at": utcnow(),
        }
        with self.engine.begin() as conn:
            pending = conn.execute(
                sa.select(conflict_resolutions.c.id).where(
                    conflict_resolutions.c.organization_id == organization_id,
                    conflict_resolutions.c.crm_document_id == crm_id,
                    conflict_resolutions.c.metakocka_id == mk_id,
                    conflict_resolutions.c.consumed_at.is_(None),
                )
            ).scalar()
            if pending is not None:
                conn.execute(
                    conflict_resolutions.update()
                    .where(conflict_resolutions.c.id == pending)
                    .values(**values)
                )
                resolution_id = pending
            else:
                resolution_id = conn.execute(
                    conflict_resolutions.insert().values(
                        organization_id=organization_id,
                        crm_document_id=crm_id,
                        metakocka_id=mk_id,
                        **values,
                    )
                ).inserted_primary_key[0]
        return Resolution(resolution_id, crm_id, mk_id, winner, resolved_by)

    def pending(self, organization_id: str) -> list[Resolution]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(conflict_resolutions).where(
                    conflict_resolutions.c.organization_id == organization_id,
                    conflict_resolutions.c.consumed_at.is_(None),
                )
            ).mappings()
            return [
                Resolution(
                    r["id"], r["crm_document_id"], r["metakocka_id"], r["winner"], r["resolved_by"]
                )
                for r in rows
            ]

    def consume(self, ids, *, run_id: str | None, outcome: str) -> int:
        """Mark resolutions as carried out (`applied`) or no longer needed (`obsolete`)."""
        ids = [i for i in ids if i is not None]
        if not ids:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(
                conflict_resolutions.update()
                .where(
                    conflict_resolutions.c.id.in_(ids),
                    conflict_resolutions.c.consumed_at.is_(None),
                )
                .values(consumed_at=utcnow(), consumed_by_run=run_id, outcome=outcome)
            ).rowcount

    def settle_unused(self, plan, resolutions: list[Resolution], *, run_id: str | None) -> int:
        """Mark `obsolete` the pending resolutions this plan did not need: their pair is planned and
        no longer in conflict (in sync, or changed into something else). A pair the run did not read
        (an incremental run), or still holds back (invalid, or a conflict it could not match), keeps
        its resolution for a later run."""
        if not resolutions:
            return 0
        used = (
            set(plan["conflict_resolution_id"].dropna())
            if "conflict_resolution_id" in plan
            else set()
        )
        settled = ~plan["action"].isin(["conflict", "invalid"])
        settled_pairs = set(
            zip(
                plan.loc[settled, "crm_document_id"], plan.loc[settled, "metakocka_id"], strict=True
            )
        )
        obsolete = [
            r.id
            for r in resolutions
            if r.id not in used and (r.crm_document_id, r.metakocka_id) in settled_pairs
        ]
        return self.consume(obsolete, run_id=run_id, outcome=OBSOLETE)
