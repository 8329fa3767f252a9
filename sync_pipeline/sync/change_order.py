"""Which side changed a document last, when Metakocka does not say when it changed.

Metakocka answers no change time on a document: only the search filters `last_change_from` /
`last_change_to` know it (metakocka-api.md sections 5 and 7). So `newest_wins`, and the adoption of
an unlinked pair whose two versions differ (`domain/plan.py`, rule 2), ask Metakocka instead: "did
this document change at or after the CRM's edit?", with a margin on either side of the CRM's time
for the two servers' clocks and Metakocka's whole seconds:

- changed at or after `crm.updated_at + CLOCK_MARGIN`: Metakocka changed last;
- not changed since `crm.updated_at - CLOCK_MARGIN`: the CRM changed last;
- otherwise the two edits are too close to order, and the pair is held as a conflict, with that
  reason, for an operator. So is a pair whose CRM side has no `updated_at`, or whose question
  Metakocka could not answer.

At most two searches per pair, each narrowed to the document's buyer order where it has one;
conflicts are few.
"""

from datetime import timedelta

from sync_pipeline.adapters.errors import SyncError
from sync_pipeline.domain.conflicts import ChangeOrder
from sync_pipeline.domain.document import SalesDocument
from sync_pipeline.domain.policies import WINNER_CRM, WINNER_METAKOCKA
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.metakocka.mapping import PASSTHROUGH_KEY

CLOCK_MARGIN = timedelta(seconds=2)
"""Edits closer than this are not ordered: Metakocka's times have whole seconds, and the CRM's
clock is another server's."""


def metakocka_change_order(client: MetakockaClient) -> ChangeOrder:
    """The `ChangeOrder` that asks `client`'s company (module docstring)."""

    def changed_last(crm: SalesDocument, metakocka: SalesDocument) -> tuple[str | None, str]:
        if crm.updated_at is None:
            return None, "the CRM's version has no updated_at, so the newer side is unknown"
        if not metakocka.metakocka_doc_type or not metakocka.metakocka_id:
            return None, "the Metakocka version has no id to ask about"
        buyer_order = getattr(metakocka, "buyer_order", None) or metakocka.source_extra.get(
            PASSTHROUGH_KEY, {}
        ).get("buyer_order")  # a summary's own (domain/summary.py), else as read

        def changed_since(moment) -> bool:
            return client.changed_since(
                metakocka.metakocka_doc_type,
                metakocka.metakocka_id,
                moment,
                buyer_order=buyer_order,
            )

        crm_at = crm.updated_at.isoformat()
        try:
            if changed_since(crm.updated_at + CLOCK_MARGIN):
                return WINNER_METAKOCKA, f"Metakocka changed it after the CRM's edit at {crm_at}"
            if not changed_since(crm.updated_at - CLOCK_MARGIN):
                return WINNER_CRM, f"the CRM's edit at {crm_at} is newer than Metakocka's"
        except SyncError as exc:
            return None, f"could not ask Metakocka when it changed the document: {exc}"
        return None, (
            f"Metakocka changed it within {CLOCK_MARGIN.seconds} s of the CRM's edit at {crm_at}: "
            "too close to tell which is newer"
        )

    return changed_last
