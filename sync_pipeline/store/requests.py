"""The durable queue of on-demand sync requests (`sync_requests`).

Life of a request: `queued` (written by the API, the CLI, a webhook or the change sensor) ->
`launched` (the request sensor put it in a run, or the API submitted its run; `run_key` names the
run, and the run writes its `run_id` when it starts) -> `done` or `failed` (the job, or the
run-failure sensor when the run dies). Every transition is one short transaction, guarded by the
state it leaves, so two writers can never move a request backwards, and only one of the request
sensor and the API can take a request out of the queue: it runs once.

Duplicates are refused by the database, not by a read-then-write race: `(organization_id,
idempotency_key)` is unique, and so is `(organization_id, queued_fingerprint)`, a column that holds
the request's content fingerprint only while it is queued (a request the API submits: until its
run starts).
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from sync_pipeline.domain.directions import REQUEST_DIRECTIONS
from sync_pipeline.domain.sync_request import request_fingerprint
from sync_pipeline.store.tables import sync_requests

QUEUED, LAUNCHED, DONE, FAILED = "queued", "launched", "done", "failed"
OPEN_STATES = (QUEUED, LAUNCHED)


class IdempotencyKeyReused(ValueError):
    """The Idempotency-Key was already used for a request with different content."""


@dataclass(frozen=True)
class SyncRequest:
    id: str
    organization_id: str
    direction: str
    document_ids: tuple[str, ...]
    all_unsynced: bool
    requested_by: str | None
    created_at: datetime
    state: str
    run_key: str | None
    run_id: str | None
    updated_at: datetime
    error: str | None
    idempotency_key: str | None

    def as_json(self) -> dict:
        """The request as the API and the CLI show it (camelCase, ISO times)."""
        return {
            "requestId": self.id,
            "organizationId": self.organization_id,
            "direction": self.direction,
            "documentIds": list(self.document_ids),
            "allUnsynced": self.all_unsynced,
            "requestedBy": self.requested_by,
            "state": self.state,
            "runId": self.run_id,
            "createdAt": self.created_at.isoformat(),
            "updatedAt": self.updated_at.isoformat(),
            "error": self.error,
        }


def _utc(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; every time here is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _from_row(row) -> SyncRequest:
    return SyncRequest(
        id=row["id"],
        organization_id=row["organization_id"],
        direction=row["direction"],
        document_ids=tuple(row["document_ids"] or ()),
        all_unsynced=bool(row["all_unsynced"]),
        requested_by=row["requested_by"],
        created_at=_utc(row["created_at"]),
        state=row["state"],
        run_key=row["run_key"],
        run_id=row["run_id"],
        updated_at=_utc(row["updated_at"]),
        error=row["error"],
        idempotency_key=row["idempotency_key"],
    )


class SyncRequestQueue:
    """Reads and state transitions of `sync_requests`, on the sync database's engine.

    The table comes with the sync database's migrations (`SyncStore.create_schema`);
    `create_table=True` creates it directly, for a throwaway database.
    """

    def __init__(self, engine: Engine, *, create_table: bool = False):
        self.engine = engine
        if create_table:
            sync_requests.create(engine, checkfirst=True)

    # ------------------------------------------------------------------ writers
    def enqueue(
        self,
        organization_id: str,
        direction: str,
        document_ids: Iterable[str] = (),
        *,
        all_unsynced: bool = False,
        requested_by: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[SyncRequest, bool]:
        """Queue a request; returns `(request, created)`.

        `created` is False when an equal request is already queued (same organization, direction
        and ids) or when `idempotency_key` was seen before: the earlier request is returned and
        nothing new will run. The same key with different content raises `IdempotencyKeyReused`.
        """
        if direction not in REQUEST_DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}")
        ids = list(dict.fromkeys(str(i) for i in document_ids))
        if not ids and not all_unsynced:
            raise ValueError("a request names document ids or sets all_unsynced")
        fingerprint = request_fingerprint(organization_id, direction, ids, all_unsynced)
        if idempotency_key:
            existing = self._by_idempotency_key(organization_id, idempotency_key)
            if existing is not None:
                return self._same_content(existing, fingerprint), False
        now = datetime.now(UTC)
        values = {
            "id": str(uuid.uuid4()),
            "organization_id": organization_id,
            "direction": direction,
            "document_ids": ids,
            "all_unsynced": all_unsynced,
            "requested_by": requested_by,
            "created_at": now,
            "state": QUEUED,
            "updated_at": now,
            "idempotency_key": idempotency_key or None,
            "fingerprint": fingerprint,
            "queued_fingerprint": fingerprint,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(sync_requests.insert().values(**values))
        except IntegrityError:
            # A concurrent twin won the race: same key, or the same content still queued.
            if idempotency_key:
                existing = self._by_idempotency_key(organization_id, idempotency_key)
                if existing is not None:
                    return self._same_content(existing, fingerprint), False
            existing = self._queued_twin(organization_id, fingerprint)
            if existing is None:
                raise
            return existing, False
        return self.get(values["id"]), True

    def mark_launched(self, request_ids: Iterable[str], run_key: str) -> list[str]:
        """queued -> launched, in a run named `run_key`; returns the ids that moved."""
        ids = list(request_ids)
        if not ids:
            return []
        with self.engine.begin() as conn:
            moved = [
                row[0]
                for row in conn.execute(
                    sa.select(sync_requests.c.id).where(
                        sync_requests.c.id.in_(ids), sync_requests.c.state == QUEUED
                    )
                )
            ]
            if moved:
                conn.execute(
                    sync_requests.update()
                    .where(sync_requests.c.id.in_(moved), sync_requests.c.state == QUEUED)
                    .values(
                        state=LAUNCHED,
                        run_key=run_key,
                        queued_fingerprint=None,
                        updated_at=datetime.now(UTC),
                    )
                )
        return moved

    def rekey(self, request_ids: Iterable[str], run_key: str) -> int:
        """Launched requests not yet claimed move to the run named `run_key` (a batch that lost
        some of its requests to another evaluation gets a key of its own)."""
        return self._transition(
            request_ids, (LAUNCHED,), sync_requests.c.run_id.is_(None), run_key=run_key
        )

    def take_for_submission(self, request_id: str, organization_id: str) -> bool:
        """queued -> launched, under its own id as run key, for the API to submit its run at once.

        False, and nothing changes, when the request is no longer queued (the request sensor took
        it) or when another request of the organization is still waiting for its run to start:
        this one waits for that run anyway (one on-demand run per organization at a time), so it
        stays queued and the sensor batches it with whatever else comes meanwhile, a run for
        them all instead of a run each. Unlike `mark_launched` the request keeps its fingerprint
        until its run starts (`claim`), so the same documents posted again meanwhile are still
        this request.
        """
        waiting = sync_requests.alias("waiting")
        someone_waits = (
            sa.select(waiting.c.id)
            .where(
                waiting.c.organization_id == organization_id,
                waiting.c.state == LAUNCHED,
                waiting.c.run_id.is_(None),
            )
            .exists()
        )
        return self._moved_one(
            sync_requests.c.id == request_id,
            sync_requests.c.organization_id == organization_id,
            sync_requests.c.state == QUEUED,
            ~someone_waits,
            state=LAUNCHED,
            run_key=request_id,
        )

    def return_to_queue(self, request_id: str) -> bool:
        """launched -> queued again, for a request taken for submission whose run Dagster
        certainly did not create (unreachable, or it refused): the sensor launches it instead."""
        return self._moved_one(
            sync_requests.c.id == request_id,
            sync_requests.c.state == LAUNCHED,
            sync_requests.c.run_key == request_id,
            sync_requests.c.run_id.is_(None),
            state=QUEUED,
            run_key=None,
        )

    def _moved_one(self, *conditions, **values) -> bool:
        """One guarded update of a single request: True when the guard held and it moved."""
        with self.engine.begin() as conn:
            moved = conn.execute(
                sync_requests.update()
                .where(*conditions)
                .values(**values, updated_at=datetime.now(UTC))
            ).rowcount
        return moved == 1

    def claim(self, request_ids: Iterable[str], run_id: str) -> int:
        """The run has started: record its id."""
        return self._transition(
            request_ids,
            OPEN_STATES,
            state=LAUNCHED,
            run_id=run_id,
            queued_fingerprint=None,
        )

    def finish(self, request_ids: Iterable[str], *, error: str | None = None) -> int:
        """launched -> done (no error) or failed (with the error)."""
        return self._transition(
            request_ids,
            OPEN_STATES,
            state=FAILED if error else DONE,
            error=error,
            queued_fingerprint=None,
        )

    def fail_run(self, *, error: str, run_id: str | None = None, run_key: str | None = None) -> int:
        """Every open request of a run that died (by run id, or by the run key it was launched
        under when it died before claiming its requests)."""
        conditions = []
        if run_id:
            conditions.append(sync_requests.c.run_id == run_id)
        if run_key:
            conditions.append(sync_requests.c.run_key == run_key)
        if not conditions:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(
                sync_requests.update()
                .where(sa.or_(*conditions), sync_requests.c.state.in_(OPEN_STATES))
                .values(
                    state=FAILED,
                    error=error[:4000],
                    queued_fingerprint=None,
                    updated_at=datetime.now(UTC),
                )
            ).rowcount

    def _transition(self, request_ids: Iterable[str], from_states, *conditions, **values) -> int:
        ids = list(request_ids)
        if not ids:
            return 0
        if values.get("error"):
            values["error"] = values["error"][:4000]
        with self.engine.begin() as conn:
            return conn.execute(
                sync_requests.update()
                .where(
                    sync_requests.c.id.in_(ids), sync_requests.c.state.in_(from_states), *conditions
                )
                .values(updated_at=datetime.now(UTC), **values)
            ).rowcount

    # ------------------------------------------------------------------ readers
    def get(self, request_id: str, organization_id: str | None = None) -> SyncRequest | None:
        query = sa.select(sync_requests).where(sync_requests.c.id == request_id)
        if organization_id is not None:
            query = query.where(sync_requests.c.organization_id == organization_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return _from_row(row) if row else None

    def queued(self, limit: int = 500) -> list[SyncRequest]:
        """The oldest queued requests of every organization, oldest first."""
        return self._select(
            sync_requests.c.state == QUEUED, order=sync_requests.c.created_at, limit=limit
        )

    def queued_for(self, organization_id: str, limit: int = 5000) -> list[SyncRequest]:
        """The organization's queued requests, oldest first."""
        return self._select(
            sync_requests.c.organization_id == organization_id,
            sync_requests.c.state == QUEUED,
            order=sync_requests.c.created_at,
            limit=limit,
        )

    def launched_without_run(self, older_than: datetime) -> list[SyncRequest]:
        """Requests put in a run that never claimed them (the run was not created, or waits)."""
        return self._select(
            sync_requests.c.state == LAUNCHED,
            sync_requests.c.run_id.is_(None),
            sync_requests.c.updated_at < older_than,
            order=sync_requests.c.updated_at,
        )

    def recent(self, organization_id: str, limit: int = 50) -> list[SyncRequest]:
        """The organization's newest requests, newest first."""
        return self._select(
            sync_requests.c.organization_id == organization_id,
            order=sync_requests.c.created_at.desc(),
            limit=limit,
        )

    def for_run(
        self, *, run_id: str | None = None, run_key: str | None = None
    ) -> list[SyncRequest]:
        conditions = []
        if run_id:
            conditions.append(sync_requests.c.run_id == run_id)
        if run_key:
            conditions.append(sync_requests.c.run_key == run_key)
        return self._select(sa.or_(*conditions)) if conditions else []

    def counts(self, organization_id: str) -> dict[str, int]:
        query = (
            sa.select(sync_requests.c.state, sa.func.count())
            .where(sync_requests.c.organization_id == organization_id)
            .group_by(sync_requests.c.state)
        )
        with self.engine.connect() as conn:
            return {state: int(n) for state, n in conn.execute(query).all()}

    def _select(self, *conditions, order=None, limit: int | None = None) -> list[SyncRequest]:
        query = sa.select(sync_requests).where(*conditions)
        if order is not None:
            query = query.order_by(order)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_from_row(row) for row in conn.execute(query).mappings().all()]

    def _by_idempotency_key(self, organization_id: str, key: str) -> SyncRequest | None:
        found = self._select(
            sync_requests.c.organization_id == organization_id,
            sync_requests.c.idempotency_key == key,
        )
        return found[0] if found else None

    def _queued_twin(self, organization_id: str, fingerprint: str) -> SyncRequest | None:
        found = self._select(
            sync_requests.c.organization_id == organization_id,
            sync_requests.c.queued_fingerprint == fingerprint,
        )
        return found[0] if found else None

    def _same_content(self, existing: SyncRequest, fingerprint: str) -> SyncRequest:
        theirs = request_fingerprint(
            existing.organization_id,
            existing.direction,
            existing.document_ids,
            existing.all_unsynced,
        )
        if theirs != fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was already used for a different request"
            )
        return existing
