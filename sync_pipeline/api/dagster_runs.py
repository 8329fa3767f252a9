"""The API submits a request's run itself, so a click does not wait for the request sensor's tick.

The request is first taken out of the queue (`SyncRequestQueue.take_for_submission`, a guarded
update: from then on the sensor cannot take it, and if the sensor took it first the API does
nothing), then the Dagster webserver is asked to launch the `sync_documents` run with the config,
tags and run key the sensor would give it (`runs.Batch`), through the `launchRun` mutation of
Dagster's GraphQL API (served by the webserver at `/graphql`: https://docs.dagster.io/api/graphql;
the mutation and its answers are those of `dagster_graphql.DagsterGraphQLClient.
submit_job_execution`). The webserver creates the run and submits it to the instance's run
coordinator, so it waits in the run queue under the same limits as every other run and shows in
the UI like any run.

When Dagster certainly did not create the run (no webserver configured or reachable, or it
answered with an error) the request goes back to the queue and the request sensor launches it, as
it does for every request when the API runs without Dagster. When it is uncertain (the answer was
lost after the mutation went out) the request stays launched under its run key, as a sensor's
request does: the sensor's sweep finds the run by that key, or fails the request after
`STALE_AFTER` when there is none; it never launches a second run.
"""

import logging

import requests
from urllib3.exceptions import NewConnectionError

from sync_pipeline.runs import RUN_KEY_TAG, SYNC_DOCUMENTS_JOB, Batch, organization_run_tags
from sync_pipeline.settings import Organization
from sync_pipeline.store.requests import SyncRequest, SyncRequestQueue

log = logging.getLogger(__name__)

LOCATION_NAME = "sync_pipeline"
"""The code location's name in workspace.yaml (and in a deployment's workspace, docs/deploy.md)."""
REPOSITORY_NAME = "__repository__"
"""The repository of a code location loaded from one `Definitions` object."""
TAG_SUBMITTED_BY = "sync_pipeline/submitted_by"
TIMEOUT_S = (2.0, 15.0)
"""Connect, read. A webserver that does not accept the connection at once is taken as down."""

LAUNCH_RUN = """
mutation SubmitSyncRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}
"""


class NotLaunched(Exception):
    """Dagster certainly did not create the run."""


class LaunchUncertain(Exception):
    """The mutation went out but its answer was lost: the run may exist."""


class DagsterRuns:
    """Launches runs through one Dagster webserver's GraphQL API (`base_url`, e.g.
    http://127.0.0.1:3000 under `dagster dev`)."""

    def __init__(self, base_url: str, *, timeout_s: tuple[float, float] = TIMEOUT_S):
        self.endpoint = base_url.rstrip("/") + "/graphql"
        self.timeout_s = timeout_s
        self.session = requests.Session()

    def launch(self, job_name: str, run_config: dict, tags: dict[str, str]) -> str:
        """The new run's id; `NotLaunched` or `LaunchUncertain` otherwise."""
        params = {
            "selector": {
                "repositoryLocationName": LOCATION_NAME,
                "repositoryName": REPOSITORY_NAME,
                "jobName": job_name,
            },
            "runConfigData": run_config,
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        try:
            response = self.session.post(
                self.endpoint,
                json={"query": LAUNCH_RUN, "variables": {"executionParams": params}},
                timeout=self.timeout_s,
            )
        except requests.RequestException as exc:
            what = type(exc).__name__  # the URL may carry credentials: never in a message
            if isinstance(exc, requests.ConnectionError) and _never_sent(exc):
                raise NotLaunched(f"the Dagster webserver cannot be reached ({what})") from None
            raise LaunchUncertain(f"no answer from the Dagster webserver ({what})") from None
        try:  # a refusal (e.g. PythonError) comes with HTTP 500: the answer decides, not the status
            answer = response.json()["data"]["launchRun"]
            kind = answer["__typename"]
        except (ValueError, KeyError, TypeError):
            what = f"the Dagster webserver answered HTTP {response.status_code} without a result"
            if 400 <= response.status_code < 500:  # refused before any work (path, auth, query)
                raise NotLaunched(what) from None
            raise LaunchUncertain(what) from None
        if kind == "LaunchRunSuccess":
            return answer["run"]["runId"]
        errors = [e["message"] for e in answer.get("errors") or []] or [answer.get("message")]
        first_lines = "; ".join(str(e).strip().splitlines()[0] for e in errors if e)
        raise NotLaunched(f"{kind}: {first_lines[:300]}")


def _never_sent(exc: requests.ConnectionError) -> bool:
    """The connection was never made (refused, no route, connect timeout): nothing was sent."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    return isinstance(reason, NewConnectionError)


def submit_request(
    dagster: DagsterRuns, queue: SyncRequestQueue, request: SyncRequest, org: Organization
) -> bool:
    """Launch the run of a request just queued; True when the API took it out of the queue (its
    run exists, or may: see the module's docstring), False when it is left to the sensor."""
    if not queue.take_for_submission(request.id, org.id):
        return False
    batch = Batch(org.id, request.direction, [request])
    tags = {**batch.tags(organization_run_tags(org)), RUN_KEY_TAG: batch.run_key}
    try:
        run_id = dagster.launch(
            SYNC_DOCUMENTS_JOB, batch.run_config(), {**tags, TAG_SUBMITTED_BY: "api"}
        )
    except NotLaunched as exc:
        queue.return_to_queue(request.id)
        log.warning("request %s left to the request sensor: %s", request.id, exc)
        return False
    except LaunchUncertain as exc:
        log.warning(
            "request %s: its run may not exist (%s); the sensor's sweep decides", request.id, exc
        )
        return True
    log.info("request %s: run %s submitted", request.id, run_id)
    return True
