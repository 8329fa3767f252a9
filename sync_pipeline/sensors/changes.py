"""The change sensor: documents changed in either system since the last poll become sync requests.

The seed's "real-time updates" without webhooks: every `SYNC_CHANGE_POLL_SECONDS` the sensor reads
each organization's documents changed since its cursor (CRM `updated_at`, Metakocka
`last_change_from`) and queues a single-document request (`both` directions) for each, which the
request sensor then batches into runs.

It must not chase its own tail: every write the pipeline makes moves the other system's change
cursor too. So a changed document whose content hash equals the hash its link stored at the last
sync is skipped: it is the pipeline's own write, or a change that does not touch synced content.
Documents that cannot be read are left to the nightly run (which quarantines them), so they never
loop either.

Cursor, per organization and side: the newest change time seen, and the ids seen at exactly that
time (reads are `>=`, and Metakocka's times have whole seconds), so each change is queued once.
The first evaluation for an organization starts from "now": history is the nightly run's job.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg

from sync_pipeline.adapters.errors import SyncError
from sync_pipeline.domain.hashing import content_hash
from sync_pipeline.domain.sync_request import BOTH
from sync_pipeline.resources import (
    CrmResource,
    MetakockaResource,
    OrganizationsResource,
    SyncStoreResource,
)
from sync_pipeline.settings import parse_organizations
from sync_pipeline.store.document_queries import links_for
from sync_pipeline.store.requests import SyncRequestQueue
from sync_pipeline.store.tables import LINK_LINKED
from sync_pipeline.sync.extract import (
    CRM,
    Extraction,
    crm_context,
    extract_crm,
    extract_metakocka,
)

SENSOR_NAME = "document_changes_sensor"
REQUESTED_BY = "change_sensor"


@dataclass
class SideCursor:
    since: datetime
    seen_at_since: set[str] = field(default_factory=set)

    def is_new(self, doc_id: str, changed_at: datetime | None) -> bool:
        if changed_at is None:
            return True
        return not (changed_at == self.since and doc_id in self.seen_at_since)

    def advance(self, changes: list[tuple[str, datetime]]) -> None:
        stamped = [(i, t) for i, t in changes if t is not None]
        if not stamped:
            return
        newest = max(t for _, t in stamped)
        if newest > self.since:
            self.since, self.seen_at_since = newest, set()
        if newest == self.since:
            self.seen_at_since |= {i for i, t in stamped if t == newest}

    def dump(self) -> dict:
        return {"since": self.since.isoformat(), "seen": sorted(self.seen_at_since)}

    @classmethod
    def load(cls, data: dict) -> "SideCursor":
        return cls(datetime.fromisoformat(data["since"]), set(data.get("seen", ())))


def load_cursor(text: str | None) -> dict[str, dict[str, SideCursor]]:
    if not text:
        return {}
    return {
        org: {side: SideCursor.load(value) for side, value in sides.items()}
        for org, sides in json.loads(text).items()
    }


def dump_cursor(cursor: dict[str, dict[str, SideCursor]]) -> str:
    return json.dumps(
        {org: {side: c.dump() for side, c in sides.items()} for org, sides in cursor.items()}
    )


def changed_documents(extraction: Extraction, side_cursor: SideCursor, engine, org_id: str):
    """(document id, change time) of the documents whose synced content really changed."""
    key = "crm_document_id" if extraction.side == CRM else "metakocka_id"
    fresh = [d for d in extraction.documents if side_cursor.is_new(getattr(d, key), d.updated_at)]
    ids = [getattr(d, key) for d in fresh]
    links = links_for(
        engine, org_id, ids if extraction.side == CRM else [], ids if extraction.side != CRM else []
    )
    linked = links.loc[links["state"] == LINK_LINKED]
    synced_hash = dict(zip(linked[key].astype(str), linked["content_hash"], strict=True))
    precision = extraction.precision
    changed = [d for d in fresh if synced_hash.get(getattr(d, key)) != content_hash(d, precision)]
    seen = [(getattr(d, key), d.updated_at) for d in extraction.documents]
    return [getattr(d, key) for d in changed], seen


def queued_document_ids(queue: SyncRequestQueue, organization_id: str, side: str) -> set[str]:
    """Ids named by requests still queued that push this side's changes (not yet read by a run,
    so their run will see this change too)."""
    pushes_side = {"crm": ("crm_to_metakocka", BOTH), "metakocka": ("metakocka_to_crm", BOTH)}
    return {
        doc_id
        for request in queue.queued_for(organization_id)
        if request.direction in pushes_side[side]
        for doc_id in request.document_ids
    }


def _poll(side: str, org, since: datetime, crm: CrmResource, metakocka: MetakockaResource):
    crm_client = crm.client()
    if side == "crm":
        return extract_crm(crm_client, org.id, updated_since=since)
    client = metakocka.client(org.metakocka_company_id)
    precision = crm_context(crm_client, org.id).precision  # both sides compare at the CRM's
    return extract_metakocka(client, org.id, changed_since=since, precision=precision)


def build_change_sensor(*, interval_s: int = 30) -> dg.SensorDefinition:
    """`interval_s` 0: the sensor starts stopped (webhooks deliver the changes instead)."""

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=interval_s or 30,
        default_status=dg.DefaultSensorStatus.RUNNING
        if interval_s
        else dg.DefaultSensorStatus.STOPPED,
        description="Polls both systems for documents changed since its cursor (CRM updated_at, "
        "Metakocka last_change_from) and queues a sync request for each whose content differs "
        "from what was last synced (so the pipeline's own writes never re-trigger it).",
    )
    def document_changes_sensor(
        context: dg.SensorEvaluationContext,
        crm: CrmResource,
        metakocka: MetakockaResource,
        organizations: OrganizationsResource,
        sync_store: SyncStoreResource,
    ):
        cursor = load_cursor(context.cursor)
        engine = sync_store.store().engine
        queue = SyncRequestQueue(engine)
        start = datetime.now(UTC).replace(microsecond=0)
        queued = 0
        for org in parse_organizations(organizations.organizations_json):
            sides = cursor.setdefault(org.id, {})
            if not sides:  # first look at this organization: start from now
                sides.update(crm=SideCursor(start), metakocka=SideCursor(start))
                continue
            for side in ("crm", "metakocka"):
                try:
                    extraction = _poll(side, org, sides[side].since, crm, metakocka)
                except SyncError as exc:  # try again next tick, from the same cursor
                    context.log.warning(f"{org.name}: cannot poll {side}: {exc}")
                    continue
                changed, seen = changed_documents(extraction, sides[side], engine, org.id)
                covered = queued_document_ids(queue, org.id, side)
                for doc_id in changed:
                    if doc_id in covered:  # a queued request will read its latest version
                        continue
                    _, created = queue.enqueue(org.id, BOTH, [doc_id], requested_by=REQUESTED_BY)
                    queued += created
                sides[side].advance(seen)
        if not queued:
            return dg.SensorResult(skip_reason="no changed documents", cursor=dump_cursor(cursor))
        context.log.info(f"queued {queued} sync request(s) for changed documents")
        return dg.SensorResult(cursor=dump_cursor(cursor))

    return document_changes_sensor
