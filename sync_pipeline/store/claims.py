"""Exclusive per-document claims: at most one run pushes a given document at a time.

Why: the lookup before a create (`MetakockaClient.create_document_exactly_once`) cannot stop two
runs that look at the same moment, find nothing, and both create; the nightly reconciliation and
an on-demand run of the same document do exactly that. So every push first claims its document in
`sync_claims`, whose primary key (organization, CRM document id) makes the claim exclusive in the
database itself (the OCA connector's "lock per record, a busy lock is retryable"):

- a claim held by another live run: this run leaves the document `pending`; a later run syncs it;
- the owner keeps its claims alive with a heartbeat (`claimed_at` refreshed every `ttl_s / 4`);
- a claim whose owner stopped heartbeating for `ttl_s` (the process was killed) is stale, and the
  next run takes it over. `ttl_s` must exceed Metakocka's `create_settle_s` plus one heartbeat
  interval, so a create the dead owner had in flight has settled before the new owner looks it up.

A claim on a write to the CRM doubles as that write's durable intent. Writing a CRM document
takes several requests (the row, then its lines), so a run that dies, or fails, half-way leaves a
document that is neither the old nor the new content, and the next run would take it for a user's
edit. So such a claim is never simply dropped before the write is confirmed: a failed write
`abandon`s it (kept, and stale at once), a killed run's lapses; `unfinished_writes` lists them, and
the next push to the CRM rewrites those documents from Metakocka before anything else may push them
the other way (`sync/export/`).

The document key is the CRM id, which every push knows (a document born in Metakocka gets a CRM id
derived from its Metakocka id), so creates and updates in both directions share one namespace.
Times are the application's UTC clock, like every other timestamp in the sync database.
"""

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from sync_pipeline.store.tables import sync_claims

logger = logging.getLogger(__name__)

ABANDONED_AT = datetime(2000, 1, 1, tzinfo=UTC)
"""`claimed_at` of an abandoned claim: older than any TTL."""

DEFAULT_CLAIM_TTL_S = 180.0
"""Three heartbeats of 45 s may be missed before a claim lapses; 135 s is more than the default
`create_settle_s` (the 60 s write timeout), as the module docstring requires."""


@dataclass(frozen=True)
class Holder:
    """Who holds a claim this run could not take, for the `pending` message."""

    claimed_by: str
    claimed_at: datetime | None

    def describe(self) -> str:
        since = f" since {self.claimed_at.isoformat(timespec='seconds')}" if self.claimed_at else ""
        return f"claimed by {self.claimed_by}{since}"


def claim_owner(run_id: str | None) -> str:
    """A unique owner name: the run (readable in the table), the host and process, a nonce."""
    host = socket.gethostname()[:40]
    return f"{run_id or 'adhoc'}@{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:120]


class DocumentClaims:
    """One owner's claims in one organization. Use as a context manager: it starts the heartbeat
    and releases whatever is still held on exit. Thread-safe (push workers share one)."""

    def __init__(
        self,
        engine: Engine,
        organization_id: str,
        *,
        owner: str,
        ttl_s: float = DEFAULT_CLAIM_TTL_S,
    ):
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.engine = engine
        self.organization_id = organization_id
        self.owner = owner
        self.ttl_s = float(ttl_s)
        self.heartbeat_s = self.ttl_s / 4
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> "DocumentClaims":
        self._thread = threading.Thread(
            target=self._beat, name=f"claims-heartbeat-{self.owner[:24]}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.release_all()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.heartbeat()
            except Exception:  # a database hiccup: the next beat tries again
                logger.warning("claim heartbeat of %s failed", self.owner, exc_info=True)

    # -- claims ----------------------------------------------------------------------------------
    def _key(self, crm_document_id: str):
        return sa.and_(
            sync_claims.c.organization_id == self.organization_id,
            sync_claims.c.crm_document_id == crm_document_id,
        )

    def try_claim(self, crm_document_id: str, action: str | None = None) -> Holder | None:
        """Claim the document; None when this owner now holds it, else who holds it.

        A fresh insert, or the take-over of a stale claim (or of one this owner already holds) by
        a conditional update; each is atomic, so two runs can never both succeed.
        """
        for _ in range(3):  # the holder may release between our insert and our update
            now = datetime.now(UTC)
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        sync_claims.insert().values(
                            organization_id=self.organization_id,
                            crm_document_id=crm_document_id,
                            claimed_by=self.owner,
                            claimed_at=now,
                            action=action,
                        )
                    )
                return None
            except IntegrityError:
                pass
            stale_before = now - timedelta(seconds=self.ttl_s)
            take_over = (
                sync_claims.update()
                .where(
                    self._key(crm_document_id),
                    sa.or_(
                        sync_claims.c.claimed_by == self.owner,
                        sync_claims.c.claimed_at < stale_before,
                    ),
                )
                .values(claimed_by=self.owner, claimed_at=now, action=action)
            )
            with self.engine.begin() as conn:
                if conn.execute(take_over).rowcount == 1:
                    return None
                holder = (
                    conn.execute(
                        sa.select(sync_claims.c.claimed_by, sync_claims.c.claimed_at).where(
                            self._key(crm_document_id)
                        )
                    )
                    .mappings()
                    .first()
                )
            if holder is not None:
                return Holder(holder["claimed_by"], _aware(holder["claimed_at"]))
        return Holder("another run", None)

    def release(self, crm_document_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sync_claims.delete().where(
                    self._key(crm_document_id), sync_claims.c.claimed_by == self.owner
                )
            )

    def abandon(self, crm_document_id: str) -> None:
        """Give the claim up but keep it as an unfinished write: stale at once, and no longer this
        owner's (so `release_all` leaves it), for the next run to resume."""
        with self.engine.begin() as conn:
            conn.execute(
                sync_claims.update()
                .where(self._key(crm_document_id), sync_claims.c.claimed_by == self.owner)
                .values(claimed_by=f"unfinished:{self.owner}"[:120], claimed_at=ABANDONED_AT)
            )

    def unfinished_writes(self, actions) -> dict[str, str]:
        """{CRM id: action} of stale claims (another owner died or failed) with those actions."""
        stale_before = datetime.now(UTC) - timedelta(seconds=self.ttl_s)
        query = sa.select(sync_claims.c.crm_document_id, sync_claims.c.action).where(
            sync_claims.c.organization_id == self.organization_id,
            sync_claims.c.claimed_by != self.owner,
            sync_claims.c.claimed_at < stale_before,
            sync_claims.c.action.in_(list(actions)),
        )
        with self.engine.connect() as conn:
            return {row.crm_document_id: row.action for row in conn.execute(query)}

    def release_all(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(sync_claims.delete().where(sync_claims.c.claimed_by == self.owner))

    def heartbeat(self) -> int:
        """Refresh every claim of this owner; returns how many it holds."""
        with self.engine.begin() as conn:
            return conn.execute(
                sync_claims.update()
                .where(sync_claims.c.claimed_by == self.owner)
                .values(claimed_at=datetime.now(UTC))
            ).rowcount


class Claims:
    """`sync_claims` as a whole: one owner's claims (`for_owner`), and every claim held."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def for_owner(
        self, organization_id: str, *, owner: str, ttl_s: float = DEFAULT_CLAIM_TTL_S
    ) -> DocumentClaims:
        return DocumentClaims(self.engine, organization_id, owner=owner, ttl_s=ttl_s)

    def held(self, organization_id: str | None = None) -> list[dict]:
        """Every claim in the table (for operators and tests): owner, document, since when
        (UTC)."""
        query = sa.select(sync_claims)
        if organization_id is not None:
            query = query.where(sync_claims.c.organization_id == organization_id)
        with self.engine.connect() as conn:
            rows = [dict(row) for row in conn.execute(query).mappings()]
        for row in rows:
            row["claimed_at"] = _aware(row["claimed_at"])
        return rows


def _aware(value: datetime | None) -> datetime | None:
    """UTC and timezone-aware (SQLite hands back naive UTC, PostgreSQL the session's zone)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
