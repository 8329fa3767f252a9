"""What the HTTP API needs, read from the same environment variables as the code location, plus
`SYNC_API_TOKENS`: a JSON object `{"<token>": "<organization id>"}` (or the path of a JSON file
holding one). A token belongs to one organization. Token values are never logged or echoed.
"""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sync_pipeline.adapters.crm import CrmClient
from sync_pipeline.adapters.metakocka import MetakockaClient
from sync_pipeline.settings import Organization, Settings, crm_tenants
from sync_pipeline.store.repository import SyncStore

TOKENS_ENV = "SYNC_API_TOKENS"


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


@dataclass
class ApiConfig:
    """The API's doors: tokens, organizations, both systems' clients and the sync database."""

    tokens: dict[str, str]
    organizations: dict[str, Organization]
    store: SyncStore
    crm_client: Callable[[], CrmClient]
    metakocka_client: Callable[[str], MetakockaClient]
    """company id -> client of that Metakocka company."""
    _clients: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        unknown = {org for org in self.tokens.values() if org not in self.organizations}
        if unknown:
            # Name the organizations, never the tokens.
            raise ValueError(
                f"{TOKENS_ENV} names organizations missing from SYNC_ORGANIZATIONS: "
                + ", ".join(sorted(unknown))
            )

    def crm(self) -> CrmClient:
        if "crm" not in self._clients:
            self._clients["crm"] = self.crm_client()
        return self._clients["crm"]

    def metakocka(self, organization: Organization) -> MetakockaClient:
        key = ("mk", organization.metakocka_company_id)
        if key not in self._clients:
            self._clients[key] = self.metakocka_client(organization.metakocka_company_id)
        return self._clients[key]

    @classmethod
    def from_env(cls, environ=None) -> "ApiConfig":
        env = os.environ if environ is None else environ
        settings = Settings.from_env(env)
        secrets = json.loads(env.get("METAKOCKA_SECRET_KEYS") or "{}")
        crm_key = env.get("CRM_API_KEY", "")
        store = SyncStore(settings.database_url, secrets=[crm_key, *secrets.values()])
        store.create_schema()

        def metakocka_client(company_id: str) -> MetakockaClient:
            if company_id not in secrets:
                raise KeyError(f"no Metakocka secret key configured for company {company_id}")
            return MetakockaClient(env["METAKOCKA_BASE_URL"], company_id, secrets[company_id])

        return cls(
            tokens=parse_tokens(env.get(TOKENS_ENV, "")),
            organizations={org.id: org for org in settings.organizations},
            store=store,
            crm_client=lambda: CrmClient(
                env["CRM_BASE_URL"], crm_key, tenants=crm_tenants(settings.organizations)
            ),
            metakocka_client=metakocka_client,
        )
