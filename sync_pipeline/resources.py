"""Dagster resources: the configured doors to the CRM, Metakocka and the sync database.

In the code location secrets arrive as `EnvVar`s (see `definitions.py`), so the Dagster UI and
event logs show the variable's name, never its value. The API and the CLI build their clients
from the same classes (`resources_with_values`), so every client of a system has the same
timeouts and retry budget. Deployments differ by these resources, never by code paths.
"""

import json

import dagster as dg
import requests
from pydantic import Field, PrivateAttr

from sync_pipeline.adapters.retry import DEFAULT_RETRY_POLICY, RetryPolicy
from sync_pipeline.crm.client import CrmClient
from sync_pipeline.crm.credentials import MetakockaCredentials
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.settings import (
    DEFAULT_PUSH_CONCURRENCY,
    Organization,
    Settings,
    crm_tenants,
    organization_for_partition,
    organizations_to_json,
    parse_organizations,
)
from sync_pipeline.store.claims import DEFAULT_CLAIM_TTL_S
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.sync.credentials import metakocka_credentials
from sync_pipeline.sync.reporting import PLOT_TIMEOUT_S, HistoryPlotter


def configured_in_code(resource: dg.ConfigurableResource) -> dg.ResourceDefinition:
    """`resource` with its configuration fixed where it is built: same class, fields and values
    (an `EnvVar` stays a variable name, read by the run worker), but no run config.

    Why: Dagster puts every resource's config, defaults included, into each job's run config,
    and the launchpad opens with all of it: some 55 lines of timeouts, retry budgets and the
    organizations' JSON above the few fields an operator sets. Deployments differ by environment
    variables (the settings), not by launchpad edits, so the resources take none; the Resources
    page still lists every field with its description.
    """
    definition = resource.get_resource_definition()
    return definition.configured(
        definition.config_schema.default_value,
        description=f"{type(resource).__name__}: {definition.description}",
    )


class RetryConfig(dg.Config):
    """The retry budget of one API client (see `adapters/retry.py`): attempts include the first
    one; waits are jittered exponential between 0 and `initial_wait_s * 2**n`, at most
    `max_wait_s`, never shorter than a server's Retry-After (capped at `max_retry_after_s`)."""

    max_attempts: int = Field(
        default=DEFAULT_RETRY_POLICY.max_attempts,
        description="Attempts of one call, the first included (1: no retry).",
    )
    initial_wait_s: float = Field(
        default=DEFAULT_RETRY_POLICY.initial_wait_s,
        description="Base of the jittered exponential wait before a retry, in seconds.",
    )
    max_wait_s: float = Field(
        default=DEFAULT_RETRY_POLICY.max_wait_s,
        description="Longest wait between two attempts, in seconds.",
    )
    max_retry_after_s: float = Field(
        default=DEFAULT_RETRY_POLICY.max_retry_after_s,
        description="Longest Retry-After (or rate-limit pause) honoured, in seconds.",
    )

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            initial_wait_s=self.initial_wait_s,
            max_wait_s=self.max_wait_s,
            max_retry_after_s=self.max_retry_after_s,
        )


class CrmResource(dg.ConfigurableResource):
    """Fresh AI CRM's PostgREST API (Supabase `<project>` root URL and its service-role key)."""

    base_url: str = Field(description="The Supabase project URL (CRM_BASE_URL).")
    api_key: str = Field(description="The service-role key (CRM_API_KEY); never shown.")
    timeout_s: float = Field(default=30.0, description="Read timeout of one request, seconds.")
    connect_timeout_s: float = Field(default=5.0, description="Connect timeout, seconds.")
    max_concurrent_requests: int = Field(
        default=4, description="Requests in flight to the CRM at once, per run."
    )
    retry: RetryConfig = Field(
        default=RetryConfig(), description="Retry budget of CRM calls (adapters/retry.py)."
    )
    organizations_json: str = Field(
        default="",
        description="SYNC_ORGANIZATIONS: each organization's CRM settings (integration user, "
        "service product code) travel with its client.",
    )

    def client(self, session: requests.Session | None = None) -> CrmClient:
        """`session`: the HTTP session to send through (default: the client's own; the
        preflight passes one that refuses writes)."""
        return CrmClient(
            self.base_url,
            self.api_key,
            timeout_s=self.timeout_s,
            connect_timeout_s=self.connect_timeout_s,
            max_concurrent_requests=self.max_concurrent_requests,
            retry_policy=self.retry.policy(),
            tenants=crm_tenants(parse_organizations(self.organizations_json)),
            session=session,
        )


class MetakockaResource(dg.ConfigurableResource):
    """Metakocka's JSON API. Each organization's company id and secret come from
    `secret_keys` (a JSON object {company_id: secret_key}) or, for an organization with
    `"metakocka_credentials": "crm"`, from the CRM when a run first needs them
    (sync/credentials.py); the latter are kept for this resource's life (one run, or one
    sensor tick) only."""

    base_url: str = Field(description="Metakocka's host (METAKOCKA_BASE_URL).")
    secret_keys: str = Field(
        default="{}",
        description="JSON {company_id: secret_key} (METAKOCKA_SECRET_KEYS); never shown. "
        "Not needed for organizations whose credentials come from the CRM.",
    )
    read_timeout_s: float = Field(default=30.0, description="Timeout of a read, seconds.")
    write_timeout_s: float = Field(
        default=60.0, description="Timeout of a write (put_document can take 40 s), seconds."
    )
    connect_timeout_s: float = Field(default=5.0, description="Connect timeout, seconds.")
    create_settle_s: float | None = Field(
        default=None,
        description="After a create with an unknown outcome, wait this long (from sending it) "
        "before looking it up again: Metakocka may still be storing it. Default: "
        "write_timeout_s.",
    )
    max_concurrent_requests: int = Field(
        default=2, description="Requests in flight per company (third-party clients use 2)."
    )
    max_concurrent_searches: int = Field(
        default=1, description="Searches in flight per company (Metakocka serialises them)."
    )
    retry: RetryConfig = Field(
        default=RetryConfig(), description="Retry budget of Metakocka calls (adapters/retry.py)."
    )
    _from_crm: dict[str, MetakockaCredentials] = PrivateAttr(default_factory=dict)

    def all_secrets(self) -> list[str]:
        """Every secret this resource knows: METAKOCKA_SECRET_KEYS' and those read from the
        CRM so far (for redaction)."""
        known = json.loads(self.secret_keys or "{}").values()
        return [*known, *(c.secret_key for c in self._from_crm.values())]

    def credentials(self, organization: Organization, crm: CrmClient) -> MetakockaCredentials:
        """The organization's company id and secret (sync/credentials.py). Those from the CRM
        are read once per resource, so every step of an in-process run uses one company."""
        if organization.id in self._from_crm:
            return self._from_crm[organization.id]
        found = metakocka_credentials(
            organization, env_secrets=json.loads(self.secret_keys or "{}"), crm=crm
        )
        if organization.credentials_from_crm:
            self._from_crm[organization.id] = found
        return found

    def client_for(
        self,
        organization: Organization,
        crm: CrmClient,
        *,
        store: SyncStore | None = None,
        session: requests.Session | None = None,
    ) -> MetakockaClient:
        """The organization's company client. A secret read from the CRM is added to `store`'s
        redaction, like the secrets it was opened with. `session`: as `CrmResource.client`'s."""
        found = self.credentials(organization, crm)
        if store is not None:
            store.add_secrets([found.secret_key])
        return self.client(found, session=session)

    def client(
        self, found: MetakockaCredentials, *, session: requests.Session | None = None
    ) -> MetakockaClient:
        """The client of the company `found` names, with this resource's timeouts and retry
        budget (the API looks the credentials up itself, `api/config.py`)."""
        return MetakockaClient(
            self.base_url,
            found.company_id,
            found.secret_key,
            read_timeout_s=self.read_timeout_s,
            write_timeout_s=self.write_timeout_s,
            connect_timeout_s=self.connect_timeout_s,
            create_settle_s=self.create_settle_s,
            max_concurrent_requests=self.max_concurrent_requests,
            max_concurrent_searches=self.max_concurrent_searches,
            retry_policy=self.retry.policy(),
            session=session,
            credentials_origin=found.origin,
        )


class SyncStoreResource(dg.ConfigurableResource):
    """The sync database (SQLite file by default, PostgreSQL in production)."""

    database_url: str = Field(
        description="SQLAlchemy URL of the sync database (SYNC_DATABASE_URL)."
    )
    database_schema: str | None = Field(
        default=None,
        description="PostgreSQL schema of the sync tables (empty: SYNC_DATABASE_SCHEMA or sync).",
    )
    claim_ttl_s: float = Field(
        default=DEFAULT_CLAIM_TTL_S,
        description="A push's claim on a document lapses this long after its owner's last "
        "heartbeat (a crashed run's claims expire); must exceed Metakocka's create_settle_s by "
        "a heartbeat (claim_ttl_s / 4), so a dead run's create in flight has settled first.",
    )
    _store: SyncStore | None = PrivateAttr(default=None)

    def store(self, secrets: list[str] | tuple[str, ...] = ()) -> SyncStore:
        """One engine per process; the schema is created on first use."""
        if self._store is None:
            self._store = SyncStore(self.database_url, secrets=secrets, schema=self.database_schema)
            self._store.create_schema()
        return self._store


class OrganizationsResource(dg.ConfigurableResource):
    """The tenants: which Metakocka company and conflict policy belong to each CRM organization."""

    organizations_json: str = Field(
        description="SYNC_ORGANIZATIONS: each CRM organization's Metakocka company, conflict "
        "policy and settings (README, Configuration)."
    )
    push_concurrency: int = Field(
        default=DEFAULT_PUSH_CONCURRENCY, description="Documents pushed at once per run."
    )

    def get(self, organization_id: str) -> Organization:
        for org in parse_organizations(self.organizations_json):
            if org.id == organization_id:
                return org
        raise KeyError(f"unknown organization {organization_id!r}; check SYNC_ORGANIZATIONS")

    def for_partition(self, partition_key: str) -> Organization:
        """The organization a partition of the reconciliation assets is (`Organization.key`)."""
        return organization_for_partition(
            parse_organizations(self.organizations_json), partition_key
        )


class HistoryPlotResource(dg.ConfigurableResource):
    """The report's history plot, drawn by a child process started when the run starts.

    Why at the start: the child imports the plotting library and loads its fonts (about a
    second), which the report would otherwise wait for at the very end of the run, after the
    pushes; started with the run, it does that while the run reads. The run's own process never
    imports the library (`sync/history_plot.py`). Dagster sets a resource up only for runs with
    a step that needs it (the nightly report, not an on-demand sync), and tears it down when the
    run ends: a child the report never used is ended then.
    """

    timeout_s: float = Field(
        default=PLOT_TIMEOUT_S,
        description="How long the report waits for its plot once it asks for it, in seconds.",
    )
    _ready: HistoryPlotter | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        try:
            self._ready = HistoryPlotter(self.timeout_s)
        except OSError as exc:  # a plot never stops a sync: the report tries again, and says
            context.log.warning(f"the report's plot could not be started ahead: {exc}")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._ready is not None:
            self._ready.close()
            self._ready = None

    def plotter(self) -> HistoryPlotter:
        """The child started with the run (a new one if it was taken): it draws one plot."""
        ready, self._ready = self._ready, None
        return ready or HistoryPlotter(self.timeout_s)


def resources_with_values(settings: Settings) -> tuple[CrmResource, MetakockaResource]:
    """The CRM and Metakocka resources holding the settings' values, for the processes that are
    not Dagster runs (the API, the CLI): the classes the code location configures, so their
    clients have the runs' timeouts, concurrency and retry budgets."""
    crm = CrmResource(
        base_url=settings.crm_base_url or "",
        api_key=settings.crm_api_key.get_secret_value(),
        organizations_json=organizations_to_json(settings.organizations),
    )
    metakocka = MetakockaResource(
        base_url=settings.metakocka_base_url or "",
        secret_keys=settings.metakocka_secret_keys.get_secret_value() or "{}",
    )
    return crm, metakocka
