"""Typed settings read from the environment: the one place that knows the variable names.

Secrets are never read here into code paths that log; they are handed to Dagster resources as
`EnvVar`s (see `resources.py`), so the UI shows the variable's name, not its value. What *is*
read here is the non-secret shape of the deployment: which organizations exist (the partition
keys), where the sync
database lives, the nightly schedule.
"""

import json
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from sync_pipeline.crm.tenancy import CrmTenant
from sync_pipeline.domain.policies import CONFLICT_POLICIES
from sync_pipeline.metakocka.statuses import STANDARD, StatusMap

DEFAULT_DATA_DIR = ".sync_pipeline"
DEFAULT_PUSH_CONCURRENCY = 4

CREDENTIALS_FROM_ENV = "env"
"""`metakocka_credentials` default: the secret is METAKOCKA_SECRET_KEYS[metakocka_company_id]."""
CREDENTIALS_FROM_CRM = "crm"
"""`metakocka_credentials: crm`: company id and secret are the CRM's `metakocka_credentials` row
of the organization, read at run start (sync/credentials.py, docs/crm.md)."""
CREDENTIAL_SOURCES = (CREDENTIALS_FROM_ENV, CREDENTIALS_FROM_CRM)


@dataclass(frozen=True)
class Organization:
    """One tenant: its CRM organization id and the Metakocka company it syncs with.

    `conflict_policy` is one of `CONFLICT_POLICIES`; `propagate_deletes` opts in to deleting the
    counterpart of a document deleted on one side (off: a deletion is only reported).
    `crm_integration_user_id` owns the documents created in the CRM from Metakocka (the CRM's
    `sales_documents.user_id` is NOT NULL); `service_product_code` is the Metakocka product a
    CRM line with neither a product mapping nor a SKU is sent as (docs/crm.md).
    `metakocka_statuses` maps the company's Metakocka statuses to the CRM's over the standard
    register's map (docs/metakocka.md).

    `metakocka_credentials` says where the company id and secret come from: `env` (default:
    `metakocka_company_id` here, its secret in METAKOCKA_SECRET_KEYS) or `crm` (the CRM's
    `metakocka_credentials` table, read when a run starts; `metakocka_company_id` is then
    optional, and when given the CRM's row must name the same company).
    """

    id: str
    name: str
    metakocka_company_id: str | None
    conflict_policy: str = "manual"
    propagate_deletes: bool = False
    crm_integration_user_id: str | None = None
    service_product_code: str | None = None
    key: str = ""
    """Its Dagster partition key: what the UI shows for the organization (partition picker, run
    headers, plots). Default: its name, lower case, with dashes (`Acme d.o.o.` -> `acme-d-o-o`)."""
    metakocka_statuses: StatusMap = STANDARD
    metakocka_credentials: str = CREDENTIALS_FROM_ENV

    def __post_init__(self):
        if self.conflict_policy not in CONFLICT_POLICIES:
            raise ValueError(
                f"organization {self.id}: conflict_policy must be one of "
                f"{', '.join(CONFLICT_POLICIES)}, got {self.conflict_policy!r}"
            )
        if self.metakocka_credentials not in CREDENTIAL_SOURCES:
            raise ValueError(
                f"organization {self.id}: metakocka_credentials must be "
                f'"{CREDENTIALS_FROM_ENV}" (METAKOCKA_SECRET_KEYS) or "{CREDENTIALS_FROM_CRM}" '
                f"(the CRM's metakocka_credentials table), got {self.metakocka_credentials!r}"
            )
        if not self.metakocka_company_id and not self.credentials_from_crm:
            raise ValueError(
                f"organization {self.id}: metakocka_company_id is required, unless its "
                f'credentials come from the CRM ("metakocka_credentials": "crm")'
            )
        key = slug(self.key or self.name) or self.id
        object.__setattr__(self, "key", key)

    @property
    def credentials_from_crm(self) -> bool:
        return self.metakocka_credentials == CREDENTIALS_FROM_CRM

    @property
    def label(self) -> str:
        """How messages name the organization: its name and CRM id."""
        return f"{self.name} ({self.id})"


def slug(text: str) -> str:
    """Lower-case ASCII words joined by dashes: a partition key the UI shows and a URL keeps."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    database_url: str = ""
    organizations: tuple[Organization, ...] = ()
    nightly_cron: str = "0 2 * * *"
    timezone: str = "Europe/Ljubljana"
    push_concurrency: int = DEFAULT_PUSH_CONCURRENCY
    """Documents pushed to Metakocka at once per organization. More than Metakocka's allowance of
    requests in flight (2, bounded by the client's own semaphore): while two documents are on the
    wire, the others do their local bookkeeping (claim, intent, link): the allowance never idles."""
    database_url_from_env: bool = False
    """True when SYNC_DATABASE_URL is set: resources read it by name (it may hold a password)."""
    database_schema: str | None = None
    """SYNC_DATABASE_SCHEMA: the sync tables' PostgreSQL schema (None: `sync`; store/engine.py)."""
    metakocka_secret_keys_from_env: bool = True
    """False when METAKOCKA_SECRET_KEYS is not set: allowed when every organization takes its
    credentials from the CRM (the resource then has no secret of its own)."""

    @property
    def organization_ids(self) -> list[str]:
        return [org.id for org in self.organizations]

    @property
    def partition_keys(self) -> list[str]:
        return [org.key for org in self.organizations]

    def organization(self, organization_id: str) -> Organization:
        for org in self.organizations:
            if org.id == organization_id:
                return org
        raise KeyError(f"unknown organization {organization_id!r}; check SYNC_ORGANIZATIONS")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("SYNC_DATA_DIR", DEFAULT_DATA_DIR))
        return cls(
            data_dir=data_dir,
            database_url=env.get("SYNC_DATABASE_URL") or default_database_url(data_dir),
            organizations=parse_organizations(env.get("SYNC_ORGANIZATIONS", "")),
            nightly_cron=env.get("SYNC_NIGHTLY_CRON", "0 2 * * *"),
            timezone=env.get("SYNC_TIMEZONE", "Europe/Ljubljana"),
            push_concurrency=int(env.get("SYNC_PUSH_CONCURRENCY", DEFAULT_PUSH_CONCURRENCY)),
            database_url_from_env=bool(env.get("SYNC_DATABASE_URL")),
            database_schema=env.get("SYNC_DATABASE_SCHEMA"),
            metakocka_secret_keys_from_env="METAKOCKA_SECRET_KEYS" in env,
        )


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'sync.db').resolve()}"


def parse_organizations(value: str) -> tuple[Organization, ...]:
    """`SYNC_ORGANIZATIONS` is a JSON list, or the path of a JSON file holding one.

    Each item: {"id": "<crm organization uuid>", "name": "...", "metakocka_company_id": "16",
    "conflict_policy": "manual", "propagate_deletes": false, "crm_integration_user_id":
    "<crm user uuid>", "service_product_code": "STORITEV", "key": "acme",
    "metakocka_statuses": {"awaiting_payment": "sent"}, "metakocka_credentials": "env"}. No
    secrets belong here.
    """
    value = value.strip()
    if not value:
        return ()
    if not value.startswith("["):
        value = Path(value).read_text()
    items = json.loads(value)
    organizations = tuple(
        Organization(
            id=str(item["id"]),
            name=str(item.get("name", item["id"])),
            metakocka_company_id=_optional(item.get("metakocka_company_id")),
            conflict_policy=str(item.get("conflict_policy") or "manual"),
            propagate_deletes=_flag(item.get("propagate_deletes", False)),
            crm_integration_user_id=_optional(item.get("crm_integration_user_id")),
            service_product_code=_optional(item.get("service_product_code")),
            key=str(item.get("key") or ""),
            metakocka_statuses=StatusMap.from_config(
                item.get("metakocka_statuses"), f"organization {item['id']}"
            ),
            metakocka_credentials=str(item.get("metakocka_credentials") or CREDENTIALS_FROM_ENV),
        )
        for item in items
    )
    keys = [org.key for org in organizations]
    clashes = sorted({key for key in keys if keys.count(key) > 1})
    if clashes:
        raise ValueError(
            f"SYNC_ORGANIZATIONS: two organizations have the partition key {clashes[0]!r} "
            '(from their names): give each a distinct "key"'
        )
    return organizations


def organization_for_partition(
    organizations: tuple[Organization, ...], partition_key: str
) -> Organization:
    """The organization whose partition key (or, for runs from before keys, id) this is."""
    for org in organizations:
        if partition_key in (org.key, org.id):
            return org
    raise KeyError(f"unknown organization partition {partition_key!r}; check SYNC_ORGANIZATIONS")


def organizations_to_json(organizations: list[Organization] | tuple[Organization, ...]) -> str:
    return json.dumps(
        [
            {
                "id": org.id,
                "name": org.name,
                "metakocka_company_id": org.metakocka_company_id,
                "conflict_policy": org.conflict_policy,
                "propagate_deletes": org.propagate_deletes,
                "crm_integration_user_id": org.crm_integration_user_id,
                "service_product_code": org.service_product_code,
                "key": org.key,
                "metakocka_statuses": org.metakocka_statuses.as_config(),
                "metakocka_credentials": org.metakocka_credentials,
            }
            for org in organizations
        ]
    )


def crm_tenants(organizations) -> list[CrmTenant]:
    """Each organization's CRM settings, as the CRM client takes them."""
    return [
        CrmTenant(
            organization_id=org.id,
            integration_user_id=org.crm_integration_user_id,
            service_product_code=org.service_product_code,
        )
        for org in organizations
    ]


def _optional(value) -> str | None:
    text = "" if value is None else str(value).strip()
    return text or None


def _flag(value) -> bool:
    """A JSON boolean, or the strings "true"/"false" an environment file may hold."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)
