"""The runs of this code location as plain data: job and op names, the tags runs carry, and the
`sync_documents` run a batch of sync requests becomes.

No Dagster import, on purpose: the request sensor turns a `Batch` into a `RunRequest`, and the
HTTP API (which stays free of Dagster) submits the same run through Dagster's GraphQL API, so an
on-demand run has the same config, tags and run key however it was launched, and the run queue's
limits (dagster.yaml, `tag_concurrency_limits`) count it the same way.
"""

import hashlib
from dataclasses import dataclass

from sync_pipeline.store.requests import SyncRequest

SYNC_DOCUMENTS_JOB = "sync_documents"
SYNC_DOCUMENTS_OP = "sync_requested_documents"
TAG_REQUESTED_BY = "sync_pipeline/requested_by"
TAG_ORGANIZATION = "sync_pipeline/organization"
"""One on-demand run per organization at a time: the run queue's limit is on this tag."""
TAG_REQUEST_COUNT = "sync_pipeline/requests"
TAG_KIND = "sync_pipeline/kind"
"""What a run is for: reconciliation, on_demand, preflight or maintenance."""
# Dagster's own tags that the code location reads (Dagster sets them; their names are public in
# the run list, not as constants of its public API).
TAG_PARTITION = "dagster/partition"
TAG_USER = "dagster/user"
TAG_SCHEDULE_NAME = "dagster/schedule_name"
RUN_KEY_TAG = "dagster/run_key"
"""Dagster's own tag for a sensor's run key; a run the API submits carries it too, so a
request's run is found by the request's run key whoever launched it."""
MAX_IDS_PER_RUN = 200

# Every run that talks to Metakocka carries its company id under this tag, so the queued run
# coordinator can bound the runs in flight per company (deploy/dagster.yaml,
# `tag_concurrency_limits`). Schedules and sensors set it with `metakocka_company_tags`.
METAKOCKA_COMPANY_TAG = "sync_pipeline/metakocka_company"
ORGANIZATION_NAME_TAG = "sync_pipeline/organization_name"
"""The organization's name on its runs: the run list and run page show tags, not partitions'
meanings."""
ORGANIZATION_ID_TAG = "sync_pipeline/organization_id"
"""The CRM organization uuid behind a run's readable partition key."""


def metakocka_company_tags(organization) -> dict[str, str]:
    """The run tags that name an organization's Metakocka company (an `Organization`).

    Tags are fixed when the code location loads, which never calls the CRM: an organization
    whose credentials come from the CRM (read at run start) and that names no
    `metakocka_company_id` is counted under `crm:<organization id>`, i.e. on its own."""
    company = organization.metakocka_company_id or f"crm:{organization.id}"
    return {METAKOCKA_COMPANY_TAG: company}


def organization_run_tags(organization) -> dict[str, str]:
    """Every run of an organization, however launched (schedule, launchpad, backfill, sensor,
    API), is named and counted against its company's limit by these tags."""
    return {
        ORGANIZATION_NAME_TAG: organization.name,
        ORGANIZATION_ID_TAG: organization.id,
        **metakocka_company_tags(organization),
    }


@dataclass
class Batch:
    """Requests that one run serves: one organization, one direction."""

    organization_id: str
    direction: str
    requests: list[SyncRequest]

    @property
    def request_ids(self) -> list[str]:
        return [r.id for r in self.requests]

    @property
    def document_ids(self) -> list[str]:
        return list(dict.fromkeys(i for r in self.requests for i in r.document_ids))

    @property
    def all_unsynced(self) -> bool:
        return any(r.all_unsynced for r in self.requests)

    @property
    def run_key(self) -> str:
        if len(self.requests) == 1:
            return self.requests[0].id
        digest = hashlib.sha256(",".join(sorted(self.request_ids)).encode()).hexdigest()
        return f"batch-{digest[:32]}"

    @property
    def requested_by(self) -> str:
        who = list(dict.fromkeys(r.requested_by or "unknown" for r in self.requests))
        return who[0] if len(who) == 1 else f"{who[0]} and {len(who) - 1} more"

    def run_config(self) -> dict:
        """The run finds its requests by its run key, and who asked by its tag (not config)."""
        config = {
            "organization_id": self.organization_id,
            "direction": self.direction,
            "document_ids": self.document_ids,
            "all_unsynced": self.all_unsynced,
            "dry_run": False,
        }
        return {"ops": {SYNC_DOCUMENTS_OP: {"config": config}}}

    def tags(self, organization_tags: dict[str, str] | None = None) -> dict[str, str]:
        """The run's tags; `organization_tags` are the organization's (`organization_run_tags`:
        its Metakocka company, so the per-company limit covers on-demand runs too)."""
        return {
            TAG_ORGANIZATION: self.organization_id,
            TAG_REQUESTED_BY: self.requested_by[:200],
            TAG_REQUEST_COUNT: str(len(self.requests)),
            # Someone is waiting for this one: ahead of scheduled runs in the run queue.
            "dagster/priority": "10",
            **(organization_tags or {}),
        }


def batch_requests(requests: list[SyncRequest], max_ids: int = MAX_IDS_PER_RUN) -> list[Batch]:
    """Group requests per (organization, direction), oldest first, at most `max_ids` ids a run.

    A request is never split. Requests for every unsynced document ride along with the others of
    their group (the run reads the unsynced ones anyway).
    """
    groups: dict[tuple[str, str], list[Batch]] = {}
    for request in sorted(requests, key=lambda r: (r.created_at, r.id)):
        batches = groups.setdefault((request.organization_id, request.direction), [])
        current = batches[-1] if batches else None
        if (
            current is None
            or len(current.document_ids) + len(request.document_ids) > max_ids
            and current.requests
        ):
            current = Batch(request.organization_id, request.direction, [])
            batches.append(current)
        current.requests.append(request)
    return [batch for batches in groups.values() for batch in batches]
