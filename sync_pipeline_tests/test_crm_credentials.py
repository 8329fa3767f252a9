"""Metakocka credentials from the CRM (issue 17, item 5), over real HTTP against the sandbox.

An organization configured with `"metakocka_credentials": "crm"` takes its Metakocka company id
and secret from its row of the CRM's `metakocka_credentials` when a run starts. In these tests
its secret is absent from METAKOCKA_SECRET_KEYS, so the CRM is the only place to find it.

- End to end: the nightly run, an on-demand request and the change sensor all work in the
  company the CRM's row names (documents land there and nowhere else); its runs are tagged
  `crm:<organization id>` for the per-company run limit, since no company is known at load.
- Which row: the organization's own (`organization_id`) before its integration user's; an
  inactive row is history; a row of a user outside the organization is refused.
- What cannot be used (no row, several, a wrong secret, a row naming another company than the
  configured one) is one open `auth` row naming the organization and the fix, and an error line
  in the run's log, not a crash; no document is sent anywhere.
- The code location loads without the CRM and without METAKOCKA_SECRET_KEYS.
"""

import json
import logging

import dagster as dg
import pytest
import requests

from sync_pipeline.crm.credentials import CredentialsError, read_metakocka_credentials
from sync_pipeline.definitions import build_definitions
from sync_pipeline.demo import patched_environ, sandbox_crm_client
from sync_pipeline.domain.document import crm_id_for_metakocka_document
from sync_pipeline.jobs import NIGHTLY_JOB_NAME
from sync_pipeline.runs import METAKOCKA_COMPANY_TAG
from sync_pipeline.sandbox.runner import start_sandbox
from sync_pipeline.sensors.changes import SENSOR_NAME as CHANGE_SENSOR
from sync_pipeline.settings import Settings, parse_organizations
from sync_pipeline.store.repository import SyncStore

from .faultlab import (
    LabConfig,
    audit,
    error_log,
    invalid_crm_ids,
    nightly_job,
    run_nightly,
)
from .helpers import (
    CrmCredentials,
    CrmHttp,
    MetakockaHttp,
    crm_credentials_environment,
    new_metakocka_document,
    status_rows,
)
from .on_demand_helpers import Dagster, new_crm_order

FAST = LabConfig(timeout_s=2.0, max_attempts=3, initial_wait_s=0.01, max_wait_s=0.05)


@pytest.fixture
def lab(tmp_path):
    """Two sandbox organizations; the first takes its credentials from the CRM."""
    db_url = f"sqlite:///{tmp_path / 'sync.db'}"
    with (
        start_sandbox(tmp_path / "sandbox", documents_per_org=10, reset=True) as sandbox,
        dg.instance_for_test() as instance,
    ):
        environment = crm_credentials_environment(sandbox, db_url, tmp_path)
        yield sandbox, sandbox.organizations[0], db_url, environment, instance


def job_for(environment: dict):
    return nightly_job(Settings.from_env(environment), FAST, environment=environment)


def calls(sandbox, system: str) -> dict:
    """The sandbox's count of calls so far: by endpoint (CRM) or by company (Metakocka)."""
    url = sandbox.crm_url if system == "crm" else sandbox.metakocka_url
    stats = requests.get(url + "/_sandbox/stats", timeout=5).json()
    return dict(stats["calls"] if system == "crm" else stats["calls_by_company"])


def company_documents(sandbox, company_id: str) -> dict[str, dict]:
    return {str(d["mk_id"]): d for d in sandbox.metakocka_state.documents(company_id)}


def test_the_nightly_run_syncs_into_the_company_the_crm_row_names(lab):
    sandbox, org, db_url, environment, instance = lab
    other = sandbox.organizations[1]
    others_documents = company_documents(sandbox, other.metakocka_company_id)
    crm_before = calls(sandbox, "crm")

    result = run_nightly(job_for(environment), instance, org.id)

    assert result.success
    # the code location knew no company when it loaded: the run is counted on its own
    tags = instance.get_run_by_id(result.run_id).tags
    assert tags[METAKOCKA_COMPANY_TAG] == f"crm:{org.id}"
    # read once per run: the organization's rows, then the chosen row's company and secret
    read = calls(sandbox, "crm").get("GET metakocka_credentials", 0)
    assert read - crm_before.get("GET metakocka_credentials", 0) == 2
    extraction = result.asset_materializations_for_node("extract_sales_documents")[0].metadata
    seeded = CrmCredentials(sandbox).of_user(org.integration_user_id)
    assert extraction["metakocka_company"].value == org.metakocka_company_id
    assert seeded["id"] in extraction["metakocka_credentials"].value
    # every valid document of the organization has its counterpart in that company, once
    report = audit(sandbox, org, db_url, invalid_crm_ids(sandbox, org))
    assert report.converged and report.duplicates == 0
    assert company_documents(sandbox, other.metakocka_company_id) == others_documents


def test_on_demand_runs_and_the_change_sensor_use_the_crm_credentials(lab):
    sandbox, org, db_url, environment, instance = lab
    queue = SyncStore(db_url).requests
    with patched_environ(environment):
        dagster = Dagster(Settings.from_env(), instance)
        sensor = dagster.defs.resolve_sensor_def(CHANGE_SENSOR)
        cursor = None

        def poll() -> None:
            nonlocal cursor
            with dg.build_sensor_context(
                instance=instance, cursor=cursor, resources=dagster.resources
            ) as context:
                cursor = sensor(context).cursor

        poll()  # the first look only sets the cursor
        born = new_metakocka_document(MetakockaHttp(sandbox, org), "CRED")
        poll()  # reads the company of the CRM's row: the new document is queued
        assert [born] in [list(r.document_ids) for r in queue.queued_for(org.id)]
        clicked = CrmHttp(sandbox).insert_document(*new_crm_order(org, "SO-CRM-CRED"))
        queue.enqueue(org.id, "crm_to_metakocka", [clicked["id"]], requested_by="test")
        run_requests = dagster.tick()
        assert run_requests
        for run_request in run_requests:
            assert run_request.tags[METAKOCKA_COMPANY_TAG] == f"crm:{org.id}"
            assert dagster.launch(run_request).success

    rows = {r["crm_document_id"]: r for r in status_rows(db_url, org.id)}
    assert rows[clicked["id"]]["status"] == "synced"
    assert rows[clicked["id"]]["metakocka_id"] in company_documents(
        sandbox, org.metakocka_company_id
    )
    assert rows[crm_id_for_metakocka_document(org.id, born)]["status"] == "synced"

    # a secret Metakocka refuses fails the run with what to fix as its first line
    row = CrmCredentials(sandbox).of_user(org.integration_user_id)
    CrmCredentials(sandbox).update(row["id"], secret_key="mk_sk_revoked_in_metakocka")
    with patched_environ(environment):
        request, _ = queue.enqueue(org.id, "both", [clicked["id"]], requested_by="test")
        (run_request,) = dagster.tick()
        result = dagster.launch(run_request)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    first_line = failure.step_failure_data.user_failure_data.description.splitlines()[0]
    assert first_line.startswith(org.name) and "opr_code 3" in first_line
    assert row["id"] in first_line and "mk_sk_revoked" not in first_line
    assert queue.get(request.id).error == first_line


def test_the_organizations_own_row_comes_before_its_integration_users(lab):
    sandbox, org, _, _, _ = lab
    credentials = CrmCredentials(sandbox)
    seeded = credentials.of_user(org.integration_user_id)

    def read(user_id=org.integration_user_id):
        client = sandbox_crm_client(sandbox)
        return read_metakocka_credentials(
            client, org.id, label=org.name, integration_user_id=user_id
        )

    found = read()  # the CRM's own per-user row, as its settings page saves it
    assert (found.company_id, found.secret_key) == (
        org.metakocka_company_id,
        org.metakocka_secret_key,
    )
    assert seeded["id"] in found.origin and org.metakocka_secret_key not in repr(found)

    member = sorted(sandbox.crm_state.members(org.id) - {org.integration_user_id})[0]
    own = credentials.add(
        user_id=member,
        organization_id=org.id,
        company_id=org.metakocka_company_id,
        secret_key=org.metakocka_secret_key,
    )
    assert own["id"] in read().origin  # organization-wide wins

    credentials.update(own["id"], is_active=False)  # deactivated: history, as the CRM keeps it
    with pytest.raises(CredentialsError, match=r"1 inactive row\(s\) are not taken"):
        read(user_id=None)  # no integration user named: only organization-wide rows count

    outsider = sandbox.organizations[1].integration_user_id  # another tenant's user and row
    with pytest.raises(CredentialsError, match="not a member of the organization"):
        read(user_id=outsider)


CASES = ("no_row", "several_rows", "wrong_secret", "another_company")


@pytest.mark.parametrize("case", CASES)
def test_credentials_that_cannot_be_used_are_one_auth_row_that_says_what_to_fix(
    lab, tmp_path, case
):
    sandbox, org, db_url, environment, instance = lab
    other = sandbox.organizations[1]
    credentials = CrmCredentials(sandbox)
    seeded = credentials.of_user(org.integration_user_id)
    secrets = [org.metakocka_secret_key, other.metakocka_secret_key]
    sent = 0  # Metakocka calls the run may make to its company
    if case == "no_row":
        credentials.update(seeded["id"], is_active=False)  # the CRM's own "delete"
        expected = [
            "no active Metakocka credentials",
            f"signed in as user {org.integration_user_id}",
        ]
    elif case == "several_rows":
        members = sorted(sandbox.crm_state.members(org.id) - {org.integration_user_id})[:2]
        ids = [
            credentials.add(
                user_id=user,
                organization_id=org.id,
                company_id=org.metakocka_company_id,
                secret_key=org.metakocka_secret_key,
            )["id"]
            for user in members
        ]
        expected = ["2 active rows", *ids, "Set is_active = false on all but one"]
    elif case == "wrong_secret":
        secrets.append("mk_sk_pasted_from_an_old_mail")
        credentials.update(seeded["id"], secret_key=secrets[-1])
        expected = ["opr_code 3", f"row {seeded['id']} in the CRM's metakocka_credentials"]
        sent = 1  # one answer says the secret is wrong: nothing else is tried
    else:  # the row now names the other tenant's company, with that company's valid secret
        environment = crm_credentials_environment(
            sandbox, db_url, tmp_path, company=org.metakocka_company_id
        )
        credentials.update(
            seeded["id"],
            company_id=other.metakocka_company_id,
            secret_key=other.metakocka_secret_key,
        )
        expected = [
            f"is for Metakocka company {other.metakocka_company_id}",
            f"gives the organization company {org.metakocka_company_id}",
        ]
    before = calls(sandbox, "metakocka")

    result = run_nightly(job_for(environment), instance, org.id)

    assert result.success  # an error of the run, not a crashed run
    after = calls(sandbox, "metakocka")
    for company, allowed in ((org.metakocka_company_id, sent), (other.metakocka_company_id, 0)):
        assert after.get(company, 0) - before.get(company, 0) == allowed, company
    rows = [r for r in error_log(db_url, org.id) if r["run_id"] == result.run_id]
    (row,) = [r for r in rows if r["resolved_at"] is None]
    assert (row["error_type"], row["details"]["kind"]) == ("auth", "step_failed")
    text = row["message"] + json.dumps(row["details"])
    assert org.name in row["message"] and all(part in row["message"] for part in expected)
    logged = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.level == logging.ERROR and entry.step_key == "extract_sales_documents"
    ]
    assert logged and logged[0].startswith("extraction from") and org.name in logged[0]
    assert not any(secret in text or secret in logged[0] for secret in secrets)


def test_the_code_location_loads_without_the_crm_or_metakocka_secret_keys():
    organizations = [
        {"id": "org-a", "name": "A", "metakocka_credentials": "crm"},
        {"id": "org-b", "name": "B", "metakocka_credentials": "crm", "metakocka_company_id": 17},
    ]
    environment = {  # the CRM's address is a closed port: loading must not call it
        "SYNC_ORGANIZATIONS": json.dumps(organizations),
        "CRM_BASE_URL": "http://127.0.0.1:9",
    }
    defs = build_definitions(Settings.from_env(environment))
    job = defs.resolve_job_def(NIGHTLY_JOB_NAME)
    tags = {
        key: job.get_tags_for_partition_key(key, None)[METAKOCKA_COMPANY_TAG]
        for key in job.partitions_def.get_partition_keys()
    }
    assert tags == {"a": "crm:org-a", "b": "17"}  # a configured company is shared with others
    with patched_environ({"METAKOCKA_BASE_URL": "http://127.0.0.1:9"}):
        with dg.build_resources({"metakocka": defs.resources["metakocka"]}) as built:
            assert built.metakocka.secret_keys == "{}"


@pytest.mark.parametrize(
    ("item", "refusal"),
    [
        ({"metakocka_credentials": "vault"}, 'must be "env"'),
        ({}, "metakocka_company_id is required"),
    ],
)
def test_an_organization_says_where_its_credentials_come_from(item, refusal):
    with pytest.raises(ValueError, match=refusal):
        parse_organizations(json.dumps([{"id": "org-a", "name": "A", **item}]))
