"""The preflight (issue 21): before the first run, what it will do and what will stop it, read-only.

Each test sets the sandboxes up with misconfigurations (over their HTTP and admin APIs, the way
a CRM or a Metakocka company would be), resets their counters, runs the preflight the way an
operator does (`sync-pipeline preflight`, or the Dagster job `preflight`) and checks the finding,
the exit code, and that neither sandbox saw a single write attempt. One test then runs the
first nightly reconciliation after the preflight and holds it to what the preflight said.
"""

import json
from dataclasses import replace

import dagster as dg
import pytest
import requests
from click.testing import CliRunner

from sync_pipeline.cli import main
from sync_pipeline.crm.documents import CrmDocumentWrite
from sync_pipeline.crm.profiles import DOCS
from sync_pipeline.definitions import build_definitions
from sync_pipeline.demo import patched_environ, sandbox_environment
from sync_pipeline.domain.document import crm_id_to_external_ref
from sync_pipeline.jobs import partition_key_of
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.ops.preflight import JOB_NAME, OP_NAME
from sync_pipeline.preflight.read_only import (
    CRM_READS,
    METAKOCKA_READS,
    WriteRefused,
    read_only_session,
)
from sync_pipeline.preflight.run import READ_ONLY_NOTICE
from sync_pipeline.resources import CrmResource
from sync_pipeline.sandbox.runner import start_sandbox
from sync_pipeline.settings import Settings

from .edits import report_metadata, run
from .helpers import CrmHttp, MetakockaHttp
from .on_demand_helpers import new_crm_order


# -- helpers ---------------------------------------------------------------------------------------
def reset_counters(sandbox) -> None:
    for url in (sandbox.crm_url, sandbox.metakocka_url):
        requests.post(f"{url}/_sandbox/stats/reset", timeout=10).raise_for_status()


def counters(sandbox) -> dict:
    crm = requests.get(f"{sandbox.crm_url}/_sandbox/stats", timeout=10).json()
    mk = requests.get(f"{sandbox.metakocka_url}/_sandbox/stats", timeout=10).json()
    return {"crm": crm, "metakocka": mk}


def write_attempts(sandbox) -> dict[str, int]:
    """Write requests each sandbox received, refused ones included."""
    seen = counters(sandbox)
    return {"crm": seen["crm"]["writes"], "metakocka": seen["metakocka"]["write_calls_total"]}


def environment(sandbox, tmp_path, **organization_changes) -> dict[str, str]:
    """The pipeline's environment for `sandbox`, the first organization's settings changed."""
    env = sandbox_environment(sandbox, f"sqlite:///{tmp_path / 'sync.db'}", tmp_path)
    orgs = json.loads(env["SYNC_ORGANIZATIONS"])
    orgs[0].update(organization_changes)
    env["SYNC_ORGANIZATIONS"] = json.dumps(orgs)
    return env


def preflight(env: dict, tmp_path, *args: str):
    """`sync-pipeline preflight --json FILE ARGS`: (exit code, output, the JSON by organization
    id)."""
    out = tmp_path / "preflight.json"
    with patched_environ(env):
        result = CliRunner().invoke(main, ["preflight", "--json", str(out), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    document = json.loads(out.read_text()) if out.exists() else None
    by_org = {o["organization_id"]: o for o in document["organizations"]} if document else {}
    return result.exit_code, result.output, by_org


def finding(report: dict, check: str, area: str | None = None) -> dict:
    (found,) = [f for f in report["findings"] if f["check"] == check and area in (None, f["area"])]
    return found


def secrets_of(sandbox) -> list[str]:
    return [s for o in sandbox.organizations for s in (o.crm_api_key, o.metakocka_secret_key)]


# -- warnings: the first run can start -------------------------------------------------------------
@pytest.fixture
def warned(tmp_path):
    """A CRM with max-rows 100 and no docs/crm-setup.sql; in Acme's Metakocka a status no map
    knows, a copy of a CRM document made by an earlier integration and two documents with one
    buyer order; Borovnica without a service product code."""
    with start_sandbox(
        tmp_path / "sandbox", documents_per_org=120, reset=True, crm_max_rows=100
    ) as sandbox:
        acme = sandbox.organizations[0]
        mk = MetakockaHttp(sandbox, acme)
        sandbox.metakocka_state.set_status_register(
            acme.metakocka_company_id,
            {"Novo naročilo": "new_order", "Čaka na plačilo": "awaiting_payment"},
        )
        entered(mk, "WAIT", status="Čaka na plačilo")
        copied = CrmHttp(sandbox).insert_document(*new_crm_order(acme, "SO-COPIED"))["id"]
        entered(mk, "COPY", buyer_order=crm_id_to_external_ref(copied))
        entered(mk, "WEB-A", buyer_order="WEB-1001")
        entered(mk, "WEB-B", buyer_order="WEB-1001")
        env = sandbox_environment(sandbox, f"sqlite:///{tmp_path / 'sync.db'}", tmp_path)
        orgs = json.loads(env["SYNC_ORGANIZATIONS"])
        orgs[1]["service_product_code"] = None
        env["SYNC_ORGANIZATIONS"] = json.dumps(orgs)
        reset_counters(sandbox)
        yield sandbox, env


def entered(mk: MetakockaHttp, label: str, *, status: str | None = None, **fields) -> str:
    """A sales order Metakocka's users entered (a status from the register, by label); mk_id."""
    answer = mk.call(
        "put_document",
        {
            "doc_type": "sales_order",
            "doc_date": "2026-06-02+02:00",
            "count_code": f"MK-{label}",
            "partner": {"customer": f"Partner {label} s.p.", "country": "SI"},
            "product_list": [
                {"code": "MK-1", "name": "Gadget", "unit": "kos", "amount": "1", "price": "10",
                 "tax": "220"}
            ],
            **fields,
        },
    )  # fmt: skip
    if status:
        mk.call(
            "update_document",
            {"doc_type": "sales_order", "mk_id": answer["mk_id"], "status_code": status},
        )
    return str(answer["mk_id"])


def test_warnings_name_each_misconfiguration_and_nothing_is_written(warned, tmp_path):
    sandbox, env = warned
    acme, borovnica = sandbox.organizations

    code, output, reports = preflight(env, tmp_path)

    assert output.splitlines()[0] == READ_ONLY_NOTICE
    assert code == 0, output  # warnings only: the first run can start
    assert write_attempts(sandbox) == {"crm": 0, "metakocka": 0}
    assert not any(secret in output for secret in secrets_of(sandbox))
    report = reports[acme.id]
    assert report["status"] == "warn" and report["blockers"] == 0

    trigger = finding(report, "updated_at trigger")
    assert trigger["status"] == "warn" and "docs/crm-setup.sql" in trigger["fix"]
    max_rows = finding(report, "max-rows")
    assert (max_rows["status"], max_rows["data"]["max_rows"]) == ("warn", 100)
    documents = finding(report, "documents")["data"]
    crm_documents = sandbox.crm_state.documents(acme.id)
    assert documents["by_organization_id"] + documents["by_member_user_id"] == len(crm_documents)
    assert documents["by_organization_id"] == sum(
        d["organization_id"] == acme.id for d in crm_documents
    )
    assert finding(report, "integration user")["status"] == "ok"

    statuses = finding(report, "statuses")
    assert statuses["status"] == "warn"
    (unmapped,) = statuses["data"]["unmapped"]
    assert (unmapped["status_code"], unmapped["status_desc"]) == (
        "Čaka na plačilo",
        "awaiting_payment",
    )
    assert unmapped["examples"] == ["MK-WAIT"]
    assert '"awaiting_payment"' in statuses["fix"]

    duplicates = finding(report, "duplicate check")
    assert duplicates["status"] == "warn" and duplicates["data"]["state"] == "unknown"
    (shared,) = duplicates["data"]["shared_buyer_orders"]
    assert shared["buyer_order"] == "WEB-1001"
    assert sorted(shared["documents"]) == ["MK-WEB-A", "MK-WEB-B"]

    # the seeded pairs of an earlier sync, and MK-COPY of SO-COPIED: each adopted, none created
    # again; the copy and its original were both written just now, too close to tell which is
    # newer (sync/change_order.py), so that pair is held as a conflict for an operator
    copies = finding(report, "existing copies")
    carrying = [
        d
        for d in sandbox.metakocka_state.documents(acme.metakocka_company_id)
        if str(d.get("buyer_order", "")).startswith("FC")
    ]
    assert copies["data"]["carry_crm_id"] == copies["data"]["adopted"] == len(carrying) > 1
    assert (copies["status"], copies["data"]["conflicts"]) == ("warn", 1)
    assert "conflicts resolve" in copies["fix"]

    # Borovnica has no service product code: every line without a product has no code either
    other = reports[borovnica.id]
    codes = finding(other, "product codes")
    uncoded = [
        line
        for doc in sandbox.crm_state.documents(borovnica.id)
        for line in doc["sales_document_items"]
        if line["product_id"] is None
    ]
    assert (codes["status"], codes["data"]["lines_without_code"]) == ("warn", len(uncoded))
    assert "service_product_code" in codes["fix"]
    quarantine = finding(other, "quarantine")
    reasons = [r["reason"] for r in quarantine["data"]["top_reasons"]]
    assert any("no Metakocka product code" in r for r in reasons)


def test_the_first_run_does_what_the_preflight_said(tmp_path):
    """The plan's counts, and the writes of each system, as the preflight counted them."""
    with (
        start_sandbox(tmp_path / "sandbox", documents_per_org=60, reset=True) as sandbox,
        dg.instance_for_test() as instance,
    ):
        org = sandbox.organizations[0]
        env = environment(sandbox, tmp_path)
        _, _, reports = preflight(env, tmp_path, "--organization", org.id)
        plan = finding(reports[org.id], "plan")["data"]
        calls = finding(reports[org.id], "calls and time")["data"]
        reset_counters(sandbox)

        with patched_environ(env):
            result = run(Settings.from_env(), instance, org.id)

        (materialization,) = result.asset_materializations_for_node("sync_plan")
        planned = {key: value.value for key, value in materialization.metadata.items()}
        for action in ("create_in_metakocka", "update_in_metakocka", "create_in_crm"):
            assert planned[action] == plan[action] > 0, action
        for action in ("update_in_crm", "unchanged", "conflict", "invalid"):
            assert planned[action] == plan[action], action
        seen = counters(sandbox)
        assert (
            seen["metakocka"]["calls"]["put_document"][org.metakocka_company_id]
            == (calls["metakocka_writes"])
        )
        assert seen["metakocka"]["write_calls_total"] == calls["metakocka_writes"]
        assert seen["crm"]["writes"] == calls["crm_writes"]
        reads = sum(n for call, n in seen["crm"]["calls"].items() if call.startswith("GET "))
        assert reads >= calls["crm_reads"]  # a lower bound: every step re-reads the schema
        assert report_metadata(result)["unmapped_metakocka_statuses"] == 0


# -- blockers: the first run must not start --------------------------------------------------------
def test_blockers_stop_the_first_run_with_their_fix_and_nothing_is_written(tmp_path):
    """A wrong Metakocka secret and a CRM column missing from its schema: both reported in one
    preflight, each with its fix; exit code 1."""
    with start_sandbox(tmp_path / "sandbox", documents_per_org=20, reset=True) as sandbox:
        org = sandbox.organizations[0]
        dropped = requests.post(
            f"{sandbox.crm_url}/_sandbox/config",
            json={"drop_columns": ["sales_documents.customer_email"]},
            timeout=10,
        )
        dropped.raise_for_status()
        env = environment(sandbox, tmp_path)
        keys = json.loads(env["METAKOCKA_SECRET_KEYS"])
        keys[org.metakocka_company_id] = "mk_sk_not_the_secret"
        env["METAKOCKA_SECRET_KEYS"] = json.dumps(keys)
        reset_counters(sandbox)

        key = Settings.from_env(env).organizations[0].key  # by its partition key, as the UI says
        code, output, reports = preflight(env, tmp_path, "--organization", key)

        assert code == 1, output
        assert output.splitlines()[0] == READ_ONLY_NOTICE
        assert write_attempts(sandbox) == {"crm": 0, "metakocka": 0}
        assert list(reports) == [org.id]
        report = reports[org.id]
        assert report["blockers"] == 2 and report["skipped"]
        schema = finding(report, "schema profile")
        assert schema["status"] == "blocker"
        assert schema["data"]["missing"]["sm60"] == ["sales_documents.customer_email"]
        assert "sales_document_items.sales_document_id" in schema["data"]["missing"]["fixed10"]
        credentials = finding(report, "connection", "Metakocka")
        assert credentials["status"] == "blocker"
        assert "opr_code 3" in credentials["detail"]
        assert "METAKOCKA_SECRET_KEYS" in credentials["fix"]
        text = output + json.dumps(reports)
        assert "mk_sk_not_the_secret" not in text
        assert not any(secret in text for secret in secrets_of(sandbox))


def test_a_refused_crm_key_is_a_blocker_and_stops_the_rest(sandbox, tmp_path):
    env = {**environment(sandbox, tmp_path), "CRM_API_KEY": "crm_sk_not_the_key"}
    reset_counters(sandbox)

    code, output, reports = preflight(env, tmp_path)

    assert code == 1, output
    assert write_attempts(sandbox) == {"crm": 0, "metakocka": 0}
    for report in reports.values():
        refused = finding(report, "connection", "CRM")
        assert refused["status"] == "blocker" and "refused the key" in refused["detail"]
        assert "service-role key" in refused["fix"]
        assert "the first run was not planned" in report["skipped"]
    assert "crm_sk_not_the_key" not in output + json.dumps(reports)


def test_trigger_installed_and_duplicate_check_on_still_unknown_missing_owner_blocks(tmp_path):
    """docs/crm-setup.sql installed and max-rows at its default: ok; Metakocka's duplicate check
    switched on: still `unknown` (only a write could tell); no integration user while the first
    run creates CRM documents: a blocker."""
    with start_sandbox(
        tmp_path / "sandbox", documents_per_org=20, reset=True, crm_setup_installed=True
    ) as sandbox:
        org = sandbox.organizations[0]
        requests.post(
            f"{sandbox.metakocka_url}/_sandbox/duplicate_check",
            json={"company_id": org.metakocka_company_id, "enabled": True},
            timeout=10,
        ).raise_for_status()
        env = environment(sandbox, tmp_path, crm_integration_user_id=None)
        reset_counters(sandbox)

        code, output, reports = preflight(env, tmp_path, "--organization", org.id)

        assert code == 1, output
        assert write_attempts(sandbox) == {"crm": 0, "metakocka": 0}
        report = reports[org.id]
        assert finding(report, "updated_at trigger")["status"] == "ok"
        max_rows = finding(report, "max-rows")
        assert max_rows["status"] == "ok" and max_rows["data"]["max_rows"] is None
        assert finding(report, "duplicate check")["data"]["state"] == "unknown"
        owner = finding(report, "integration user")
        creates = finding(report, "plan")["data"]["create_in_crm"]
        assert owner["status"] == "blocker" and creates > 0
        assert owner["data"]["creates_in_crm"] == creates
        assert "crm_integration_user_id" in owner["fix"]


# -- the guard -------------------------------------------------------------------------------------
def test_the_preflight_sessions_refuse_every_write_before_sending_it(sandbox):
    """Whatever a client is asked to do, a write never leaves the preflight's sessions: the
    sandboxes do not even see the request. Reads go through."""
    org = sandbox.organizations[0]
    crm_resource = CrmResource(base_url=sandbox.crm_url, api_key=org.crm_api_key)
    crm = crm_resource.client(session=read_only_session(sandbox.crm_url, CRM_READS, 4))
    mk_session = read_only_session(sandbox.metakocka_url, METAKOCKA_READS, 2)
    mk = MetakockaClient(
        sandbox.metakocka_url,
        org.metakocka_company_id,
        org.metakocka_secret_key,
        session=mk_session,
    )
    reset_counters(sandbox)
    doc_id = sandbox.crm_state.documents(org.id)[0]["id"]
    write = CrmDocumentWrite(doc_id, {"notes": "never"}, owner={"organization_id": org.id})
    attempts = [
        lambda: crm.send("POST", DOCS, body={"notes": "never"}),
        lambda: crm.send("PATCH", DOCS, params=[("id", f"eq.{doc_id}")], body={"notes": "x"}),
        lambda: crm.send("DELETE", DOCS, params=[("id", f"eq.{doc_id}")]),
        lambda: crm.write_documents(org.id, [write]),
        lambda: crm.send("POST", "rpc/some_other_function", body={}),
        lambda: mk.create_document({"doc_type": "sales_order", "product_list": []}),
        lambda: mk.replace_document("1", {"doc_type": "sales_order"}),
        lambda: mk.update_document({"doc_type": "sales_order", "mk_id": "1", "notes": "x"}),
        lambda: mk.delete_document("sales_order", "1"),
        # an endpoint no client calls: the rule lists reads, not the writes it knows of
        lambda: mk_session.post(f"{sandbox.metakocka_api_url}/put_transaction", json={}),
    ]
    for attempt in attempts:
        with pytest.raises(WriteRefused, match="read-only"):
            attempt()

    assert crm.schema().profile.name == "sm60"  # GET /rest/v1/
    assert next(iter(mk.search("sales_order", result_type=None, page_size=1)))["mk_id"]
    seen = counters(sandbox)
    assert set(seen["crm"]["calls"]) <= {"GET /", "GET organization_members"}
    assert set(seen["metakocka"]["calls"]) == {"search"}
    assert write_attempts(sandbox) == {"crm": 0, "metakocka": 0}


def test_read_rules():
    assert CRM_READS.allows("GET", "/rest/v1/sales_documents")
    assert CRM_READS.allows("HEAD", "/rest/v1/sales_documents")
    assert CRM_READS.allows("post", "/rest/v1/rpc/sync_pipeline_crm_setup")
    for method in ("POST", "PATCH", "PUT", "DELETE"):
        assert not CRM_READS.allows(method, "/rest/v1/sales_documents")
    for endpoint in ("search", "get_document", "search_query_advance_discovery"):
        assert METAKOCKA_READS.allows("POST", f"/rest/eshop/v1/{endpoint}")
    for endpoint in ("put_document", "update_document", "change_document_status", "report"):
        assert not METAKOCKA_READS.allows("POST", f"/rest/eshop/v1/{endpoint}")
    assert not METAKOCKA_READS.allows("GET", "/rest/eshop/v1/search")


# -- the Dagster job -------------------------------------------------------------------------------
def test_the_preflight_job_shows_the_findings_and_fails_on_a_blocker(tmp_path):
    with (
        start_sandbox(tmp_path / "sandbox", documents_per_org=20, reset=True) as sandbox,
        dg.instance_for_test() as instance,
    ):
        org = sandbox.organizations[0]
        env = environment(sandbox, tmp_path)
        reset_counters(sandbox)
        with patched_environ(env):
            settings = Settings.from_env()
            job = build_definitions(settings).resolve_job_def(JOB_NAME)
            key = partition_key_of(job, org.id)
            ready = job.execute_in_process(partition_key=key, instance=instance)
            no_owner = replace(settings.organizations[0], crm_integration_user_id=None)
            blocked_settings = settings.model_copy(
                update={"organizations": (no_owner, *settings.organizations[1:])}
            )
            blocked = (
                build_definitions(blocked_settings)
                .resolve_job_def(JOB_NAME)
                .execute_in_process(partition_key=key, instance=instance, raise_on_error=False)
            )

        assert write_attempts(sandbox) == {"crm": 0, "metakocka": 0}
        assert ready.success
        assert ready.output_for_node(OP_NAME)["status"] == "warn"
        (output,) = [e for e in ready.all_events if e.event_type_value == "STEP_OUTPUT"]
        metadata = output.event_specific_data.metadata
        assert metadata["blockers"].value == 0
        assert "| warn | CRM | updated_at trigger |" in metadata["findings"].value
        assert ready.dagster_run.tags["sync_pipeline/organization_id"] == org.id

        assert not blocked.success
        (failure,) = [e for e in blocked.all_events if e.event_type_value == "STEP_FAILURE"]
        data = failure.step_failure_data
        assert "integration user" in data.error.message
        assert "crm_integration_user_id" in data.error.message
        assert data.user_failure_data.metadata["blockers"].value == 1
        assert "| blocker | CRM | integration user |" in (
            data.user_failure_data.metadata["findings"].value
        )
        events = json.dumps([str(e) for e in blocked.all_events])
        assert not any(secret in events for secret in secrets_of(sandbox))
