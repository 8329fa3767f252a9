"""A keyset read of the CRM ends: on an empty page, or with an error when a page does not advance.

Found by `benchmarks/run.py` item 2, which hung for 25 minutes: its harness stored the CRM's new
documents' `updated_at` as Python prints a moment ("...44.376910+00:00"), where PostgreSQL prints
"...44.37691+00:00"; the sandbox then answered the page after the last tie with the same page,
and the client asked for the next page after the same key, forever. PostgreSQL cannot hold a
moment in two printed forms, so the sandbox now refuses such a row (`CrmState.load`), and the
client refuses a page that does not advance, whatever the server (`crm/client._advanced`).
"""

from dataclasses import replace

import pytest

from sync_pipeline.adapters.errors import MalformedResponseError
from sync_pipeline.crm.client import CrmClient
from sync_pipeline.sandbox.crm_store import DOCS
from sync_pipeline.sandbox.crm_values import format_timestamp, parse_timestamp
from sync_pipeline.sandbox.runner import start_sandbox
from sync_pipeline.sandbox.seed import organization_factory
from sync_pipeline.sandbox.seed_documents import crm_rows

PYTHON_PRINTED = "2026-12-04T15:34:44.376910+00:00"
"""A moment whose microseconds end in 0, as `datetime.isoformat` prints it."""


@pytest.fixture
def sandbox(tmp_path):
    with start_sandbox(tmp_path / "sandbox", documents_per_org=5, reset=True) as running:
        yield running


def ties(factory, stamp: str, n: int = 25) -> list:
    """`n` new documents, all changed at `stamp` (as one transaction's `now()` would)."""
    return [replace(factory.document(), created_at=stamp, updated_at=stamp) for _ in range(n)]


def factory_of(sandbox):
    return organization_factory(sandbox.organizations[0], sandbox.seed_summary["seed"])


def read_by_change(sandbox, page_size: int = 10) -> list[list[dict]]:
    org = sandbox.organizations[0]
    client = CrmClient(sandbox.crm_url, org.crm_api_key)
    params = [("select", "id,updated_at"), ("organization_id", f"eq.{org.id}")]
    return list(client.keyset("sales_documents", params, by_change=True, page_size=page_size))


def test_ties_on_updated_at_are_read_once_each(sandbox):
    stamp = format_timestamp(parse_timestamp(PYTHON_PRINTED))  # "...44.37691+00:00"
    factory = factory_of(sandbox)
    for doc in ties(factory, stamp):
        factory.put_in_crm(sandbox.crm_state, doc)
    org = sandbox.organizations[0]
    expected = {
        d["id"] for d in sandbox.crm_state.documents(org.id) if d["organization_id"] == org.id
    }
    pages = read_by_change(sandbox)
    ids = [row["id"] for page in pages for row in page]
    assert len(ids) == len(set(ids)) and set(ids) == expected
    tied = sum(row["updated_at"] == stamp for page in pages for row in page)
    assert tied > 10  # more ties than a page holds: the keyset goes on within one moment


def test_the_sandbox_refuses_a_moment_printed_otherwise_than_postgresql_prints_it(sandbox):
    factory = factory_of(sandbox)
    [doc] = ties(factory, PYTHON_PRINTED, n=1)
    with pytest.raises(ValueError, match="as PostgreSQL prints it"):
        factory.put_in_crm(sandbox.crm_state, doc)


def test_a_keyset_page_that_does_not_advance_is_an_error_not_an_endless_read(sandbox):
    # The state the benchmark's harness left: rows below the store's checks, printed otherwise.
    table = sandbox.crm_state.tables[DOCS]
    for doc in ties(factory_of(sandbox), PYTHON_PRINTED):
        row, _lines = crm_rows(sandbox.crm_state, doc)
        table.add(row)
    with pytest.raises(MalformedResponseError, match="did not advance"):
        read_by_change(sandbox)
