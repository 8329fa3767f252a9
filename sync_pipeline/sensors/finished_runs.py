"""Finished runs, handled once each, and never skipped because handling one failed.

Dagster's `run_status_sensor` / `run_failure_sensor` move their cursor past a run even when the
sensor function raised for it (dagster/_core/definitions/run_status_sensor_definition.py: the
cursor update follows the evaluation whatever it returned), so a failure the sensor could not
record (the sync database unreachable for one tick) was lost for good. The sensors built on this
module keep their own cursor: the update time of the runs handled so far and the ids handled at
exactly that time. A handler that raises ends the tick before the cursor moves (Dagster shows the
tick failed), so the next tick hands it the same run again; handlers are idempotent.

The first tick starts from "now": runs that ended before the sensor ever ran are history.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg

BATCH = 50
"""Runs handled per tick at most (the next tick goes on from there)."""


@dataclass
class RunCursor:
    """Runs updated before `after` are handled, and so are the `handled` ids updated at it."""

    after: datetime
    handled: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, text: str | None) -> "RunCursor":
        if not text:
            return cls(datetime.now(UTC))
        data = json.loads(text)
        return cls(datetime.fromisoformat(data["after"]), set(data["handled"]))

    def dump(self) -> str:
        return json.dumps({"after": self.after.isoformat(), "handled": sorted(self.handled)})

    def is_handled(self, record: dg.RunRecord) -> bool:
        moment = _utc(record.update_timestamp)
        return moment < self.after or (
            moment == self.after and record.dagster_run.run_id in self.handled
        )

    def mark_handled(self, record: dg.RunRecord) -> None:
        moment = _utc(record.update_timestamp)
        if moment > self.after:
            self.after, self.handled = moment, set()
        self.handled.add(record.dagster_run.run_id)


def unhandled_runs(
    instance: dg.DagsterInstance,
    cursor: RunCursor,
    statuses: Iterable[dg.DagsterRunStatus],
    job_name: str | None = None,
) -> list[dg.RunRecord]:
    """The next runs in `statuses` the cursor has not handled, oldest update first."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=list(statuses),
            job_name=job_name,
            # a second early: the storage may compare strictly, and equal times must come back
            updated_after=cursor.after - timedelta(seconds=1),
        ),
        order_by="update_timestamp",
        ascending=True,
        limit=BATCH + len(cursor.handled),
    )
    return [r for r in records if not cursor.is_handled(r)][:BATCH]


def handle_runs(context: dg.SensorEvaluationContext, statuses, handle, job_name=None):
    """Call `handle(run)` for each unhandled run in `statuses`; the `SensorResult` to return.

    An exception from `handle` propagates: the tick fails and Dagster keeps the cursor it had,
    so the next tick hands the same run to `handle` again (which is idempotent)."""
    cursor = RunCursor.load(context.cursor)
    handled = 0
    for record in unhandled_runs(context.instance, cursor, statuses, job_name):
        handle(record.dagster_run)
        cursor.mark_handled(record)
        handled += 1
    if not handled:
        return dg.SensorResult(skip_reason="no new finished runs", cursor=cursor.dump())
    return dg.SensorResult(cursor=cursor.dump())


def _utc(moment: datetime) -> datetime:
    """Run storage answers naive UTC times."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
