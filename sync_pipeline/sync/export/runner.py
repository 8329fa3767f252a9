"""Run an exporter over its plan rows: a bounded thread pool, progress reports, and a per-run
circuit breaker.

An exporter's `run(row)` carries one document through every protection; this module decides how
many run at once and turns whatever one of them raises into that document's outcome, so one
document never stops the rest. An `AuthError` trips the breaker: the first document (or batch) is
pushed alone, a probe, so bad credentials cost one call; the company is not called again for the
remaining documents, which stay `pending`, and the run logs one `auth` row, not one per document.
"""

import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import pandas as pd

from sync_pipeline.adapters.errors import AuthError, SyncError
from sync_pipeline.domain.document import MappingError
from sync_pipeline.domain.text import text_or_none
from sync_pipeline.sync.export.outcomes import FAILED, SKIPPED, PushOutcome, pending

Progress = Callable[[int, int], None]
"""Called with (documents done, documents in all) after each document."""


class CircuitBreaker:
    """Opens on the first `AuthError`: bad credentials will not get better by asking again."""

    def __init__(self):
        self._open = threading.Event()
        self._lock = threading.Lock()
        self.reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def trip(self, reason: str) -> bool:
        """Open the breaker; True only for the caller that opened it (whose failure is logged)."""
        with self._lock:
            if self._open.is_set():
                return False
            self.reason = reason
            self._open.set()
            return True


def run_each(
    rows: pd.DataFrame,
    run: Callable[..., PushOutcome],
    direction: str,
    breaker: CircuitBreaker,
    concurrency: int,
    on_progress: Progress | None,
) -> list[PushOutcome]:
    """`run` over every row, `concurrency` at a time, each under `guarded`."""
    total = len(rows)
    done = 0
    lock = threading.Lock()

    def run_guarded(row) -> PushOutcome:
        nonlocal done
        outcome = guarded(row, run, direction, breaker)
        if on_progress is not None:
            with lock:
                done += 1
                on_progress(done, total)
        return outcome

    records = list(rows.itertuples(index=False))
    if concurrency <= 1 or total <= 1:
        return [run_guarded(row) for row in records]
    # The first document goes alone: if the credentials are bad, one call finds out (the breaker
    # then stops the rest before any of them is sent).
    probe = run_guarded(records[0])
    with ThreadPoolExecutor(
        max_workers=concurrency, thread_name_prefix=f"push-{direction}"
    ) as pool:
        return [probe, *pool.map(run_guarded, records[1:])]


def run_batches(
    rows: pd.DataFrame,
    write_batch: Callable[[list], list[PushOutcome]],
    direction: str,
    concurrency: int,
    on_progress: Progress | None,
    *,
    size: int,
) -> list[PushOutcome]:
    """`write_batch` over `size`-long batches of `rows`, `concurrency` batches at a time; the
    first batch goes alone (a probe, as in `run_each`). `write_batch` guards its own documents."""
    records = list(rows.itertuples(index=False))
    batches = [records[i : i + size] for i in range(0, len(records), size)]
    total, done, lock = len(records), 0, threading.Lock()

    def run(batch) -> list[PushOutcome]:
        nonlocal done
        outcomes = write_batch(batch)
        if on_progress is not None:
            with lock:
                for _ in outcomes:
                    done += 1
                    on_progress(done, total)
        return outcomes

    if not batches:
        return []
    first = run(batches[0])
    with ThreadPoolExecutor(
        max_workers=max(1, concurrency), thread_name_prefix=f"push-{direction}"
    ) as pool:
        return [*first, *(o for outcomes in pool.map(run, batches[1:]) for o in outcomes)]


def guarded(row, run, direction: str, breaker: CircuitBreaker) -> PushOutcome:
    """Run one document's push and turn any failure into an outcome; never let one document stop
    the rest. Nothing is sent once the breaker is open."""
    if breaker.is_open:
        return pending(row, direction, f"not attempted: {breaker.reason}", error_type="auth")
    attempted_at = datetime.now(UTC)
    try:
        return run(row)
    except Exception as exc:
        return failure(row, exc, direction, breaker, attempted_at)


def failure(
    row, exc: Exception, direction: str, breaker: CircuitBreaker, attempted_at: datetime
) -> PushOutcome:
    """The outcome of one document's failed push (called in the `except` that caught `exc`).

    A refused key trips the breaker (only the first refusal is a failure, the others wait); a
    value the other system cannot hold is `rejected`; anything unexpected is `internal`, with
    its stack trace."""
    crm_id = text_or_none(getattr(row, "crm_document_id", None))
    mk_id = text_or_none(getattr(row, "metakocka_id", None))
    failed = {"attempted_at": attempted_at}
    if isinstance(exc, AuthError):
        first = breaker.trip(str(exc))
        result = FAILED if first else SKIPPED
        return PushOutcome(
            row.action, direction, result, crm_id, mk_id,
            error_type=exc.error_type, message=str(exc), **failed,
        )  # fmt: skip
    if isinstance(exc, SyncError):
        return PushOutcome(
            row.action, direction, FAILED, crm_id, mk_id,
            error_type=exc.error_type, message=str(exc), **failed,
        )  # fmt: skip
    if isinstance(exc, MappingError):  # the other system cannot hold it (a setting is missing)
        return PushOutcome(
            row.action, direction, FAILED, crm_id, mk_id,
            error_type="rejected", message=exc.reason, **failed,
        )  # fmt: skip
    return PushOutcome(  # a bug or an unexpected answer: record it, go on with the others
        row.action, direction, FAILED, crm_id, mk_id,
        error_type="internal", message=f"{type(exc).__name__}: {exc}",
        stack_trace=traceback.format_exc(), **failed,
    )  # fmt: skip


def with_breaker_summary(
    outcomes: list[PushOutcome], breaker: CircuitBreaker, system: str
) -> list[PushOutcome]:
    """Say on the one `auth` failure how many documents the open breaker left pending."""
    if not breaker.is_open:
        return outcomes
    left = sum(o.result == SKIPPED and o.error_type == "auth" for o in outcomes)
    return [
        replace(
            o,
            message=f"{o.message} (circuit breaker open: {system} was not called again in this "
            f"run; {left} more document(s) left pending)",
        )
        if o.result == FAILED and o.error_type == "auth"
        else o
        for o in outcomes
    ]
