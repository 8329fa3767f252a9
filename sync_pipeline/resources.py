"""Dagster resources: the configured doors to the CRM, Metakocka and the sync database.

Secrets arrive as `EnvVar`s (see `definitions.py`), so the Dagster UI and event logs show the
variable's name, never its value. Deployments differ by these resources, never by code paths.
"""

import json

import dagster as dg
from pydantic import PrivateAttr

from sync_pipeline.adapters.crm import CrmClient
from sync_pipeline.adapters.metakocka import MetakockaClient
from sync_pipeline.adapters.retry import DEFAULT_RETRY_POLICY, RetryPolicy
from sync_pipeline.settings import (
    DEFAULT_PUSH_CONCURRENCY,
    Organization,
    crm_tenants,
    parse_organizations,
)
from sync_pipeline.store.claims import DEFAULT_CLAIM_TTL_S
from sync_pipeline.store.repository import SyncStore


class RetryConfig(dg.Config):
    """The retry budget of one API client (see `adapters/retry.py`): attempts include the first
    one; waits are jittered exponential between 0 and `initial_wait_s * 2**n`, at most
    `max_wait_s`, never shorter than a server's Retry-After (capped at `max_retry_after_s`)."""

    max_attempts: int = DEFAULT_RETRY_POLICY.max_attempts
    initial_wait_s: float = DEFAULT_RETRY_POLICY.initial_wait_s
    max_wait_s: float = DEFAULT_RETRY_POLICY.max_wait_s
    max_retry_after_s: float = DEFAULT_RETRY_POLICY.max_retry_after_s

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            initial_wait_s=self.initial_wait_s,
            max_wait_s=self.max_wait_s,
            max_retry_after_s=self.max_retry_after_s,
        )


class CrmResource(dg.ConfigurableResource):
    """Fresh AI CRM's PostgREST API (Supabase `<project>` root URL and its service-role key)."""

    base_url: str
    api_key: str
    timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    max_concurrent_requests: int = 4
    retry: RetryConfig = RetryConfig()
    organizations_json: str = ""
    """SYNC_ORGANIZATIONS: each organization's CRM settings (integration user, service product
    code) travel with its client."""

    def client(self) -> CrmClient:
        return CrmClient(
            self.base_url,
            self.api_key,
            timeout_s=self.timeout_s,
            connect_timeout_s=self.connect_timeout_s,
            max_concurrent_requests=self.max_concurrent_requests,
            retry_policy=self.retry.policy(),
            tenants=crm_tenants(parse_organizations(self.organizations_json)),
        )


class MetakockaResource(dg.ConfigurableResource):
    """Metakocka's JSON API; `secret_keys` is a JSON object {company_id: secret_key}."""

    base_url: str
    secret_keys: str
    read_timeout_s: float = 30.0
    write_timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    create_settle_s: float | None = None
    """After a create with an unknown outcome, wait this long (from sending it) before looking it
    up again: Metakocka may still be storing it. Default: `write_timeout_s`."""
    max_concurrent_requests: int = 2
    max_concurrent_searches: int = 1
    retry: RetryConfig = RetryConfig()

    def secret_for(self, company_id: str) -> str:
        keys = json.loads(self.secret_keys or "{}")
        if company_id not in keys:
            raise KeyError(f"no Metakocka secret key configured for company {company_id}")
        return keys[company_id]

    def all_secrets(self) -> list[str]:
        return list(json.loads(self.secret_keys or "{}").values())

    def client(self, company_id: str) -> MetakockaClient:
        return MetakockaClient(
            self.base_url,
            company_id,
            self.secret_for(company_id),
            read_timeout_s=self.read_timeout_s,
            write_timeout_s=self.write_timeout_s,
            connect_timeout_s=self.connect_timeout_s,
            create_settle_s=self.create_settle_s,
            max_concurrent_requests=self.max_concurrent_requests,
            max_concurrent_searches=self.max_concurrent_searches,
            retry_policy=self.retry.policy(),
        )


class SyncStoreResource(dg.ConfigurableResource):
    """The sync database (SQLite file by default, PostgreSQL in production)."""

    database_url: str
    database_schema: str | None = None
    """PostgreSQL schema of the sync tables (None: `SYNC_DATABASE_SCHEMA`, else `sync`)."""
    claim_ttl_s: float = DEFAULT_CLAIM_TTL_S
    """A push's claim on a document lapses this long after its owner's last heartbeat (a crashed
    run's claims expire); must exceed Metakocka's `create_settle_s` by a heartbeat interval
    (`claim_ttl_s / 4`), so a dead run's create in flight has settled before another run looks."""
    _store: SyncStore | None = PrivateAttr(default=None)

    def store(self, secrets: list[str] | tuple[str, ...] = ()) -> SyncStore:
        """One engine per process; the schema is created on first use."""
        if self._store is None:
            self._store = SyncStore(self.database_url, secrets=secrets, schema=self.database_schema)
            self._store.create_schema()
        return self._store


class OrganizationsResource(dg.ConfigurableResource):
    """The tenants: which Metakocka company and conflict policy belong to each CRM organization."""

    organizations_json: str
    push_concurrency: int = DEFAULT_PUSH_CONCURRENCY

    def get(self, organization_id: str) -> Organization:
        for org in parse_organizations(self.organizations_json):
            if org.id == organization_id:
                return org
        raise KeyError(f"unknown organization {organization_id!r}; check SYNC_ORGANIZATIONS")
