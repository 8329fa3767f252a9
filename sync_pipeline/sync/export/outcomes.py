"""What a push does (the plan actions it carries out) and what comes of it, per document.

Every document a push is given ends as exactly one `PushOutcome`: written (`ok`), `failed` with
its `error_type`, or `skipped` (left `pending` for a later run); nothing is dropped.
"""

from dataclasses import dataclass
from datetime import datetime

from sync_pipeline.domain.text import text_or_none

TO_METAKOCKA_ACTIONS = ("create_in_metakocka", "update_in_metakocka")
TO_CRM_ACTIONS = ("create_in_crm", "update_in_crm")

OK = "ok"
FAILED = "failed"
SKIPPED = "skipped"


@dataclass(frozen=True)
class PushOutcome:
    action: str
    direction: str
    result: str
    """`ok`, `failed`, or `skipped` (not attempted: the circuit breaker is open)."""
    crm_document_id: str | None
    metakocka_id: str | None
    metakocka_count_code: str | None = None
    error_type: str | None = None
    message: str | None = None
    attempted_at: datetime | None = None
    stack_trace: str | None = None


def pending(row, direction: str, message: str, error_type: str | None = None) -> PushOutcome:
    """A plan row left for a later run: nothing was sent, `message` says why."""
    return PushOutcome(
        row.action,
        direction,
        SKIPPED,
        text_or_none(getattr(row, "crm_document_id", None)),
        text_or_none(getattr(row, "metakocka_id", None)),
        error_type=error_type,
        message=message,
    )
