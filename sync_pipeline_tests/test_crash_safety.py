"""Crash safety: SIGKILL the process running the pushes, then re-run; nothing is created twice or
lost.

The sandbox is served by this (the test) process; the nightly job runs in a child process forked
from a warmed-up forkserver (`faultlab.start_child`), and is killed at seeded points: after the
n-th write Metakocka or the CRM committed, at a random moment, or exactly between a committed
create and its answer (the create's answer is held back by the sandbox, so the child dies after
Metakocka stored the document and before it could bind it). After every kill:

- the sandbox's own stores hold no external id twice;
- every Metakocka document the dead run created has its row in `document_links` (the intent is
  written before the create is sent, so a crash can never leave an untraced create).

The next trial's child is the re-run of the crash before it (and is itself killed: a crash during
recovery); every fifth trial, and at the end, a re-run in this process must converge: every valid
document synced, none twice, none lost.
"""

import random
import time
import uuid
from datetime import UTC, datetime

import requests

from sync_pipeline.demo import patched_environ, sandbox_crm_client, sandbox_environment
from sync_pipeline.domain.document import crm_id_to_external_ref, external_ref_to_crm_id
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.metakocka.mapping import canonical_to_metakocka
from sync_pipeline.sandbox.runner import start_sandbox
from sync_pipeline.settings import Settings
from sync_pipeline.store.claims import Claims
from sync_pipeline.store.engine import make_engine
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.tables import LINK_CREATING_IN_METAKOCKA
from sync_pipeline.sync.export.to_metakocka import push_to_metakocka

from .faultlab import (
    LabConfig,
    audit,
    converge,
    invalid_crm_ids,
    metakocka_writes,
    nightly_job,
    run_nightly,
    start_child,
    wait_for,
)
from .helpers import CrmHttp, MetakockaHttp, new_metakocka_document, plan_everything
from .on_demand_helpers import new_crm_order

TRIALS = 20
CHECKPOINT_EVERY = 5
CRASH = LabConfig(timeout_s=2.0, create_settle_s=0.5, claim_ttl_s=1.0)
KILL_POINTS = ("metakocka_write", "crm_write", "after_commit", "timer")


def new_crm_document(crm: CrmHttp, org, label: str) -> str:
    """A new order a member of `org` enters in the CRM (`new_crm_order`); its id."""
    row, items = new_crm_order(org, f"CRASH-{label}")
    return crm.insert_document(row, items)["id"]


def untraced_creates(sandbox, org, database_url: str, created_crm_ids: set[str]) -> list[str]:
    """Metakocka documents made from our new CRM documents that document_links does not know."""
    store = SyncStore(database_url)
    try:
        links = store.links.frame(org.id)
    finally:
        store.dispose()
    known = set(links["crm_document_id"].dropna())
    return [
        doc["mk_id"]
        for doc in sandbox.metakocka_state.documents(org.metakocka_company_id)
        if external_ref_to_crm_id(doc.get("buyer_order")) in created_crm_ids
        and external_ref_to_crm_id(doc.get("buyer_order")) not in known
    ]


def wait_for_claims_to_lapse(database_url: str, ttl_s: float) -> None:
    engine = make_engine(database_url)
    try:

        def lapsed() -> bool:
            now = datetime.now(UTC)
            return all(
                (now - claim["claimed_at"]).total_seconds() > ttl_s
                for claim in Claims(engine).held()
            )

        assert wait_for(lapsed, timeout_s=10 * ttl_s, interval_s=0.05)
    finally:
        engine.dispose()


def kill_point(sandbox, org, point: str, rng: random.Random):
    """The condition (checked every few milliseconds) on which the child is killed."""
    company = org.metakocka_company_id
    mk_base = metakocka_writes(sandbox, company)
    crm_base = sandbox.crm_state.version
    started = time.monotonic()
    if point == "metakocka_write":
        k = rng.randint(1, 3)
        return lambda: metakocka_writes(sandbox, company) >= mk_base + k
    if point == "crm_write":  # a child writes the CRM about twice (batched writes), so k <= 2
        k = rng.randint(1, 2)
        return lambda: sandbox.crm_state.version >= crm_base + k
    if point == "after_commit":  # the first create is stored, its answer held back
        return lambda: metakocka_writes(sandbox, company) > mk_base
    delay = rng.uniform(0.0, 1.0)  # a child runs for about 1 to 2.5 s
    return lambda: time.monotonic() - started >= delay


def kill_when(process, ready, condition, timeout_s: float = 30.0) -> bool:
    """SIGKILL the child once `condition()` holds; False if the child ended first."""
    assert ready.wait(30), "the child did not start"
    deadline = time.monotonic() + timeout_s
    while process.is_alive() and time.monotonic() < deadline:
        if condition():
            process.kill()
            process.join()
            return True
        time.sleep(0.003)
    process.join(5)
    assert not process.is_alive(), "the child neither finished nor reached its kill point"
    return False


def test_sigkill_at_seeded_points_then_rerun_converges(tmp_path, dagster_instance):
    instance = dagster_instance
    db_url = f"sqlite:///{tmp_path / 'sync.db'}"
    rng = random.Random(20261125)
    with start_sandbox(tmp_path / "sandbox", organizations=1, documents_per_org=20) as sandbox:
        org = sandbox.organizations[0]
        crm, mk = CrmHttp(sandbox), MetakockaHttp(sandbox, org)
        invalid = invalid_crm_ids(sandbox, org)
        environment = sandbox_environment(sandbox, db_url, tmp_path)
        created_crm_ids: set[str] = set()
        kills = {point: 0 for point in KILL_POINTS}
        with patched_environ(environment):
            job = nightly_job(Settings.from_env(), CRASH)  # the re-runs in this process
            for trial in range(TRIALS):
                for n in range(rng.randint(2, 4)):
                    created_crm_ids.add(new_crm_document(crm, org, f"{trial}-{n}"))
                for n in range(rng.randint(1, 3)):
                    new_metakocka_document(mk, f"CRASH-{trial}-{n}", doc_type="sales_offer")
                point = KILL_POINTS[trial % len(KILL_POINTS)]
                if point == "after_commit":  # hold the answer of the first create
                    sandbox.configure_faults(
                        "metakocka",
                        {
                            "rules": [
                                {
                                    "fault": "timeout_after_commit",
                                    "endpoints": ["put_document"],
                                    "count": 1,
                                    "delay_s": 8,
                                }
                            ]
                        },
                    )
                after = kill_point(sandbox, org, point, rng)
                process, ready, _ = start_child(environment, org.id, CRASH)
                if kill_when(process, ready, after):
                    kills[point] += 1
                sandbox.configure_faults("metakocka", {"rules": []})

                assert audit(sandbox, org, db_url).duplicates == 0, f"trial {trial} ({point})"
                assert untraced_creates(sandbox, org, db_url, created_crm_ids) == [], trial

                if trial % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
                    wait_for_claims_to_lapse(db_url, CRASH.claim_ttl_s)
                    _, report = converge(
                        job, instance, sandbox, org, db_url, max_runs=3, invalid_crm_ids=invalid
                    )
                    assert report.duplicates == 0, (trial, report.metakocka_duplicates)
                    assert report.lost == [], (trial, report.lost)
                    assert report.converged, (trial, report.unpaired[:5], report.not_synced[:5])

    # Most kill points were reached before the child finished on its own.
    assert sum(kills.values()) >= TRIALS * 3 // 4, kills
    assert kills["after_commit"] >= 1, kills


def test_create_in_flight_when_the_process_dies_is_not_sent_again(tmp_path, dagster_instance):
    """The dead run's create is still being processed by Metakocka when the next run starts: the
    dead run's claim keeps the next run from looking too early and sending it a second time; once
    the create has landed, the run after adopts it."""
    db_url = f"sqlite:///{tmp_path / 'sync.db'}"
    config = LabConfig(timeout_s=2.0, create_settle_s=5.0, claim_ttl_s=8.0)
    with start_sandbox(tmp_path / "sandbox", organizations=1, documents_per_org=20) as sandbox:
        org = sandbox.organizations[0]
        environment = sandbox_environment(sandbox, db_url, tmp_path)
        with patched_environ(environment):
            job = nightly_job(Settings.from_env(), config)
            assert run_nightly(job, dagster_instance, org.id).success  # everything in sync
            crm_id = new_crm_document(CrmHttp(sandbox), org, "in-flight")
            ref = crm_id_to_external_ref(crm_id)
            stats_url = sandbox.metakocka_url + "/_sandbox/stats"
            puts_before = requests.get(stats_url, timeout=5).json()["calls"].get("put_document", {})
            sandbox.configure_faults(
                "metakocka",
                {
                    "rules": [
                        {"fault": "slow", "endpoints": ["put_document"], "count": 1, "delay_s": 3.0}
                    ]
                },
            )

            def create_received() -> bool:
                calls = requests.get(stats_url, timeout=5).json()["calls"].get("put_document", {})
                return sum(calls.values()) > sum(puts_before.values())

            process, ready, _ = start_child(environment, org.id, config)
            assert kill_when(process, ready, create_received)

            # Metakocka is still storing the dead run's create: the next run must not send one.
            stored = lambda: [  # noqa: E731
                d
                for d in sandbox.metakocka_state.documents(org.metakocka_company_id)
                if d.get("buyer_order") == ref
            ]
            assert stored() == []
            result = run_nightly(job, dagster_instance, org.id)
            assert result.success
            (outcome,) = [
                o for o in result.output_for_node("metakocka_push") if o.crm_document_id == crm_id
            ]
            assert outcome.result == "skipped" and "claimed by" in outcome.message

            assert wait_for(lambda: len(stored()) == 1, timeout_s=10)
            _, report = converge(
                job,
                dagster_instance,
                sandbox,
                org,
                db_url,
                max_runs=2,
                invalid_crm_ids=invalid_crm_ids(sandbox, org),
            )
            assert len(stored()) == 1
            assert report.duplicates == 0 and report.lost == [] and report.converged


def test_unfinished_intent_is_resolved_by_lookup_before_anything_is_resent(tmp_path):
    """A dead run recorded its intent and its create landed after this run's extraction: the push
    finds it by its external id and binds it; no second create is sent, even though this run's
    plan had proved the document absent and would have skipped the look-up."""
    db_url = f"sqlite:///{tmp_path / 'sync.db'}"
    with start_sandbox(tmp_path / "sandbox", organizations=1, documents_per_org=20) as sandbox:
        org = sandbox.organizations[0]
        crm_client = sandbox_crm_client(sandbox, org.crm_api_key)
        mk_client = MetakockaClient(
            sandbox.metakocka_url, org.metakocka_company_id, org.metakocka_secret_key
        )
        store = SyncStore(db_url)
        store.create_schema()
        crm_id = new_crm_document(CrmHttp(sandbox), org, f"intent-{uuid.uuid4().hex[:6]}")
        plan = plan_everything(crm_client, mk_client, org.id, store)
        plan = plan.loc[plan["crm_document_id"] == crm_id].copy()
        # This run's extraction proved the document absent (it may skip its first look-up)...
        plan["metakocka_absent"] = True
        (row,) = plan.itertuples(index=False)
        assert row.action == "create_in_metakocka"
        # ...but another run recorded its intent, sent the create and died before binding it,
        # after our extraction: the intent found at push time forces the look-up.
        store.links.record_intent(
            org.id,
            state=LINK_CREATING_IN_METAKOCKA,
            crm_document_id=crm_id,
            document_type="order",
        )
        landed = mk_client.create_document(canonical_to_metakocka(row.crm_document))
        calls_before = mk_client.stats.snapshot()["calls"].get("metakocka put_document", 0)

        outcomes = push_to_metakocka(
            plan,
            client=mk_client,
            store=store,
            organization_id=org.id,
        )

        (outcome,) = outcomes
        assert outcome.result == "ok" and outcome.metakocka_id == str(landed["mk_id"])
        ref = crm_id_to_external_ref(crm_id)
        copies = [
            d
            for d in sandbox.metakocka_state.documents(org.metakocka_company_id)
            if d.get("buyer_order") == ref
        ]
        assert len(copies) == 1
        link = store.links.find(org.id, crm_document_id=crm_id)
        assert (link["state"], link["metakocka_id"]) == ("linked", str(landed["mk_id"]))
        # The only put_document sent by the push is the replace that makes the found copy match.
        puts = mk_client.stats.snapshot()["calls"]["metakocka put_document"] - calls_before
        assert puts <= 1
        store.dispose()
