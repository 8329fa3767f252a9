"""Contract test: every JSON example of `metakocka-api.md` goes through the client and the mapper.

The notes are the team's `shared/metakocka-api.md`, copied into `docs/reference/` (CI has only
the repository; a test says when the copy is behind the team's).

The examples are read from the document itself (so a changed example changes the test), with its
`…` placeholders filled in. Requests are sent to the sandbox over HTTP; answers are replayed as
they are written by a server that knows nothing but the examples: an independent fake, so the
client is checked against the documentation, not against our own sandbox's reading of it.
"""

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sync_pipeline.adapters.errors import DuplicateExternalIdError
from sync_pipeline.metakocka.client import API_PATH, MetakockaClient
from sync_pipeline.metakocka.mapping import metakocka_to_canonical
from sync_pipeline.metakocka.statuses import status_of
from sync_pipeline.sandbox.serve import ServerThread

REPO_ROOT = Path(__file__).resolve().parents[1]
API_DOC = REPO_ROOT / "docs" / "reference" / "metakocka-api.md"
"""The team's notes on the public Metakocka API, kept in the repository (CI has only the repo)."""
SHARED_API_DOC = REPO_ROOT.parent / "shared" / "metakocka-api.md"
ORG = "11111111-1111-1111-1111-111111111111"


def documented_examples() -> list[dict]:
    """Every ```json block of the API notes, parsed, in document order."""
    blocks = re.findall(r"```json\n(.*?)```", API_DOC.read_text(encoding="utf-8"), re.S)
    examples = []
    for block in blocks:
        text = re.sub(r"(?<=[{\[,])\s*…\s*,", "", block)  # `{…, "mk_id": …}`: elided keys
        text = text.replace("{…}", "{}").replace(":…", ':"…"')
        examples.append(json.loads(text))
    return examples


EXAMPLES = documented_examples()


def example(*keys: str) -> dict:
    """The one example that has all of `keys` (so the test does not depend on their order)."""
    (found,) = [e for e in EXAMPLES if all(k in e for k in keys)]
    return found


@pytest.mark.skipif(not SHARED_API_DOC.exists(), reason="no team workspace next to this clone")
def test_the_repository_copy_of_the_api_notes_is_current():
    assert API_DOC.read_text(encoding="utf-8") == SHARED_API_DOC.read_text(encoding="utf-8")


def test_every_example_is_used():
    named = [
        example("secret_key", "count_code", "partner", "product_list"),
        example("tax_id_number", "partner_contact"),
        example("code", "amount", "price", "discount", "tax"),
        example("opr_time_ms", "mk_id", "count_code"),
        example("status_code", "status_desc", "sum_all"),
        example("result_type", "query_advance"),
        example("result_all_records", "result"),
        example("opr_code_app", "duplicate_doc_list"),
    ]
    assert len(EXAMPLES) == len(named) == len({id(e) for e in named})


@pytest.fixture
def replay():
    """A server answering each endpoint with the documented example (set per test)."""
    answers: dict[str, dict] = {}
    requests_seen: list[tuple[str, dict]] = []

    async def endpoint(request: Request):
        name = request.path_params["name"]
        requests_seen.append((name, await request.json()))
        return JSONResponse(answers[name])

    app = Starlette(routes=[Route(API_PATH + "{name}", endpoint, methods=["POST"])])
    server = ServerThread(app)
    client = MetakockaClient(server.url, "16", "documented-secret", read_timeout_s=5)
    try:
        yield answers, requests_seen, client
    finally:
        server.stop()


def test_the_documented_put_document_is_stored_and_read_back(sandbox):
    """Request head + partner + product line, as documented, into the sandbox and back."""
    org = sandbox.organizations[0]
    head = example("secret_key", "count_code", "partner", "product_list")
    body = {k: v for k, v in head.items() if k not in ("secret_key", "company_id")}
    body["partner"] = example("tax_id_number", "partner_contact")
    body["product_list"] = [example("code", "amount", "price", "discount", "tax") | {"unit": "kos"}]
    body["partner"]["province"] = ""  # "…" in the example: a placeholder, not a province
    client = MetakockaClient(
        sandbox.metakocka_url, org.metakocka_company_id, org.metakocka_secret_key
    )
    created = client.create_document(body)
    doc = metakocka_to_canonical(client.get_document("sales_order", created["mk_id"]), ORG)
    assert doc.metakocka_count_code == "resttest2"
    assert doc.customer.name == "API partner 1" and doc.customer.tax_id == "SI20000001"
    assert (doc.customer.city, doc.customer.country) == ("Ljubljana", "SI")
    (line,) = doc.lines
    assert (line.product_code, line.quantity, line.unit_price) == ("art1", 1, 100)
    assert (line.discount_percent, line.tax_rate) == (10, 22)  # EX4: 22 % in the demo data


def test_the_documented_get_document_answer_maps(replay):
    answers, _, client = replay
    answers["get_document"] = example("status_code", "status_desc", "sum_all")
    raw = client.get_document("sales_order", "1600203487")
    doc = metakocka_to_canonical(raw, ORG)
    assert (doc.metakocka_id, doc.metakocka_count_code) == ("1600203487", "PP-18495")
    assert doc.crm_document_id is None  # "narocilo1" is no CRM reference: never guessed
    assert doc.customer.country == "SI"  # from country_iso_2
    (line,) = doc.lines
    assert (line.product_code, line.unit, line.quantity, line.unit_price) == (
        "mkp1",
        "kos",
        Decimal(2),
        Decimal(10),
    )
    assert doc.status != "paid"  # sum_paid 10 of sum_all 56.35
    status = status_of(doc)  # the company's register entry, kept as read
    assert (status.label, status.desc) == ("Novo naročilo", "new_order")


def test_the_documented_put_document_answer_is_a_create(replay):
    answers, seen, client = replay
    answers["put_document"] = example("opr_time_ms", "mk_id", "count_code")
    created = client.create_document({"doc_type": "sales_order", "doc_date": "2014-09-13+02:00"})
    assert (created["mk_id"], created["count_code"]) == ("1600129491", "dob4")
    assert [name for name, _ in seen] == ["put_document"]  # sent once


def test_the_documented_search_is_sent_and_its_answer_paged(replay):
    answers, seen, client = replay
    request = example("result_type", "query_advance")
    answers["search"] = example("result_all_records", "result")
    hits = list(
        client.search(
            request["doc_type"], query_advance=request["query_advance"], result_type="doc"
        )
    )
    assert len(hits) == 1  # result_all_records 1: one page, no second call
    ((name, sent),) = seen
    assert name == "search" and sent["query_advance"] == request["query_advance"]
    assert (sent["secret_key"], sent["company_id"]) == ("documented-secret", "16")


def test_the_documented_duplicate_answer_names_the_existing_document(replay):
    answers, _, client = replay
    answers["put_document"] = example("opr_code_app", "duplicate_doc_list")
    with pytest.raises(DuplicateExternalIdError) as refused:
        client.create_document({"doc_type": "sales_order", "buyer_order": "PP-26754"})
    assert refused.value.existing_ids == ["400000000159"]
