"""Small helpers the assets share: opening the store with every secret known to it for redaction."""

import dagster as dg

from sync_pipeline.resources import CrmResource, MetakockaResource, SyncStoreResource
from sync_pipeline.store.repository import SyncStore

PARTITION_TAG_REQUESTED_BY = "sync_pipeline/requested_by"


def open_store(
    store: SyncStoreResource, crm: CrmResource, metakocka: MetakockaResource
) -> SyncStore:
    return store.store(secrets=[crm.api_key, *metakocka.all_secrets()])


def requested_by(context: dg.AssetExecutionContext) -> str:
    """Who asked for this run: a tag set by the API/sensor, else the scheduler or the UI user."""
    tags = context.run.tags
    return (
        tags.get(PARTITION_TAG_REQUESTED_BY)
        or tags.get("dagster/user")
        or ("schedule" if "dagster/schedule_name" in tags else "operator")
    )
