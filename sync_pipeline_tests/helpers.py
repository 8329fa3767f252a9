"""Test helpers: run the nightly job the way the demo and the daemon do, and inspect the sandbox's
own stores directly (not through the pipeline) when counting duplicates."""

import json
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg
import requests
import sqlalchemy as sa

from sync_pipeline.definitions import build_definitions
from sync_pipeline.demo import patched_environ, sandbox_environment
from sync_pipeline.jobs import NIGHTLY_JOB_NAME, partition_key_of
from sync_pipeline.sandbox.runner import start_sandbox
from sync_pipeline.settings import Settings
from sync_pipeline.store.engine import make_engine
from sync_pipeline.sync.extract import extract_crm, extract_metakocka
from sync_pipeline.sync.planning import plan_sync
from sync_pipeline.sync.validate import validate_extraction


def plan_everything(crm, metakocka, organization_id: str, store):
    """The plan of a full sweep: both systems read whole (with these clients), validated, and
    classified against the links in `store` (for tests that push by hand)."""
    return plan_sync(
        organization_id,
        validate_extraction(extract_crm(crm, organization_id)),
        validate_extraction(extract_metakocka(metakocka, organization_id)),
        store.links.frame(organization_id),
    )


def run_nightly(settings, instance, organization_id: str):
    job = build_definitions(settings).resolve_job_def(NIGHTLY_JOB_NAME)
    key = partition_key_of(job, organization_id)
    result = job.execute_in_process(partition_key=key, instance=instance)
    assert result.success
    return result


def pushed_count(result) -> int:
    outcomes = [*result.output_for_node("metakocka_push"), *result.output_for_node("crm_push")]
    return sum(o.result == "ok" for o in outcomes)


def metakocka_duplicates(sandbox, company_id: str) -> dict[str, int]:
    """buyer_order values held by more than one Metakocka document of the company."""
    counts = Counter(
        d.get("buyer_order")
        for d in sandbox.metakocka_state.documents(company_id)
        if d.get("buyer_order")
    )
    return {ref: n for ref, n in counts.items() if n > 1}


def status_rows(database_url: str, organization_id: str) -> list[dict]:
    engine = make_engine(database_url)  # on PostgreSQL: the sync schema on the search_path
    with engine.connect() as conn:
        rows = (
            conn.execute(
                sa.text("select * from sync_status where organization_id = :org"),
                {"org": organization_id},
            )
            .mappings()
            .all()
        )
    engine.dispose()
    return [dict(r) for r in rows]


def error_rows(database_url: str, organization_id: str) -> list[dict]:
    engine = make_engine(database_url)  # on PostgreSQL: the sync schema on the search_path
    with engine.connect() as conn:
        rows = (
            conn.execute(
                sa.text("select * from sync_error_log where organization_id = :org"),
                {"org": organization_id},
            )
            .mappings()
            .all()
        )
    engine.dispose()
    return [dict(r) for r in rows]


class CrmHttp:
    """A user of the CRM, talking PostgREST to the sandbox (not through the pipeline's client)."""

    def __init__(self, sandbox):
        self.base = sandbox.crm_url + "/rest/v1"
        self.item_parent = sandbox.crm_state.item_parent  # the lines' key in the CRM's schema
        key = sandbox.organizations[0].crm_api_key
        self.headers = {"apikey": key, "Authorization": f"Bearer {key}"}

    def insert_document(self, row: dict, items: list[dict]) -> dict:
        response = requests.post(
            f"{self.base}/sales_documents",
            json=row,
            headers={**self.headers, "Prefer": "return=representation"},
            timeout=10,
        )
        response.raise_for_status()
        created = response.json()[0]
        for item in items:
            item[self.item_parent] = created["id"]
        response = requests.post(
            f"{self.base}/sales_document_items", json=items, headers=self.headers, timeout=10
        )
        response.raise_for_status()
        return created

    def get_document(self, document_id: str) -> dict | None:
        response = requests.get(
            f"{self.base}/sales_documents",
            params={"id": f"eq.{document_id}", "select": "*,sales_document_items(*)"},
            headers=self.headers,
            timeout=10,
        )
        response.raise_for_status()
        rows = response.json()
        return rows[0] if rows else None


def crm_credentials_environment(sandbox, database_url: str, data_dir, *, company=None) -> dict:
    """The pipeline's environment on the sandbox, its first organization taking its Metakocka
    credentials from the CRM (`"metakocka_credentials": "crm"`, naming its company only when
    `company` is given) and its secret left out of METAKOCKA_SECRET_KEYS: the CRM is the only
    place to find it."""
    environment = sandbox_environment(sandbox, database_url, data_dir)
    first = sandbox.organizations[0]
    organizations = json.loads(environment["SYNC_ORGANIZATIONS"])
    organizations[0].update(metakocka_credentials="crm", metakocka_company_id=company)
    secrets = json.loads(environment["METAKOCKA_SECRET_KEYS"])
    del secrets[first.metakocka_company_id]
    environment["SYNC_ORGANIZATIONS"] = json.dumps(organizations)
    environment["METAKOCKA_SECRET_KEYS"] = json.dumps(secrets)
    return environment


class CrmCredentials:
    """The CRM's `metakocka_credentials` rows, edited over PostgREST (as the CRM's settings page
    and its administrators do)."""

    def __init__(self, sandbox):
        self.url = sandbox.crm_url + "/rest/v1/metakocka_credentials"
        key = sandbox.organizations[0].crm_api_key
        self.headers = {"apikey": key, "Authorization": f"Bearer {key}"}

    def of_user(self, user_id: str) -> dict:
        response = requests.get(
            self.url, params={"user_id": f"eq.{user_id}"}, headers=self.headers, timeout=10
        )
        response.raise_for_status()
        (row,) = response.json()
        return row

    def add(self, **row) -> dict:
        response = requests.post(
            self.url,
            json=row,
            headers={**self.headers, "Prefer": "return=representation"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()[0]

    def update(self, row_id: str, **fields) -> None:
        response = requests.patch(
            self.url, params={"id": f"eq.{row_id}"}, json=fields, headers=self.headers, timeout=10
        )
        response.raise_for_status()


class MetakockaHttp:
    """A user of Metakocka, calling its JSON API on the sandbox."""

    def __init__(self, sandbox, organization):
        self.base = sandbox.metakocka_url + "/rest/eshop/v1"
        self.auth = {
            "company_id": organization.metakocka_company_id,
            "secret_key": organization.metakocka_secret_key,
        }

    def call(self, endpoint: str, body: dict) -> dict:
        response = requests.post(f"{self.base}/{endpoint}", json={**self.auth, **body}, timeout=10)
        response.raise_for_status()
        answer = response.json()
        assert answer["opr_code"] == "0", answer
        return answer

    def find_by_buyer_order(self, doc_type: str, buyer_order: str) -> list[dict]:
        answer = self.call(
            "search",
            {
                "doc_type": doc_type,
                "result_type": "doc",
                "query_advance": [{"type": "customer_order", "value": buyer_order}],
            },
        )
        result = answer.get("result") or []
        return result if isinstance(result, list) else [result]


def new_metakocka_document(
    mk: MetakockaHttp, label: str, *, doc_type: str = "sales_order", price: str = "10"
) -> str:
    """A document entered in Metakocka (its app or another integration), one line of three
    "MK-1" at `price`; its mk_id."""
    answer = mk.call(
        "put_document",
        {
            "doc_type": doc_type,
            "doc_date": "2026-06-02+02:00",
            "count_code": f"MK-{label}",
            "currency_code": "EUR",
            "partner": {"customer": f"Partner {label} s.p.", "country": "SI"},
            "product_list": [
                {"code": "MK-1", "name": "Gadget", "unit": "kos", "amount": "3", "price": price,
                 "tax": "220"}
            ],
        },
    )  # fmt: skip
    return str(answer["mk_id"])


@contextmanager
def profile_sandbox(tmp_path, profile: str, documents: int = 20):
    """A sandbox whose CRM has the `profile` schema, the pipeline's environment pointed at it
    (a SQLite sync database in `tmp_path`) and a Dagster instance: (sandbox, settings,
    database_url, instance)."""
    with (
        start_sandbox(
            tmp_path / "sandbox", documents_per_org=documents, reset=True, crm_profile=profile
        ) as sandbox,
        dg.instance_for_test() as instance,
    ):
        database_url = f"sqlite:///{tmp_path / 'sync.db'}"
        with patched_environ(sandbox_environment(sandbox, database_url, tmp_path)):
            yield sandbox, Settings.from_env(), database_url, instance


@dataclass
class ProfileLab:
    """What `profile_sandbox` set up, for tests of one CRM schema profile."""

    sandbox: object
    settings: Settings
    database_url: str
    instance: dg.DagsterInstance
    profile: str

    @property
    def org(self):
        return self.sandbox.organizations[0]
