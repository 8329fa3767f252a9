"""The one retry policy both API clients share, declared once with tenacity.

What is retried is decided by the error types (`SyncError.retryable`), not by each call site:
`TransientError`, `RateLimitedError` and `MalformedResponseError` are retried; `AmbiguousWriteError`
(a create whose outcome is unknown), `AuthError`, `RejectedError` and `NotFoundError` never are,
because repeating them either cannot help or could create a second document.

The wait is full-jitter exponential backoff (uncoordinated workers spread out instead of retrying in
step), but never shorter than a server's `Retry-After`, which is capped so a hostile or buggy value
cannot park a worker for an hour.
"""

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.nap import sleep as tenacity_sleep
from tenacity.wait import wait_base

from sync_pipeline.adapters.errors import SyncError

logger = logging.getLogger("sync_pipeline.retry")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a client tries. Attempts include the first one; waits are in seconds."""

    max_attempts: int = 5
    initial_wait_s: float = 0.5
    max_wait_s: float = 30.0
    max_retry_after_s: float = 60.0


DEFAULT_RETRY_POLICY = RetryPolicy()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from an HTTP `Retry-After` header (delta-seconds or an HTTP date); None if absent."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC by RFC 5322
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def is_retryable(exc: BaseException) -> bool:
    """True for the typed errors that are safe and useful to repeat (see the module docstring)."""
    return isinstance(exc, SyncError) and exc.retryable


class wait_backoff_or_retry_after(wait_base):
    """Jittered exponential backoff, raised to the failure's `retry_after` when it has one."""

    def __init__(self, policy: RetryPolicy):
        self._backoff = wait_random_exponential(
            multiplier=policy.initial_wait_s, max=policy.max_wait_s
        )
        self._retry_after_cap = policy.max_retry_after_s

    def __call__(self, retry_state: RetryCallState) -> float:
        backoff = self._backoff(retry_state)
        retry_after = getattr(retry_state.outcome.exception(), "retry_after", None)
        if retry_after is None:
            return backoff
        return min(max(float(retry_after), backoff), self._retry_after_cap)


@dataclass(frozen=True)
class RetryEvent:
    """One retry: which call failed on which attempt, why, and how long the client waited."""

    call: str
    attempt: int
    error_type: str
    wait_s: float
    exception: str = ""
    """The error's class name (e.g. `AmbiguousWriteError`): what kind of transient failure."""


class CallStats:
    """Thread-safe counts of requests and retries per call, for run metadata and benchmarks.

    A client owns one and shares it with every thread using that client; `snapshot()` gives plain
    numbers a Dagster asset can attach as metadata. The most recent retries are kept as events so a
    test or an operator can see the waits actually chosen.
    """

    def __init__(self, keep_events: int = 1000):
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._retries: Counter[str] = Counter()
        self._retry_wait_s = 0.0
        self._events: deque[RetryEvent] = deque(maxlen=keep_events)
        self._kinds: Counter[tuple[str, str, str]] = Counter()

    def record_call(self, call: str) -> None:
        with self._lock:
            self._calls[call] += 1

    def record_retry(self, event: RetryEvent) -> None:
        with self._lock:
            self._retries[event.call] += 1
            self._retry_wait_s += event.wait_s
            self._events.append(event)
            self._kinds[(event.call, event.error_type, event.exception)] += 1

    def recent_retries(self) -> list[RetryEvent]:
        with self._lock:
            return list(self._events)

    def retry_breakdown(self) -> list[tuple[str, str, str, int]]:
        """Every retry ever counted, as `(call, error_type, exception class, count)` rows.

        Unlike `recent_retries` this is not bounded, so a run can report every failure its retries
        absorbed (the per-run summary rows of sync_error_log are built from it).
        """
        with self._lock:
            return [(*key, n) for key, n in sorted(self._kinds.items())]

    def snapshot(self) -> dict:
        """Plain numbers: calls and retries per call, their totals, and seconds spent waiting."""
        with self._lock:
            by_type: Counter[str] = Counter()
            for (_call, error_type, _exception), n in self._kinds.items():
                by_type[error_type] += n
            return {
                "calls": dict(self._calls),
                "retries": dict(self._retries),
                "retries_by_error_type": dict(by_type),
                "total_calls": sum(self._calls.values()),
                "total_retries": sum(self._retries.values()),
                "retry_wait_s": round(self._retry_wait_s, 3),
            }


def build_retrying(
    policy: RetryPolicy,
    call: str,
    *,
    stats: CallStats | None = None,
    retry_on: Callable[[BaseException], bool] = is_retryable,
    sleep: Callable[[float], None] = tenacity_sleep,
) -> Retrying:
    """A `tenacity.Retrying` for one logical call (e.g. `"metakocka search"`), from `policy`.

    `retry_on` narrows or widens what is retried (the exactly-once create also retries after an
    `AmbiguousWriteError`, because each of its attempts looks the document up first). `sleep` is
    tenacity's, replaceable in tests. The last error is re-raised as itself, never as `RetryError`,
    so callers and the error log see the typed error.
    """

    def log_and_count(retry_state: RetryCallState) -> None:
        exc = retry_state.outcome.exception()
        error_type = getattr(exc, "error_type", "internal")
        wait_s = retry_state.next_action.sleep
        # Only the call name, the attempt and the error class: never a message, which could quote
        # a request.
        logger.warning(
            "%s failed on attempt %d of %d (%s, %s); retrying in %.2fs",
            call,
            retry_state.attempt_number,
            policy.max_attempts,
            type(exc).__name__,
            error_type,
            wait_s,
        )
        if stats is not None:
            stats.record_retry(
                RetryEvent(call, retry_state.attempt_number, error_type, wait_s, type(exc).__name__)
            )

    return Retrying(
        retry=retry_if_exception(retry_on),
        wait=wait_backoff_or_retry_after(policy),
        stop=stop_after_attempt(policy.max_attempts),
        before_sleep=log_and_count,
        sleep=sleep,
        reraise=True,
    )
