"""Under `dagster dev` (webserver, daemon and the project's dagster.yaml): a sync requested through
the API is launched by the daemon's request sensor, with nobody calling Dagster directly, and the
document reaches Metakocka and `synced`. The request posted twice runs once."""

import os
import time

from sync_pipeline.domain.document import crm_id_to_external_ref
from sync_pipeline.ops.sync_documents import JOB_NAME
from sync_pipeline.sensors import CHANGE_INTERVAL_ENV

from .dagster_dev import dagster_dev, runs
from .helpers import CrmHttp, MetakockaHttp
from .on_demand_helpers import api_fixture, api_tokens_fixture, new_crm_order  # noqa: F401


def test_daemon_sensor_launches_the_requested_sync(sandbox, pipeline_env, api, tmp_path):
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

        status = None
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            status = api.call("GET", "/sync", org.id, params={"documentId": document["id"]})
            if status.json()["status"] == "synced":
                break
            time.sleep(0.5)
        assert status.json()["status"] == "synced", status.json()

        launched = runs(dagster_url, pipelineName=JOB_NAME)
        assert len(launched) == 1
        tags = {t["key"]: t["value"] for t in launched[0]["tags"]}
        assert tags["dagster/run_key"] == request_id
        assert tags["dagster/sensor_name"] == "sync_requests_sensor"

    found = MetakockaHttp(sandbox, org).find_by_buyer_order(
        "sales_order", crm_id_to_external_ref(document["id"])
    )
    assert [d["mk_id"] for d in found] == [status.json()["metakockaId"]]
    assert api.call("GET", f"/requests/{request_id}", org.id).json()["state"] == "done"
