"""The request sensor: queued sync requests become `sync_documents` runs.

Fires every tick (the daemon evaluates sensors about every 5 s; `minimum_interval_seconds` is
lower so no tick is skipped) when requests are queued. The requests of one tick are batched per
organization and direction, so a burst of clicks costs one run, not one run each. A request the
API took out of the queue to submit its run itself (api/dagster_runs.py) is not queued any more;
the sensor launches the rest: requests of the CLI and the change sensor, those the API left
queued (a run of the organization still waiting to start, or Dagster not reachable), and
every request when the API runs without Dagster.

A request runs once, however often the sensor is evaluated:
- it leaves the `queued` state in the same evaluation that asks for its run (`mark_launched`, a
  guarded update), so the next tick does not see it again;
- the run's `run_key` is the request id (a batch: a digest of its request ids), so a tick that
  Dagster resumes after a crash cannot create the run twice.
A request that left the queue but whose run was never created (a tick that failed after marking
it, an API submission whose answer was lost) would wait forever; the sensor sweeps for those once
a minute and fails them with a clear error. The cursor records when it last swept and the newest
request it launched.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

from sync_pipeline.resources import SyncStoreResource
from sync_pipeline.runs import RUN_KEY_TAG, TAG_REQUEST_COUNT, Batch, batch_requests
from sync_pipeline.store.requests import SyncRequestQueue

SENSOR_NAME = "sync_requests_sensor"
QUEUED_PER_TICK = 1000
STALE_AFTER = timedelta(minutes=10)
SWEEP_EVERY = timedelta(minutes=1)


def run_request(batch: Batch, organization_tags: dict[str, str] | None = None) -> dg.RunRequest:
    """The batch's run (runs.py: the same run the API submits), keyed by its run key."""
    return dg.RunRequest(
        run_key=batch.run_key, run_config=batch.run_config(), tags=batch.tags(organization_tags)
    )


@dataclass
class RequestCursor:
    swept_at: datetime | None = None
    newest_launched: str | None = None
    launched_total: int = 0

    @classmethod
    def parse(cls, text: str | None) -> "RequestCursor":
        if not text:
            return cls()
        data = json.loads(text)
        swept = data.get("swept_at")
        return cls(
            swept_at=datetime.fromisoformat(swept) if swept else None,
            newest_launched=data.get("newest_launched"),
            launched_total=int(data.get("launched_total", 0)),
        )

    def dump(self) -> str:
        return json.dumps(
            {
                "swept_at": self.swept_at.isoformat() if self.swept_at else None,
                "newest_launched": self.newest_launched,
                "launched_total": self.launched_total,
            }
        )


def sweep_lost_launches(queue: SyncRequestQueue, instance: dg.DagsterInstance, now: datetime):
    """Fail requests marked launched long ago whose run Dagster never created."""
    failed = 0
    for request in queue.launched_without_run(now - STALE_AFTER):
        runs = instance.get_runs(
            filters=dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key}), limit=1
        )
        if not runs:
            failed += queue.fail_run(
                run_key=request.run_key,
                error="no run was created for this request (the sensor's tick or the API's "
                "submission failed); post the request again",
            )
    return failed


def build_request_sensor(
    job, *, interval_s: int = 2, organization_tags: dict[str, dict[str, str]] | None = None
) -> dg.SensorDefinition:
    """`organization_tags`: per organization id, the tags its runs carry (its Metakocka company,
    so the run coordinator's per-company limit covers on-demand runs as well as nightly ones)."""
    tags_of = organization_tags or {}

    @dg.sensor(
        name=SENSOR_NAME,
        job=job,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Turns queued sync requests (API, CLI, webhooks, change sensor) into "
        "sync_documents runs, batched per organization and direction; run_key = request id.",
    )
    def sync_requests_sensor(context: dg.SensorEvaluationContext, sync_store: SyncStoreResource):
        queue = sync_store.store().requests
        cursor = RequestCursor.parse(context.cursor)
        now = datetime.now(UTC)
        if cursor.swept_at is None or now - cursor.swept_at >= SWEEP_EVERY:
            lost = sweep_lost_launches(queue, context.instance, now)
            if lost:
                context.log.warning(f"failed {lost} request(s) whose run was never created")
            cursor.swept_at = now
        run_requests = []
        for batch in batch_requests(queue.queued(limit=QUEUED_PER_TICK)):
            moved = set(queue.mark_launched(batch.request_ids, batch.run_key))
            if moved != set(batch.request_ids):  # someone else took some: key what is left
                batch = Batch(
                    batch.organization_id,
                    batch.direction,
                    [r for r in batch.requests if r.id in moved],
                )
                if not batch.requests:
                    continue
                queue.rekey(batch.request_ids, batch.run_key)  # the run finds them by its key
            run_requests.append(run_request(batch, tags_of.get(batch.organization_id)))
            cursor.launched_total += len(batch.requests)
            newest = max(r.created_at for r in batch.requests).isoformat()
            cursor.newest_launched = max(cursor.newest_launched or newest, newest)
        if not run_requests:
            return dg.SensorResult(skip_reason="no queued sync requests", cursor=cursor.dump())
        context.log.info(
            f"launching {len(run_requests)} run(s) for "
            f"{sum(int(r.tags[TAG_REQUEST_COUNT]) for r in run_requests)} request(s)"
        )
        return dg.SensorResult(run_requests=run_requests, cursor=cursor.dump())

    return sync_requests_sensor
