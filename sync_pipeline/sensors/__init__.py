"""Sensors of the on-demand syncs, each in its own module with a docstring that says when it fires:
- `requests`: queued sync requests -> `sync_documents` runs (every few seconds);
- `changes`: documents changed in either system -> sync requests (polling, the seed's real-time
  updates);
- `run_status`: a failed or canceled `sync_documents` run -> its requests `failed`.
"""

import os

import dagster as dg

from sync_pipeline.runs import organization_run_tags
from sync_pipeline.sensors.changes import build_change_sensor
from sync_pipeline.sensors.requests import build_request_sensor
from sync_pipeline.sensors.run_status import build_run_status_sensors

REQUEST_INTERVAL_ENV = "SYNC_REQUEST_SENSOR_SECONDS"
CHANGE_INTERVAL_ENV = "SYNC_CHANGE_POLL_SECONDS"


def build_on_demand_sensors(
    sync_documents_job, environ=None, organizations=()
) -> list[dg.SensorDefinition]:
    """`organizations`: the configured `Organization`s (their runs carry their company's tag)."""
    env = os.environ if environ is None else environ
    return [
        build_request_sensor(
            sync_documents_job,
            interval_s=int(env.get(REQUEST_INTERVAL_ENV, "2")),
            organization_tags={org.id: organization_run_tags(org) for org in organizations},
        ),
        build_change_sensor(interval_s=int(env.get(CHANGE_INTERVAL_ENV, "30"))),
        *build_run_status_sensors(sync_documents_job),
    ]
