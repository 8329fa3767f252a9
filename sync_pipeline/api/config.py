"""What the HTTP API needs: the code location's settings (`settings.Settings`), plus:

- `SYNC_API_TOKENS`: a JSON object `{"<token>": "<organization id>"}` (or the path of a JSON file
  holding one), the static tokens of services. A token belongs to one organization.
- `SUPABASE_JWT_SECRET` and/or `SUPABASE_JWKS_URL`: how CRM users' access tokens are verified
  (the project's legacy JWT secret, or its signing keys); `SUPABASE_JWT_AUDIENCE` (default
  `authenticated`) and `SUPABASE_JWT_ISSUER` (optional, e.g. `https://<project>.supabase.co/auth/v1`).
  Neither set: user tokens are refused (401), service tokens still work.
- `SYNC_API_MEMBERSHIP_SECONDS` (default 60): how long the API reuses what it read of the CRM's
  organization membership (who may act for an organization, and whose documents are its own).
- `SYNC_API_CORS_ORIGINS`: comma-separated origins whose pages may call the API from the browser
  (the CRM's own URL); default none.
- `SYNC_DAGSTER_URL`: the Dagster webserver (e.g. `http://127.0.0.1:3000` under `dagster dev`).
  Set: the API submits a request's run itself, at once (`dagster_runs.py`); unset, or the
  webserver unreachable: the request sensor launches it on its next tick.

Token values and the JWT secret are never logged or echoed; the secret is redacted like the
other secrets wherever the API's store writes text.
"""

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sync_pipeline.api.auth import UserTokenVerifier
from sync_pipeline.api.dagster_runs import DagsterRuns
from sync_pipeline.crm.client import CrmClient
from sync_pipeline.crm.credentials import MetakockaCredentials
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.resources import resources_with_values
from sync_pipeline.settings import Organization, Settings
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.sync.credentials import metakocka_credentials

TOKENS_ENV = "SYNC_API_TOKENS"
JWT_SECRET_ENV = "SUPABASE_JWT_SECRET"
JWKS_URL_ENV = "SUPABASE_JWKS_URL"
DAGSTER_URL_ENV = "SYNC_DAGSTER_URL"
DEFAULT_MEMBERSHIP_SECONDS = 60.0


def parse_tokens(value: str) -> dict[str, str]:
    """`SYNC_API_TOKENS`: a JSON object, or the path of a file holding one."""
    value = (value or "").strip()
    if not value:
        return {}
    if not value.startswith("{"):
        value = Path(value).read_text()
    tokens = json.loads(value)
    if not isinstance(tokens, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k for k, v in tokens.items()
    ):
        raise ValueError(f"{TOKENS_ENV} must be a JSON object of token -> organization id")
    return tokens


def user_token_verifier(settings: Settings) -> UserTokenVerifier | None:
    """The verifier of CRM users' access tokens, or None when no key is configured."""
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    if not secret and not settings.jwks_url:
        return None
    try:
        return UserTokenVerifier(
            secret=secret or None,
            jwks_url=settings.jwks_url,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
    except ValueError as exc:
        raise ValueError(f"{JWT_SECRET_ENV}/{JWKS_URL_ENV}: {exc}") from None


@dataclass
class ApiConfig:
    """The API's doors: tokens, organizations, both systems' clients and the sync database."""

    tokens: dict[str, str]
    organizations: dict[str, Organization]
    store: SyncStore
    crm_client: Callable[[], CrmClient]
    metakocka_client: Callable[[MetakockaCredentials], MetakockaClient]
    """A company's id and secret -> its client."""
    users: UserTokenVerifier | None = None
    """Verifies CRM users' access tokens; None: only service tokens are accepted."""
    membership_seconds: float = DEFAULT_MEMBERSHIP_SECONDS
    """The CRM client (with what it read of organization_members) is renewed this often."""
    cors_origins: tuple[str, ...] = ()
    """Origins whose pages may call the API from the browser."""
    metakocka_secrets: dict[str, str] = field(default_factory=dict, repr=False)
    """METAKOCKA_SECRET_KEYS: company id -> secret (organizations whose credentials are not
    the CRM's)."""
    dagster: DagsterRuns | None = None
    """Submits each request's run at once; None: the request sensor launches every run."""
    _clients: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        unknown = {org for org in self.tokens.values() if org not in self.organizations}
        if unknown:
            # Name the organizations, never the tokens.
            raise ValueError(
                f"{TOKENS_ENV} names organizations missing from SYNC_ORGANIZATIONS: "
                + ", ".join(sorted(unknown))
            )

    def crm(self) -> CrmClient:
        """The CRM client, renewed every `membership_seconds`: its directories cache each
        organization's members (`CrmDirectory.tenancy`), which decide both who may act for an
        organization and which documents are its own, so a member added or removed in the CRM
        counts here within that time. A renewed client's predecessor is left to finish the
        calls in flight (its connections close when it is collected)."""
        with self._lock:
            made = self._clients.get("crm")
            if made is None or time.monotonic() - made[1] >= self.membership_seconds:
                made = self._clients["crm"] = (self.crm_client(), time.monotonic())
            return made[0]

    def members_of(self, organization_id: str) -> frozenset[str]:
        """The organization's members (user ids), as the CRM's `organization_members` says."""
        return self.crm().directory(organization_id).tenancy().members

    def metakocka(self, organization: Organization) -> MetakockaClient:
        """The organization's Metakocka client (sync/credentials.py): one per company of
        METAKOCKA_SECRET_KEYS; for an organization whose credentials are the CRM's, read again
        every `membership_seconds` (a secret changed in the CRM counts here within that time),
        its secret redacted by the API's store like the others."""
        from_crm = organization.credentials_from_crm
        key = ("mk-crm", organization.id) if from_crm else ("mk", organization.metakocka_company_id)
        made = self._clients.get(key)
        if made is None or (from_crm and time.monotonic() - made[1] >= self.membership_seconds):
            found = metakocka_credentials(
                organization, env_secrets=self.metakocka_secrets, crm=self.crm()
            )
            self.store.add_secrets([found.secret_key])
            made = self._clients[key] = (self.metakocka_client(found), time.monotonic())
        return made[0]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ApiConfig":
        """The API of the settings `environ` holds (default: the process environment)."""
        settings = Settings.from_env(environ)
        tokens = parse_tokens(settings.api_tokens.get_secret_value())
        users = user_token_verifier(settings)
        needed = [
            name
            for name, value in (
                ("CRM_BASE_URL", settings.crm_base_url),
                ("METAKOCKA_BASE_URL", settings.metakocka_base_url),
            )
            if not value
        ]
        if (tokens or users) and needed:
            raise ValueError(
                f"the API accepts tokens but {' and '.join(needed)} "
                f"{'is' if len(needed) == 1 else 'are'} not set"
            )
        secrets = settings.metakocka_secrets()
        jwt_secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
        store = SyncStore(
            settings.database_url,
            secrets=[settings.crm_api_key.get_secret_value(), jwt_secret, *secrets.values()],
        )
        store.create_schema()
        crm, metakocka = resources_with_values(settings)
        return cls(
            tokens=tokens,
            organizations={org.id: org for org in settings.organizations},
            store=store,
            crm_client=crm.client,
            metakocka_client=metakocka.client,
            metakocka_secrets=secrets,
            users=users,
            membership_seconds=settings.api_membership_seconds,
            cors_origins=settings.cors_origins,
            dagster=DagsterRuns(settings.dagster_url) if settings.dagster_url else None,
        )
