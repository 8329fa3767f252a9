"""Small helpers the assets share: opening the store with every secret known to it for redaction,
and the organization's Metakocka client."""

import dagster as dg

from sync_pipeline.adapters.errors import SyncError
from sync_pipeline.adapters.redact import redact
from sync_pipeline.crm.client import CrmClient
from sync_pipeline.crm.credentials import CredentialsError
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.resources import CrmResource, MetakockaResource, SyncStoreResource
from sync_pipeline.runs import TAG_REQUESTED_BY, TAG_SCHEDULE_NAME, TAG_USER
from sync_pipeline.settings import Organization
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.urls import printable_url


def open_store(
    store: SyncStoreResource, crm: CrmResource, metakocka: MetakockaResource
) -> SyncStore:
    """The sync database, or a `Failure` whose first line says it cannot be opened and why
    (a bare exception shows in the UI only behind a generic line and "View full message")."""
    secrets = [crm.api_key, *metakocka.all_secrets()]
    try:
        return store.store(secrets=secrets)
    except Exception as exc:
        where = printable_url(store.database_url)
        raise dg.Failure(
            description=redact(
                f"The sync database cannot be opened ({where}): {type(exc).__name__}: {exc}. "
                "Check SYNC_DATABASE_URL (or SYNC_DATA_DIR) and that this process can reach it.",
                secrets,
            ),
            metadata={"database": where},
        ) from None


def metakocka_client(
    metakocka: MetakockaResource, crm: CrmClient, store: SyncStore, organization: Organization
) -> MetakockaClient:
    """The organization's Metakocka client, or a `Failure` whose first line is why its
    credentials cannot be had (the organization and what to fix). The extraction, the first
    step, logs that case as an error row instead (assets/extract.py); a later step meets it
    only if the credentials changed in the CRM meanwhile."""
    try:
        return metakocka.client_for(organization, crm, store=store)
    except (SyncError, KeyError) as exc:
        raise dg.Failure(description=redact(credentials_problem(organization, exc))) from None


def credentials_problem(organization: Organization, exc: SyncError | KeyError) -> str:
    """Why the organization has no Metakocka client, in one line that names it."""
    if isinstance(exc, CredentialsError):
        return str(exc)  # names the organization and the fix already
    text = exc.args[0] if isinstance(exc, KeyError) else str(exc)
    return f"{organization.label}: its Metakocka credentials cannot be read: {text}"


def requested_by(context: dg.AssetExecutionContext) -> str:
    """Who asked for this run: a tag set by the API/sensor, else the scheduler or the UI user."""
    tags = context.run.tags
    return (
        tags.get(TAG_REQUESTED_BY)
        or tags.get(TAG_USER)
        or ("schedule" if TAG_SCHEDULE_NAME in tags else "operator")
    )
