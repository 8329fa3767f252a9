"""The API submits a request's run itself, through Dagster's GraphQL API (api/dagster_runs.py):
the run is created in the run queue with the sensor's config, tags and run key, the request sensor
never launches a second run for it, and whatever the API cannot submit is left to the sensor.

Dagster here is real: its webserver served from the test process over a test instance with the
project's run queue (dagster_webserver.py); without a daemon the submitted run waits QUEUED, and
the test runs its config and tags in process. The path through the daemon is in
test_on_demand_daemon.py."""

import pytest

from sync_pipeline.api.dagster_runs import TAG_SUBMITTED_BY, DagsterRuns, submit_request
from sync_pipeline.domain.document import crm_id_to_external_ref
from sync_pipeline.ops.sync_documents import JOB_NAME
from sync_pipeline.runs import METAKOCKA_COMPANY_TAG, RUN_KEY_TAG, TAG_ORGANIZATION, Batch
from sync_pipeline.store.repository import SyncStore

from .dagster_webserver import dagster_webserver, queued_instance
from .graphql_helpers import free_port
from .helpers import CrmHttp, MetakockaHttp, metakocka_duplicates
from .on_demand_helpers import (  # noqa: F401 (api_tokens: a fixture)
    Dagster,
    api_tokens_fixture,
    new_crm_order,
    running_api,
)

ORG = "11111111-1111-4111-8111-111111111111"
DOC = "22222222-2222-4222-8222-222222222222"


def test_queue_hands_a_request_to_the_api_once(store):
    """SQLite and PostgreSQL: taken for submission once, not past a run of its organization
    still waiting to start, and back in the queue with its fingerprint when not submitted."""
    queue = store.requests
    first, _ = queue.enqueue(ORG, "crm_to_metakocka", [DOC])
    assert queue.take_for_submission(first.id, ORG)
    assert not queue.take_for_submission(first.id, ORG)  # taken already
    assert queue.mark_launched([first.id], "sensor-key") == []  # the sensor cannot take it
    assert queue.get(first.id).run_key == first.id
    # until its run starts, the same documents are the same request
    assert queue.enqueue(ORG, "crm_to_metakocka", [DOC]) == (queue.get(first.id), False)
    # another request of the organization waits for that run: left to the sensor's batching
    second, _ = queue.enqueue(ORG, "crm_to_metakocka", ["33333333-3333-4333-8333-333333333333"])
    assert not queue.take_for_submission(second.id, ORG)
    assert queue.get(second.id).state == "queued"
    # not submitted: back in the queue, still deduplicating
    assert queue.return_to_queue(first.id)
    assert queue.get(first.id).state == "queued" and queue.get(first.id).run_key is None
    assert queue.enqueue(ORG, "crm_to_metakocka", [DOC])[0].id == first.id
    # its run started: the organization's next request is the API's to submit again
    assert queue.take_for_submission(first.id, ORG)
    assert queue.claim([first.id], "run-1") == 1
    assert not queue.return_to_queue(first.id)  # a started run's request never goes back
    assert queue.take_for_submission(second.id, ORG)


@pytest.fixture(name="instance")
def queued_instance_fixture():
    with queued_instance() as instance:
        yield instance


def test_api_submits_the_run_and_the_sensor_never_launches_it_again(
    sandbox, pipeline_env, api_tokens, supabase_auth, instance
):
    org = sandbox.organizations[0]
    crm, mk = CrmHttp(sandbox), MetakockaHttp(sandbox, org)
    document = crm.insert_document(*new_crm_order(org, "SO-SUBMIT-1"))
    dagster = Dagster(pipeline_env, instance)
    store = SyncStore(pipeline_env.database_url)
    queue = store.requests
    with (
        dagster_webserver(instance) as dagster_url,
        running_api(api_tokens, supabase_auth, SYNC_DAGSTER_URL=dagster_url) as api,
    ):
        posted = [
            api.call(
                "POST",
                "/sync",
                org.id,
                json={"documentId": document["id"]},
                headers={"Idempotency-Key": "submit-click"},
            )
            for _ in range(2)
        ] + [api.call("POST", "/sync", org.id, json={"documentId": document["id"]})]
        assert [p.status_code for p in posted] == [202] * 3, posted[0].text
        request_id = posted[0].json()["requestId"]
        assert posted[0].json()["state"] == "launched"
        # the same key, and the same documents before the run starts: the same request
        assert [p.json()["requestId"] for p in posted] == [request_id] * 3
        assert [p.json()["deduplicated"] for p in posted] == [False, True, True]

        # one run, in the run queue, with the request sensor's config, tags and run key
        (run,) = instance.get_runs()
        assert (run.job_name, run.status.value) == (JOB_NAME, "QUEUED")
        request = queue.get(request_id)
        batch = Batch(org.id, "crm_to_metakocka", [request])
        assert run.run_config == batch.run_config()
        assert run.tags[RUN_KEY_TAG] == request.run_key == request_id
        assert run.tags[TAG_ORGANIZATION] == org.id
        assert run.tags[METAKOCKA_COMPANY_TAG] == org.metakocka_company_id
        assert run.tags["dagster/priority"] == "10" and run.tags[TAG_SUBMITTED_BY] == "api"
        assert request.state == "launched"
        assert dagster.tick() == []  # the sensor has nothing to launch

        # a second document while that run waits to start: left queued for the sensor to batch
        other = crm.insert_document(*new_crm_order(org, "SO-SUBMIT-2"))
        second = api.call("POST", "/sync", org.id, json={"documentId": other["id"]})
        assert second.json()["state"] == "queued"
        assert len(instance.get_runs()) == 1
        (batched,) = dagster.tick()
        assert batched.run_key == second.json()["requestId"]

        # a request the sensor took first is not submitted by the API as well
        third, _ = queue.enqueue(org.id, "crm_to_metakocka", [other["id"], DOC])
        assert len(dagster.tick()) == 1
        assert not submit_request(DagsterRuns(dagster_url), queue, third, org)
        assert len(instance.get_runs()) == 1

    # the submitted run's config and tags sync the document, once
    result = dagster.job.execute_in_process(
        run_config=run.run_config, tags=run.tags, instance=instance
    )
    assert result.success
    found = mk.find_by_buyer_order("sales_order", crm_id_to_external_ref(document["id"]))
    assert len(found) == 1
    assert queue.get(request_id).state == "done"
    assert metakocka_duplicates(sandbox, org.metakocka_company_id) == {}
    store.dispose()


def test_the_sensor_launches_what_the_api_could_not_submit(
    sandbox, pipeline_env, api_tokens, supabase_auth, dagster_instance
):
    """Dagster unreachable: the request is back in the queue (the same documents posted again
    are still that request) and the sensor's next tick launches it."""
    org = sandbox.organizations[0]
    document = CrmHttp(sandbox).insert_document(*new_crm_order(org, "SO-FALLBACK-1"))
    dagster = Dagster(pipeline_env, dagster_instance)
    nobody = f"http://127.0.0.1:{free_port()}"
    with running_api(api_tokens, supabase_auth, SYNC_DAGSTER_URL=nobody) as api:
        posted = [
            api.call("POST", "/sync", org.id, json={"documentId": document["id"]}) for _ in range(2)
        ]
        assert [p.status_code for p in posted] == [202, 202], posted[0].text
        assert [p.json()["state"] for p in posted] == ["queued", "queued"]
        assert posted[1].json()["requestId"] == posted[0].json()["requestId"]
        (run_request,) = dagster.tick()
        assert run_request.run_key == posted[0].json()["requestId"]
        assert dagster.launch(run_request).success
        status = api.call("GET", "/sync", org.id, params={"documentId": document["id"]})
        assert status.json()["status"] == "synced"
