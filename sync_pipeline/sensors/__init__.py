"""Sensors of the on-demand syncs, each in its own module with a docstring that says when it fires:
- `requests`: queued sync requests -> `sync_documents` runs (every few seconds);
- `changes`: documents changed in either system -> sync requests (polling, the seed's real-time
  updates);
- `run_status`: a failed or canceled `sync_documents` run -> its requests `failed`.
"""

import dagster as dg

from sync_pipeline.runs import organization_run_tags
from sync_pipeline.sensors.changes import build_change_sensor
from sync_pipeline.sensors.requests import build_request_sensor
from sync_pipeline.sensors.run_status import build_run_status_sensors
from sync_pipeline.settings import Settings

REQUEST_INTERVAL_ENV = "SYNC_REQUEST_SENSOR_SECONDS"
CHANGE_INTERVAL_ENV = "SYNC_CHANGE_POLL_SECONDS"


def build_on_demand_sensors(sync_documents_job, settings: Settings) -> list[dg.SensorDefinition]:
    """The configured organizations' runs carry their company's tag; the intervals are
    `CHANGE_INTERVAL_ENV`'s and `REQUEST_INTERVAL_ENV`'s."""
    return [
        build_request_sensor(
            sync_documents_job,
            interval_s=settings.request_sensor_seconds,
            organization_tags={
                org.id: organization_run_tags(org) for org in settings.organizations
            },
        ),
        build_change_sensor(interval_s=settings.change_poll_seconds),
        *build_run_status_sensors(sync_documents_job),
    ]
