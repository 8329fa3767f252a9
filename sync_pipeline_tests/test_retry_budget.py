"""Retry budget and circuit breaker, at the pipeline level (the policy itself: test_adapters_retry).

- Attempts are bounded: a write the CRM always refuses with a 5xx is sent `max_attempts` times per
  document, then the document fails with an open `transient` row and the run goes on.
- Retry-After is honoured: the waits the pushes chose add up to at least what the 429s asked for.
- A company whose credentials Metakocka refuses is stopped after the FIRST answer, with ONE `auth`
  row, both when the pushes meet it (the breaker) and when the extraction does (the step logs one
  row and the run skips its later steps instead of crashing); a later good run resolves the row.
- A malformed answer that stays malformed is one error of the run, not a crashed run.
"""

import json
import math

import dagster as dg
import pytest
import requests

from sync_pipeline.demo import sandbox_crm_client, sandbox_environment
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.sandbox.runner import start_sandbox
from sync_pipeline.settings import Settings
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.sync.export.outcomes import FAILED, SKIPPED
from sync_pipeline.sync.export.to_crm import CRM_BATCH, push_to_crm
from sync_pipeline.sync.export.to_metakocka import push_to_metakocka
from sync_pipeline.sync.record import error_rows

from .faultlab import LabConfig, error_log, nightly_job, run_nightly
from .helpers import plan_everything

FAST = LabConfig(timeout_s=2.0, max_attempts=3, initial_wait_s=0.01, max_wait_s=0.05)


@pytest.fixture
def lab(tmp_path):
    """A one-organization sandbox, its SQLite sync database and a Dagster instance."""
    db_url = f"sqlite:///{tmp_path / 'sync.db'}"
    with (
        start_sandbox(tmp_path / "sandbox", organizations=1, documents_per_org=30) as sandbox,
        dg.instance_for_test() as instance,
    ):
        environment = sandbox_environment(sandbox, db_url, tmp_path)
        yield sandbox, sandbox.organizations[0], db_url, environment, instance


def job_for(environment: dict, config: LabConfig = FAST):
    return nightly_job(Settings.from_env(environment), config, environment=environment)


def mk_calls(sandbox, company_id: str) -> int:
    stats = requests.get(sandbox.metakocka_url + "/_sandbox/stats", timeout=5).json()
    return stats["calls_by_company"].get(company_id, 0)


def crm_calls(sandbox, endpoint: str | None = None) -> int:
    calls = requests.get(sandbox.crm_url + "/_sandbox/stats", timeout=5).json()["calls"]
    return calls.get(endpoint, 0) if endpoint else sum(calls.values())


def metadata(result, node: str) -> dict:
    (materialization,) = result.asset_materializations_for_node(node)
    return {key: value.value for key, value in materialization.metadata.items()}


def test_attempts_are_bounded_and_each_failure_is_one_open_row(lab):
    sandbox, org, db_url, environment, instance = lab
    sandbox.configure_faults(
        "crm", {"rules": [{"fault": "opr_code_1", "endpoints": ["POST sales_documents"]}]}
    )
    result = run_nightly(job_for(environment), instance, org.id)

    assert result.success
    failed = [o for o in result.output_for_node("crm_push") if o.result == FAILED]
    assert failed and all(o.error_type == "transient" for o in failed)
    # Whole documents go to the CRM in batches: the batch was sent max_attempts times, then each
    # document alone max_attempts times (to find the culprit), never more.
    batches = math.ceil(len(failed) / CRM_BATCH)
    sent = crm_calls(sandbox, "POST sales_documents")
    assert sent == (batches + len(failed)) * FAST.max_attempts
    open_rows = [
        row
        for row in error_log(db_url, org.id)
        if row["resolved_at"] is None and row["direction"] == "metakocka_to_crm"
    ]
    assert sorted(row["metakocka_id"] for row in open_rows) == sorted(
        o.metakocka_id for o in failed
    )

    sandbox.configure_faults("crm", {"rules": []})
    assert run_nightly(job_for(environment), instance, org.id).success
    still_open = [
        row
        for row in error_log(db_url, org.id)
        if row["resolved_at"] is None and row["direction"] == "metakocka_to_crm"
    ]
    assert still_open == []


def test_retry_after_is_honoured_by_the_pushes(lab):
    sandbox, org, db_url, environment, instance = lab
    retry_after, count = 0.5, 4
    sandbox.configure_faults(
        "crm",
        {
            "rules": [
                {
                    "fault": "rate_limit_429",
                    "endpoints": ["POST sales_documents"],
                    "count": count,
                    "retry_after_s": retry_after,
                }
            ]
        },
    )
    patient = LabConfig(timeout_s=2.0, max_attempts=count + 1, initial_wait_s=0.01, max_wait_s=0.05)
    result = run_nightly(job_for(environment, patient), instance, org.id)

    assert result.success
    pushed = metadata(result, "crm_push")
    assert pushed["failed"] == 0
    assert pushed["retries"] == count
    # Backoff alone is at most max_wait_s (0.05 s) per retry: every wait was the server's.
    assert pushed["retry_wait_s"] >= count * retry_after
    rows = [r for r in error_log(db_url, org.id) if r["run_id"] == result.run_id]
    (summary,) = [r for r in rows if r["error_type"] == "rate_limited"]
    assert summary["details"]["retries"] == count and summary["resolved_at"] is not None


@pytest.mark.parametrize("direction", ["crm_to_metakocka", "metakocka_to_crm"])
def test_refused_credentials_during_pushes_trip_the_breaker_after_one_answer(lab, direction):
    sandbox, org, db_url, _, _ = lab
    store = SyncStore(db_url)
    store.create_schema()
    plan = plan_everything(
        sandbox_crm_client(sandbox, org.crm_api_key),
        MetakockaClient(sandbox.metakocka_url, org.metakocka_company_id, org.metakocka_secret_key),
        org.id,
        store,
    )
    if direction == "crm_to_metakocka":
        client = MetakockaClient(sandbox.metakocka_url, org.metakocka_company_id, "mk_sk_revoked")
        calls = lambda: mk_calls(sandbox, org.metakocka_company_id)  # noqa: E731
        push = push_to_metakocka
    else:
        client = sandbox_crm_client(sandbox, "crm_sk_revoked")
        calls = lambda: crm_calls(sandbox)  # noqa: E731
        push = push_to_crm
    before = calls()

    outcomes = push(plan, client=client, store=store, organization_id=org.id, concurrency=2)

    assert calls() - before == 1  # the probe's first call; nothing after the answer
    assert [o.result for o in outcomes].count(FAILED) == 1
    assert all(o.result == SKIPPED and o.error_type == "auth" for o in outcomes[1:])
    rows = error_rows(organization_id=org.id, run_id="r1", outcomes=outcomes)
    (row,) = rows
    assert row["error_type"] == "auth"
    assert f"{len(outcomes) - 1} more document(s) left pending" in row["message"]
    store.dispose()


@pytest.mark.parametrize("system", ["metakocka", "crm"])
def test_refused_credentials_at_extraction_are_one_auth_row_not_a_crash(lab, system):
    sandbox, org, db_url, environment, instance = lab
    assert run_nightly(job_for(environment), instance, org.id).success
    statuses_before = SyncStore(db_url).status.frame(org.id)["status"].value_counts().to_dict()

    bad = dict(environment)
    if system == "metakocka":
        bad["METAKOCKA_SECRET_KEYS"] = json.dumps({org.metakocka_company_id: "mk_sk_revoked"})
        calls = lambda: mk_calls(sandbox, org.metakocka_company_id)  # noqa: E731
    else:
        bad["CRM_API_KEY"] = "crm_sk_revoked"
        calls = lambda: crm_calls(sandbox)  # noqa: E731
    before = calls()
    result = run_nightly(job_for(bad), instance, org.id)

    assert result.success  # an error of the run, not a crashed run
    assert calls() - before == 1
    rows = [r for r in error_log(db_url, org.id) if r["run_id"] == result.run_id]
    (auth,) = [r for r in rows if r["error_type"] == "auth"]
    assert auth["resolved_at"] is None and auth["crm_document_id"] is None
    assert auth["details"]["kind"] == "step_failed"
    assert [r for r in rows if r["resolved_at"] is None] == [auth]  # one row, not one per doc
    statuses_after = SyncStore(db_url).status.frame(org.id)["status"].value_counts().to_dict()
    assert statuses_after == statuses_before  # nothing planned from half the picture

    assert run_nightly(job_for(environment), instance, org.id).success
    (again,) = [r for r in error_log(db_url, org.id) if r["id"] == auth["id"]]
    assert again["resolved_at"] is not None


def test_an_answer_that_stays_malformed_is_one_error_not_a_crash(lab):
    sandbox, org, db_url, environment, instance = lab
    sandbox.configure_faults(
        "metakocka", {"rules": [{"fault": "malformed_body", "endpoints": ["search"]}]}
    )
    before = mk_calls(sandbox, org.metakocka_company_id)
    result = run_nightly(job_for(environment), instance, org.id)

    assert result.success
    assert mk_calls(sandbox, org.metakocka_company_id) - before == FAST.max_attempts
    rows = [r for r in error_log(db_url, org.id) if r["run_id"] == result.run_id]
    (failure,) = [r for r in rows if r["resolved_at"] is None]
    assert failure["error_type"] == "transient"
    assert failure["details"]["exception"] == "MalformedResponseError"
