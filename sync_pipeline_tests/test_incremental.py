"""Incremental reconciliation: after a full run, the nightly job reads only what changed since the
organization's cursor, syncs it, and touches nothing else; deletions wait for a full sweep.

The CRM here has docs/crm-setup.sql installed (its updated_at tells what changed); without it,
every run compares every CRM document's content (test_crm_real_schema.py)."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
import requests

from sync_pipeline.definitions import build_definitions
from sync_pipeline.demo import patched_environ, sandbox_environment
from sync_pipeline.domain.document import Customer, SalesDocument
from sync_pipeline.jobs import NIGHTLY_JOB_NAME, partition_key_of
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.metakocka.reads import METAKOCKA_SALES_DOC_TYPES
from sync_pipeline.sandbox.runner import start_sandbox
from sync_pipeline.settings import Settings
from sync_pipeline.store.cursors import Cursors, SyncCursor
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.sync.counterparts import LinkedCounterpart
from sync_pipeline.sync.export.to_metakocka import push_to_metakocka
from sync_pipeline.sync.extract import CRM, Extraction
from sync_pipeline.sync.incremental import OVERLAP, choose_window, next_cursor, sweep_run_config

from .helpers import CrmHttp, MetakockaHttp, error_rows, metakocka_duplicates, status_rows
from .on_demand_helpers import new_crm_order


@pytest.fixture
def sandbox(tmp_path):
    """The sandbox CRM with docs/crm-setup.sql installed."""
    with start_sandbox(
        tmp_path / "sandbox", documents_per_org=30, reset=True, crm_setup_installed=True
    ) as running:
        yield running


QUIET = ("unchanged", "invalid")
"""Plan actions that write nothing (an invalid document within the cursor's overlap is checked
again: no write, no new error row)."""

ASSETS_UP_TO_THE_PLAN = (
    "crm_sales_documents",
    "metakocka_sales_documents",
    "validated_sales_documents",
    "sync_plan",
)


def _run(settings, instance, org_id: str, *, full: bool = False):
    job = build_definitions(settings).resolve_job_def(NIGHTLY_JOB_NAME)
    result = job.execute_in_process(
        partition_key=partition_key_of(job, org_id),
        instance=instance,
        run_config=sweep_run_config(full),
    )
    assert result.success
    return result


def _stats(sandbox) -> dict:
    crm = requests.get(f"{sandbox.crm_url}/_sandbox/stats", timeout=10).json()
    mk = requests.get(f"{sandbox.metakocka_url}/_sandbox/stats", timeout=10).json()
    return {"crm_writes": crm["writes"], "mk_writes": mk["writes_total"], "mk": mk["calls"]}


def _reset_stats(sandbox) -> None:
    for url in (sandbox.crm_url, sandbox.metakocka_url):
        requests.post(f"{url}/_sandbox/stats/reset", timeout=10).raise_for_status()


def _status_by_crm(database_url: str, org_id: str) -> dict:
    return {r["crm_document_id"]: r for r in status_rows(database_url, org_id)}


def _linked_pair(sandbox, org, database_url):
    """A CRM document and its Metakocka twin that the first run left `synced`."""
    rows = status_rows(database_url, org.id)
    return next(
        (r["crm_document_id"], r["metakocka_id"])
        for r in rows
        if r["status"] == "synced" and r["crm_document_id"] and r["metakocka_id"]
    )


def test_incremental_run_syncs_what_changed_and_touches_nothing_else(
    sandbox, pipeline_env, dagster_instance
):
    org = sandbox.organizations[0]
    first = _run(pipeline_env, dagster_instance, org.id)  # no cursor yet: a full sweep
    assert first.output_for_node("extract_sales_documents", "crm_sales_documents").scope.window.full
    assert Cursors(_engine(pipeline_env)).read(org.id) is not None
    before = _status_by_crm(pipeline_env.database_url, org.id)

    # Nothing changed: the incremental run writes nothing. (It does look again at what the first
    # run wrote to Metakocka in the last minutes: the cursor overlaps the previous run, and a
    # Metakocka document's status is outside the content hash, so it is checked, not skipped.)
    _reset_stats(sandbox)
    quiet = _run(pipeline_env, dagster_instance, org.id)
    assert not quiet.output_for_node(
        "extract_sales_documents", "crm_sales_documents"
    ).scope.window.full
    assert set(quiet.output_for_node("sync_plan")["action"]) <= set(QUIET)
    stats = _stats(sandbox)
    assert stats["crm_writes"] == stats["mk_writes"] == 0

    # One document changes in the CRM (its content, which the CRM owns), another in Metakocka
    # (its status, which Metakocka owns: docs/field-ownership.md).
    crm_id, _ = _linked_pair(sandbox, org, pipeline_env.database_url)
    sandbox.crm_state.edit_document(crm_id, {"notes": "changed in the CRM after the full run"})
    other_crm, other_mk = next(
        (r["crm_document_id"], r["metakocka_id"])
        for r in status_rows(pipeline_env.database_url, org.id)
        if r["status"] == "synced" and r["metakocka_id"] and r["crm_document_id"] != crm_id
    )
    cancelled = sandbox.crm_state.document(other_crm)["status"] == "cancelled"
    label, new_status = ("Poslano", "sent") if cancelled else ("Preklicano", "cancelled")
    sandbox.metakocka_state.edit_document(
        org.metakocka_company_id, other_mk, {"status_code": label}
    )
    _reset_stats(sandbox)
    result = _run(pipeline_env, dagster_instance, org.id)
    plan = result.output_for_node("sync_plan")
    pushed = plan.loc[~plan["action"].isin(QUIET)]
    assert sorted(pushed["action"]) == ["update_in_crm", "update_in_metakocka"]
    assert set(pushed["crm_document_id"]) == {crm_id, other_crm}
    assert len(plan) < len(before) / 2  # the run looked at a few documents, not all of them
    stats = _stats(sandbox)
    assert stats["mk_writes"] == 1
    # An incremental run reads what changed, not the whole company: one search per type.
    assert sum(stats["mk"].get("search", {}).values()) == 6

    assert sandbox.crm_state.document(other_crm)["status"] == new_status
    mk_docs = sandbox.metakocka_state.documents(org.metakocka_company_id)
    assert any(d.get("notes") == "changed in the CRM after the full run" for d in mk_docs)

    # Every other status row is exactly as the full run left it.
    after = _status_by_crm(pipeline_env.database_url, org.id)
    assert set(after) == set(before)
    for doc_id, row in before.items():
        if doc_id in (crm_id, other_crm):
            assert after[doc_id]["status"] == "synced"
            assert after[doc_id]["updated_at"] != row["updated_at"]
        else:
            assert after[doc_id] == row

    # The writes of that run come back as changes, and are recognised as the pipeline's own.
    _reset_stats(sandbox)
    echo = _run(pipeline_env, dagster_instance, org.id)
    assert set(echo.output_for_node("sync_plan")["action"]) <= set(QUIET)
    assert _stats(sandbox)["crm_writes"] == _stats(sandbox)["mk_writes"] == 0
    assert metakocka_duplicates(sandbox, org.metakocka_company_id) == {}


def test_new_documents_on_both_sides_are_created_by_an_incremental_run(
    sandbox, pipeline_env, dagster_instance
):
    from .on_demand_helpers import new_crm_order

    org = sandbox.organizations[0]
    _run(pipeline_env, dagster_instance, org.id)
    # A quiet run first: the cursor then starts after everything the seed dated (the first run's
    # cursor starts at the newest seeded change, and an unlinked invalid document there would be
    # looked up again).
    _run(pipeline_env, dagster_instance, org.id)
    row, items = new_crm_order(org, "SO-INC-1")
    crm_id = sandbox.crm_state.insert_document(row, items)
    answer = sandbox.metakocka_state.insert_document(
        org.metakocka_company_id,
        {
            "doc_type": "sales_offer",
            "doc_date": "2026-05-02+02:00",
            "currency_code": "EUR",
            "partner": {"customer": "Nova stranka d.o.o.", "country": "SI"},
            "product_list": [
                {"code": "ART-9", "name": "Kabel", "unit": "kos", "amount": "3", "price": "4"}
            ],
        },
    )
    _reset_stats(sandbox)
    result = _run(pipeline_env, dagster_instance, org.id)
    plan = result.output_for_node("sync_plan")
    assert sorted(plan.loc[~plan["action"].isin(QUIET), "action"]) == [
        "create_in_crm",
        "create_in_metakocka",
    ]
    statuses = {
        (r["crm_document_id"], r["metakocka_id"]): r["status"]
        for r in status_rows(pipeline_env.database_url, org.id)
    }
    assert any(c == crm_id and s == "synced" for (c, _), s in statuses.items())
    assert any(m == answer["mk_id"] and s == "synced" for (_, m), s in statuses.items())
    assert metakocka_duplicates(sandbox, org.metakocka_company_id) == {}
    # The run's own read of Metakocka (one search per type), plus the create's look-up: an
    # incremental run read only Metakocka's changes, so it cannot know the document absent
    # (docs/exactly-once.md, step 5).
    assert sum(_stats(sandbox)["mk"]["search"].values()) == 6 + 1


def test_a_deletion_is_reported_only_by_a_full_sweep(sandbox, pipeline_env, dagster_instance):
    org = sandbox.organizations[0]
    _run(pipeline_env, dagster_instance, org.id)
    crm_id, mk_id = _linked_pair(sandbox, org, pipeline_env.database_url)
    # The CRM document is deleted; its Metakocka twin is then edited, so an incremental run
    # does look at the pair.
    assert sandbox.crm_state.delete_document(crm_id)
    sandbox.metakocka_state.edit_document(org.metakocka_company_id, mk_id, {"notes": "edited"})

    incremental = _run(pipeline_env, dagster_instance, org.id)
    assert not incremental.output_for_node(
        "extract_sales_documents", "crm_sales_documents"
    ).scope.window.full
    plan = incremental.output_for_node("sync_plan")
    assert not plan["action"].str.startswith("deleted").any()
    assert _status_by_crm(pipeline_env.database_url, org.id)[crm_id]["status"] == "synced"

    full = _run(pipeline_env, dagster_instance, org.id, full=True)
    plan = full.output_for_node("sync_plan")
    deleted = plan.loc[plan["action"].str.startswith("deleted")]
    assert list(deleted["crm_document_id"]) == [crm_id]
    assert list(deleted["action"]) == ["deleted_in_crm"]
    assert _status_by_crm(pipeline_env.database_url, org.id)[crm_id]["status"] == "deleted_in_crm"


def test_a_failed_push_is_retried_by_the_next_incremental_run(
    sandbox, pipeline_env, dagster_instance
):
    org = sandbox.organizations[0]
    _run(pipeline_env, dagster_instance, org.id)
    crm_id, _ = _linked_pair(sandbox, org, pipeline_env.database_url)
    sandbox.crm_state.edit_document(crm_id, {"notes": "to be pushed"})
    # Metakocka refuses every write of this run (a definite refusal: not retried in the run).
    sandbox.configure_faults(
        "metakocka", {"rules": [{"fault": "opr_code_1", "endpoints": ["put_document"]}]}
    )
    _run(pipeline_env, dagster_instance, org.id)
    assert _status_by_crm(pipeline_env.database_url, org.id)[crm_id]["status"] == "failed"

    # Healthy again. The document did not change since, but it is retried.
    sandbox.configure_faults("metakocka", {"rules": []})
    result = _run(pipeline_env, dagster_instance, org.id)
    plan = result.output_for_node("sync_plan")
    assert list(plan.loc[~plan["action"].isin(QUIET), "crm_document_id"]) == [crm_id]
    assert _status_by_crm(pipeline_env.database_url, org.id)[crm_id]["status"] == "synced"


def test_an_unreadable_counterpart_fails_its_document_not_the_run(
    sandbox, pipeline_env, dagster_instance
):
    """The push reads a CRM edit's unchanged counterpart before replacing it (sync/counterparts.py).
    When Metakocka answers that read with garbage, that document fails with an error row, nothing
    is written over it, the other documents are pushed, and the next run syncs it."""
    org = sandbox.organizations[0]
    _run(pipeline_env, dagster_instance, org.id)
    synced = [
        r["crm_document_id"]
        for r in status_rows(pipeline_env.database_url, org.id)
        if r["status"] == "synced" and r["crm_document_id"] and r["metakocka_id"]
    ]
    for crm_id in synced:
        sandbox.crm_state.edit_document(crm_id, {"notes": "to be pushed"})
    sandbox.configure_faults(
        "metakocka", {"rules": [{"fault": "malformed_body", "endpoints": ["get_document"]}]}
    )
    _reset_stats(sandbox)
    result = _run(pipeline_env, dagster_instance, org.id)
    metakocka = result.output_for_node("extract_sales_documents", "metakocka_sales_documents")
    unread = {c.crm_document_id: c.metakocka_id for c in metakocka.known_by_link}
    assert unread  # the others were among Metakocka's changes (the first run wrote them)
    assert _stats(sandbox)["mk_writes"] == len(synced) - len(unread)
    status = _status_by_crm(pipeline_env.database_url, org.id)
    assert {status[crm_id]["status"] for crm_id in unread} == {"failed"}
    failed = {
        e["crm_document_id"]: e
        for e in error_rows(pipeline_env.database_url, org.id)
        if e["resolved_at"] is None and e["run_id"] == result.run_id
    }
    assert set(failed) == set(unread)
    assert {e["error_type"] for e in failed.values()} == {"transient"}
    assert all("get_document" in e["message"] for e in failed.values())
    notes = {
        str(d["mk_id"]): d.get("notes")
        for d in sandbox.metakocka_state.documents(org.metakocka_company_id)
    }
    assert all(notes[mk_id] != "to be pushed" for mk_id in unread.values())

    sandbox.configure_faults("metakocka", {"rules": []})
    _run(pipeline_env, dagster_instance, org.id)
    status = _status_by_crm(pipeline_env.database_url, org.id)
    assert {status[crm_id]["status"] for crm_id in synced} == {"synced"}
    notes = {
        str(d["mk_id"]): d.get("notes")
        for d in sandbox.metakocka_state.documents(org.metakocka_company_id)
    }
    assert all(notes[mk_id] == "to be pushed" for mk_id in unread.values())


def test_window_and_cursor_rules():
    now = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    assert choose_window(None, now=now).full  # first run
    cursor = SyncCursor(now - timedelta(days=1), now - timedelta(days=1), now - timedelta(days=2))
    window = choose_window(cursor, now=now)
    assert not window.full and window.crm_since == cursor.crm_changed_since
    assert choose_window(cursor, now=now, full_sweep=True).full
    stale = SyncCursor(cursor.crm_changed_since, cursor.metakocka_changed_since, now - timedelta(8))
    assert choose_window(stale, now=now).full  # weekly full sweep

    # The next cursor: the run's start minus the overlap, never before the previous cursor, and
    # a full sweep records itself.
    moved = next_cursor(window, Extraction(CRM, "org"))
    assert moved.crm_changed_since == moved.metakocka_changed_since == now - OVERLAP
    assert moved.last_full_sweep_at == cursor.last_full_sweep_at
    first = next_cursor(choose_window(None, now=now), Extraction(CRM, "org"))
    assert first.last_full_sweep_at == now

    # The CRM's cursor stops at the newest updated_at the run saw if its clock is behind ours;
    # Metakocka's documents carry no change time, so its cursor is the run's clock alone.
    behind = Extraction(CRM, "org")
    behind.documents.append(
        SalesDocument(
            organization_id="org",
            document_type="order",
            document_date=date(2026, 11, 24),
            customer=Customer("Acme"),
            lines=(),
            crm_document_id="a",
            updated_at=now - timedelta(hours=1),
        )
    )
    moved = next_cursor(choose_window(None, now=now), behind)
    assert moved.crm_changed_since == now - timedelta(hours=1) - OVERLAP
    assert moved.metakocka_changed_since == now - OVERLAP


def _engine(settings):
    import sqlalchemy as sa

    return sa.create_engine(settings.database_url)


def test_documents_already_synced_with_this_content_are_not_checked_again():
    from datetime import date
    from decimal import Decimal

    from sync_pipeline.domain.document import Customer, DocumentLine, SalesDocument
    from sync_pipeline.domain.hashing import content_hash
    from sync_pipeline.sync.validate import validate_extraction

    def document(key: str, name: str) -> SalesDocument:
        line = DocumentLine("Widget", Decimal("2"), Decimal("10"), Decimal("22"), product_code="W")
        return SalesDocument(
            organization_id="org",
            document_type="invoice",
            document_date=date(2026, 1, 2),
            customer=Customer(name, country="SI"),
            lines=(line,),
            crm_document_id=key,
        )

    # Both fail a check (an empty customer name); only `changed` differs from its last sync.
    synced, changed = document("a", ""), document("b", "")
    extraction = Extraction(CRM, "org", documents=[synced, changed])
    side = validate_extraction(
        extraction, synced_hashes={"a": content_hash(synced), "b": "an older content"}
    )
    assert [q.crm_document_id for q in side.quarantined] == ["b"]
    assert list(side.valid["crm_document_id"]) == ["a"]
    assert side.valid.loc[0, "content_hash"] == content_hash(synced)


def test_many_crm_edits_read_their_counterparts_in_one_full_read(
    tmp_path, sqlite_url, dagster_instance
):
    """Past a point one full read of the company costs fewer calls than a get_document per
    counterpart (sync/counterparts.py). The counterparts did not change, so the plan takes them as
    their links recorded them and the push reads them, alongside its writes. The edited documents
    are then replaced in Metakocka with what only Metakocka holds kept, and nothing else is
    written."""
    with (
        start_sandbox(
            tmp_path / "sandbox", documents_per_org=120, reset=True, crm_setup_installed=True
        ) as sandbox,
        patched_environ(sandbox_environment(sandbox, sqlite_url, tmp_path)),
    ):
        settings = Settings.from_env()
        org = sandbox.organizations[0]
        _run(settings, dagster_instance, org.id)
        pairs = sorted(
            (r["crm_document_id"], r["metakocka_id"])
            for r in status_rows(settings.database_url, org.id)
            if r["status"] == "synced" and r["crm_document_id"] and r["metakocka_id"]
        )
        edited = dict(pairs[:-10])  # most: more get_document calls than a full read has pages
        company = org.metakocka_company_id
        before = {d["mk_id"]: d for d in sandbox.metakocka_state.documents(company)}
        for crm_id in edited:
            sandbox.crm_state.edit_document(crm_id, {"notes": f"edited {crm_id}"})
        _reset_stats(sandbox)

        result = _run(settings, dagster_instance, org.id)
        metakocka = result.output_for_node("extract_sales_documents", "metakocka_sales_documents")
        # The others are among Metakocka's changes (the first run wrote them, within the
        # cursor's overlap), read by the extraction.
        stood_in = {c.metakocka_id for c in metakocka.known_by_link}
        assert len(stood_in) > len(edited) / 4 and stood_in <= set(edited.values())
        assert metakocka.scope.counterparts_known_by_link == len(stood_in)
        assert not metakocka.scope.metakocka_full_read  # the extraction read only what changed
        calls = _stats(sandbox)["mk"]
        assert "get_document" not in calls
        # one search per type for the changes, then the push's full read: a page per type here
        assert sum(calls["search"].values()) == 2 * len(METAKOCKA_SALES_DOC_TYPES)
        plan = result.output_for_node("sync_plan")
        assert set(plan.loc[~plan["action"].isin(QUIET), "crm_document_id"]) == set(edited)
        assert _stats(sandbox)["mk_writes"] == len(edited)
        after = {d["mk_id"]: d for d in sandbox.metakocka_state.documents(company)}
        for crm_id, mk_id in pairs:
            if crm_id in edited:
                assert after[mk_id]["notes"] == f"edited {crm_id}"
                for only_metakocka in ("status_code", "warehouse", "delivery_type", "title"):
                    assert after[mk_id].get(only_metakocka) == before[mk_id].get(only_metakocka)
            else:
                assert after[mk_id] == before[mk_id]
        assert metakocka_duplicates(sandbox, company) == {}


def test_a_counterpart_changed_or_deleted_before_its_replace_is_not_overwritten(
    sandbox, pipeline_env, dagster_instance
):
    """The plan takes a CRM edit's unchanged counterpart as its link recorded it, and the push
    reads it just before the replace (sync/counterparts.py). If Metakocka changed or deleted it in
    between, no replace is sent: the pair is left pending, and the next run plans it against what
    Metakocka holds (here a conflict), so Metakocka's change is never overwritten."""
    org = sandbox.organizations[0]
    company = org.metakocka_company_id
    CrmHttp(sandbox).insert_document(*new_crm_order(org, "SO-MEANWHILE"))  # deletable in MK
    _run(pipeline_env, dagster_instance, org.id)
    # The orders that run wrote to Metakocka leave the next run's window (its cursor is the
    # newest change it read, and the seed's changes are older than today), as if written long
    # ago: their Metakocka side is then known by its link, not read.
    long_ago = datetime(2024, 1, 1, tzinfo=UTC)
    for doc in sandbox.metakocka_state.documents(company):
        if doc["doc_type"] == "sales_order":
            sandbox.metakocka_state.edit_document(company, doc["mk_id"], {}, long_ago)
    for row in status_rows(pipeline_env.database_url, org.id):
        if row["status"] == "synced" and row["crm_document_id"] and row["metakocka_id"]:
            sandbox.crm_state.edit_document(row["crm_document_id"], {"notes": "edited in the CRM"})

    job = build_definitions(pipeline_env).resolve_job_def(NIGHTLY_JOB_NAME)
    planned = job.execute_in_process(
        partition_key=partition_key_of(job, org.id),
        instance=dagster_instance,
        asset_selection=[dg.AssetKey(name) for name in ASSETS_UP_TO_THE_PLAN],
    )
    plan = planned.output_for_node("sync_plan")
    by_link = plan.loc[plan["metakocka_document"].map(lambda d: isinstance(d, LinkedCounterpart))]
    assert set(by_link["action"]) == {"update_in_metakocka"}
    is_order = by_link["metakocka_document"].map(lambda d: d.metakocka_doc_type == "sales_order")
    deleted = by_link.loc[is_order].iloc[0]  # the sandbox deletes sales orders only
    changed, untouched = by_link.loc[by_link.index != deleted.name].iloc[:2].itertuples()

    # Meanwhile, in Metakocka: one counterpart is edited, another deleted.
    MetakockaHttp(sandbox, org).call(
        "delete_document", {"doc_type": "sales_order", "mk_id": deleted.metakocka_id}
    )
    sandbox.metakocka_state.edit_document(
        company, changed.metakocka_id, {"notes": "edited in Metakocka meanwhile"}
    )
    _reset_stats(sandbox)
    store = SyncStore(pipeline_env.database_url)
    mk = MetakockaClient(sandbox.metakocka_url, company, org.metakocka_secret_key)
    ids = [deleted.crm_document_id, changed.crm_document_id, untouched.crm_document_id]
    outcomes = {
        o.crm_document_id: o
        for o in push_to_metakocka(
            plan.loc[plan["crm_document_id"].isin(ids)],
            client=mk,
            store=store,
            organization_id=org.id,
        )
    }
    assert outcomes[untouched.crm_document_id].result == "ok"
    assert outcomes[changed.crm_document_id].result == "skipped"
    assert "changed after this run read its changes" in outcomes[changed.crm_document_id].message
    assert outcomes[deleted.crm_document_id].result == "skipped"
    assert "no longer exists" in outcomes[deleted.crm_document_id].message
    assert _stats(sandbox)["mk_writes"] == 1
    mk_docs = {d["mk_id"]: d for d in sandbox.metakocka_state.documents(company)}
    assert mk_docs[untouched.metakocka_id]["notes"] == "edited in the CRM"
    assert mk_docs[changed.metakocka_id]["notes"] == "edited in Metakocka meanwhile"

    # The next run reads the changed counterpart (it is among Metakocka's changes): both sides
    # changed, a conflict for an operator; nothing is overwritten.
    _run(pipeline_env, dagster_instance, org.id)
    status = _status_by_crm(pipeline_env.database_url, org.id)
    assert status[changed.crm_document_id]["status"] == "conflict"
    assert status[untouched.crm_document_id]["status"] == "synced"
    mk_docs = {d["mk_id"]: d for d in sandbox.metakocka_state.documents(company)}
    assert mk_docs[changed.metakocka_id]["notes"] == "edited in Metakocka meanwhile"
    assert metakocka_duplicates(sandbox, company) == {}
