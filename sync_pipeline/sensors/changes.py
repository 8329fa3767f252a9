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

Cursor, per organization and side, so each change is queued once:
- the CRM: the newest `updated_at` seen, and the ids seen at exactly that time (reads are `>=`);
- Metakocka: its documents carry no change time (metakocka-api.md section 5), so the window comes
  from our clock: the poll's start minus `METAKOCKA_POLL_OVERLAP` (Metakocka's clock and write
  visibility may lag ours), and each document the poll read is remembered by id and content
  hash, so the next poll, which reads the overlap again, queues only what changed since.
The first evaluation for an organization starts from "now": history is the nightly run's job.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg

from sync_pipeline.adapters.errors import SyncError
from sync_pipeline.domain.directions import BOTH, PUSHES_FROM
from sync_pipeline.domain.hashing import content_hash
from sync_pipeline.resources import (
    CrmResource,
    MetakockaResource,
    OrganizationsResource,
    SyncStoreResource,
)
from sync_pipeline.settings import parse_organizations
from sync_pipeline.store.links import Links
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


METAKOCKA_POLL_OVERLAP = timedelta(minutes=2)
"""How far back each Metakocka poll reads again (module docstring)."""


@dataclass
class SideCursor:
    """The CRM's side: documents are stamped with their `updated_at`."""

    since: datetime
    seen_at_since: set[str] = field(default_factory=set)

    def is_new(self, doc_id: str, changed_at: datetime | None) -> bool:
        if changed_at is None:
            return True
        return not (changed_at == self.since and doc_id in self.seen_at_since)

    def advance(self, stamps: list[tuple[str, datetime | None]], polled_at: datetime) -> None:
        stamped = [(i, t) for i, t in stamps if t is not None]
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


@dataclass
class ClockCursor:
    """Metakocka's side: documents are stamped with their content hash (module docstring)."""

    since: datetime
    seen: set[str] = field(default_factory=set)
    """`id:hash` of every document the last poll read."""

    def is_new(self, doc_id: str, version: str) -> bool:
        return f"{doc_id}:{version}" not in self.seen

    def advance(self, stamps: list[tuple[str, str]], polled_at: datetime) -> None:
        self.since = max(self.since, polled_at - METAKOCKA_POLL_OVERLAP)
        self.seen = {f"{doc_id}:{version}" for doc_id, version in stamps}

    def dump(self) -> dict:
        return {"since": self.since.isoformat(), "seen_versions": sorted(self.seen)}

    @classmethod
    def load(cls, data: dict) -> "ClockCursor":
        return cls(datetime.fromisoformat(data["since"]), set(data.get("seen_versions", ())))


CURSOR_OF_SIDE = {"crm": SideCursor, "metakocka": ClockCursor}
Cursor = SideCursor | ClockCursor


def load_cursor(text: str | None) -> dict[str, dict[str, Cursor]]:
    if not text:
        return {}
    return {
        org: {side: CURSOR_OF_SIDE[side].load(value) for side, value in sides.items()}
        for org, sides in json.loads(text).items()
    }


def dump_cursor(cursor: dict[str, dict[str, Cursor]]) -> str:
    return json.dumps(
        {org: {side: c.dump() for side, c in sides.items()} for org, sides in cursor.items()}
    )


def changed_documents(extraction: Extraction, side_cursor: Cursor, links: Links, org_id: str):
    """The ids of the documents whose synced content really changed, and every document's
    stamp for the cursor: (id, `updated_at`) in the CRM, (id, content hash) in Metakocka."""
    key = "crm_document_id" if extraction.side == CRM else "metakocka_id"
    hashes = [content_hash(d, extraction.precision) for d in extraction.documents]
    stamps = [
        (getattr(d, key), d.updated_at if extraction.side == CRM else digest)
        for d, digest in zip(extraction.documents, hashes, strict=True)
    ]
    fresh = [
        (i, h) for (i, stamp), h in zip(stamps, hashes, strict=True) if side_cursor.is_new(i, stamp)
    ]
    ids = [i for i, _ in fresh]
    found = links.for_ids(
        org_id, ids if extraction.side == CRM else [], ids if extraction.side != CRM else []
    )
    linked = found.loc[found["state"] == LINK_LINKED]
    synced_hash = dict(zip(linked[key].astype(str), linked["content_hash"], strict=True))
    return [i for i, digest in fresh if synced_hash.get(i) != digest], stamps


def queued_document_ids(queue: SyncRequestQueue, organization_id: str, side: str) -> set[str]:
    """Ids named by requests still queued that push this side's changes (not yet read by a run,
    so their run will see this change too)."""
    return {
        doc_id
        for request in queue.queued_for(organization_id)
        if request.direction in PUSHES_FROM[side]
        for doc_id in request.document_ids
    }


def _poll(side: str, org, since: datetime, crm: CrmResource, metakocka: MetakockaResource):
    crm_client = crm.client()
    if side == "crm":
        return extract_crm(crm_client, org.id, updated_since=since)
    client = metakocka.client_for(org, crm_client)  # the CRM's credentials: a SyncError too
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
        store = sync_store.store()
        queue = store.requests
        start = datetime.now(UTC).replace(microsecond=0)
        queued = 0
        for org in parse_organizations(organizations.organizations_json):
            sides = cursor.setdefault(org.id, {})
            if not sides:  # first look at this organization: start from now
                sides.update(crm=SideCursor(start), metakocka=ClockCursor(start))
                continue
            for side in ("crm", "metakocka"):
                try:
                    extraction = _poll(side, org, sides[side].since, crm, metakocka)
                except SyncError as exc:  # try again next tick, from the same cursor
                    context.log.warning(f"{org.name}: cannot poll {side}: {exc}")
                    continue
                changed, stamps = changed_documents(extraction, sides[side], store.links, org.id)
                covered = queued_document_ids(queue, org.id, side)
                for doc_id in changed:
                    if doc_id in covered:  # a queued request will read its latest version
                        continue
                    _, created = queue.enqueue(org.id, BOTH, [doc_id], requested_by=REQUESTED_BY)
                    queued += created
                sides[side].advance(stamps, polled_at=start)
        if not queued:
            return dg.SensorResult(skip_reason="no changed documents", cursor=dump_cursor(cursor))
        context.log.info(f"queued {queued} sync request(s) for changed documents")
        return dg.SensorResult(cursor=dump_cursor(cursor))

    return document_changes_sensor
