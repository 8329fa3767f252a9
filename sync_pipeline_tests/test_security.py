"""Security: no secret anywhere after real runs, and three organizations synced at once never cross.

Three organizations (each its own CRM tenant and Metakocka company) are reconciled at the same
time, in threads of this process, with HTML 5xx pages and dropped connections injected so the
error paths run too, plus one run whose CRM key was pasted with a trailing newline (requests then
quotes the key in its exception). Afterwards every place a secret could leak is scanned for every
sandbox secret (the Metakocka secret keys, the CRM API keys): the captured Python log records and
everything written to stdout/stderr, every Dagster event of every run, and every row of every
table in the sync database. The API's own secrets (the Supabase JWT secret, the users' access
tokens) are checked the same way after a user's calls and the run they asked for, and so is a
Metakocka secret the pipeline reads from the CRM's `metakocka_credentials` at run time.
"""

import logging
import os
import threading

import dagster as dg
import sqlalchemy as sa
from dagster._serdes import serialize_value

from sync_pipeline.api.config import ApiConfig
from sync_pipeline.demo import patched_environ, sandbox_crm_client, sandbox_environment
from sync_pipeline.domain.document import (
    crm_id_for_metakocka_document,
    external_ref_to_crm_id,
)
from sync_pipeline.resources import MetakockaResource
from sync_pipeline.sandbox.runner import start_sandbox
from sync_pipeline.settings import Settings
from sync_pipeline.store.engine import make_engine
from sync_pipeline.store.repository import SyncStore

from .auth_helpers import a_member
from .faultlab import (
    FaultCase,
    LabConfig,
    audit,
    configure_case,
    error_log,
    fault_cases,
    invalid_crm_ids,
    nightly_job,
    run_nightly,
)
from .helpers import CrmCredentials, crm_credentials_environment, error_rows
from .on_demand_helpers import (  # noqa: F401 (fixtures)
    Dagster,
    api_fixture,
    api_tokens_fixture,
)

CONFIG = LabConfig(timeout_s=2.0, max_attempts=3, initial_wait_s=0.01, max_wait_s=0.05)


def all_rows(database_url: str) -> list[dict]:
    engine = make_engine(database_url)
    try:
        tables = sa.MetaData()
        tables.reflect(engine)
        with engine.connect() as conn:
            return [
                {"table": name, **dict(row)}
                for name, table in tables.tables.items()
                for row in conn.execute(sa.select(table)).mappings()
            ]
    finally:
        engine.dispose()


def test_no_secret_leaks_and_three_organizations_never_cross(tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    db_url = f"sqlite:///{tmp_path / 'sync.db'}"
    with start_sandbox(tmp_path / "sandbox", organizations=3, documents_per_org=30) as sandbox:
        orgs = sandbox.organizations
        secrets = {o.crm_api_key for o in orgs} | {o.metakocka_secret_key for o in orgs}
        cases = {case.name: case for case in fault_cases(rate=0.1, cap=6)}
        rules = {
            system: cases["error_5xx_html"].rules[system] + cases["connection_reset"].rules[system]
            for system in ("crm", "metakocka")
        }
        configure_case(sandbox, FaultCase("mixed", rules, "transient"))
        environment = sandbox_environment(sandbox, db_url, tmp_path)
        SyncStore(db_url).create_schema()  # before the threads: alembic's context is global
        results: dict[str, list] = {o.id: [] for o in orgs}
        instances = {o.id: dg.DagsterInstance.ephemeral() for o in orgs}  # one per thread
        with patched_environ(environment):  # secrets reach the resources by EnvVar only
            job = nightly_job(Settings.from_env(), CONFIG)

            def reconcile(organization):
                for _ in range(3):
                    results[organization.id].append(
                        run_nightly(job, instances[organization.id], organization.id)
                    )

            threads = [threading.Thread(target=reconcile, args=(o,)) for o in orgs]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            configure_case(sandbox, None)
            for organization in orgs:  # settle whatever the faults left, one clean run each
                results[organization.id].append(
                    run_nightly(job, instances[organization.id], organization.id)
                )

        # A key pasted with a newline: requests quotes it in the exception it raises.
        pasted = {**environment, "CRM_API_KEY": orgs[0].crm_api_key + "\n"}
        broken_job = nightly_job(Settings.from_env(pasted), CONFIG, environment=pasted)
        broken = run_nightly(broken_job, instances[orgs[0].id], orgs[0].id)
        assert broken.success
        (failure,) = [
            r
            for r in error_log(db_url, orgs[0].id)
            if r["run_id"] == broken.run_id and r["resolved_at"] is None
        ]
        assert "InvalidHeader" in failure["message"] and "***" in failure["message"]

        # Tenancy: every organization converged, and nothing of one reached another.
        for organization in orgs:
            report = audit(sandbox, organization, db_url, invalid_crm_ids(sandbox, organization))
            assert report.converged and report.duplicates == 0, organization.name
            own_crm = {d["id"] for d in sandbox.crm_state.documents(organization.id)}
            company = organization.metakocka_company_id
            mk_docs = sandbox.metakocka_state.documents(company)
            for doc in mk_docs:  # a CRM reference in this company names this tenant's document
                crm_id = external_ref_to_crm_id(doc.get("buyer_order"))
                assert crm_id is None or crm_id in own_crm, (organization.name, doc["mk_id"])
            born_here = {
                crm_id_for_metakocka_document(organization.id, d["mk_id"]) for d in mk_docs
            }
            members = sandbox.crm_state.members(organization.id)
            for doc in sandbox.crm_state.documents(organization.id):  # the CRM's tenancy rule
                owner = doc["organization_id"]
                assert owner == organization.id or (owner is None and doc["user_id"] in members)
            others = [o for o in orgs if o.id != organization.id]
            for other in others:  # no document born in this company was copied to another tenant
                other_ids = {d["id"] for d in sandbox.crm_state.documents(other.id)}
                assert not (born_here & other_ids), (organization.name, other.name)
            rows = [r for r in all_rows(db_url) if r.get("organization_id") == organization.id]
            mk_ids = {str(d["mk_id"]) for d in mk_docs}
            for row in rows:
                if row.get("crm_document_id"):
                    assert row["crm_document_id"] in own_crm | born_here, row
                if row.get("metakocka_id"):
                    assert str(row["metakocka_id"]) in mk_ids, row

        # Secrets: nowhere.
        results[orgs[0].id].append(broken)
        events = [
            serialize_value(entry)
            for org_id, runs in results.items()
            for result in runs
            for entry in instances[org_id].all_logs(result.run_id)
        ]
        places = {
            "python logging": "\n".join(record.getMessage() for record in caplog.records),
            "stdout/stderr": "".join(capfd.readouterr()),
            "dagster events": "\n".join(events),
            "sync tables": "\n".join(repr(row) for row in all_rows(db_url)),
        }
        assert all(len(text) > 0 for text in places.values()), [
            k for k, v in places.items() if not v
        ]
        for place, text in places.items():
            for secret in secrets:
                assert secret not in text, f"a sandbox secret leaked into {place}"
                assert secret.strip() not in text, f"a sandbox secret leaked into {place}"


def test_the_jwt_secret_and_users_tokens_never_leak(
    sandbox, pipeline_env, dagster_instance, api, supabase_auth, sqlite_url, caplog, capfd
):
    """A CRM user's calls (valid, stale and forged tokens), the run they ask for, and the error
    rows it writes under the user's id: neither the project's JWT secret nor a user's token
    reaches a log line, stdout/stderr, a Dagster event or a row of the sync database; and the
    JWT secret is redacted like every other secret wherever the API's store writes text."""
    caplog.set_level(logging.DEBUG)
    org = sandbox.organizations[0]
    user = a_member(sandbox, org)
    tokens = [supabase_auth.token(user), supabase_auth.token(user, signed_with="key")]
    refused = [
        supabase_auth.token(user, expires_in=-60),
        supabase_auth.token(user, aud="anon"),
        supabase_auth.token(user, key="y" * 48),
    ]
    spoiled = invalid_crm_ids(sandbox, org)[:2]
    assert spoiled
    for token in tokens:
        accepted = api.call("POST", "/sync", None, token=token, json={"documentIds": spoiled})
        assert accepted.status_code == 202, accepted.text
    for token in refused:
        assert api.call("POST", "/sync", None, token=token, json={}).status_code == 401
    dagster = Dagster(pipeline_env, dagster_instance)
    runs = [dagster.launch(request) for request in dagster.tick()]
    assert runs and all(run.success for run in runs)
    logged = [r for r in error_rows(sqlite_url, org.id) if r["requested_by"] == user]
    assert logged, "the spoiled documents' errors name the user who asked"

    config = ApiConfig.from_env({**os.environ, **supabase_auth.env()})
    try:
        config.store.errors.log(
            [
                {
                    "organization_id": org.id,
                    "error_type": "internal",
                    "message": f"a library quoted the key: {supabase_auth.secret}",
                    "details": {"echo": supabase_auth.secret},
                    "stack_trace": f"key={supabase_auth.secret}",
                }
            ]
        )
    finally:
        config.store.dispose()
    assert supabase_auth.secret not in repr(config)

    events = [
        serialize_value(entry) for run in runs for entry in dagster_instance.all_logs(run.run_id)
    ]
    places = {
        "python logging": "\n".join(record.getMessage() for record in caplog.records),
        "stdout/stderr": "".join(capfd.readouterr()),
        "dagster events": "\n".join(events),
        "sync tables": "\n".join(repr(row) for row in all_rows(sqlite_url)),
    }
    assert "***" in places["sync tables"]
    for place, text in places.items():
        assert supabase_auth.secret not in text, f"the JWT secret leaked into {place}"
        for token in tokens + refused:
            signature = token.rsplit(".", 1)[1]
            assert token not in text and signature not in text, f"a token leaked into {place}"


def test_a_secret_read_from_the_crm_never_leaks(tmp_path, caplog, capfd):
    """An organization whose Metakocka secret is only in the CRM's `metakocka_credentials` is
    reconciled under injected 5xx pages and dropped connections, then with a wrong secret in
    its row (Metakocka refuses it: an `auth` row and an error line quoting where the secret
    came from). Neither secret reaches a log line, stdout/stderr, a Dagster event, a row of the
    sync database or the refusal's exception text; and where a text does quote the secret (a
    library echoing a request), the run's store and the API's store mask it: each registers
    the secret the moment it reads it from the CRM."""
    caplog.set_level(logging.DEBUG)
    db_url = f"sqlite:///{tmp_path / 'sync.db'}"
    with start_sandbox(tmp_path / "sandbox", documents_per_org=20) as sandbox:
        org = sandbox.organizations[0]
        environment = crm_credentials_environment(sandbox, db_url, tmp_path)
        settings = Settings.from_env(environment)
        organization = settings.organizations[0]
        credentials = CrmCredentials(sandbox)
        row = credentials.of_user(org.integration_user_id)
        wrong = "mk_sk_an_old_secret_still_in_the_crm"
        secrets = [org.metakocka_secret_key, wrong]
        cases = {case.name: case for case in fault_cases(rate=0.1, cap=6)}
        rules = {
            system: cases["error_5xx_html"].rules[system] + cases["connection_reset"].rules[system]
            for system in ("crm", "metakocka")
        }
        instance = dg.DagsterInstance.ephemeral()
        job = nightly_job(settings, CONFIG, environment=environment)
        configure_case(sandbox, FaultCase("mixed", rules, "transient"))
        runs = [run_nightly(job, instance, org.id)]
        configure_case(sandbox, None)
        credentials.update(row["id"], secret_key=wrong)
        runs.append(run_nightly(job, instance, org.id))
        (refused,) = [
            r
            for r in error_log(db_url, org.id)
            if r["run_id"] == runs[-1].run_id and r["error_type"] == "auth"
        ]
        assert row["id"] in refused["message"]  # says where the refused secret came from
        credentials.update(row["id"], secret_key=org.metakocka_secret_key)

        echoed = {
            "organization_id": org.id,
            "error_type": "internal",
            "message": f"a library quoted the request: secret {org.metakocka_secret_key}",
            "details": {"echo": org.metakocka_secret_key},
            "stack_trace": f"body={org.metakocka_secret_key}",
        }
        store = SyncStore(db_url)
        resource = MetakockaResource(
            base_url=sandbox.metakocka_url, secret_keys=environment["METAKOCKA_SECRET_KEYS"]
        )
        client = resource.client_for(organization, sandbox_crm_client(sandbox), store=store)
        assert client.company_id == org.metakocka_company_id
        store.errors.log([echoed])
        store.dispose()
        api = ApiConfig.from_env(environment)
        try:
            assert api.metakocka(organization).company_id == org.metakocka_company_id
            api.store.errors.log([echoed])
        finally:
            api.store.dispose()
        assert all(org.metakocka_secret_key not in repr(x) for x in (client, resource, api))

    events = [serialize_value(e) for run in runs for e in instance.all_logs(run.run_id)]
    places = {
        "python logging": "\n".join(record.getMessage() for record in caplog.records),
        "stdout/stderr": "".join(capfd.readouterr()),
        "dagster events": "\n".join(events),
        "sync tables": "\n".join(repr(row) for row in all_rows(db_url)),
    }
    assert places["sync tables"].count("secret ***") == 2  # both echoes, masked
    for place, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a secret read from the CRM leaked into {place}"
