"""An organization's Metakocka credentials as the CRM keeps them: its `metakocka_credentials` row.

Why: the CRM's own Metakocka integration stores each company id and secret in the CRM
(sql-migrations/57: `user_id` NOT NULL UNIQUE, `company_id`, `secret_key` in plain text,
`api_endpoint`, `is_active`; 65/68 add a nullable `organization_id`; both published profiles
share this table, `crm_ddl/common-integration-tables.sql`). An organization configured with
`"metakocka_credentials": "crm"` uses them instead of METAKOCKA_SECRET_KEYS.

How the CRM itself reads the table (aware88/fresh-ai-crm):
- `MetakockaService.getUserCredentials(userId)` (src/lib/integrations/metakocka/service.ts)
  selects `user_id = userId AND is_active = true` with supabase-js `.single()`: PostgREST
  answers an error unless exactly one row matches, and the CRM then has no credentials. It never
  orders by `updated_at` or picks one of several.
- Saving deactivates instead of deleting in the later versions (`is_active = false`, then a new
  row; the credentials route's DELETE sets `is_active = false`): an inactive row is history.
- Organization-wide rows (`organization_id` set) are what fixed/08's variant and the CRM's
  setup scripts read (`.eq('organization_id', orgId)`).

The rule here follows it, and never guesses a company to write an organization's documents to:
the organization's active rows with `organization_id` = it; when it has none, the active row of
its `crm_integration_user_id` with `organization_id` NULL (a member's own row, as the CRM's
per-user tenancy has it). Exactly one must match; none or several is a `CredentialsError`
naming the organization and what to change. The row's `api_endpoint` is not followed: where a
secret is sent is the deployment's METAKOCKA_BASE_URL, not something any CRM user may edit.

The secret is read from the one chosen row only (a second request), so the secrets of other
rows never enter the process; it is never formatted into a message.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sync_pipeline.adapters.errors import AuthError
from sync_pipeline.crm.query import quoted

if TYPE_CHECKING:
    from sync_pipeline.crm.client import CrmClient

CREDENTIALS = "metakocka_credentials"
COLUMNS = ("id", "user_id", "organization_id", "company_id", "secret_key", "is_active")
WHERE_TO_SAVE = "the CRM's Metakocka settings (/settings/integrations/metakocka)"


class CredentialsError(AuthError):
    """The organization's credentials cannot be taken from the CRM (none, several, unusable).

    An `auth` error: like refused credentials, nothing can be synced until someone fixes them.
    The message names the organization and the change that fixes it."""


@dataclass(frozen=True)
class MetakockaCredentials:
    """A Metakocka company id and its secret, and where they come from (what to correct when
    Metakocka refuses them). The secret is kept out of `repr`."""

    company_id: str
    secret_key: str = field(repr=False)
    origin: str


def read_metakocka_credentials(
    client: "CrmClient", organization_id: str, *, label: str, integration_user_id: str | None
) -> MetakockaCredentials:
    """The organization's one active `metakocka_credentials` row (module docstring), read with
    the client's service key; `CredentialsError` when there is none, several, or it is unusable.
    `label` names the organization in messages."""
    schema = client.schema()
    missing = [c for c in COLUMNS if not schema.has(CREDENTIALS, c)]
    if missing:
        raise CredentialsError(
            f"{label}: the CRM has no {CREDENTIALS} table with {', '.join(missing)} "
            "(sql-migrations/57 creates it): configure the organization with "
            '"metakocka_credentials": "env" and its secret in METAKOCKA_SECRET_KEYS instead',
            details={"table": CREDENTIALS, "missing": missing},
        )
    scope = f"organization_id.eq.{quoted(organization_id)}"
    if integration_user_id:
        scope += f",and(organization_id.is.null,user_id.eq.{quoted(integration_user_id)})"
    rows = client.counted(
        CREDENTIALS,
        [("select", "id,user_id,organization_id,company_id,is_active"), ("or", f"({scope})")],
    )
    active = [r for r in rows if r.get("is_active") is True]  # the CRM's .eq('is_active', true)
    own = [r for r in active if str(r.get("organization_id")) == organization_id]
    where, kind = f"with organization_id {organization_id}", "organization-wide"
    if not own and integration_user_id:
        own = [r for r in active if r.get("organization_id") is None]
        where = f"of crm_integration_user_id {integration_user_id} with organization_id NULL"
        kind = f"saved by user {integration_user_id}"
        if own and integration_user_id not in client.directory(organization_id).tenancy().members:
            raise CredentialsError(
                f"{label}: the CRM's {CREDENTIALS} row {own[0]['id']} is of user "
                f"{integration_user_id}, who is not a member of the organization "
                "(organization_members): add the user to the organization, or set the row's "
                f"organization_id to {organization_id}",
                details={"rows": [str(own[0]["id"])]},
            )
    if not own:
        raise CredentialsError(_none_found(label, organization_id, integration_user_id, rows))
    if len(own) > 1:
        raise CredentialsError(
            f"{label}: {len(own)} active rows in the CRM's {CREDENTIALS} {where} "
            f"({_describe(own)}): the pipeline takes exactly one, as the CRM does, and will "
            "not guess which company to write to. Set is_active = false on all but one",
            details={"rows": [str(r["id"]) for r in own]},
        )
    origin = f"{label}'s row {own[0]['id']} in the CRM's {CREDENTIALS} ({kind})"
    return _with_secret(client, own[0], label, origin)


def _with_secret(client: "CrmClient", row: dict, label: str, origin: str) -> MetakockaCredentials:
    """The chosen row's company id and secret, read together by its id (still active)."""
    found = client.rows(
        "GET",
        CREDENTIALS,
        params=[
            ("select", "company_id,secret_key"),
            ("id", f"eq.{row['id']}"),
            ("is_active", "is.true"),
        ],
    )
    if len(found) != 1:
        problem = "changed while it was read (deactivated or deleted)"
    else:
        company = str(found[0].get("company_id") or "").strip()
        secret = found[0].get("secret_key")
        if company and isinstance(secret, str) and secret.strip():
            return MetakockaCredentials(company, secret, origin)
        problem = "has an empty company_id or secret_key"
    raise CredentialsError(
        f"{label}: the CRM's {CREDENTIALS} row {row['id']} {problem}: "
        f"save the credentials again in {WHERE_TO_SAVE}",
        details={"rows": [str(row["id"])]},
    )


def _none_found(label: str, organization_id: str, user_id: str | None, rows: list[dict]) -> str:
    looked = f"a row with organization_id {organization_id}"
    if user_id:
        looked += f", or one of crm_integration_user_id {user_id} with organization_id NULL"
    inactive = [r for r in rows if r.get("is_active") is not True]
    skipped = f" ({len(inactive)} inactive row(s) are not taken)" if inactive else ""
    if user_id:
        fixes = (
            f"save the credentials in {WHERE_TO_SAVE} signed in as user {user_id}, or set "
            f"organization_id = {organization_id} on the row that holds them"
        )
    else:
        fixes = (
            f"set organization_id = {organization_id} on the row of the member whose "
            "credentials to use, or name that member as the organization's "
            "crm_integration_user_id in SYNC_ORGANIZATIONS"
        )
    return (
        f"{label}: no active Metakocka credentials in the CRM's {CREDENTIALS}: looked for "
        f"{looked}, is_active true{skipped}. Fix: {fixes}; or configure "
        '"metakocka_credentials": "env" with the secret in METAKOCKA_SECRET_KEYS'
    )


def _describe(rows: list[dict]) -> str:
    return "; ".join(
        f"row {r['id']}: user {r.get('user_id')}, company {r.get('company_id')}" for r in rows
    )
