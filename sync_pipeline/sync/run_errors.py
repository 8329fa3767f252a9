"""Error-log rows about a run rather than one document.

Two kinds, both without a document id:

- **Retried failures.** The retry policy hides most transient failures (a 502, a dropped
  connection, a `Quote exceeds`): the call is repeated and the document syncs. They are still
  failures an operator wants to see, so each step that talks to an API writes, per error type its
  retries absorbed, one summary row: how many, on which calls, which exception classes. Such a
  row is written *resolved* (`resolved_at` = now, `resolution_note` says the retry absorbed it):
  it is history, not work to do, so "open errors" keeps meaning "needs attention". A document
  whose push still failed after every attempt has its own open row, as before.
- **Step failures.** A step that cannot run at all (Metakocka refuses the company's credentials,
  the CRM answers 401, an answer is malformed even after the retries) writes ONE open row for the
  organization, with the error's type (`auth`, `transient`, ...), instead of crashing the run or
  writing a row per document. It is resolved when a later run of the organization gets through.
"""

from collections import Counter, defaultdict
from datetime import UTC, datetime

from sync_pipeline.adapters.errors import SyncError
from sync_pipeline.adapters.retry import CallStats
from sync_pipeline.store.error_log import ErrorLog

RETRIED_NOTE = "absorbed by the retry policy within the run"
STEP_FAILED = "step_failed"
RETRIED = "retried"


def retried_failure_rows(
    stats: CallStats,
    *,
    organization_id: str,
    run_id: str | None,
    system: str,
    step: str,
    direction: str | None = None,
    requested_by: str | None = None,
) -> list[dict]:
    """One resolved summary row per error type whose failures were retried in this step."""
    counts: Counter[str] = Counter()
    calls: defaultdict[str, Counter[str]] = defaultdict(Counter)
    exceptions: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for call, error_type, exception, n in stats.retry_breakdown():
        counts[error_type] += n
        calls[error_type][call] += n
        exceptions[error_type][exception or "unknown"] += n
    now = datetime.now(UTC)
    return [
        {
            "organization_id": organization_id,
            "run_id": run_id,
            "direction": direction,
            "crm_document_id": None,
            "metakocka_id": None,
            "error_type": error_type,
            "message": f"{n} {error_type} failure(s) of {system} retried during {step} "
            f"({', '.join(f'{k} x{v}' for k, v in sorted(exceptions[error_type].items()))}); "
            "documents that still failed have their own rows",
            "details": {
                "kind": RETRIED,
                "system": system,
                "step": step,
                "retries": n,
                "calls": dict(calls[error_type]),
                "exceptions": dict(exceptions[error_type]),
            },
            "requested_by": requested_by,
            "resolved_at": now,
            "resolution_note": RETRIED_NOTE,
        }
        for error_type, n in sorted(counts.items())
    ]


def step_failure_row(
    exc: SyncError,
    *,
    organization_id: str,
    run_id: str | None,
    system: str,
    step: str,
    requested_by: str | None = None,
) -> dict:
    """The one open row for a step that could not run (the exception's message is redacted by
    the client that raised it, and again by `ErrorLog.log`)."""
    return {
        "organization_id": organization_id,
        "run_id": run_id,
        "direction": None,
        "crm_document_id": None,
        "metakocka_id": None,
        "error_type": exc.error_type,
        "message": f"{step} of {system} failed, nothing was synced for the organization in this "
        f"run: {exc}",
        "details": {
            "kind": STEP_FAILED,
            "system": system,
            "step": step,
            "exception": type(exc).__name__,
            **{k: v for k, v in exc.details.items() if k not in ("kind", "system", "step")},
        },
        "requested_by": requested_by,
    }


def resolve_earlier_step_failures(
    errors: ErrorLog, organization_id: str, run_id: str | None, note: str
) -> int:
    """Close the open step failures of earlier runs: this run got through its steps."""
    return errors.resolve_run_errors_of_kind(
        organization_id, STEP_FAILED, except_run_id=run_id, note=note
    )
