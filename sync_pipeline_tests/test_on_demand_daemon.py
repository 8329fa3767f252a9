"""Under `dagster dev` (webserver, daemon and the project's dagster.yaml): a sync requested through
the API is launched by the daemon's request sensor, with nobody calling Dagster directly, and the
document reaches Metakocka and `synced`. The request posted twice runs once. An API that knows the
webserver (`SYNC_DAGSTER_URL`) submits the run itself; the daemon runs it from the run queue,
once, in a run worker forked from the warm process the first run started (run_launcher.py), and
such a run can be terminated from the UI."""

import os
import time

from sync_pipeline.domain.document import crm_id_to_external_ref
from sync_pipeline.ops.sync_documents import JOB_NAME
from sync_pipeline.run_launcher import WORKER_TAG
from sync_pipeline.sensors import CHANGE_INTERVAL_ENV

from .dagster_dev import dagster_dev, runs
from .graphql_helpers import graphql
from .helpers import CrmHttp, MetakockaHttp
from .on_demand_helpers import (  # noqa: F401 (fixtures)
    api_fixture,
    api_tokens_fixture,
    new_crm_order,
    running_api,
)


def wait_synced(api, org, document_id: str) -> dict:
    status = None
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        status = api.call("GET", "/sync", org.id, params={"documentId": document_id}).json()
        if status["status"] == "synced":
            break
        time.sleep(0.5)
    return status


TERMINATE = """
mutation Terminate($runId: String!) {
  terminateRun(runId: $runId) {
    __typename
    ... on TerminateRunFailure { message }
    ... on PythonError { message }
  }
}
"""


def run_of(dagster_url: str, request_id: str) -> list[dict]:
    return runs(dagster_url, tags=[{"key": "dagster/run_key", "value": request_id}])


def wait_run_status(dagster_url: str, request_id: str, status: str) -> tuple[str, dict]:
    """The request's run once it has `status`: its id and tags."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = run_of(dagster_url, request_id)
        if found and found[0]["status"] == status:
            return found[0]["runId"], {t["key"]: t["value"] for t in found[0]["tags"]}
        time.sleep(0.3)
    raise AssertionError(f"the run of request {request_id} never reached {status}")


def test_daemon_sensor_launches_the_requested_sync(
    sandbox, pipeline_env, api, api_tokens, supabase_auth, tmp_path
):
    org = sandbox.organizations[0]
    document = CrmHttp(sandbox).insert_document(*new_crm_order(org, "SO-DAEMON-1"))

    env = {**os.environ, CHANGE_INTERVAL_ENV: "0"}  # only the API's request, no polling
    with dagster_dev(env, tmp_path / "dagster_home") as dagster_url:
        posted = [
            api.call(
                "POST",
                "/sync",
                org.id,
                json={"documentId": document["id"]},
                headers={"Idempotency-Key": "daemon-click"},
            )
            for _ in range(2)
        ]
        assert [p.status_code for p in posted] == [202, 202], posted[0].text
        request_id = posted[0].json()["requestId"]
        assert posted[1].json()["requestId"] == request_id

        status = wait_synced(api, org, document["id"])
        assert status["status"] == "synced", status

        launched = runs(dagster_url, pipelineName=JOB_NAME)
        assert len(launched) == 1
        tags = {t["key"]: t["value"] for t in launched[0]["tags"]}
        assert tags["dagster/run_key"] == request_id
        assert tags["dagster/sensor_name"] == "sync_requests_sensor"

        second = CrmHttp(sandbox).insert_document(*new_crm_order(org, "SO-DAEMON-2"))
        with running_api(api_tokens, supabase_auth, SYNC_DAGSTER_URL=dagster_url) as fast:
            clicked = fast.call("POST", "/sync", org.id, json={"documentId": second["id"]})
            assert clicked.json()["state"] == "launched", clicked.text
            assert wait_synced(fast, org, second["id"])["status"] == "synced"
            (submitted,) = run_of(dagster_url, clicked.json()["requestId"])
            tags = {t["key"]: t["value"] for t in submitted["tags"]}
            assert "dagster/sensor_name" not in tags
            assert WORKER_TAG in tags  # executed in a forked run worker

            # a run stuck on a Metakocka that does not answer, terminated from the UI
            sandbox.configure_faults("metakocka", {"latency_ms": 120_000})
            third = CrmHttp(sandbox).insert_document(*new_crm_order(org, "SO-DAEMON-3"))
            stuck = fast.call("POST", "/sync", org.id, json={"documentId": third["id"]}).json()
            run_id, tags = wait_run_status(dagster_url, stuck["requestId"], "STARTED")
            assert WORKER_TAG in tags
            answer = graphql(f"{dagster_url}/graphql", TERMINATE, {"runId": run_id})
            assert answer["terminateRun"]["__typename"] == "TerminateRunSuccess", answer
            wait_run_status(dagster_url, stuck["requestId"], "CANCELED")
            sandbox.configure_faults("metakocka", {})
            state = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and state != "failed":
                time.sleep(0.5)
                state = fast.call("GET", f"/requests/{stuck['requestId']}", org.id).json()["state"]
            assert state == "failed"  # the canceled run's request (run_status.py)
        assert len(runs(dagster_url, pipelineName=JOB_NAME)) == 3

    found = MetakockaHttp(sandbox, org).find_by_buyer_order(
        "sales_order", crm_id_to_external_ref(document["id"])
    )
    assert [d["mk_id"] for d in found] == [status["metakockaId"]]
    assert api.call("GET", f"/requests/{request_id}", org.id).json()["state"] == "done"
