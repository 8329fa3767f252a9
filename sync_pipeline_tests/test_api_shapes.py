"""The sync database's statuses in the CRM's vocabulary (`crm_shapes`), and the counts a bulk
request answers with (`Statuses.out_of_sync_counts`)."""

from datetime import UTC, datetime

import pytest

from sync_pipeline.api.crm_shapes import crm_mapping
from sync_pipeline.crm.mirror import CRM_MAPPING_STATUS
from sync_pipeline.store.tables import SYNC_STATUSES

CRM_ID = "6f1c2a9e-1b7d-4c8e-9a0b-2d3e4f5a6b7c"
ORG = "11111111-1111-4111-8111-111111111111"
LINK = {"crm_document_id": CRM_ID, "metakocka_id": "1000234", "state": "linked"}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("synced", "synced"),
        ("pending", "pending"),
        ("failed", "error"),
        ("invalid", "error"),
        ("conflict", "needs_review"),
        ("deleted_in_crm", "needs_review"),
        ("deleted_in_metakocka", "needs_review"),
        ("no_crm_type", "needs_review"),
    ],
)
def test_every_status_has_a_place_in_the_crms_check_set(status, expected):
    mapping = crm_mapping(CRM_ID, {"status": status, "last_error": "why"}, LINK, None)
    assert mapping.syncStatus == expected and mapping.synced and mapping.syncError == "why"


def test_the_vocabulary_covers_every_status():
    assert set(CRM_MAPPING_STATUS) == set(SYNC_STATUSES)


def test_synced_means_a_linked_counterpart_and_pending_means_on_its_way():
    never = crm_mapping(CRM_ID, None, None, None)
    assert (never.synced, never.syncStatus, never.metakockaId) == (False, None, None)
    queued = crm_mapping(CRM_ID, None, None, "queued")
    assert (queued.synced, queued.syncStatus) == (False, "pending")
    failed_again = crm_mapping(CRM_ID, {"status": "failed"}, None, "launched")
    assert (failed_again.synced, failed_again.syncStatus) == (False, "pending")
    resynced = crm_mapping(CRM_ID, {"status": "synced"}, LINK, "queued")
    assert (resynced.synced, resynced.syncStatus) == (True, "synced")
    creating = crm_mapping(CRM_ID, None, {**LINK, "state": "creating_in_metakocka"}, None)
    assert creating.synced is False


def test_bulk_counts_come_from_what_the_sync_database_knows(store):
    now = datetime.now(UTC)

    def row(crm_id, mk_id, status):
        return {
            "organization_id": ORG,
            "crm_document_id": crm_id,
            "metakocka_id": mk_id,
            "status": status,
            "attempts": 1,
            "updated_at": now,
        }

    store.status.upsert(
        ORG,
        [
            row("00000000-0000-4000-8000-000000000001", None, "failed"),  # CRM only: a create
            row("00000000-0000-4000-8000-000000000002", "2", "conflict"),  # linked: an update
            row("00000000-0000-4000-8000-000000000003", "3", "synced"),
            row("00000000-0000-4000-8000-000000000004", None, "deleted_in_metakocka"),
            row(None, "5", "pending"),  # Metakocka only
        ],
    )
    assert store.status.out_of_sync_counts(ORG, "crm") == (1, 1)
    assert store.status.out_of_sync_counts(ORG, "metakocka") == (1, 1)
    assert store.status.out_of_sync_counts("another", "crm") == (0, 0)
