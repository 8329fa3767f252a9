"""The real Fresh AI CRM (issue 15), on both of its published schemas, over real HTTP.

Every failure the issue names, as a user of the pipeline would meet it against the CRM's
published schema (sm60: sql-migrations/60 + 61; fixed10: sql-migrations/fixed/10 + 11) and
PostgREST as Supabase runs it (`max-rows`, no trigger on `updated_at`): writes that name only
columns the CRM has, documents created from Metakocka owned by the integration user, `cancelled`
spelled as the CHECK wants, credit notes with no CRM type reported once and never retried,
Metakocka's 4-decimal prices compared at the CRM's 2 decimals, an edit the CRM does not
timestamp found anyway, every document and every line read under `max-rows` of 100 and of 1000
(a 1,005-line document read and pushed whole), a failed line replacement that leaves the old
lines, a sweep that an edit made meanwhile cannot make skip a document, URLs under 8 KB, the
CRM's tenancy (documents without an organization, owners of two organizations, the other
organization untouched), a schema that fits no profile refused with the missing columns named,
and a line without a Metakocka product code quarantined before any call.
"""

import copy
from dataclasses import replace
from decimal import Decimal

import pytest
import requests
from click.testing import CliRunner

from sync_pipeline.adapters.errors import SyncError
from sync_pipeline.cli import main
from sync_pipeline.crm import profiles as crm_profiles
from sync_pipeline.crm.documents import CrmDocumentWrite
from sync_pipeline.demo import sandbox_crm_client
from sync_pipeline.domain.document import crm_id_for_metakocka_document
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.sandbox.runner import start_sandbox
from sync_pipeline.sandbox.seed import organization_factory
from sync_pipeline.settings import Settings
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.sync.extract import CRM
from sync_pipeline.sync.targeted import sync_documents

from .edits import pushes, run, with_organization
from .faultlab import audit, invalid_crm_ids
from .helpers import (
    CrmHttp,
    MetakockaHttp,
    ProfileLab,
    error_rows,
    new_metakocka_document,
    profile_sandbox,
    status_rows,
)
from .on_demand_helpers import new_crm_order

PROFILES = ("sm60", "fixed10")
LINE_KEY = {"sm60": "document_id", "fixed10": "sales_document_id"}


class Lab(ProfileLab):
    @property
    def crm(self):
        return self.sandbox.crm_state

    def run(self, settings: Settings | None = None, **kwargs):
        return run(settings or self.settings, self.instance, self.org.id, **kwargs)

    def statuses(self) -> dict[str, dict]:
        """sync_status rows by CRM id (those that have one), and by ``mk:<Metakocka id>``."""
        rows = status_rows(self.database_url, self.org.id)
        by_mk = {f"mk:{r['metakocka_id']}": r for r in rows if r["metakocka_id"]}
        return by_mk | {r["crm_document_id"]: r for r in rows if r["crm_document_id"]}

    def open_errors(self) -> list[dict]:
        return [r for r in error_rows(self.database_url, self.org.id) if r["resolved_at"] is None]


@pytest.fixture(params=PROFILES)
def lab(request, tmp_path):
    with profile_sandbox(tmp_path, request.param, documents=20) as (
        sandbox,
        settings,
        database_url,
        instance,
    ):
        yield Lab(sandbox, settings, database_url, instance, request.param)


def crm_stats(sandbox) -> dict:
    return requests.get(f"{sandbox.crm_url}/_sandbox/stats", timeout=10).json()


def writes(sandbox) -> dict[str, int]:
    crm = crm_stats(sandbox)
    mk = requests.get(f"{sandbox.metakocka_url}/_sandbox/stats", timeout=10).json()
    return {"crm": crm["writes"], "metakocka": mk["writes_total"]}


def reset_stats(sandbox) -> None:
    for url in (sandbox.crm_url, sandbox.metakocka_url):
        requests.post(f"{url}/_sandbox/stats/reset", timeout=10).raise_for_status()


def new_metakocka_order(lab: Lab, price: str, status_code: str) -> str:
    """An order entered in Metakocka by its own users, its status set there; its mk_id."""
    mk = MetakockaHttp(lab.sandbox, lab.org)
    mk_id = new_metakocka_document(mk, f"P{price}", price=price)
    mk.call(
        "update_document", {"doc_type": "sales_order", "mk_id": mk_id, "status_code": status_code}
    )
    return mk_id


def synced_crm_document(lab: Lab, also) -> str:
    """A CRM document the last run left `synced` with its Metakocka twin, for which
    `also(crm_id, status row)` holds."""
    return next(
        crm_id
        for crm_id, row in lab.statuses().items()
        if row["status"] == "synced"
        and row["metakocka_id"]
        and not crm_id.startswith("mk:")
        and also(crm_id, row)
    )


# -- writes on the published schema --------------------------------------------------------------


def test_a_reconciliation_writes_what_the_schema_has_and_then_has_nothing_to_do(lab):
    org, other = lab.org, lab.sandbox.organizations[1]
    other_before = copy.deepcopy(lab.crm.documents(other.id))

    lab.run()

    report = audit(lab.sandbox, org, lab.database_url, invalid_crm_ids(lab.sandbox, org))
    assert report.duplicates == 0 and report.lost == []
    assert report.converged, (report.unpaired[:5], report.not_synced[:5])
    assert {r["error_type"] for r in lab.open_errors()} <= {"validation"}, lab.open_errors()
    mk_docs = lab.sandbox.metakocka_state.documents(org.metakocka_company_id)
    # Documents born in Metakocka: owned by the organization's integration user, with its id,
    # their lines under the profile's foreign key.
    born = [
        crm_id_for_metakocka_document(org.id, str(d["mk_id"]))
        for d in mk_docs
        if not d.get("buyer_order") and d["doc_type"] != "sales_bill_credit_note"
    ]
    assert born
    for crm_id in born:
        row = lab.crm.document(crm_id)
        assert row["user_id"] == org.integration_user_id
        assert row["organization_id"] == org.id
        lines = lab.crm.items_of(crm_id)
        assert lines and all(line[LINE_KEY[lab.profile]] == crm_id for line in lines)
    # Credit notes: reported as having no CRM type, with no open error to retry.
    credit_notes = {str(d["mk_id"]) for d in mk_docs if d["doc_type"] == "sales_bill_credit_note"}
    statuses = lab.statuses()
    assert credit_notes
    assert {statuses[f"mk:{mk_id}"]["status"] for mk_id in credit_notes} == {"no_crm_type"}
    assert not [e for e in lab.open_errors() if e["metakocka_id"] in credit_notes]
    # The other organization's documents: not one byte changed.
    assert lab.crm.documents(other.id) == other_before

    # Nothing changed: an incremental run and a full sweep write nothing (no flip between runs).
    reset_stats(lab.sandbox)
    assert pushes(lab.run()) == []
    assert pushes(lab.run(full_sweep=True)) == []
    assert writes(lab.sandbox) == {"crm": 0, "metakocka": 0}
    assert {statuses[f"mk:{mk_id}"]["status"] for mk_id in credit_notes} == {"no_crm_type"}


def test_a_four_decimal_price_and_a_cancelled_order_from_metakocka_stay_synced(lab):
    mk_id = new_metakocka_order(lab, "10.1234", status_code="Preklicano")
    crm_id = crm_id_for_metakocka_document(lab.org.id, mk_id)

    lab.run()

    row = lab.crm.document(crm_id)
    assert row["status"] == "cancelled"  # the CHECK's spelling
    assert [Decimal(str(line["unit_price"])) for line in lab.crm.items_of(crm_id)] == [
        Decimal("10.12")
    ]  # the CRM keeps 2 decimals
    assert lab.statuses()[crm_id]["status"] == "synced"
    reset_stats(lab.sandbox)
    for full_sweep in (False, True):
        assert pushes(lab.run(full_sweep=full_sweep)) == []
        assert lab.statuses()[crm_id]["status"] == "synced"
    assert writes(lab.sandbox) == {"crm": 0, "metakocka": 0}


def test_an_edit_the_crm_does_not_timestamp_is_found_by_the_next_run(lab):
    """No trigger keeps `updated_at` (the published schema has none): a route that forgets to set
    it must not hide the edit from an incremental run."""
    lab.run()
    crm_id = synced_crm_document(
        lab,
        lambda crm_id, row: (
            crm_id != crm_id_for_metakocka_document(lab.org.id, row["metakocka_id"])
        ),
    )
    mk_id = lab.statuses()[crm_id]["metakocka_id"]
    lab.crm.edit_document(crm_id, {"notes": "changed without a timestamp"}, sets_updated_at=False)

    result = lab.run()

    assert [(o.action, o.crm_document_id) for o in pushes(result)] == [
        ("update_in_metakocka", crm_id)
    ]
    mk_doc = next(
        d
        for d in lab.sandbox.metakocka_state.documents(lab.org.metakocka_company_id)
        if str(d["mk_id"]) == mk_id
    )
    assert mk_doc["notes"] == "changed without a timestamp"
    metadata = {
        k: v.value
        for m in result.asset_materializations_for_node("extract_sales_documents")
        for k, v in m.metadata.items()
    }
    assert metadata["crm_schema"] == lab.profile
    assert "content" in metadata["crm_change_detection"]


def test_an_incremental_run_holds_no_unchanged_crm_document_and_misses_no_counterpart(lab):
    """No trigger: every incremental run reads every CRM document. Those read exactly as their
    pair was synced are left out as read (not held until the plan); one whose Metakocka side then
    turns out changed is read again by id, and the change still reaches the CRM."""
    lab.run()
    crm_id = synced_crm_document(
        lab, lambda crm_id, _: lab.crm.document(crm_id)["status"] != "cancelled"
    )
    mk_id = lab.statuses()[crm_id]["metakocka_id"]
    in_sync = sum(
        1
        for key, row in lab.statuses().items()
        if not key.startswith("mk:") and row["status"] == "synced" and row["metakocka_id"]
    )
    lab.sandbox.metakocka_state.edit_document(
        lab.org.metakocka_company_id, mk_id, {"status_code": "Preklicano"}
    )

    result = lab.run()

    crm_side = result.output_for_node("extract_sales_documents", "crm_sales_documents")
    assert not crm_side.scope.window.full and crm_side.scope.window.crm_since is None
    # Every pair in sync was left out as read, the one edited in Metakocka included; that one
    # was read again by id as a changed document's counterpart (so were the pairs the first run
    # wrote to Metakocka within the cursor's overlap: their Metakocka side reads as changed).
    assert crm_side.scope.echoes == in_sync
    held = {doc.crm_document_id for doc in crm_side.documents}
    assert crm_id in held and crm_side.scope.counterparts_read[CRM] >= 1
    assert len(held) < in_sync
    assert [(o.action, o.crm_document_id) for o in pushes(result)] == [("update_in_crm", crm_id)]
    assert lab.crm.document(crm_id)["status"] == "cancelled"
    assert lab.statuses()[crm_id]["status"] == "synced"
    assert pushes(lab.run()) == []


# -- reads and writes under PostgREST as Supabase runs it ---------------------------------------


@pytest.mark.parametrize("max_rows", [100, 1000])
@pytest.mark.parametrize("profile", PROFILES)
def test_every_document_and_line_is_read_under_max_rows(tmp_path, profile, max_rows):
    """2,500 CRM documents and one of 1,005 lines: every one read whole by pages under max-rows, a
    sweep that an edit made meanwhile cannot make skip a document, no offsets, URLs under 8 KB;
    the long document pushed to Metakocka with every line, and written back to the CRM whole."""
    with start_sandbox(
        tmp_path / "sandbox",
        documents_per_org=3_350,
        organizations=1,
        reset=True,
        crm_profile=profile,
        crm_max_rows=max_rows,
    ) as sandbox:
        org = sandbox.organizations[0]
        crm = sandbox.crm_state
        long_id = _long_document(sandbox, org, lines=1_005)
        expected = {d["id"]: len(crm.items_of(d["id"])) for d in crm.documents(org.id)}
        assert len(expected) >= 2_500 and expected[long_id] == 1_005
        client = sandbox_crm_client(sandbox, max_concurrent_requests=1)
        reset_stats(sandbox)

        # A user edits a document of the first page while the sweep is under way (between its
        # first and second page): with offset paging every later document would move up one
        # place, and the one at the page boundary would never be read.
        first = min(crm.documents(org.id), key=lambda d: (d["updated_at"], d["id"]))["id"]
        read: dict[str, int] = {}
        for n, row in enumerate(client.list_documents(org.id)):
            if n == 0:
                crm.edit_document(first, {"notes": "edited during the sweep"})
            read[row["id"]] = len(row["sales_document_items"])

        assert read == expected  # every document, every line
        stats = crm_stats(sandbox)
        assert stats["reads_with_offset"] == {}
        assert stats["longest_request_line"] < 8192

        # The 1,005-line document goes to Metakocka whole.
        mk = MetakockaClient(
            sandbox.metakocka_url, org.metakocka_company_id, org.metakocka_secret_key
        )
        store = SyncStore(f"sqlite:///{tmp_path / 'sync.db'}")
        store.create_schema()
        try:
            outcomes = sync_documents(
                org.id, "crm_to_metakocka", crm_ids=[long_id], crm=client, metakocka=mk, store=store
            ).outcomes
        finally:
            store.dispose()
        assert [o.result for o in outcomes] == ["ok"], outcomes
        (mk_doc,) = [
            d
            for d in sandbox.metakocka_state.documents(org.metakocka_company_id)
            if d.get("title") == long_id
        ]
        assert len(mk_doc["product_list"]) == 1_005

        # And the CRM takes 1,005 lines back in one write (max-rows caps what a write returns).
        lines = crm.items_of(long_id)
        keep = ("id", "description", "quantity", "unit_price", "tax_rate")
        rewritten = [
            {**{k: line[k] for k in keep}, LINE_KEY[profile]: long_id, "description": f"v2 {i}"}
            for i, line in enumerate(lines)
        ]
        client.write_documents(
            org.id,
            [CrmDocumentWrite(long_id, {"notes": "v2"}, rewritten, owner=_owner(crm, long_id))],
        )
        assert sorted(line["description"] for line in crm.items_of(long_id)) == sorted(
            line["description"] for line in rewritten
        )


def _long_document(sandbox, org, lines: int) -> str:
    factory = organization_factory(org, sandbox.seed_summary["seed"])
    factory.rng.seed("long document")
    doc = factory.document("order")
    line = doc.lines[0]
    doc = replace(doc, lines=[line] * lines)
    factory.put_in_crm(sandbox.crm_state, doc)
    return doc.id


def _owner(crm, document_id: str) -> dict:
    row = crm.document(document_id)
    return {"organization_id": row["organization_id"], "user_id": row["user_id"]}


def test_a_failed_line_replacement_leaves_the_old_lines(lab):
    """The CRM's own editor deletes a document's lines, then inserts the new ones: one bad line
    leaves it with none. The pipeline upserts the new lines first and deletes the rest by id."""
    org = lab.org
    crm_id = next(d["id"] for d in lab.crm.documents(org.id) if len(lab.crm.items_of(d["id"])) > 1)
    before = copy.deepcopy(lab.crm.items_of(crm_id))
    client = sandbox_crm_client(lab.sandbox)
    parent = LINE_KEY[lab.profile]
    new_lines = [
        {"id": line["id"], parent: crm_id, "description": f"new {i}", "quantity": 1,
         "unit_price": 5, "tax_rate": 22}
        for i, line in enumerate(before[:1])
    ] + [
        {"id": "00000000-0000-4000-8000-00000000000b", parent: crm_id, "description": "bad",
         "quantity": "many", "unit_price": 5, "tax_rate": 22}
    ]  # fmt: skip
    write = CrmDocumentWrite(
        crm_id, {"notes": "lines replaced"}, new_lines, owner=_owner(lab.crm, crm_id)
    )

    with pytest.raises(SyncError) as refused:
        client.write_documents(org.id, [write])

    assert "invalid input syntax" in str(refused.value)  # PostgreSQL's words, through PostgREST
    assert _by_id(lab.crm.items_of(crm_id)) == _by_id(before)  # every old line, unchanged

    write.lines = new_lines[:1]
    client.write_documents(org.id, [write])
    assert [line["description"] for line in lab.crm.items_of(crm_id)] == ["new 0"]


def _by_id(lines: list[dict]) -> dict[str, dict]:
    return {line["id"]: line for line in lines}


# -- tenancy ---------------------------------------------------------------------------------


def test_documents_are_the_organization_s_as_the_crm_shows_them(lab):
    """By organization_id, or by the owner's membership where it is NULL; an owner who is a
    member of both organizations makes a NULL-organization document ambiguous: synced to
    neither, quarantined with the reason. The other organization's rows are never written."""
    org, other = lab.org, lab.sandbox.organizations[1]
    without_org = [d for d in lab.crm.documents(org.id) if d["organization_id"] is None]
    assert without_org  # the seed gives some documents no organization_id, as the CRM does
    shared = without_org[0]["user_id"]
    lab.crm.insert(
        "organization_members", [{"organization_id": other.id, "user_id": shared, "role": "member"}]
    )
    ambiguous = {d["id"] for d in without_org if d["user_id"] == shared}
    row, items = new_crm_order(org, "SO-MEMBER", lab.profile)
    member_doc = CrmHttp(lab.sandbox).insert_document({**row, "organization_id": None}, items)
    other_before = copy.deepcopy(lab.crm.documents(other.id))

    lab.run()

    statuses = lab.statuses()
    for crm_id in ambiguous:
        assert statuses[crm_id]["status"] == "invalid"
        assert "belongs to several organizations" in statuses[crm_id]["last_error"]
    assert statuses[member_doc["id"]]["status"] == "synced"
    in_metakocka = {
        d.get("title") for d in lab.sandbox.metakocka_state.documents(org.metakocka_company_id)
    }
    assert member_doc["id"] in in_metakocka
    assert not ambiguous & in_metakocka  # nothing guessed
    assert lab.crm.documents(other.id) == other_before


# -- refusing and quarantining -----------------------------------------------------------------


def test_a_crm_whose_tables_fit_no_profile_is_refused_with_every_missing_column(lab, monkeypatch):
    """A schema the pipeline does not know (here: each profile wants a column the CRM lacks) is
    one error row naming what is missing; nothing is read further and nothing written."""
    broken = tuple(
        replace(p, customer={**p.customer, "tax_id": "customer_tax_id"})
        for p in crm_profiles.PROFILES
    )
    monkeypatch.setattr(crm_profiles, "PROFILES", broken)
    reset_stats(lab.sandbox)

    lab.run()  # a run that ends early, with its error: not a crashed run

    assert writes(lab.sandbox) == {"crm": 0, "metakocka": 0}
    (error,) = lab.open_errors()
    assert error["error_type"] == "rejected"
    assert "sales_documents.customer_tax_id" in error["message"]
    assert "sm60" in error["message"] and "fixed10" in error["message"]
    assert lab.statuses() == {}


def test_a_line_without_a_metakocka_product_code_is_quarantined_before_any_call(lab):
    """No product mapping, no SKU, and no service product code configured: the line cannot go
    to Metakocka, so the document is quarantined with the reason, and Metakocka never asked."""
    settings = with_organization(lab.settings, lab.org.id, service_product_code=None)
    created = CrmHttp(lab.sandbox).insert_document(
        *new_crm_order(lab.org, "SO-NO-CODE", lab.profile)
    )
    reset_stats(lab.sandbox)

    result = lab.run(settings)

    row = lab.statuses()[created["id"]]
    assert row["status"] == "invalid"
    assert "no Metakocka product code" in row["last_error"]
    assert "service_product_code" in row["last_error"]
    assert created["id"] not in {o.crm_document_id for o in pushes(result)}
    mk_titles = {
        d.get("title") for d in lab.sandbox.metakocka_state.documents(lab.org.metakocka_company_id)
    }
    assert created["id"] not in mk_titles


@pytest.mark.parametrize("profile", PROFILES)
def test_the_demo_runs_on_either_schema_under_max_rows_100_and_then_has_nothing_to_do(
    tmp_path, profile
):
    args = ["demo", "--data-dir", str(tmp_path), "--documents", "20", "--crm-max-rows", "100"]
    args += ["--crm-profile", profile]
    first = CliRunner().invoke(main, [*args, "--reset"])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "nothing needed pushing" in again.output
