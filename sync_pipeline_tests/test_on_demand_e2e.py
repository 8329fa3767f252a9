"""On-demand syncs end to end, over real HTTP: the API queues a request, the request sensor (on a
real test Dagster instance) turns it into a `sync_documents` run, the run syncs the document, and
the status endpoint reports it. A request posted twice runs once; a token never sees another
organization's documents."""

import requests

from sync_pipeline.domain.document import crm_id_for_metakocka_document, crm_id_to_external_ref

from .auth_helpers import a_member
from .helpers import CrmHttp, MetakockaHttp, metakocka_duplicates, status_rows
from .on_demand_helpers import (  # noqa: F401 (fixtures)
    Dagster,
    api_fixture,
    api_tokens_fixture,
    new_crm_order,
)


def test_sync_one_crm_document_through_api_sensor_and_run(
    sandbox, pipeline_env, dagster_instance, api
):
    org, other = sandbox.organizations[0], sandbox.organizations[1]
    crm, mk = CrmHttp(sandbox), MetakockaHttp(sandbox, org)
    created = crm.insert_document(*new_crm_order(org))
    dagster = Dagster(pipeline_env, dagster_instance)

    # the same request posted twice (same Idempotency-Key), and a third time while still queued
    first = api.call(
        "POST",
        "/sync",
        org.id,
        json={"documentId": created["id"]},
        headers={"Idempotency-Key": "click-1"},
    )
    again = api.call(
        "POST",
        "/sync",
        org.id,
        json={"documentId": created["id"]},
        headers={"Idempotency-Key": "click-1"},
    )
    third = api.call("POST", "/sync", org.id, json={"documentId": created["id"]})
    assert first.status_code == again.status_code == third.status_code == 202, first.text
    request_id = first.json()["requestId"]
    assert first.json()["deduplicated"] is False
    assert again.json() == {**first.json(), "deduplicated": True}
    assert third.json()["requestId"] == request_id
    before = api.call("GET", "/sync", org.id, params={"documentId": created["id"]}).json()
    assert before["status"] == "not_synced"
    assert before["latestRequest"] == {"requestId": request_id, "state": "queued", "error": None}

    # the sensor asks for exactly one run, keyed by the request id, and not again on later ticks
    run_requests = dagster.tick()
    assert [r.run_key for r in run_requests] == [request_id]
    assert dagster.tick() == []
    state = api.call("GET", f"/requests/{request_id}", org.id).json()
    assert state["state"] == "launched"

    result = dagster.launch(run_requests[0])
    assert result.success
    assert result.output_for_node("sync_requested_documents")["pushed"] == 1

    # the document is in Metakocka, once, and the status endpoint says synced
    found = mk.find_by_buyer_order("sales_order", crm_id_to_external_ref(created["id"]))
    assert len(found) == 1
    status = api.call("GET", "/sync", org.id, params={"documentId": created["id"]}).json()
    assert status["status"] == "synced"
    assert status["metakockaId"] == found[0]["mk_id"]
    assert status["lastSyncedAt"] and status["lastError"] is None
    assert api.call("GET", f"/requests/{request_id}", org.id).json()["state"] == "done"
    assert dagster.tick() == []  # nothing is left to run
    assert metakocka_duplicates(sandbox, org.metakocka_company_id) == {}

    # another organization's token: the document does not exist for it (404, not 403)
    assert (
        api.call("GET", "/sync", other.id, params={"documentId": created["id"]}).status_code == 404
    )
    assert (
        api.call("POST", "/sync", other.id, json={"documentId": created["id"]}).status_code == 404
    )
    assert api.call("GET", f"/requests/{request_id}", other.id).status_code == 404
    assert api.call("GET", "/sync", None, params={"documentId": created["id"]}).status_code == 401


def test_sync_from_metakocka_bulk_and_webhooks(sandbox, pipeline_env, dagster_instance, api):
    org = sandbox.organizations[0]
    crm, mk = CrmHttp(sandbox), MetakockaHttp(sandbox, org)
    dagster = Dagster(pipeline_env, dagster_instance)
    born = mk.call(
        "put_document",
        {
            "doc_type": "sales_offer",
            "doc_date": "2026-05-02+02:00",
            "partner": {"customer": "Born in Metakocka s.p.", "country": "SI"},
            "product_list": [
                {
                    "code": "ART-9",
                    "name": "Gadget",
                    "unit": "kos",
                    "amount": "2",
                    "price": "10",
                    "tax": "220",
                }
            ],
        },
    )
    unsynced = api.call("GET", "/sync-from-metakocka", org.id).json()
    assert unsynced["count"] == len(unsynced["documents"]) > 0
    assert born["mk_id"] in {d["metakockaId"] for d in unsynced["documents"]}

    one = api.call("POST", "/sync-from-metakocka", org.id, json={"metakockaId": born["mk_id"]})
    assert one.status_code == 202, one.text
    crm_docs = [d["id"] for d in sandbox.crm_state.documents(org.id)][:3]
    bulk = api.call("POST", "/sync-bulk", org.id, json={"documentIds": crm_docs})
    hook = api.call(
        "POST",
        "/webhooks/crm",
        org.id,
        json={
            "type": "UPDATE",
            "table": "sales_documents",
            "record": {"id": crm_docs[0], "organization_id": org.id},
        },
    )
    assert bulk.status_code == hook.status_code == 202

    # one tick, one run per organization and direction: three requests in three runs here
    run_requests = dagster.tick()
    assert len(run_requests) == 3
    assert all(dagster.launch(r).success for r in run_requests)

    arrived = crm.get_document(crm_id_for_metakocka_document(org.id, born["mk_id"]))
    assert arrived and arrived["customer_name"] == "Born in Metakocka s.p."
    status = api.call("GET", "/sync", org.id, params={"documentId": born["mk_id"]}).json()
    assert status["status"] == "synced"
    for request in (one, bulk, hook):
        state = api.call("GET", f"/requests/{request.json()['requestId']}", org.id).json()
        assert state["state"] in ("done", "failed"), state  # failed = a seeded invalid document
    remaining = api.call("GET", "/sync-from-metakocka", org.id).json()
    assert born["mk_id"] not in {d["metakockaId"] for d in remaining["documents"]}

    # bad bodies are refused with a 4xx that says why
    bad = api.call("POST", "/sync", org.id, json={"documentId": "not-a-uuid"})
    assert bad.status_code == 422 and "documentId" in bad.text
    assert api.call("POST", "/sync-bulk", org.id, json={"documentIds": []}).status_code == 422
    reused = api.call(
        "POST",
        "/sync-all-from-metakocka",
        org.id,
        headers={"Idempotency-Key": one.json()["requestId"]},
    )
    assert reused.status_code == 202
    clash = api.call(
        "POST",
        "/sync-from-metakocka",
        org.id,
        json={"metakockaId": born["mk_id"]},
        headers={"Idempotency-Key": one.json()["requestId"]},
    )
    assert clash.status_code == 409


def assert_the_crm_would_show_it_synced(sandbox, sqlite_url, org, crm_id: str, mk_id: str) -> None:
    """What the CRM's badge rests on, for one document: its sync is recorded as synced with
    this counterpart, in our `sync_status` and in the CRM's own
    `metakocka_sales_document_mappings`, read through PostgREST as the CRM reads it."""
    (row,) = [r for r in status_rows(sqlite_url, org.id) if r["crm_document_id"] == crm_id]
    assert row["status"] == "synced" and row["metakocka_id"] == mk_id, row
    key = sandbox.organizations[0].crm_api_key
    mappings = requests.get(
        f"{sandbox.crm_url}/rest/v1/metakocka_sales_document_mappings",
        params={"document_id": f"eq.{crm_id}", "select": "*"},
        headers={"apikey": key, "Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()
    (mapping,) = mappings
    assert (mapping["metakocka_id"], mapping["sync_status"]) == (mk_id, "synced"), mapping
    assert mapping["organization_id"] == org.id


def test_the_crms_components_with_a_users_access_token(
    sandbox, pipeline_env, dagster_instance, api, supabase_auth, sqlite_url
):
    """The calls of the CRM's `sales-document-sync-api.ts`, with the bodies and query strings it
    sends, authenticated as a CRM user, and the fields its components read from each answer
    (SalesDocumentSyncSection, SyncSalesDocumentButton, SalesDocumentBulkSyncUI,
    SyncAllSalesDocumentsButton, SyncFromMetakockaButton: fresh-crm.md section 3)."""
    org, other = sandbox.organizations[0], sandbox.organizations[1]
    user = a_member(sandbox, org)
    token = supabase_auth.token(user)  # legacy JWT secret (HS256)
    key_token = supabase_auth.token(user, signed_with="key")  # signing key (ES256, JWKS)
    crm, mk = CrmHttp(sandbox), MetakockaHttp(sandbox, org)
    dagster = Dagster(pipeline_env, dagster_instance)
    first = crm.insert_document(*new_crm_order(org, "SO-UI-1"))["id"]
    second = crm.insert_document(*new_crm_order(org, "SO-UI-2"))["id"]

    def call(method, path, *, as_token=token, **kwargs):
        response = api.call(method, path, None, token=as_token, **kwargs)
        assert response.ok, (response.status_code, response.text)  # the CRM checks response.ok
        return response.json()

    # The detail page mounts: the Section and the Button read the document's status.
    status = call("GET", "/sync", params={"documentId": first})
    assert status["synced"] is False and status["mapping"] is None
    assert status["syncStatus"] is None and status["syncError"] is None
    # The list mounts: the bulk UI asks for its documents' statuses, 50 ids at most per call.
    listed = call("GET", "/sync", params={"documentIds": f"{first},{second}"})
    assert listed == {"mappings": []}  # no mapping yet: both badges say "Not Synced"

    # The Button is clicked: POST {documentId}.
    clicked = call("POST", "/sync", json={"documentId": first})
    assert clicked["success"] is True and clicked["metakockaId"] is None
    assert clicked["documentId"] == first
    pending = call("GET", "/sync", as_token=key_token, params={"documentId": first})
    assert pending["synced"] is False and pending["syncStatus"] == "pending"
    state = call("GET", f"/requests/{clicked['requestId']}")
    assert state["requestedBy"] == user  # the user's id, from the token

    (run_request,) = dagster.tick()
    assert dagster.launch(run_request).success
    (found,) = mk.find_by_buyer_order("sales_order", crm_id_to_external_ref(first))

    # The Section (top level) and the Button (mapping) read the same facts.
    status = call("GET", "/sync", params={"documentId": first})
    assert status["synced"] is True and status["syncStatus"] == "synced"
    assert status["lastSyncedAt"] and status["syncError"] is None
    assert status["metakockaId"] == found["mk_id"]
    mapping = status["mapping"]
    assert mapping == {
        "documentId": first,
        "synced": True,
        "metakockaId": found["mk_id"],
        "metakockaDocumentType": "sales_order",
        "metakockaDocumentNumber": found["count_code"],
        "lastSyncedAt": status["lastSyncedAt"],
        "syncStatus": "synced",
        "syncError": None,
    }
    assert_the_crm_would_show_it_synced(sandbox, sqlite_url, org, first, found["mk_id"])

    # The bulk UI: mappings[] keyed by documentId; the unsynced one stays "Not Synced".
    listed = call("GET", "/sync", params={"documentIds": f"{first},{second}"})
    assert listed == {"mappings": [mapping]}

    # "Sync Selected": POST {documentIds}; the toast reads created, updated and failed.
    selected = call("POST", "/sync", json={"documentIds": [first, second]})
    assert selected["success"] is True and selected["errors"] == []
    assert (selected["created"], selected["updated"], selected["failed"]) == (1, 1, 0)
    assert selected["total"] == 2
    (run_request,) = dagster.tick()
    assert dagster.launch(run_request).success
    listed = call("GET", "/sync", params={"documentIds": f"{first},{second}"})
    assert [(m["documentId"], m["synced"], m["syncStatus"]) for m in listed["mappings"]] == [
        (first, True, "synced"),
        (second, True, "synced"),
    ]
    assert all(m["lastSyncedAt"] and m["metakockaId"] for m in listed["mappings"])

    # "Sync All Documents": POST {}.
    everything = call("POST", "/sync", json={})
    assert everything["success"] is True and everything["failed"] == 0
    assert everything["created"] + everything["updated"] == everything["total"]

    # "Check Metakocka", then a sync from Metakocka by data.documents[].id (the CRM's client).
    unsynced = call("GET", "/sync-from-metakocka")
    assert unsynced["success"] is True and len(unsynced["documents"]) == unsynced["count"] > 0
    mk_id = unsynced["data"]["documents"][0]["id"]
    pulled = call("POST", "/sync-from-metakocka", json={"metakockaId": mk_id})
    assert pulled["success"] is True and pulled["metakockaId"] == mk_id
    assert pulled["documentId"] == crm_id_for_metakocka_document(org.id, mk_id)

    # Another organization's user does not see the document; a stale token is refused.
    stranger = supabase_auth.token(a_member(sandbox, other))
    for method, kwargs in (
        ("GET", {"params": {"documentId": first}}),
        ("POST", {"json": {"documentId": first}}),
    ):
        assert api.call(method, "/sync", None, token=stranger, **kwargs).status_code == 404
    assert (
        api.call("GET", f"/requests/{clicked['requestId']}", None, token=stranger).status_code
        == 404
    )
    assert api.call("GET", "/sync", None, params={"documentIds": first}, token=stranger).json() == {
        "mappings": []
    }
    expired = supabase_auth.token(user, expires_in=-120)
    refused = api.call("GET", "/sync", None, params={"documentId": first}, token=expired)
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]
