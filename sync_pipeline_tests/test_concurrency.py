"""Concurrency: runs over the same documents at the same time create nothing twice.

Two nightly runs and an on-demand `sync_documents` run of the same new documents start at the same
moment, each in its own process (as Dagster's run workers are), against one sync database: SQLite
(WAL) and the real PostgreSQL. Both nightly runs plan the same creates in the same order, so
without a per-document claim they look each document up at the same time, find nothing, and both
create it. With the claim, a document another live run holds is left `pending`, and a later run
(here the final one in this process) finishes whatever was left: nothing twice, nothing lost.
"""

import contextlib
import threading

import dagster as dg
import pytest
import requests

from sync_pipeline.demo import patched_environ, sandbox_crm_client, sandbox_environment
from sync_pipeline.domain.document import crm_id_to_external_ref
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.ops.sync_documents import JOB_NAME as SYNC_DOCUMENTS_JOB
from sync_pipeline.ops.sync_documents import OP_NAME as SYNC_DOCUMENTS_OP
from sync_pipeline.sandbox.runner import start_sandbox
from sync_pipeline.settings import Settings
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.sync.export.to_metakocka import push_to_metakocka

from .faultlab import (
    LabConfig,
    converge,
    crash_context,
    invalid_crm_ids,
    nightly_job,
    start_child,
)
from .helpers import plan_everything

CONFIG = LabConfig(timeout_s=5.0, create_settle_s=2.0, claim_ttl_s=60.0)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_overlapping_runs_at_once_create_nothing_twice(database, tmp_path, request):
    db_url = (
        f"sqlite:///{tmp_path / 'sync.db'}"
        if database == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    SyncStore(db_url).create_schema()  # once, before the runs race
    with start_sandbox(tmp_path / "sandbox", organizations=1, documents_per_org=60) as sandbox:
        org = sandbox.organizations[0]
        valid_crm_ids = [
            doc["id"]
            for doc in sandbox.crm_state.documents(org.id)
            if doc["id"] not in set(invalid_crm_ids(sandbox, org))
        ]
        # Latency widens the race window between a look-up and its create (on SQLite the runs'
        # writes take turns, which staggers them by a few milliseconds).
        sandbox.configure_faults("crm", {"latency_ms": 5})
        sandbox.configure_faults("metakocka", {"latency_ms": 25})
        environment = sandbox_environment(sandbox, db_url, tmp_path)
        on_demand = {
            "ops": {
                SYNC_DOCUMENTS_OP: {
                    "config": {
                        "organization_id": org.id,
                        "direction": "crm_to_metakocka",
                        "document_ids": valid_crm_ids,
                    }
                }
            }
        }
        go = crash_context().Event()
        children = []
        for job_name, partition, run_config in (
            ("nightly_reconciliation", org.id, None),
            ("nightly_reconciliation", org.id, None),
            (SYNC_DOCUMENTS_JOB, None, on_demand),
        ):
            process, ready, _ = start_child(
                environment,
                partition,
                CONFIG,
                go=go,
                job_name=job_name,
                run_config=run_config,
            )
            children.append((process, ready))
        for _, ready in children:
            assert ready.wait(60), "a run did not start"
        go.set()
        for process, _ in children:
            process.join(180)
        exit_codes = [process.exitcode for process, _ in children]

        with patched_environ(environment):
            job = nightly_job(Settings.from_env(), CONFIG)
            with dg.instance_for_test() as instance:
                _, report = converge(
                    job,
                    instance,
                    sandbox,
                    org,
                    db_url,
                    max_runs=2,
                    invalid_crm_ids=invalid_crm_ids(sandbox, org),
                )

    # Every run ended, and ended well: a run that lost a race must leave the document pending,
    # not fail. (A run once failed here on PostgreSQL: two runs re-materialised sync_status at
    # once and the second insert hit the first one's rows; store/locks.py serialises them now.)
    assert exit_codes == [0, 0, 0], exit_codes
    assert report.duplicates == 0, (report.metakocka_duplicates, report.crm_duplicates)
    assert report.lost == []
    assert report.converged, (report.unpaired[:5], report.not_synced[:5])


def test_a_plan_made_before_another_run_synced_the_document_is_not_pushed(tmp_path):
    """Run A planned a create; meanwhile run B created the document and then synced a newer edit.
    When A finally gets to it, A's plan is stale: the document is left pending, and Metakocka
    keeps the newer content instead of being rewritten with A's old copy."""
    db_url = f"sqlite:///{tmp_path / 'sync.db'}"
    store = SyncStore(db_url)
    store.create_schema()
    with start_sandbox(tmp_path / "sandbox", organizations=1, documents_per_org=20) as sandbox:
        org = sandbox.organizations[0]
        crm = sandbox_crm_client(sandbox, org.crm_api_key)
        mk = MetakockaClient(
            sandbox.metakocka_url, org.metakocka_company_id, org.metakocka_secret_key
        )

        def plan_of(crm_id):
            plan = plan_everything(crm, mk, org.id, store)
            return plan.loc[plan["crm_document_id"] == crm_id]

        def push(plan):
            return push_to_metakocka(plan, client=mk, store=store, organization_id=org.id)

        crm_id = next(
            row.crm_document_id
            for row in plan_everything(crm, mk, org.id, store).itertuples()
            if row.action == "create_in_metakocka"
        )
        stale = plan_of(crm_id)  # run A's plan
        assert push(stale)[0].result == "ok"  # run B creates it
        requests.post(
            sandbox.crm_url + "/_sandbox/edit",
            json={"id": crm_id, "changes": {"notes": "edited after A planned"}},
            timeout=10,
        ).raise_for_status()
        newer = plan_of(crm_id)
        assert newer["action"].tolist() == ["update_in_metakocka"]
        assert push(newer)[0].result == "ok"  # and syncs the edit

        (outcome,) = push(stale)  # run A, at last

        assert outcome.result == "skipped" and "another run synced it" in outcome.message
        ref = crm_id_to_external_ref(crm_id)
        (copy,) = [
            d
            for d in sandbox.metakocka_state.documents(org.metakocka_company_id)
            if d.get("buyer_order") == ref
        ]
        assert copy.get("notes") == "edited after A planned"
    store.dispose()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_claim_keeps_a_second_run_out_of_the_window_between_look_up_and_create(
    database, tmp_path, request
):
    """Two runs push the same create at once, and both look the document up at the same moment
    (a rendezvous inside the look-up): without the claim both find nothing and both create it.
    With it, the second run never gets to its look-up: the document is pending for it."""
    db_url = (
        f"sqlite:///{tmp_path / 'sync.db'}"
        if database == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    SyncStore(db_url).create_schema()
    rendezvous = threading.Barrier(2)

    class LookingTogether(MetakockaClient):
        def find_by_external_ref(self, doc_type, buyer_order):
            found = super().find_by_external_ref(doc_type, buyer_order)
            with contextlib.suppress(threading.BrokenBarrierError):
                rendezvous.wait(timeout=3)  # alone (the claim kept the other out): go on
            return found

    with start_sandbox(tmp_path / "sandbox", organizations=1, documents_per_org=20) as sandbox:
        org = sandbox.organizations[0]
        crm = sandbox_crm_client(sandbox, org.crm_api_key)
        mk = MetakockaClient(
            sandbox.metakocka_url, org.metakocka_company_id, org.metakocka_secret_key
        )
        store = SyncStore(db_url)
        plan = plan_everything(crm, mk, org.id, store)
        plan = plan.loc[plan["action"] == "create_in_metakocka"].head(1)
        (crm_id,) = plan["crm_document_id"]
        outcomes = []

        def run():
            client = LookingTogether(
                sandbox.metakocka_url, org.metakocka_company_id, org.metakocka_secret_key
            )
            outcomes.extend(
                push_to_metakocka(
                    plan, client=client, store=SyncStore(db_url), organization_id=org.id
                )
            )

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ref = crm_id_to_external_ref(crm_id)
        copies = [
            d
            for d in sandbox.metakocka_state.documents(org.metakocka_company_id)
            if d.get("buyer_order") == ref
        ]
        store.dispose()

    assert len(copies) == 1
    assert sorted(o.result for o in outcomes) == ["ok", "skipped"]
    assert "claimed by" in next(o.message for o in outcomes if o.result == "skipped")
