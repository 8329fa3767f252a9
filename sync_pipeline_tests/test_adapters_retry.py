"""The shared retry policy and redaction, tested directly: both are pure logic.

Sleeps are recorded instead of slept (tenacity's `sleep` hook), so the waits the policy chose are
asserted exactly, without wall-clock measurements.
"""

import logging
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from sync_pipeline.adapters.errors import (
    AmbiguousWriteError,
    AuthError,
    DuplicateExternalIdError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from sync_pipeline.adapters.redact import redact, redact_details
from sync_pipeline.adapters.retry import (
    CallStats,
    RetryPolicy,
    build_retrying,
    is_retryable,
    parse_retry_after,
)

POLICY = RetryPolicy(max_attempts=5, initial_wait_s=0.5, max_wait_s=4.0, max_retry_after_s=60.0)


class Flaky:
    """Raises the given errors in turn, then returns "ok"; counts its calls."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def run(flaky: Flaky, policy: RetryPolicy = POLICY, stats: CallStats | None = None):
    sleeps: list[float] = []
    retrying = build_retrying(policy, "test call", stats=stats, sleep=sleeps.append)
    return retrying(flaky), sleeps


@pytest.mark.parametrize(
    "error",
    [TransientError("t"), RateLimitedError("r"), MalformedResponseError("m")],
    ids=lambda e: type(e).__name__,
)
def test_retryable_errors_are_retried_until_success(error):
    flaky = Flaky(error, error)
    result, sleeps = run(flaky)
    assert result == "ok"
    assert flaky.calls == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    "error",
    [
        AmbiguousWriteError("a"),
        AuthError("a"),
        RejectedError("r"),
        NotFoundError("n"),
        DuplicateExternalIdError("d", existing_ids=["1"]),
        ValueError("a bug, not an API failure"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_non_retryable_errors_are_raised_at_once_as_themselves(error):
    flaky = Flaky(error)
    with pytest.raises(type(error)) as raised:
        run(flaky)
    assert raised.value is error
    assert flaky.calls == 1
    assert not is_retryable(error)


def test_gives_up_after_max_attempts_with_the_typed_error():
    errors = [TransientError(f"failure {n}") for n in range(10)]
    flaky = Flaky(*errors)
    with pytest.raises(TransientError) as raised:
        run(flaky)
    assert flaky.calls == POLICY.max_attempts
    assert raised.value is errors[POLICY.max_attempts - 1]


def test_backoff_is_jittered_exponential_within_the_policy_bounds():
    policy = RetryPolicy(max_attempts=8, initial_wait_s=0.5, max_wait_s=4.0)
    samples: list[list[float]] = []
    for _ in range(50):
        _, sleeps = run(Flaky(*[TransientError("t")] * 7), policy)
        samples.append(sleeps)
    for sleeps in samples:
        for attempt, wait in enumerate(sleeps, start=1):
            assert 0 <= wait <= min(policy.max_wait_s, policy.initial_wait_s * 2 ** (attempt - 1))
    # Jitter: the same attempt does not always wait the same time.
    assert len({round(sleeps[3], 6) for sleeps in samples}) > 1


def test_retry_after_is_honoured_as_a_minimum_wait():
    _, sleeps = run(Flaky(RateLimitedError("slow down", retry_after=7.0)))
    assert len(sleeps) == 1
    assert 7.0 <= sleeps[0] <= POLICY.max_retry_after_s


def test_retry_after_is_capped():
    _, sleeps = run(Flaky(RateLimitedError("come back in an hour", retry_after=3600)))
    assert sleeps == [POLICY.max_retry_after_s]


def test_stats_count_calls_retries_and_the_waits_chosen():
    stats = CallStats()
    run(Flaky(TransientError("t"), RateLimitedError("r", retry_after=2.0)), stats=stats)
    events = stats.recent_retries()
    assert [(e.call, e.attempt, e.error_type) for e in events] == [
        ("test call", 1, "transient"),
        ("test call", 2, "rate_limited"),
    ]
    assert events[1].wait_s >= 2.0
    snapshot = stats.snapshot()
    assert snapshot["retries"] == {"test call": 2}
    assert snapshot["total_retries"] == 2
    assert snapshot["retry_wait_s"] == pytest.approx(sum(e.wait_s for e in events), abs=1e-3)


def test_stats_are_thread_safe():
    stats = CallStats()

    def hammer():
        for _ in range(1000):
            stats.record_call("x")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stats.snapshot()["calls"] == {"x": 8000}


def test_retry_log_names_call_and_attempt_but_never_the_message(caplog):
    secret = "sk-live-0123456789"
    with caplog.at_level(logging.WARNING, logger="sync_pipeline.retry"):
        run(Flaky(TransientError(f"echoed request: secret_key={secret}")))
    assert len(caplog.records) == 1
    line = caplog.records[0].getMessage()
    assert "test call" in line and "attempt 1 of 5" in line and "TransientError" in line
    assert secret not in line


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("2", 2.0), ("1.5", 1.5), ("-3", 0.0), ("soon", None)],
)
def test_parse_retry_after_seconds(header, expected):
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date():
    in_ten_seconds = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    assert 8.0 <= parse_retry_after(in_ten_seconds) <= 10.0


# -- redaction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"secret_key": "abc def", "company_id": "16"}',
            '{"secret_key": "***", "company_id": "16"}',
        ),
        (
            "{'apikey': 'k1', 'Authorization': 'Bearer t.1'}",
            "{'apikey': '***', 'Authorization': '***'}",
        ),
        ("apikey: k1\nAuthorization: Bearer tok", "apikey: ***\nAuthorization: ***"),
        ("GET /rest/v1/x?apikey=k1&select=*", "GET /rest/v1/x?apikey=***&select=*"),
        ("token was Bearer eyJhbGciOi.x-y", "token was Bearer ***"),
        ("SECRET_KEY=abc", "SECRET_KEY=***"),
        ("nothing to hide here", "nothing to hide here"),
    ],
)
def test_redact_patterns(text, expected):
    assert redact(text) == expected


def test_redact_known_secret_values_anywhere():
    assert redact("a s3cr3t-value b s3cr3t", ["s3cr3t", "s3cr3t-value", ""]) == "a *** b ***"


def test_redact_details_nested():
    details = {"body": ["x secret_key=abc", {"deep": "has TOPSECRET"}], "n": 3}
    assert redact_details(details, ["TOPSECRET"]) == {
        "body": ["x secret_key=***", {"deep": "has ***"}],
        "n": 3,
    }
