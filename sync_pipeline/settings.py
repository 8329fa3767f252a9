"""Typed settings read from the environment: the one place that knows the variable names and
the only module that reads the environment (`Settings.from_env`).

Secrets are `SecretStr`, so no repr or log line shows them; the code location hands them to
Dagster resources as `EnvVar`s (`definitions.py`), so the UI shows the variable's name, not its
value. The API and the CLI build their clients from the same resource classes with these values
(`resources.resources_with_values`), so timeouts and retry budgets are the same everywhere.
"""

import json
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, InstanceOf, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict

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


EMPTY_MEANS_UNSET = (
    "SYNC_DATABASE_URL",
    "CRM_BASE_URL",
    "METAKOCKA_BASE_URL",
    "SUPABASE_JWT_SECRET",
    "SUPABASE_JWKS_URL",
    "SUPABASE_JWT_AUDIENCE",
    "SUPABASE_JWT_ISSUER",
    "SYNC_API_MEMBERSHIP_SECONDS",
    "SYNC_DAGSTER_URL",
)
"""Variables whose empty value means "not set" (their default applies). Elsewhere an empty value
is a value: an empty SYNC_DATABASE_SCHEMA is the connection's default schema."""


class EnvironmentSource(EnvSettingsSource):
    """The settings' variables as they are in `environ` (the process environment, or a mapping a
    caller hands over), plus whether the sync database's URL and the Metakocka secrets are set
    there: the code location then passes those to Dagster by variable name (`EnvVar`)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str]:
        """pydantic-settings' hook for where the variables come from (default: `os.environ`)."""
        return self._environ

    def __call__(self) -> dict[str, Any]:
        return {
            **super().__call__(),
            "database_url_from_env": bool(self._environ.get("SYNC_DATABASE_URL")),
            "metakocka_secret_keys_from_env": "METAKOCKA_SECRET_KEYS" in self._environ,
        }


class Settings(BaseSettings):
    """Every setting of the product, code location, API and CLI alike, read from the environment
    here and nowhere else (`Settings.from_env`), so one variable means one thing everywhere.

    Each field's alias is its variable (README, Settings). Secrets are `SecretStr`: they never
    show in a repr, a log line or an error; the code location hands them to Dagster by variable
    name instead (`definitions.py`). Built with keyword arguments (tests), a `Settings` holds
    those and the defaults only: the environment is read by `from_env` alone.
    """

    model_config = SettingsConfigDict(
        frozen=True, populate_by_name=True, case_sensitive=True, extra="ignore"
    )

    data_dir: Path = Field(Path(DEFAULT_DATA_DIR), alias="SYNC_DATA_DIR")
    database_url: str = Field("", alias="SYNC_DATABASE_URL")
    """Unset: SQLite in `data_dir` (`default_database_url`)."""
    organizations: Annotated[tuple[InstanceOf[Organization], ...], NoDecode] = Field(
        (), alias="SYNC_ORGANIZATIONS"
    )
    nightly_cron: str = Field("0 2 * * *", alias="SYNC_NIGHTLY_CRON")
    timezone: str = Field("Europe/Ljubljana", alias="SYNC_TIMEZONE")
    push_concurrency: int = Field(DEFAULT_PUSH_CONCURRENCY, alias="SYNC_PUSH_CONCURRENCY")
    """Documents pushed to Metakocka at once per organization. More than Metakocka's allowance of
    requests in flight (2, bounded by the client's own semaphore): while two documents are on the
    wire, the others do their local bookkeeping (claim, intent, link): the allowance never idles."""
    database_url_from_env: bool = False
    """True when SYNC_DATABASE_URL is set: resources read it by name (it may hold a password)."""
    database_schema: str | None = Field(None, alias="SYNC_DATABASE_SCHEMA")
    """The sync tables' PostgreSQL schema (None: `sync`; store/engine.py)."""
    metakocka_secret_keys_from_env: bool = True
    """False when METAKOCKA_SECRET_KEYS is not set: allowed when every organization takes its
    credentials from the CRM (the resource then has no secret of its own)."""

    crm_base_url: str | None = Field(None, alias="CRM_BASE_URL")
    crm_api_key: SecretStr = Field(SecretStr(""), alias="CRM_API_KEY")
    metakocka_base_url: str | None = Field(None, alias="METAKOCKA_BASE_URL")
    metakocka_secret_keys: SecretStr = Field(SecretStr(""), alias="METAKOCKA_SECRET_KEYS")
    """JSON {company_id: secret_key}; see `metakocka_secrets`."""

    api_tokens: SecretStr = Field(SecretStr(""), alias="SYNC_API_TOKENS")
    """The API's service tokens: a JSON object {token: organization id}, or a file's path."""
    jwt_secret: SecretStr | None = Field(None, alias="SUPABASE_JWT_SECRET")
    jwks_url: str | None = Field(None, alias="SUPABASE_JWKS_URL")
    jwt_audience: str = Field("authenticated", alias="SUPABASE_JWT_AUDIENCE")
    jwt_issuer: str | None = Field(None, alias="SUPABASE_JWT_ISSUER")
    api_membership_seconds: float = Field(60.0, alias="SYNC_API_MEMBERSHIP_SECONDS")
    api_cors_origins: str = Field("", alias="SYNC_API_CORS_ORIGINS")
    """Comma-separated; see `cors_origins`."""
    dagster_url: str | None = Field(None, alias="SYNC_DAGSTER_URL")

    request_sensor_seconds: int = Field(2, alias="SYNC_REQUEST_SENSOR_SECONDS")
    change_poll_seconds: int = Field(30, alias="SYNC_CHANGE_POLL_SECONDS")
    run_retention_days: int = Field(90, alias="DAGSTER_RUN_RETENTION_DAYS")
    dagster_home: str | None = Field(None, alias="DAGSTER_HOME")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """The settings `environ` holds (default: this process's environment), and only those:
        a mapping handed over is not mixed with the process's variables."""
        source = EnvironmentSource(cls, os.environ if environ is None else environ)
        return cls(_build_sources=((source,), {}))

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        """Keyword arguments only: the environment is `from_env`'s to read."""
        return (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _defaults_for_empty_values(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if not (k in EMPTY_MEANS_UNSET and v == "")}
        return data

    @field_validator("organizations", mode="before")
    @classmethod
    def _parse_organizations(cls, value: Any) -> Any:
        return parse_organizations(value) if isinstance(value, str) else tuple(value)

    @model_validator(mode="after")
    def _default_database_url(self) -> "Settings":
        if not self.database_url:  # frozen: set once, while the model is being built
            object.__setattr__(self, "database_url", default_database_url(self.data_dir))
        return self

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

    def metakocka_secrets(self) -> dict[str, str]:
        """METAKOCKA_SECRET_KEYS: {company_id: secret_key} (empty when unset)."""
        return json.loads(self.metakocka_secret_keys.get_secret_value() or "{}")

    @property
    def cors_origins(self) -> tuple[str, ...]:
        return tuple(
            origin.strip().rstrip("/")
            for origin in self.api_cors_origins.split(",")
            if origin.strip()
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
