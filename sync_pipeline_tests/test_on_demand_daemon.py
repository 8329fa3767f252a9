"""Under `dagster dev` (webserver, daemon and the project's dagster.yaml): a sync requested through
the API is launched by the daemon's request sensor, with nobody calling Dagster directly, and the
document reaches Metakocka and `synced`. The request posted twice runs once. An API that knows the
webserver (`SYNC_DAGSTER_URL`) submits the run itself, and the daemon runs it from the run queue,
once."""

import os
import time

from sync_pipeline.domain.document import crm_id_to_external_ref
from sync_pipeline.ops.sync_documents import JOB_NAME
from sync_pipeline.sensors import CHANGE_INTERVAL_ENV

from .dagster_dev import dagster_dev, runs
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
        first_run = launched[0]["runId"]
        submitted = [r for r in runs(dagster_url, pipelineName=JOB_NAME) if r["runId"] != first_run]
        assert len(submitted) == 1
        tags = {t["key"]: t["value"] for t in submitted[0]["tags"]}
        assert tags["dagster/run_key"] == clicked.json()["requestId"]
        assert "dagster/sensor_name" not in tags

    found = MetakockaHttp(sandbox, org).find_by_buyer_order(
        "sales_order", crm_id_to_external_ref(document["id"])
    )
    assert [d["mk_id"] for d in found] == [status["metakockaId"]]
    assert api.call("GET", f"/requests/{request_id}", org.id).json()["state"] == "done"
