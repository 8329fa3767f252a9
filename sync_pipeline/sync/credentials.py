"""Where an organization's Metakocka company id and secret come from, for every entry point.

An organization's `metakocka_credentials` setting (settings.py) picks the source: `env` (its
`metakocka_company_id`, the secret in METAKOCKA_SECRET_KEYS) or `crm` (its row of the CRM's
`metakocka_credentials` table, `crm/credentials.py`, read with the service key when a
run starts). The Dagster resource, the API and the CLI all ask here, so the company an
organization writes to cannot differ by entry point.

A `crm` organization may still name its `metakocka_company_id` (its runs' company tag, so the
per-company run limit counts it with the company's other organizations). The CRM's row must
then name the same company: a row edited to another company would otherwise send the
organization's documents there.
"""

from collections.abc import Mapping

from sync_pipeline.crm.client import CrmClient
from sync_pipeline.crm.credentials import (
    CredentialsError,
    MetakockaCredentials,
    read_metakocka_credentials,
)
from sync_pipeline.settings import Organization

ENV_SECRETS = "METAKOCKA_SECRET_KEYS"


def metakocka_credentials(
    organization: Organization, *, env_secrets: Mapping[str, str], crm: CrmClient
) -> MetakockaCredentials:
    """The organization's company id and secret, from its configured source. `KeyError` when
    METAKOCKA_SECRET_KEYS lacks an `env` organization's company; `CredentialsError` (an
    `auth` error naming the organization and the fix) when the CRM has no usable row; the
    CRM client's typed errors when the CRM cannot be read."""
    if not organization.credentials_from_crm:
        company = organization.metakocka_company_id
        if company not in env_secrets:
            raise KeyError(f"no Metakocka secret key configured for company {company}")
        return MetakockaCredentials(company, env_secrets[company], ENV_SECRETS)
    found = read_metakocka_credentials(
        crm,
        organization.id,
        label=organization.label,
        integration_user_id=organization.crm_integration_user_id,
    )
    configured = organization.metakocka_company_id
    if configured and found.company_id != configured:
        raise CredentialsError(
            f"{found.origin} is for Metakocka company {found.company_id}, but "
            f"SYNC_ORGANIZATIONS gives the organization company {configured}: its documents "
            "are not written to another company. Correct the row's company_id, or the "
            "organization's metakocka_company_id",
            details={"company_in_crm": found.company_id, "configured_company": configured},
        )
    return found
