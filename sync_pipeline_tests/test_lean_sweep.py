"""A full sweep holds hashes, not documents (sync/lean.py): it plans on summaries of the documents
as last synced, reads a summarised document again just before it writes from or over it, and
writes it only if it still has the content the run planned (sync/rereads.py). What it writes, its
statuses, errors and quarantine are those of a run that held every document."""

import dataclasses
import json
from datetime import date
from decimal import Decimal

import dagster as dg
import pandas as pd
import pytest

from sync_pipeline.definitions import build_definitions
from sync_pipeline.demo import sandbox_crm_client
from sync_pipeline.domain.document import Customer, DocumentLine, SalesDocument
from sync_pipeline.domain.hashing import DEFAULT_PRECISION, content_hash
from sync_pipeline.domain.summary import DocumentSummary
from sync_pipeline.jobs import NIGHTLY_JOB_NAME, partition_key_of
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.sync import lean, status_sweep
from sync_pipeline.sync.export.to_metakocka import push_to_metakocka
from sync_pipeline.sync.extract import CRM, METAKOCKA, Extraction, Quarantined
from sync_pipeline.sync.incremental import sweep_run_config
from sync_pipeline.sync.planning import held_texts
from sync_pipeline.sync.validate import ValidatedSide, validate_extraction

from . import test_reconciliation_e2e as reconciliation
from .helpers import error_rows, metakocka_duplicates, status_rows

ASSETS_UP_TO_THE_PLAN = (
    "crm_sales_documents",
    "metakocka_sales_documents",
    "validated_sales_documents",
    "sync_plan",
)


def _job(settings):
    return build_definitions(settings).resolve_job_def(NIGHTLY_JOB_NAME)


def _full_sweep(settings, instance, org_id: str, assets=None):
    job = _job(settings)
    result = job.execute_in_process(
        partition_key=partition_key_of(job, org_id),
        instance=instance,
        run_config=sweep_run_config(True),
        asset_selection=[dg.AssetKey(name) for name in assets] if assets else None,
    )
    assert result.success
    return result


def _synced_pairs(settings, org_id: str) -> list[tuple[str, str]]:
    return sorted(
        (r["crm_document_id"], r["metakocka_id"])
        for r in status_rows(settings.database_url, org_id)
        if r["status"] == "synced" and r["crm_document_id"] and r["metakocka_id"]
    )


@pytest.mark.parametrize("status_slice", [status_sweep.SLICE, 3])
def test_a_full_sweep_plans_on_summaries_and_writes_what_it_read(
    monkeypatch, sandbox, pipeline_env, dagster_instance, status_slice
):
    """A CRM edit replaces its summarised Metakocka counterpart, read just before the replace
    (what only Metakocka holds is kept); a new Metakocka status reaches the summarised CRM
    document's owner; a CRM-owned field edited in Metakocka is a conflict whose error row lists
    the difference, read from both systems. The status rows come out the same whether the
    sweep compares them in one slice or in many (`status_sweep.SLICE`)."""
    monkeypatch.setattr(status_sweep, "SLICE", status_slice)
    org = sandbox.organizations[0]
    company = org.metakocka_company_id
    _full_sweep(pipeline_env, dagster_instance, org.id)
    pairs = _synced_pairs(pipeline_env, org.id)
    (edited, edited_mk), (status_crm, status_mk), (owned_crm, owned_mk) = pairs[:3]
    sandbox.crm_state.edit_document(edited, {"notes": "edited in the CRM"})
    only_in_metakocka = {"warehouse": "Skladišče Celje", "delivery_type": "Pošta"}
    sandbox.metakocka_state.edit_document(company, edited_mk, only_in_metakocka)
    cancelled = sandbox.crm_state.document(status_crm)["status"] == "cancelled"
    label, new_status = ("Poslano", "sent") if cancelled else ("Preklicano", "cancelled")
    sandbox.metakocka_state.edit_document(company, status_mk, {"status_code": label})
    sandbox.metakocka_state.edit_document(company, owned_mk, {"notes": "edited in Metakocka"})
    before = {d["mk_id"]: d for d in sandbox.metakocka_state.documents(company)}

    result = _full_sweep(pipeline_env, dagster_instance, org.id)

    plan = result.output_for_node("sync_plan").set_index("crm_document_id")
    unchanged = plan.loc[plan["action"] == "unchanged"]
    assert len(unchanged) > 10
    for side in ("crm_document", "metakocka_document"):
        assert unchanged[side].map(lambda d: isinstance(d, DocumentSummary)).all()
    assert plan.loc[edited, "action"] == "update_in_metakocka"
    assert isinstance(plan.loc[edited, "crm_document"], SalesDocument)  # changed: held whole
    assert isinstance(plan.loc[edited, "metakocka_document"], DocumentSummary)
    assert plan.loc[status_crm, "action"] == "update_in_crm"
    assert isinstance(plan.loc[status_crm, "crm_document"], DocumentSummary)
    # Held whole: the edited document, and those no run could sync yet (conflicts).
    extracted = result.output_for_node("extract_sales_documents", "crm_sales_documents")
    whole = plan["crm_document"].map(lambda d: isinstance(d, SalesDocument))
    assert extracted.lean.held == whole.sum() < len(unchanged) / 5

    after = {d["mk_id"]: d for d in sandbox.metakocka_state.documents(company)}
    assert after[edited_mk]["notes"] == "edited in the CRM"
    assert {key: after[edited_mk].get(key) for key in only_in_metakocka} == only_in_metakocka
    for only_metakocka in ("status_code", "title"):
        assert after[edited_mk].get(only_metakocka) == before[edited_mk].get(only_metakocka)
    assert sandbox.crm_state.document(status_crm)["status"] == new_status
    (conflict,) = [
        e
        for e in error_rows(pipeline_env.database_url, org.id)
        if e["error_type"] == "conflict" and e["crm_document_id"] == owned_crm
    ]
    details = json.loads(conflict["details"])  # as the table holds it (SQLite: JSON text)
    differences = {d["field"]: d for d in details["differences"]}
    assert differences["notes"]["metakocka"] == "edited in Metakocka"
    status = {r["crm_document_id"]: r for r in status_rows(pipeline_env.database_url, org.id)}
    assert status[edited]["status"] == status[status_crm]["status"] == "synced"
    untouched = pairs[3:]
    assert [status[crm]["metakocka_id"] for crm, _ in untouched] == [mk for _, mk in untouched]
    assert {status[crm]["status"] for crm, _ in untouched} == {"synced"}
    assert metakocka_duplicates(sandbox, company) == {}


def test_past_its_budget_a_full_sweep_reads_documents_again_before_writing_them(
    monkeypatch, sandbox, pipeline_env, dagster_instance
):
    """An organization's first run, where no document has a link yet, keeps none whole here: every
    create and update reads its documents again first. The outcome is that of a run that held
    them all (the invariants of a full reconciliation, and a second run with nothing to do)."""
    monkeypatch.setattr(lean, "HELD_WHOLE", 0)
    reconciliation.test_full_reconciliation_invariants(sandbox, pipeline_env, dagster_instance)


def test_a_document_changed_after_the_sweep_read_it_is_not_written(
    monkeypatch, sandbox, pipeline_env, dagster_instance
):
    """Between the sweep's read and the push, a summarised CRM document is edited again, or the
    Metakocka document a CRM edit would replace is edited: neither is written (pending, planned
    again by the next run); an untouched one is."""
    monkeypatch.setattr(lean, "HELD_WHOLE", 0)  # the CRM edits are summarised too
    org = sandbox.organizations[0]
    company = org.metakocka_company_id
    _full_sweep(pipeline_env, dagster_instance, org.id)
    pairs = _synced_pairs(pipeline_env, org.id)[:3]
    for crm_id, _ in pairs:
        sandbox.crm_state.edit_document(crm_id, {"notes": "edited in the CRM"})
    planned = _full_sweep(pipeline_env, dagster_instance, org.id, ASSETS_UP_TO_THE_PLAN)
    plan = planned.output_for_node("sync_plan")
    rows = plan.loc[plan["crm_document_id"].isin([crm_id for crm_id, _ in pairs])]
    assert set(rows["action"]) == {"update_in_metakocka"}
    assert rows["crm_document"].map(lambda d: isinstance(d, DocumentSummary)).all()

    (again, _), (_, changed_mk), (untouched, untouched_mk) = pairs
    sandbox.crm_state.edit_document(again, {"notes": "edited in the CRM again"})
    sandbox.metakocka_state.edit_document(company, changed_mk, {"notes": "edited in Metakocka"})
    outcomes = push_to_metakocka(
        rows,
        client=MetakockaClient(sandbox.metakocka_url, company, org.metakocka_secret_key),
        crm=sandbox_crm_client(sandbox),
        store=SyncStore(pipeline_env.database_url),
        organization_id=org.id,
    )
    by_crm = {o.crm_document_id: o for o in outcomes}
    assert by_crm[again].result == "skipped"
    assert "the CRM document changed after this run read it" in by_crm[again].message
    assert by_crm[pairs[1][0]].result == "skipped"
    assert "changed after this run read" in by_crm[pairs[1][0]].message
    assert by_crm[untouched].result == "ok"
    after = {d["mk_id"]: d for d in sandbox.metakocka_state.documents(company)}
    assert after[untouched_mk]["notes"] == "edited in the CRM"
    assert after[changed_mk]["notes"] == "edited in Metakocka"


def _document(key: str, name: str = "Kupec d.o.o.", quantity: str = "2") -> SalesDocument:
    line = DocumentLine("Widget", Decimal(quantity), Decimal("10"), Decimal("22"), product_code="W")
    return SalesDocument(
        organization_id="org",
        document_type="invoice",
        document_date=date(2026, 1, 2),
        customer=Customer(name, country="SI"),
        lines=(line,),
        crm_document_id=key,
        document_number=f"N-{key}",
    )


@pytest.mark.parametrize("held_whole", [0, 1, 10])
def test_a_side_reduced_as_it_is_read_is_validated_as_a_whole_extraction(held_whole):
    """Batch by batch, with documents held whole or summarised, the verdicts are those of
    `validate_extraction`; a document read twice counts once, as last read."""
    synced_bad = _document("a", name="")  # as last synced: not checked again
    docs = [
        synced_bad,
        _document("b"),
        _document("c", name=""),  # invalid
        _document("d"),
        _document("e", quantity="-1"),  # invalid
        _document("f", name=""),  # read twice: first invalid, then fixed
        _document("g"),
        _document("f"),
    ]
    unreadable = Quarantined(CRM, "h", None, "order", "N-h", ("cannot read CRM document: x",))
    synced = {"a": content_hash(synced_bad), "d": content_hash(_document("d"))}
    side = lean.LeanSide(
        CRM, DEFAULT_PRECISION, synced, held_whole=held_whole, batch=2, last_read_wins=True
    )
    for doc in docs:
        side.add(doc, doc.crm_document_id)
    side.add_unmappable(unreadable, "h")
    reduced = side.finish()

    whole = validate_extraction(
        Extraction(CRM, "org", documents=[*docs[:5], *docs[6:]], unmappable=[unreadable]),
        synced_hashes=synced,
    )
    assert sorted(reduced.valid["crm_document_id"]) == sorted(whole.valid["crm_document_id"])
    hashes = [
        dict(zip(v["crm_document_id"], v["content_hash"], strict=True))
        for v in (reduced.valid, whole.valid)
    ]
    assert hashes[0] == hashes[1]
    key = lambda q: q.crm_document_id  # noqa: E731
    assert sorted(reduced.quarantined, key=key) == sorted(whole.quarantined, key=key)
    kept = dict(zip(reduced.valid["crm_document_id"], reduced.valid["document"], strict=True))
    held = {k for k, doc in kept.items() if isinstance(doc, SalesDocument)}
    assert len(held) == min(held_whole, 3) and held <= {"b", "f", "g"}
    summary = kept["d"]  # as last synced: a summary whatever the budget
    assert isinstance(summary, DocumentSummary)
    assert (summary.content_hash, summary.document_number) == (synced["d"], "N-d")
    assert side.documents_read == len(docs) and side.unmappable == 1


def test_the_plans_link_read_gets_the_texts_both_sides_hold():
    """`planning.held_texts`: for a copy of any id or hash a document holds, each link column's
    table gives back the document's own object (one table for all three columns)."""

    def copy(text: str) -> str:
        return "".join(list(text))

    crm = ValidatedSide(
        CRM, pd.DataFrame({"crm_document_id": [copy("crm-1")], "content_hash": [copy("h1")]}), []
    )
    mk = ValidatedSide(
        METAKOCKA,
        pd.DataFrame(
            {
                "metakocka_id": [copy("1001")],
                "crm_document_id": [copy("crm-2")],
                "content_hash": [copy("h2")],
            }
        ),
        [],
    )
    held = held_texts(crm, mk)
    for column, frame in (
        ("crm_document_id", crm.valid),
        ("crm_document_id", mk.valid),
        ("metakocka_id", mk.valid),
        ("content_hash", crm.valid),
        ("content_hash", mk.valid),
    ):
        own = frame[column][0]
        assert held[column][copy(own)] is own
    assert copy("h3") not in held["content_hash"]


def test_a_summary_holds_the_links_own_id_objects():
    """A pair's ids are read on both sides and held by the links too: a summary keeps the
    link's object for an equal id (one object for all three), and its own for any other."""

    def copy(text: str) -> str:
        return "".join(list(text))  # equal, but an object of its own

    links = pd.DataFrame(
        {"crm_document_id": [copy("d"), None], "metakocka_id": [copy("1001"), copy("1002")]}
    )
    read = [
        dataclasses.replace(_document(copy("d")), metakocka_id=copy("1001")),
        dataclasses.replace(_document(copy("x")), metakocka_id=copy("1003")),
    ]
    synced = {"d": content_hash(read[0]), "x": content_hash(read[1])}
    side = lean.LeanSide(CRM, DEFAULT_PRECISION, synced, link_ids=lean.link_texts(links))
    for doc in read:
        side.add(doc, doc.crm_document_id)
    kept = list(side.finish().valid["document"])
    assert all(isinstance(doc, DocumentSummary) for doc in kept)
    assert kept[0].crm_document_id is links["crm_document_id"][0]
    assert kept[0].metakocka_id is links["metakocka_id"][0]
    assert (kept[1].crm_document_id, kept[1].metakocka_id) == ("x", "1003")
    assert kept[1].crm_document_id is read[1].crm_document_id
