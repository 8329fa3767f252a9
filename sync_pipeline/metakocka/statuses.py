"""Metakocka's status -> the CRM's: the company's own status register, mapped per organization.

A Metakocka status belongs to the company's own register (metakocka-api.md section 5): a document
carries `status_code`, the register's label in the company's language ("Novo naročilo"), and
(since 12.8.2025) `status_desc`, the register's internal code ("new_order"). The CRM has five
statuses (`CRM_STATUSES`). A `StatusMap` says which CRM status each Metakocka status means:

1. `paid` when Metakocka's payments cover the total (`sum_paid` >= `sum_all`), whatever the status;
2. the organization's own entries (`metakocka_statuses` in SYNC_ORGANIZATIONS), matched on
   `status_desc`, then on the label;
3. `STANDARD_STATUSES`, matched the same way;
4. otherwise the status is *unmapped*: the CRM keeps its status, and the run says so (a warning
   in sync_error_log, a count in the sync report: `sync/statuses.py`). Never a silent None.

Matching ignores case and surrounding blanks: the code's spelling is not documented, and an
older company answers without `status_desc`, where its label may be the code itself (section 8's
"Valid values : active,finished,deleted").
"""

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from sync_pipeline.domain.amounts import StatedTotals
from sync_pipeline.domain.document import CRM_STATUSES, SalesDocument
from sync_pipeline.domain.text import stripped_or_none
from sync_pipeline.metakocka.amounts import paid_in_full, read_stated_totals

STATUS_KEY = "metakocka_status"
"""`SalesDocument.source_extra` key of the document's `MetakockaStatus` as read."""

KEEP = "keep"
"""A map value: the status says nothing the CRM's statuses express, so the CRM's own status
stands (a new CRM document is a draft), and nothing is reported."""

STANDARD_STATUSES = {
    "new_order": KEEP,
    "created": KEEP,
    "open": "sent",
    "active": "sent",
    "in_process": "sent",
    "shipped": "sent",
    "finished": "sent",
    "canceled": "cancelled",
    "cancelled": "cancelled",
    "deleted": "cancelled",
}
"""The standard register's codes (metakocka-api.md section 5: new_order, created, shipped, open,
active; section 8: finished, deleted; issue 16: in_process, canceled) -> the CRM's status.

- `new_order`, `created`: nothing has happened to the document in Metakocka yet. It says nothing
  about whether the customer has it, so it must not turn a CRM document the salesperson marked
  `sent` back into a `draft`: the CRM's status stands.
- `open`, `active`, `in_process`, `shipped`, `finished`: issued and being (or done being) worked
  on, so the customer has it: `sent`. `finished` is not `paid`: a finished order may still be
  unpaid; payment is read from `sum_paid` (rule 1 above).
- `canceled` (and the British spelling), `deleted`: `cancelled`.
The CRM's `overdue` has no standard code: an organization whose register has one maps it."""


@dataclass(frozen=True)
class MetakockaStatus:
    """A document's status as Metakocka answered it."""

    label: str | None
    """`status_code`: the register's label, as the company's users see it."""
    desc: str | None
    """`status_desc`: the register's internal code (absent before 12.8.2025)."""
    paid_in_full: bool = False

    @property
    def known(self) -> bool:
        """Does the document have a status at all?"""
        return self.label is not None or self.desc is not None

    def __str__(self) -> str:
        return f"{self.label!r} (status_desc {self.desc!r})"


NO_STATUS = MetakockaStatus(None, None)


def read_status(doc: dict, stated: StatedTotals | None = None) -> MetakockaStatus:
    """The status of a document as `get_document` / `search` returns it (`stated`: its sums,
    when already read: `read_stated_totals`). Paid: Metakocka's payments cover its total (both
    read in every decimal form; an unreadable sum is a MappingError, never "unpaid")."""
    paid = paid_in_full(stated if stated is not None else read_stated_totals(doc))
    return MetakockaStatus(
        stripped_or_none(doc.get("status_code")), stripped_or_none(doc.get("status_desc")), paid
    )


def status_of(doc: SalesDocument) -> MetakockaStatus:
    """The Metakocka status a mapped document was read with (`NO_STATUS` for a CRM document)."""
    return doc.source_extra.get(STATUS_KEY, NO_STATUS)


@dataclass(frozen=True)
class StatusMap:
    """The organization's own entries over `STANDARD_STATUSES` (see the module docstring)."""

    own: tuple[tuple[str, str], ...] = ()
    """(status_desc or label, CRM status or `KEEP`), as configured."""

    @classmethod
    def from_config(cls, value: Mapping[str, str] | None, where: str) -> "StatusMap":
        """A map from the `metakocka_statuses` setting; `ValueError` names what is wrong."""
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: metakocka_statuses must be a JSON object, got {value!r}")
        allowed = (*CRM_STATUSES, KEEP)
        for key, status in value.items():
            if not str(key).strip():
                raise ValueError(f"{where}: metakocka_statuses has an empty key")
            if status not in allowed:
                raise ValueError(
                    f"{where}: metakocka_statuses[{key!r}] must be one of "
                    f"{', '.join(allowed)}, got {status!r}"
                )
        return cls(tuple((str(key), str(status)) for key, status in value.items()))

    def as_config(self) -> dict[str, str]:
        return dict(self.own)

    def crm_status(self, status: MetakockaStatus) -> str | None:
        """The CRM status `status` means; None: the CRM keeps its own (no status, `KEEP`, or
        unmapped: tell them apart with `is_unmapped`)."""
        if status.paid_in_full:
            return "paid"
        entry = self._entry(status)
        return None if entry in (None, KEEP) else entry

    def is_unmapped(self, status: MetakockaStatus) -> bool:
        """A status the map has no entry for (and no payment settles)."""
        return status.known and not status.paid_in_full and self._entry(status) is None

    def _entry(self, status: MetakockaStatus) -> str | None:
        for table in (self._own, STANDARD_STATUSES):
            for key in (status.desc, status.label):
                if key is not None and key.lower() in table:
                    return table[key.lower()]
        return None

    @cached_property
    def _own(self) -> dict[str, str]:
        return {key.strip().lower(): status for key, status in self.own}


STANDARD = StatusMap()
"""The map of an organization that configures nothing."""


def unmapped_reason(status: MetakockaStatus) -> str:
    """What an operator reads about an unmapped status: what it is, what happened, what to do."""
    key = status.desc or status.label
    return (
        f"Metakocka status {status} has no CRM status: the CRM document keeps its own status "
        "(a document new to the CRM is created as a draft). Map it in the organization's "
        f'SYNC_ORGANIZATIONS entry, e.g. "metakocka_statuses": {{"{key}": "sent"}} (one of '
        f"{', '.join((*CRM_STATUSES, KEEP))})"
    )
