"""The request queue on the real PostgreSQL, request batching, the change sensor (a change is
queued once, and the pipeline's own writes never queue another), the failure path and dry runs."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from sync_pipeline.definitions import build_resources
from sync_pipeline.domain.document import crm_id_for_metakocka_document, crm_id_to_external_ref
from sync_pipeline.ops.sync_documents import OP_NAME
from sync_pipeline.runs import METAKOCKA_COMPANY_TAG
from sync_pipeline.sensors.changes import SENSOR_NAME as CHANGE_SENSOR
from sync_pipeline.sensors.requests import batch_requests
from sync_pipeline.sensors.run_status import build_run_status_sensors
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.requests import IdempotencyKeyReused, SyncRequest

from .edits import Users
from .faultlab import invalid_crm_ids
from .helpers import CrmHttp, MetakockaHttp, status_rows
from .on_demand_helpers import Dagster, new_crm_order

ORG = "11111111-1111-4111-8111-111111111111"
DOC = "22222222-2222-4222-8222-222222222222"


def test_request_queue_on_postgresql(pg_url):
    store = SyncStore(pg_url)
    store.create_schema()
    queue = store.requests
    first, created = queue.enqueue(ORG, "crm_to_metakocka", [DOC], idempotency_key="k")
    assert created and first.state == "queued"
    # same key, or same content while queued: the same request
    assert queue.enqueue(ORG, "crm_to_metakocka", [DOC], idempotency_key="k") == (first, False)
    assert queue.enqueue(ORG, "crm_to_metakocka", [DOC])[0].id == first.id
    with pytest.raises(IdempotencyKeyReused):
        queue.enqueue(ORG, "both", [DOC], idempotency_key="k")
    # once launched, the same content is a new request; a run that dies fails its requests
    assert queue.mark_launched([first.id], "run-key-1") == [first.id]
    assert queue.mark_launched([first.id], "run-key-2") == []
    second, created = queue.enqueue(ORG, "crm_to_metakocka", [DOC])
    assert created and second.id != first.id
    assert queue.claim([first.id], "run-1") == 1
    assert queue.fail_run(run_key="run-key-1", error="boom") == 1
    assert queue.finish([first.id]) == 0  # never backwards out of failed
    assert queue.get(first.id).state == "failed" and queue.get(first.id).error == "boom"
    assert queue.get(first.id, "another-org") is None
    assert queue.counts(ORG) == {"failed": 1, "queued": 1}
    # a batch that lost requests to another evaluation launches the rest under a key of its own:
    # its run finds them by that key; a claimed request keeps its run
    assert queue.mark_launched([second.id], "batch-key") == [second.id]
    assert queue.rekey([second.id], "smaller-batch-key") == 1
    assert [r.id for r in queue.for_run(run_key="smaller-batch-key")] == [second.id]
    assert queue.claim([second.id], "run-2") == 1
    assert queue.rekey([second.id], "another-key") == 0
    store.dispose()


def _request(n: int, org: str, direction: str, ids: list[str], all_unsynced=False):
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n)
    return SyncRequest(
        f"r{n}",
        org,
        direction,
        tuple(ids),
        all_unsynced,
        "t",
        at,
        "queued",
        None,
        None,
        at,
        None,
        None,
    )


def test_batching_per_organization_and_direction():
    requests = [
        _request(1, "a", "crm_to_metakocka", ["1", "2"]),
        _request(2, "b", "crm_to_metakocka", ["3"]),
        _request(3, "a", "metakocka_to_crm", ["4"]),
        _request(4, "a", "crm_to_metakocka", ["2", "5"]),
        _request(5, "a", "crm_to_metakocka", ["6", "7", "8"]),
    ]
    batches = batch_requests(requests, max_ids=4)
    shapes = [(b.organization_id, b.direction, b.request_ids, b.document_ids) for b in batches]
    assert shapes == [
        ("a", "crm_to_metakocka", ["r1", "r4"], ["1", "2", "5"]),
        ("a", "crm_to_metakocka", ["r5"], ["6", "7", "8"]),
        ("b", "crm_to_metakocka", ["r2"], ["3"]),
        ("a", "metakocka_to_crm", ["r3"], ["4"]),
    ]
    assert batches[2].run_key == "r2"  # a lone request's run is keyed by its id
    assert batches[0].run_key.startswith("batch-")


def test_change_sensor_queues_each_change_once_and_ignores_own_writes(
    sandbox, pipeline_env, dagster_instance
):
    org = sandbox.organizations[0]
    dagster = Dagster(pipeline_env, dagster_instance)
    sensor = dagster.defs.resolve_sensor_def(CHANGE_SENSOR)
    resources = build_resources(pipeline_env)
    store = SyncStore(pipeline_env.database_url)
    store.create_schema()
    queue = store.requests
    cursor = None

    def poll() -> int:
        nonlocal cursor
        before = len(queue.recent(org.id))
        with dg.build_sensor_context(
            instance=dagster_instance, cursor=cursor, resources=resources
        ) as context:
            cursor = sensor(context).cursor
        return len(SyncStore(pipeline_env.database_url).requests.recent(org.id)) - before

    assert poll() == 0  # the first look only sets the cursor
    crm_doc = CrmHttp(sandbox).insert_document(*new_crm_order(org, "SO-CHANGED"))
    born = MetakockaHttp(sandbox, org).call(
        "put_document",
        {
            "doc_type": "sales_order",
            "doc_date": "2026-05-02+02:00",
            "partner": {"customer": "Changed in Metakocka", "country": "SI"},
            "product_list": [
                {
                    "code": "ART-C",
                    "name": "C",
                    "unit": "kos",
                    "amount": "1",
                    "price": "5",
                    "tax": "220",
                }
            ],
        },
    )
    # the CRM document is already in a queued request (a click): that run will read it
    queue.enqueue(org.id, "crm_to_metakocka", [crm_doc["id"]], requested_by="api")
    assert poll() == 1  # one request per changed document not already queued
    assert poll() == 0  # seen once, queued once

    run_requests = dagster.tick()
    assert run_requests
    for run_request in run_requests:
        # on-demand runs count against their company's limit in the run queue, as nightly ones do
        assert run_request.tags[METAKOCKA_COMPANY_TAG] == org.metakocka_company_id
        assert dagster.launch(run_request).success
    rows = {r["crm_document_id"]: r for r in status_rows(pipeline_env.database_url, org.id)}
    assert rows[crm_doc["id"]]["status"] == "synced"
    assert rows[crm_id_for_metakocka_document(org.id, born["mk_id"])]["status"] == "synced"
    # the run wrote to both systems; those writes carry the synced content, so nothing is queued
    assert poll() == 0
    assert dagster.tick() == []

    # Metakocka answers no change time: the sensor knows the document it read a poll ago by its
    # content, so a second edit inside the re-read overlap is queued, and once only
    Users(sandbox, org).edit_in_metakocka(born["mk_id"], notes="edited again in Metakocka")
    assert poll() == 1
    assert poll() == 0


def test_dry_run_plans_and_writes_nothing_then_a_failed_run_fails_its_requests(
    sandbox, pipeline_env, dagster_instance
):
    org = sandbox.organizations[0]
    dagster = Dagster(pipeline_env, dagster_instance)
    document = CrmHttp(sandbox).insert_document(*new_crm_order(org, "SO-DRY"))
    config = {
        "organization_id": org.id,
        "direction": "crm_to_metakocka",
        "document_ids": [document["id"]],
        "dry_run": True,
    }
    result = dagster.job.execute_in_process(
        run_config={"ops": {OP_NAME: {"config": config}}}, instance=dagster_instance
    )
    assert result.success
    assert result.output_for_node(OP_NAME)["actions"] == {"create_in_metakocka": 1}
    [materialization] = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    plan = materialization.event_specific_data.metadata["plan"].value
    assert "dry run" in plan and "create_in_metakocka" in plan and document["id"] in plan
    mk = MetakockaHttp(sandbox, org)
    assert mk.find_by_buyer_order("sales_order", crm_id_to_external_ref(document["id"])) == []
    assert status_rows(pipeline_env.database_url, org.id) == []

    # a run that fails (an unknown organization) fails its request, as does the failure sensor
    store = SyncStore(pipeline_env.database_url)
    store.create_schema()
    queue = store.requests
    request, _ = queue.enqueue(org.id, "crm_to_metakocka", [document["id"]])
    queue.mark_launched([request.id], request.id)
    config = {"organization_id": "nope", "document_ids": [document["id"]]}
    failed = dagster.job.execute_in_process(
        run_config={"ops": {OP_NAME: {"config": config}}},
        instance=dagster_instance,
        tags={"dagster/run_key": request.id},
        raise_on_error=False,
    )
    assert not failed.success
    assert queue.get(request.id).state == "failed" and "nope" in queue.get(request.id).error

    # a run that crashed before it could claim its requests: the failure sensor finds them by
    # the run key the request sensor gave the run
    failure_sensor = build_run_status_sensors(dagster.job)[0]
    resources = build_resources(pipeline_env)

    def tick(cursor):
        with dg.build_sensor_context(
            instance=dagster_instance, cursor=cursor, resources=resources
        ) as context:
            return failure_sensor(context).cursor

    cursor = tick(None)
    other, _ = queue.enqueue(org.id, "crm_to_metakocka", [DOC])
    queue.mark_launched([other.id], "key-of-a-crashed-run")
    # the run's worker died before the op started (as run monitoring reports it)
    crashed = dagster_instance.create_run_for_job(
        dagster.job,
        run_config={"ops": {OP_NAME: {"config": config}}},
        tags={"dagster/run_key": "key-of-a-crashed-run"},
    )
    dagster_instance.report_run_failed(crashed, message="run worker for nope died")
    assert queue.get(other.id).state != "failed"
    tick(cursor)
    assert queue.get(other.id).state == "failed" and "nope" in queue.get(other.id).error


def test_an_on_demand_sync_of_an_invalid_document_says_why(sandbox, pipeline_env, dagster_instance):
    """The run succeeds (it did what it could), and the reason the document was not synced is
    in the request's error, the run's log and the plan it shows."""
    org = sandbox.organizations[0]
    invalid_id = invalid_crm_ids(sandbox, org)[0]
    store = SyncStore(pipeline_env.database_url)
    store.create_schema()
    queue = store.requests
    request, _ = queue.enqueue(org.id, "crm_to_metakocka", [invalid_id])
    queue.mark_launched([request.id], request.id)
    config = {"organization_id": org.id, "document_ids": [invalid_id]}
    result = Dagster(pipeline_env, dagster_instance).job.execute_in_process(
        run_config={"ops": {OP_NAME: {"config": config}}},
        instance=dagster_instance,
        tags={"dagster/run_key": request.id},
    )
    assert result.success
    error = queue.get(request.id).error
    assert queue.get(request.id).state == "failed" and error.startswith("invalid: ")
    assert invalid_id in error and ": " in error.removeprefix("invalid: ")  # with the reason
    logged = [entry.user_message for entry in dagster_instance.all_logs(result.run_id)]
    assert any(m.startswith("not synced, invalid: ") and invalid_id in m for m in logged)
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    plan = output.event_specific_data.metadata["plan"].value
    assert "Invalid (fix them" in plan and error.removeprefix("invalid: ") in plan
