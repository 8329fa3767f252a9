"""Whole documents are written to the CRM a hundred at a time (`CrmClient.upsert_documents`)."""

import uuid

import pytest

from sync_pipeline.adapters.crm import CrmClient
from sync_pipeline.adapters.errors import RejectedError


def _row(org_id: str, doc_id: str, **extra) -> dict:
    return {
        "id": doc_id,
        "organization_id": org_id,
        "document_type": "offer",
        "document_date": "2026-01-02",
        "customer_name": "Kupec d.o.o.",
        "currency": "EUR",
        **extra,
    }


LINE = {
    "description": "Widget",
    "quantity": "2",
    "unit_price": "10",
    "tax_rate": "22",
    "discount_percent": "0",
    "unit": "kos",
    "product_code": "W-1",
    "total_amount": "20",
}


def test_a_batch_creates_and_updates_documents_with_exactly_their_lines(sandbox):
    org = sandbox.organizations[0]
    client = CrmClient(sandbox.crm_url, org.crm_api_key)
    existing = next(iter(client.list_documents(org.id)))
    new_id = str(uuid.uuid4())
    client.upsert_documents(
        org.id,
        [
            (_row(org.id, existing["id"], notes="batched"), [LINE]),
            (_row(org.id, new_id, status="draft", document_number="N-1"), [LINE, LINE]),
        ],
    )
    assert sum(client.stats.snapshot()["calls"].values()) <= 6  # one list, then the batch
    updated = client.get_document(org.id, existing["id"])
    assert updated["notes"] == "batched"
    assert [i["description"] for i in updated["sales_document_items"]] == ["Widget"]
    created = client.get_document(org.id, new_id)
    assert created["document_number"] == "N-1"
    assert len(created["sales_document_items"]) == 2


def test_a_batch_with_another_organization_s_document_writes_nothing(sandbox):
    mine, theirs = sandbox.organizations[:2]
    client = CrmClient(sandbox.crm_url, mine.crm_api_key)
    foreign = next(iter(client.list_documents(theirs.id)))
    new_id = str(uuid.uuid4())
    with pytest.raises(RejectedError, match="another organization"):
        client.upsert_documents(
            mine.id,
            [(_row(mine.id, new_id), [LINE]), (_row(mine.id, foreign["id"]), [LINE])],
        )
    assert client.get_document(mine.id, new_id) is None
    assert client.get_document(theirs.id, foreign["id"])["organization_id"] == theirs.id
