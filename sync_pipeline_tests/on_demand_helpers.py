"""Shared pieces of the on-demand sync tests: the API served over real HTTP, its tokens (service
tokens, and CRM users' access tokens from a stand-in for the project's Supabase Auth), a new CRM
document, and the request sensor evaluated against a real (test) Dagster instance."""

import json
import os
import uuid
from contextlib import contextmanager

import dagster as dg
import pytest
import requests

from sync_pipeline.api.app import PREFIX, create_app
from sync_pipeline.api.config import TOKENS_ENV, ApiConfig
from sync_pipeline.definitions import build_definitions, build_resources
from sync_pipeline.ops.sync_documents import JOB_NAME
from sync_pipeline.sandbox.serve import serve_in_thread
from sync_pipeline.sensors.requests import SENSOR_NAME


def tokens_for(sandbox) -> dict[str, str]:
    """One token per sandbox organization (test values, never real secrets)."""
    return {f"token-{org.id[:8]}-{uuid.uuid4().hex}": org.id for org in sandbox.organizations}


class Api:
    """The API over HTTP, as the CRM's frontend calls it."""

    def __init__(self, url: str, tokens: dict[str, str]):
        self.url = url
        self.token_of = {org: token for token, org in tokens.items()}

    def call(
        self, method: str, path: str, org_id: str | None, *, token: str | None = None, **kwargs
    ) -> requests.Response:
        """A call with the service token of `org_id`, or with `token` (a user's)."""
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        elif org_id is not None:
            headers["Authorization"] = f"Bearer {self.token_of[org_id]}"
        return requests.request(
            method, f"{self.url}{PREFIX}{path}", headers=headers, timeout=30, **kwargs
        )


@pytest.fixture(name="api_tokens")
def api_tokens_fixture(sandbox) -> dict[str, str]:
    return tokens_for(sandbox)


@pytest.fixture(name="api")
def api_fixture(pipeline_env, api_tokens, supabase_auth):
    """The API on an ephemeral loopback port, on the same sync database as the pipeline,
    accepting the service tokens and the users' access tokens (legacy secret and JWKS; the
    `supabase_auth` fixture is in conftest.py)."""
    with running_api(api_tokens, supabase_auth) as api:
        yield api


@contextmanager
def running_api(api_tokens: dict[str, str], supabase_auth, **environ: str):
    """The API served on a loopback port with these tokens (and `environ` over the process's
    environment), stopped and its store closed afterwards."""
    config = ApiConfig.from_env(
        {**os.environ, TOKENS_ENV: json.dumps(api_tokens), **supabase_auth.env(), **environ}
    )
    server = serve_in_thread(create_app(config))
    try:
        yield Api(server.url, api_tokens)
    finally:
        server.stop()
        config.store.dispose()


def new_crm_order(org, number: str = "SO-OD-1", profile: str = "sm60") -> tuple[dict, list[dict]]:
    """An order a member of the sandbox organization `org` enters in the CRM (in the columns of
    the schema `profile`): one line without a product, so it goes to Metakocka as the
    organization's service product."""
    row = {
        "organization_id": org.id,
        "user_id": org.integration_user_id,
        "document_type": "order",
        "document_number": number,
        "document_date": "2026-06-01",
        "customer_name": "Kupec na zahtevo d.o.o.",
        "currency": "EUR",
        "status": "sent",
        "tax_amount": 22.0,
        "total_amount": 122.0,
    }
    if profile == "fixed10":
        row["contact_name"] = row.pop("customer_name")
    items = [
        {
            "description": "Widget on demand",
            "quantity": 2,
            "unit_price": 50.0,
            "tax_rate": 22,
            "tax_amount": 22.0,
            "total_amount": 122.0,
        }
    ]
    return row, items


class Dagster:
    """The code location's request sensor and job, on a test instance (no daemon)."""

    def __init__(self, settings, instance: dg.DagsterInstance):
        self.defs = build_definitions(settings)
        self.resources = build_resources(settings)
        self.instance = instance
        self.sensor = self.defs.resolve_sensor_def(SENSOR_NAME)
        self.job = self.defs.resolve_job_def(JOB_NAME)
        self.cursor: str | None = None

    def tick(self) -> list[dg.RunRequest]:
        """Evaluate the request sensor once, as the daemon does, keeping its cursor."""
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.resources
        ) as context:
            result = self.sensor(context)
        self.cursor = result.cursor
        return list(result.run_requests or [])

    def launch(self, run_request: dg.RunRequest):
        """Run what the sensor asked for, in process, with its run key tag (as the daemon would)."""
        result = self.job.execute_in_process(
            run_config=run_request.run_config,
            tags={**run_request.tags, "dagster/run_key": run_request.run_key},
            instance=self.instance,
            raise_on_error=False,
        )
        return result
