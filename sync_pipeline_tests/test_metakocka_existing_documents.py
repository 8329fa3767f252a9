"""A create in Metakocka that finds its document already there (issue 16, item 1).

An earlier attempt got through without its answer, or another writer made the document: the push
finds it by its external id (`buyer_order`). It must then never lose what Metakocka's users did
to it since (status, delivery type, warehouse: fields the CRM does not own), and a create may go
out without that look-up only when this run read every Metakocka document.
"""

from datetime import UTC, datetime

import pandas as pd
import pytest

from sync_pipeline.crm.mapping import crm_row_to_canonical
from sync_pipeline.demo import sandbox_crm_client
from sync_pipeline.domain.document import crm_id_to_external_ref
from sync_pipeline.domain.plan import KNOWN_ABSENT
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.metakocka.mapping import canonical_to_metakocka
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.sync.export.to_metakocka import push_to_metakocka
from sync_pipeline.sync.extract import crm_context
from sync_pipeline.sync.incremental import SyncScope, SyncWindow, mark_known_absent

from .helpers import CrmHttp, MetakockaHttp, plan_everything
from .on_demand_helpers import new_crm_order


def claiming(sandbox, org, crm_id: str) -> list[dict]:
    ref = crm_id_to_external_ref(crm_id)
    company = org.metakocka_company_id
    return [d for d in sandbox.metakocka_state.documents(company) if d.get("buyer_order") == ref]


def made_elsewhere(sandbox, org, crm_id: str) -> str:
    """The Metakocka order of the CRM document `crm_id` as an earlier attempt left it (its answer
    lost), then worked on by Metakocka's users: a status, a delivery type, a warehouse."""
    client = sandbox_crm_client(sandbox)
    doc = crm_row_to_canonical(client.get_document(org.id, crm_id), crm_context(client, org.id))
    payload = {**canonical_to_metakocka(doc), "buyer_order": crm_id_to_external_ref(crm_id)}
    made = sandbox.metakocka_state.insert_document(org.metakocka_company_id, payload)
    mk_id = str(made["mk_id"])
    MetakockaHttp(sandbox, org).call(
        "update_document",
        {
            "doc_type": "sales_order",
            "mk_id": mk_id,
            "status_code": "Poslano",
            "delivery_type": "Pošta Slovenije",
            "warehouse": "Glavno skladišče",
        },
    )
    return mk_id


def test_a_create_that_finds_its_document_keeps_what_metakocka_s_users_set(sandbox, sqlite_url):
    """The plan (this run's read) says create; by push time the document is there."""
    org = sandbox.organizations[0]
    created = CrmHttp(sandbox).insert_document(*new_crm_order(org, "SO-FOUND"))
    store = SyncStore(sqlite_url)
    store.create_schema()
    mk = MetakockaClient(sandbox.metakocka_url, org.metakocka_company_id, org.metakocka_secret_key)
    plan = plan_everything(sandbox_crm_client(sandbox), mk, org.id, store)
    plan = plan.loc[plan["crm_document_id"] == created["id"]]
    assert list(plan["action"]) == ["create_in_metakocka"]
    mk_id = made_elsewhere(sandbox, org, created["id"])

    (outcome,) = push_to_metakocka(plan, client=mk, store=store, organization_id=org.id)
    store.dispose()

    assert (outcome.result, outcome.metakocka_id) == ("ok", mk_id)
    (held,) = claiming(sandbox, org, created["id"])
    assert held["delivery_type"] == "Pošta Slovenije"
    assert held["warehouse"] == "Glavno skladišče"
    assert held["status_code"] == "Poslano"


@pytest.mark.parametrize(
    ("full_sweep", "metakocka_read_whole", "trusted"),
    [(True, True, True), (False, True, True), (False, False, False)],
)
def test_a_create_skips_its_look_up_only_after_a_whole_read_of_metakocka(
    sqlite_url, full_sweep, metakocka_read_whole, trusted
):
    """An incremental run read only Metakocka's changes in its window: a document someone else
    made outside it (the CRM's own sync, say) is invisible to it, so its creates look first."""
    store = SyncStore(sqlite_url)
    store.create_schema()
    window = SyncWindow(full=full_sweep, started_at=datetime.now(UTC), reason="test")
    scope = SyncScope(window, metakocka_full_read=metakocka_read_whole)
    plan = pd.DataFrame({"action": ["create_in_metakocka"], "crm_document_id": ["doc-1"]})

    marked = mark_known_absent(plan, scope, store, "org-1")
    store.dispose()

    assert list(marked[KNOWN_ABSENT]) == [trusted]
