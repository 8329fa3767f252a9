"""The simulated Metakocka over real HTTP: wire format, semantics, faults, limits, persistence.

Why these tests matter: the pipeline is tested against this server, so a wrong sandbox would let
a wrong client pass. Each test talks to a real uvicorn server on an ephemeral loopback port with
``requests``, the way the pipeline's adapter does.
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import requests

from sync_pipeline.sandbox.faults import FaultInjector, FaultRule
from sync_pipeline.sandbox.metakocka_app import ENDPOINTS, create_metakocka_app
from sync_pipeline.sandbox.metakocka_store import MetakockaError, MetakockaState
from sync_pipeline.sandbox.serve import serve_in_thread

SECRETS = {"16": "secret-16", "17": "secret-17"}


@pytest.fixture
def mk():
    state = MetakockaState(SECRETS, duplicate_check={"17"})
    faults = FaultInjector(seed=7)
    server = serve_in_thread(create_metakocka_app(state, faults))
    session = requests.Session()

    def call(endpoint, company="16", timeout=5.0, **body):
        auth = {"company_id": company, "secret_key": SECRETS.get(company, "x")}
        return session.post(
            f"{server.url}/rest/eshop/v1/{endpoint}", json={**auth, **body}, timeout=timeout
        )

    def ok(endpoint, company="16", **body):
        answer = call(endpoint, company, **body).json()
        assert answer["opr_code"] == "0", answer
        return answer

    def configure(**spec):
        r = session.post(f"{server.url}/_sandbox/faults", json=spec, timeout=5)
        assert r.status_code == 200, r.text
        return r.json()

    yield SimpleNamespace(
        state=state,
        faults=faults,
        url=server.url,
        call=call,
        ok=ok,
        configure=configure,
        session=session,
    )
    session.close()
    server.stop()


def order(buyer_order="WEB-1", **extra):
    return {
        "doc_type": "sales_order",
        "doc_date": "2024-09-13+02:00",
        "buyer_order": buyer_order,
        "title": buyer_order,
        "partner": {
            "customer": "Acme d.o.o.",
            "tax_id_number": "SI12345678",
            "country": "Slovenia",
            "business_entity": True,
        },
        "product_list": [
            {
                "code": "art1",
                "name": "Article",
                "unit": "kos",
                "amount": 2,
                "price": "10.50",
                "tax": "220",
            }
        ],
        **extra,
    }


# -- auth, errors -------------------------------------------------------------------------
def test_wrong_credentials_fail_on_every_endpoint(mk):
    for endpoint in sorted(ENDPOINTS):
        for auth in ({"company_id": "16", "secret_key": "nope"}, {"company_id": "99"}, {}):
            r = mk.session.post(
                f"{mk.url}/rest/eshop/v1/{endpoint}",
                json={**auth, "doc_type": "sales_order"},
                timeout=5,
            )
            assert r.status_code == 200
            assert r.json()["opr_code"] == "3", (endpoint, auth)
            assert r.json()["opr_desc"] == "Invalid value for secret_key and company_id"
    # another company's valid key does not open company 16's documents
    mk_id = mk.ok("put_document", **order())["mk_id"]
    got = mk.call("get_document", company="17", doc_type="sales_order", doc_id=mk_id).json()
    assert got["opr_code"] == "6" and got["opr_desc"].startswith("Cannot find document")


def test_parameter_errors_and_non_json(mk):
    assert mk.call("search").json() == {
        "opr_code": "2",
        "opr_time_ms": mk.call("search").json()["opr_time_ms"],
        "opr_desc": "Paramether 'doc_type' is missing",
    }
    bad = mk.call("put_document", **order(doc_type="sales_order1")).json()
    assert (bad["opr_code"], bad["opr_desc"]) == ("2", "Unknown document type : sales_order1")
    raw = mk.session.post(f"{mk.url}/rest/eshop/v1/put_document", data=b"{not json", timeout=5)
    assert raw.status_code == 200 and raw.json()["opr_code"] == "2"
    assert mk.call("put_document", **order(currency_code="XYZ")).json()["opr_code"] == "2"
    missing = mk.call(
        "put_document",
        **order(
            product_list=[
                {"code": "new-1", "amount": 1, "price": 1},
                {"code": "new-2", "amount": 1, "price": 1},
            ]
        ),
    ).json()
    assert missing["opr_code"] == "2"
    assert missing["opr_desc"] == (
        "Product with code new-1 not found - unit must be set to add new product"
    )
    assert missing["product_not_found_list"] == [{"code": "new-1"}, {"code": "new-2"}]
    negative = mk.call(
        "put_document",
        **order(product_list=[{"code": "art9", "unit": "kos", "amount": -1, "price": 1}]),
    ).json()
    assert negative["opr_code"] == "2"
    assert mk.state.documents("16") == []  # nothing refused was stored
    html = mk.session.post(f"{mk.url}/rest/eshop/v1/no_such_call", json={}, timeout=5)
    assert html.status_code == 404 and html.headers["content-type"].startswith("text/html")


# -- documents ----------------------------------------------------------------------------
def test_create_get_replace_update_delete(mk):
    created = mk.ok("put_document", **order())
    assert created["count_code"] == "PP-1" and created["mk_id"].isdigit()
    assert 10 <= len(created["mk_id"]) <= 12 and created["partner"]["mk_id"].isdigit()
    doc = mk.ok("get_document", doc_type="sales_order", doc_id=created["mk_id"])
    assert doc["doc_date"] == "2024-09-13+02:00" and doc["buyer_order"] == "WEB-1"
    assert doc["partner"]["country_iso_2"] == "SI" and doc["partner"]["business_entity"] == "true"
    assert doc["product_list"][0] | {"mk_id": "x"} == {
        "mk_id": "x",
        "code": "art1",
        "name": "Article",
        "unit": "kos",
        "amount": "2",
        "price": "10.5",
        "tax": "220",
    }
    by_buyer = mk.ok("get_document", doc_type="sales_order", buyer_order="WEB-1")
    assert by_buyer["mk_id"] == created["mk_id"]
    missing = mk.call("get_document", doc_type="sales_order", buyer_order="nope").json()
    assert missing["opr_code"] == "6"

    # same partner data -> same partner; a caller's count_code and dd.mm.yyyy date are kept
    second = mk.ok("put_document", **order("WEB-2", count_code="MY-7", doc_date="23.01.2022"))
    assert second["partner"]["mk_id"] == created["partner"]["mk_id"]
    doc2 = mk.ok("get_document", doc_type="sales_order", doc_id=second["mk_id"])
    assert (doc2["count_code"], doc2["doc_date"]) == ("MY-7", "2022-01-23+01:00")

    replaced = mk.ok(
        "put_document",
        **order(
            "WEB-1b",
            mk_id=created["mk_id"],
            count_code="X",
            product_list=[{"code": "art1", "amount": 1, "price": 3, "tax": "000"}],
        ),
    )
    assert (replaced["mk_id"], replaced["count_code"]) == (created["mk_id"], "PP-1")
    doc = mk.ok("get_document", doc_type="sales_order", doc_id=created["mk_id"])
    assert doc["buyer_order"] == "WEB-1b" and len(doc["product_list"]) == 1
    assert doc["sum_all"] == "3.00" and "created_ts" in doc
    assert "last_change" not in doc  # no such field in the documentation (section 5)

    mk.ok(
        "update_document",
        doc_type="sales_order",
        buyer_order="WEB-1b",
        status_code="Poslano",
        notes="sent by courier",
    )
    doc = mk.ok("get_document", doc_type="sales_order", doc_id=created["mk_id"])
    assert (doc["status_code"], doc["status_desc"], doc["notes"]) == (
        "Poslano",
        "shipped",
        "sent by courier",
    )
    mk.ok("delete_document", doc_type="sales_order", mk_id=created["mk_id"])
    assert (
        mk.call("get_document", doc_type="sales_order", doc_id=created["mk_id"]).json()["opr_code"]
        == "6"
    )

    bill = mk.ok(
        "put_document", **order("INV-1", doc_type="sales_bill_domestic", duo_payment="2024-10-13")
    )
    assert bill["count_code"] == "1-MK-1"
    mk.ok(
        "update_document",
        doc_type="sales_bill_domestic",
        mk_id=bill["mk_id"],
        status_code="Zaključeno",
        notes="ignored for bills",
    )
    doc = mk.ok("get_document", doc_type="sales_bill_domestic", doc_id=bill["mk_id"])
    assert doc["status_desc"] == "finished" and "notes" not in doc
    assert doc["duo_payment"] == "2024-10-13+02:00"
    assert [d["doc_type"] for d in mk.state.documents("16")] == [
        "sales_order",
        "sales_bill_domestic",
    ]


def test_statuses_come_from_the_company_s_register_and_are_written_by_label(mk):
    """§5: a response's status_code is the register's localized label and status_desc its
    internal code; §4/§6: a write names the status by its register text (the label), and §8 shows
    the refusal of anything else. A company defines its own register."""
    mk_id = mk.ok("put_document", **order("ST-1", status_code="Novo naročilo"))["mk_id"]
    doc = mk.ok("get_document", doc_type="sales_order", doc_id=mk_id)
    assert (doc["status_code"], doc["status_desc"]) == ("Novo naročilo", "new_order")

    for wrong in ("in_process", "v obdelavi", "Plačano"):  # a code, another case, no such label
        refused = mk.call(
            "update_document", doc_type="sales_order", mk_id=mk_id, status_code=wrong
        ).json()
        assert refused["opr_code"] == "2"
        assert refused["opr_desc"] == (
            f"Paramether 'status_code' has invalid value : {wrong}. Valid values : Novo naročilo,"
            "Ustvarjeno,Odprto,Aktivno,V obdelavi,Poslano,Zaključeno,Preklicano,Izbrisano"
        )
    refused = mk.call("put_document", **order("ST-2", status_code="shipped")).json()
    assert refused["opr_code"] == "2" and "Valid values : Novo naročilo," in refused["opr_desc"]
    assert [d["buyer_order"] for d in mk.state.documents("16")] == ["ST-1"]  # nothing stored

    # change_document_status (§6): by mk_id, mk_id_list or buyer_order; only sales orders
    second = mk.ok("put_document", **order("ST-3"))["mk_id"]
    assert "status_code" not in mk.ok("get_document", doc_type="sales_order", doc_id=second)
    mk.ok(
        "change_document_status",
        doc_type="sales_order",
        mk_id_list=[mk_id, second],
        status_code="V obdelavi",
    )
    for mk_id_ in (mk_id, second):
        doc = mk.ok("get_document", doc_type="sales_order", doc_id=mk_id_)
        assert (doc["status_code"], doc["status_desc"]) == ("V obdelavi", "in_process")
    mk.ok(
        "change_document_status",
        doc_type="sales_order",
        buyer_order="ST-3",
        status_code="Preklicano",
    )
    assert mk.ok("get_document", doc_type="sales_order", doc_id=second)["status_desc"] == "canceled"
    refused = mk.call(
        "change_document_status", doc_type="sales_order", mk_id=mk_id, status_code="canceled"
    ).json()
    assert refused["opr_code"] == "2" and refused["opr_desc"].startswith(
        "Paramether 'status_code' has invalid value : canceled. Valid values : "
    )
    bill = mk.ok("put_document", **order("ST-4", doc_type="sales_bill_domestic"))["mk_id"]
    refused = mk.call(
        "change_document_status",
        doc_type="sales_bill_domestic",
        mk_id=bill,
        status_code="Poslano",
    ).json()
    assert refused["opr_code"] == "2"
    # search's status_list takes the register's labels too (§7: "register descriptions")
    found = mk.ok(
        "search",
        doc_type="sales_order",
        query_advance=[{"type": "status_list", "value": "Preklicano"}],
    )
    assert [d["mk_id"] for d in found["result"]] == [second]
    assert (
        mk.call(
            "search",
            doc_type="sales_order",
            query_advance=[{"type": "status_list", "value": "canceled"}],
        ).json()["opr_code"]
        == "2"
    )

    # another company's own register: its labels, a status without an internal code
    mk.state.set_status_register("17", {"Čaka na plačilo": None, "Dobavljeno": "delivered"})
    other = mk.ok("put_document", company="17", **order("ST-5", status_code="Čaka na plačilo"))
    doc = mk.ok("get_document", company="17", doc_type="sales_order", doc_id=other["mk_id"])
    assert doc["status_code"] == "Čaka na plačilo" and "status_desc" not in doc
    refused = mk.call("put_document", company="17", **order("ST-6", status_code="Poslano")).json()
    assert refused["opr_desc"].endswith("Valid values : Čaka na plačilo,Dobavljeno")


def test_totals_follow_section_5(mk):
    lines = [
        {
            "code": "a",
            "unit": "kos",
            "amount": "1",
            "price": "100",
            "discount": "22;23",
            "tax": "220",
        },  # 60.06 net, 39.94 discount
        {"code": "b", "unit": "kos", "amount": 1, "price": "0,125", "tax": "000"},  # half-up 0.13
        {
            "code": "c",
            "unit": "kg",
            "amount": "3",
            "price": 19.99,
            "discount": 10,
            "tax_factor": "0.095",
        },  # 53.97 net
        {"name": "Shipping", "service": "true", "amount": 1, "price": "5", "tax": "EX4"},
        {"name": "Coupon", "service": True, "amount": "-1", "price": "2.5", "tax": "EX4"},
    ]
    mk_id = mk.ok("put_document", **order(product_list=lines))["mk_id"]
    doc = mk.ok("get_document", doc_type="sales_order", doc_id=mk_id, show_tax_factor="true")
    assert doc["sum_basic"] == "116.66"  # 60.06 + 0.13 + 53.97 + 5 - 2.5
    assert doc["sum_discount"] == "45.94"  # 39.94 + 6.00
    assert doc["sum_tax_220"] == "13.21" and doc["sum_tax_000"] == "0.00"
    assert doc["sum_tax_095"] == "5.13" and doc["sum_tax_ex4"] == "0.55"
    assert doc["sum_all"] == "135.55" and doc["sum_paid"] == "0.00"
    assert [line["tax"] for line in doc["product_list"]] == ["220", "000", "095", "EX4", "EX4"]
    assert doc["product_list"][2]["tax_factor"] == "0.095"


def test_a_gross_line_keeps_its_gross_price_to_the_cent(mk):
    """§4: price (net) or price_with_tax (gross). A gross line stays as entered: its tax is
    extracted from the gross sum of its code, so 3 x 19.99 is 59.97, not 3 x 16.39 plus tax."""
    lines = [
        {"code": "a", "unit": "kos", "amount": "3", "price_with_tax": "19,99", "tax": "220"},
        {"code": "b", "unit": "kos", "amount": "1", "price_with_tax": "4.99", "tax": "220"},
        {"code": "c", "unit": "kos", "amount": "2", "price": "10", "tax": "220"},
        {"code": "d", "unit": "kos", "amount": "1", "price_with_tax": "10.95", "discount": "10",
         "tax": "095"},
    ]  # fmt: skip
    mk_id = mk.ok("put_document", **order(product_list=lines))["mk_id"]
    doc = mk.ok("get_document", doc_type="sales_order", doc_id=mk_id)
    first, net = doc["product_list"][0], doc["product_list"][2]
    assert first["price_with_tax"] == "19.99" and "price" not in first
    assert net["price"] == "10" and "price_with_tax" not in net
    # 220: gross 59.97 + 4.99 = 64.96, tax 11.71 in it; net 20.00, tax 4.40. 095: 9.86 gross.
    assert doc["sum_tax_220"] == "16.11" and doc["sum_tax_095"] == "0.86"
    assert doc["sum_basic"] == "82.25"  # 53.25 + 20.00 + 9.00
    assert doc["sum_all"] == "99.22"  # 64.96 + 24.40 + 9.86
    assert doc["sum_discount"] == "1.09"  # 10 % of 10.95
    both = mk.call("put_document", **order(product_list=[lines[0] | {"price": "16.39"}])).json()
    assert both["opr_code"] == "2" and "price_with_tax" in both["opr_desc"]


def test_payments_in_slovenian_decimals_under_show_payment_detail(mk):
    """§4 mark_paid marks a document paid; §5 show_payment_detail lists the payments with their
    amounts; §3 payment amounts can be in Slovenian format. A replace keeps only the payments it
    sends ("on update earlier payments are replaced"); an update of other fields keeps them."""
    lines = [{"code": "a", "unit": "kos", "amount": "1", "price": "1553.29", "tax": "220"}]
    paid = [
        {"payment_type": "PayPal", "date": "12.03.2024", "amount": "1.000,00"},
        {"payment_type": "Gotovina", "date": "2024-03-13+01:00"},  # the rest of sum_all
    ]
    mk_id = mk.ok("put_document", **order(product_list=lines, mark_paid=paid))["mk_id"]
    plain = mk.ok("get_document", doc_type="sales_order", doc_id=mk_id)
    assert (plain["sum_all"], plain["sum_paid"]) == ("1895.01", "1895.01")
    assert "mark_paid" not in plain  # opt-in
    detail = mk.ok("get_document", doc_type="sales_order", doc_id=mk_id, show_payment_detail="true")
    assert detail["sum_paid"] == "1.895,01"
    assert detail["mark_paid"] == [
        {"payment_type": "PayPal", "date": "2024-03-12+01:00", "amount": "1.000,00"},
        {"payment_type": "Gotovina", "date": "2024-03-13+01:00", "amount": "895,01"},
    ]
    found = mk.ok("search", doc_type="sales_order", result_type="doc", show_payment_detail="true")
    assert found["result"][0]["mark_paid"] == detail["mark_paid"]

    mk.ok("update_document", doc_type="sales_order", mk_id=mk_id, notes="packed")
    kept = mk.ok("get_document", doc_type="sales_order", doc_id=mk_id)
    assert kept["sum_paid"] == "1895.01"
    mk.ok("put_document", **order(product_list=lines, mk_id=mk_id, mark_paid=detail["mark_paid"]))
    sent_back = mk.ok("get_document", doc_type="sales_order", doc_id=mk_id)
    assert sent_back["sum_paid"] == "1895.01"
    mk.ok("put_document", **order(product_list=lines, mk_id=mk_id))
    assert mk.ok("get_document", doc_type="sales_order", doc_id=mk_id)["sum_paid"] == "0.00"
    no_date = mk.call("put_document", **order(mark_paid=[{"payment_type": "PayPal"}])).json()
    assert no_date["opr_code"] == "2" and "mark_paid[0].date" in no_date["opr_desc"]


def test_a_document_discount_is_applied_as_a_percentage_and_as_a_value(mk):
    """§4 discount_percent / discount_value: applied to the sums, not just kept. 10 % off each
    tax code's sum, then 15.00 split over them in proportion: 100 -> 90 -> 80, 50 -> 45 -> 40."""
    lines = [
        {"code": "a", "unit": "kos", "amount": "1", "price": "100", "tax": "220"},
        {"code": "b", "unit": "kos", "amount": "2", "price": "25", "tax": "095"},
    ]
    mk_id = mk.ok(
        "put_document", **order(product_list=lines, discount_percent="10", discount_value="15,00")
    )["mk_id"]
    doc = mk.ok("get_document", doc_type="sales_order", doc_id=mk_id)
    assert (doc["discount_percent"], doc["discount_value"]) == ("10", "15")
    assert (doc["sum_basic"], doc["sum_discount"]) == ("120.00", "30.00")
    assert (doc["sum_tax_220"], doc["sum_tax_095"], doc["sum_all"]) == ("17.60", "3.80", "141.40")
    mk.ok("update_document", doc_type="sales_order", mk_id=mk_id, discount_value="0.01")
    changed = mk.ok("get_document", doc_type="sales_order", doc_id=mk_id)
    assert changed["sum_basic"] == "134.99"  # the odd cent off the larger sum: 89.99 + 45
    assert changed["sum_tax_220"] == "19.80" and changed["sum_tax_095"] == "4.28"
    for bad in ({"discount_percent": "120"}, {"discount_value": "-1"},
                {"discount_value": "150.01"}, {"discount_percent": "deset"}):  # fmt: skip
        refused = mk.call("put_document", **order(product_list=lines, **bad)).json()
        assert refused["opr_code"] == "2", bad
        assert next(iter(bad)) in refused["opr_desc"]


def test_a_negative_line_is_allowed_only_on_a_service_product(mk):
    """§4: a coupon is a negative line of a service product, which may well have a code; the
    product register says what is a service, not the line."""
    coupon = {"code": "KUPON", "name": "Kupon", "unit": "kos", "service": "true", "amount": "-1",
              "price": "5", "tax": "220"}  # fmt: skip
    goods = {"code": "art1", "unit": "kos", "amount": "1", "price": "20", "tax": "220"}
    mk_id = mk.ok("put_document", **order(product_list=[goods, coupon]))["mk_id"]
    doc = mk.ok("get_document", doc_type="sales_order", doc_id=mk_id, show_product_detail="true")
    assert [(line["code"], line["type"]) for line in doc["product_list"]] == [
        ("art1", "product"),
        ("KUPON", "service"),
    ]
    assert doc["sum_basic"] == "15.00"
    for negative in ({"amount": "-1"}, {"price": "-20"}, {"amount": "-1", "service": "true"}):
        refused = mk.call("put_document", **order(product_list=[goods | negative])).json()
        assert refused["opr_code"] == "2", negative
        assert refused["opr_desc"].startswith("Negative amount is allowed only for service")


# -- search -------------------------------------------------------------------------------
def test_search_pages_sorted_and_capped(mk):
    for i in range(250):
        mk.state.insert_document("16", order(f"B-{i}"))
    ids = []
    for page in range(3):
        answer = mk.ok("search", doc_type="sales_order", limit="100", offset=str(page * 100))
        assert answer["result_all_records"] == "250"
        assert answer["result_count"] == str(len(answer["result"]))
        assert set(answer["result"][0]) == {"mk_id", "opr_code", "count_code"}
        ids += [r["mk_id"] for r in answer["result"]]
    assert len(ids) == 250 == len(set(ids)) and ids == sorted(ids, key=int)
    assert mk.ok("search", doc_type="sales_order", offset=200)["result_count"] == "50"
    capped = mk.ok("search", doc_type="sales_order", limit=500, result_type="doc")
    assert capped["result_count"] == "100" and capped["limit"] == "100"
    assert capped["result"][0]["product_list"][0]["code"] == "art1"
    desc = mk.ok("search", doc_type="sales_order", order_direction="desc", limit=3)
    assert [r["mk_id"] for r in desc["result"]] == ids[::-1][:3]
    assert mk.ok("search", doc_type="sales_offer")["result_all_records"] == "0"


def test_search_filters_customer_order_dates_and_last_change(mk):
    base = datetime(2024, 9, 12, 10, 0, tzinfo=UTC)
    for i, ref in enumerate(["A-1", "A-10", "A-1", "B-2"]):
        mk.state.insert_document(
            "16", order(ref, doc_date=f"2024-09-1{i}"), last_change=base + timedelta(hours=i)
        )
    hits = mk.ok(
        "search",
        doc_type="sales_order",
        result_type="doc",
        query_advance=[{"type": "customer_order", "value": "A-1"}],
    )
    assert hits["result_all_records"] == "2"
    assert {d["buyer_order"] for d in hits["result"]} == {"A-1"}
    # 12:00 and 13:00 UTC, written with the Ljubljana offset as MK's own timestamps are
    since = mk.ok(
        "search",
        doc_type="sales_order",
        result_type="doc",
        query_advance=[
            {"type": "last_change_from", "value": "2024-09-12T14:00:00+02:00"},
            {"type": "last_change_to", "value": "2024-09-12T15:00:00+02:00"},
        ],
    )
    assert [d["buyer_order"] for d in since["result"]] == ["A-1", "B-2"]
    first = since["result"][0]
    assert "last_change" not in first  # only the filters know the change time (sections 5, 7)
    assert mk.state.last_change("16", first["mk_id"]) == base + timedelta(hours=2)
    dated = mk.ok(
        "search",
        doc_type="sales_order",
        query_advance={"type": "doc_date_to", "value": "11.09.2024"},
    )  # bare object instead of a list
    assert dated["result_all_records"] == "2"
    # a user edit in the MK app moves last_change forward, so an incremental search sees it
    before = datetime.now(UTC).replace(microsecond=0)
    target = mk.state.documents("16")[0]["mk_id"]
    r = mk.session.post(
        f"{mk.url}/_sandbox/edit",
        timeout=5,
        json={"company_id": "16", "mk_id": target, "changes": {"notes": "edited by a user"}},
    )
    assert r.status_code == 200 and r.json()["document"]["notes"] == "edited by a user"
    changed = mk.ok(
        "search",
        doc_type="sales_order",
        query_advance=[{"type": "last_change_from", "value": before.isoformat()}],
    )
    assert [d["mk_id"] for d in changed["result"]] == [target]
    mk.ok("update_document", doc_type="sales_order", buyer_order="B-2", status_code="Zaključeno")
    assert (
        mk.ok(
            "search",
            doc_type="sales_order",
            query_advance=[{"type": "status_list", "value": "Zaključeno,Preklicano"}],
        )["result_all_records"]
        == "1"
    )
    bad = mk.call("search", doc_type="sales_order", query_advance=[{"type": "nope", "value": 1}])
    assert bad.json()["opr_code"] == "2"


def test_duplicate_check_refuses_same_buyer_order(mk):
    first = mk.ok("put_document", company="17", **order("DUP-1"))
    again = mk.call("put_document", company="17", **order("DUP-1")).json()
    again.pop("opr_time_ms")
    assert again == {
        "opr_code": "6",
        "opr_code_app": "7",
        "opr_desc_app": "Documents with some buyer order already exist",
        "partner": {"mk_id": first["partner"]["mk_id"]},
        "duplicate_doc_list": [{"count_code": "PP-1", "mk_id": first["mk_id"]}],
    }
    assert len(mk.state.documents("17")) == 1
    mk.ok("put_document", company="16", **order("DUP-1"))  # company 16 has the check off
    mk.ok("put_document", company="16", **order("DUP-1"))
    with pytest.raises(MetakockaError):
        mk.state.insert_document("17", order("DUP-1"))


# -- faults and limits --------------------------------------------------------------------
def test_each_fault_kind_as_a_requests_client_sees_it(mk):
    def only(fault, endpoint="put_document", **kw):
        mk.configure(rules=[{"fault": fault, "endpoints": [endpoint], "count": 1, **kw}])

    only("error_5xx_html")
    r = mk.call("put_document", **order("F-1"))
    assert r.status_code in (502, 503) and r.headers["content-type"].startswith("text/html")
    only("opr_code_1")
    assert mk.call("put_document", **order("F-1")).json()["opr_code"] == "1"
    only("opr_code_5")
    assert mk.call("put_document", **order("F-1")).json()["opr_code"] == "5"
    only("rate_limit_429", retry_after_s=2)
    r = mk.call("put_document", **order("F-1"))
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    only("malformed_body")
    r = mk.call("put_document", **order("F-1"))
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    only("connection_reset")
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        mk.call("put_document", **order("F-1"))
    assert mk.state.documents("16") == []  # none of the faults above stored anything
    only("slow", endpoint="search", delay_s=0.4)
    started = time.monotonic()
    assert mk.call("search", doc_type="sales_order").json()["opr_code"] == "0"
    assert time.monotonic() - started >= 0.4
    only("timeout_after_commit", delay_s=1.0)
    with pytest.raises(requests.Timeout):
        mk.call("put_document", timeout=0.3, **order("F-2"))
    found = mk.ok(
        "search", doc_type="sales_order", query_advance=[{"type": "customer_order", "value": "F-2"}]
    )
    assert found["result_all_records"] == "1"  # the write landed although the client timed out
    snap = mk.session.get(f"{mk.url}/_sandbox/faults", timeout=5).json()
    assert snap["rules"][0]["fired"] == 1 and snap["rules"][0]["fault"] == "timeout_after_commit"
    assert mk.call("put_document", **order("F-3")).json()["opr_code"] == "0"  # count exhausted


def test_fault_picks_are_seeded_and_filtered():
    spec = {
        "seed": 3,
        "rules": [
            {"fault": "opr_code_1", "rate": 0.3, "endpoints": ["search"]},
            {"fault": "slow", "count": 2},
        ],
    }
    runs = []
    for _ in range(2):
        inj = FaultInjector()
        inj.configure(spec)
        runs.append(
            [getattr(inj.pick(ep), "fault", None) for ep in ["search", "put_document"] * 50]
        )
    assert runs[0] == runs[1]
    assert runs[0].count("slow") == 2 and 0 < runs[0].count("opr_code_1") < 50
    assert all(f != "opr_code_1" for f in runs[0][1::2])  # never on put_document
    with pytest.raises(ValueError):
        FaultRule("no_such_fault")
    assert FaultRule("slow", endpoints=["sales_documents"]).matches("GET sales_documents")


def test_concurrency_cap_answers_quote_exceeds(mk):
    mk.configure(latency_ms=800, max_concurrent=2)
    with ThreadPoolExecutor(5) as pool:
        codes = list(
            pool.map(
                lambda _: requests.post(
                    f"{mk.url}/rest/eshop/v1/get_document",
                    timeout=5,
                    json={
                        "company_id": "16",
                        "secret_key": SECRETS["16"],
                        "doc_type": "sales_order",
                        "doc_id": "1",
                    },
                ).json()["opr_code"],
                range(5),
            )
        )
    assert sorted(codes) == ["5", "5", "5", "6", "6"]
    stats = mk.session.get(f"{mk.url}/_sandbox/stats", timeout=5).json()
    assert stats["rejected_over_concurrency_cap"] == {"16": 3}
    assert stats["calls"]["get_document"]["16"] == 5


def test_latency_is_the_response_time_of_answers_and_errors_alike(mk):
    """`latency_ms` is how long a call takes: a stored document, a refusal and a search all
    answer no sooner, and the store holds the document once the answer says so."""
    mk.configure(latency_ms=300)
    for endpoint, body, code in (
        ("put_document", order("LAT-1"), "0"),
        ("put_document", order("LAT-2", doc_type="bogus"), "2"),
        ("search", {"doc_type": "sales_order"}, "0"),
    ):
        started = time.monotonic()
        answer = mk.call(endpoint, **body).json()
        assert time.monotonic() - started >= 0.3
        assert answer["opr_code"] == code and int(answer["opr_time_ms"]) >= 299
    assert [d["buyer_order"] for d in mk.state.documents("16")] == ["LAT-1"]


def test_searches_of_one_company_wait_in_a_queue(mk):
    def three_searches():
        started = time.monotonic()
        with ThreadPoolExecutor(3) as pool:
            codes = list(
                pool.map(
                    lambda _: requests.post(
                        f"{mk.url}/rest/eshop/v1/search",
                        timeout=5,
                        json={
                            "company_id": "16",
                            "secret_key": SECRETS["16"],
                            "doc_type": "sales_order",
                        },
                    ).json()["opr_code"],
                    range(3),
                )
            )
        assert codes == ["0"] * 3  # they wait, they are not refused
        return time.monotonic() - started

    mk.configure(latency_ms=250)  # one search at a time by default (§11)
    assert three_searches() >= 0.7
    mk.configure(latency_ms=250, max_concurrent_searches=3)
    assert three_searches() < 0.6


def test_stats_count_calls_and_writes(mk):
    mk.session.post(f"{mk.url}/_sandbox/stats/reset", timeout=5)
    mk.ok("put_document", **order("S-1"))
    mk.ok("search", doc_type="sales_order")
    mk.call("put_document", company="17", **order("S-1", doc_type="bogus"))
    stats = mk.session.get(f"{mk.url}/_sandbox/stats", timeout=5).json()
    assert stats["calls_total"] == 3 and stats["calls"]["put_document"] == {"16": 1, "17": 1}
    assert stats["writes"] == {"16": {"put_document": 1}} and stats["writes_total"] == 1
    dump = mk.session.get(
        f"{mk.url}/_sandbox/documents", params={"company_id": "16"}, timeout=5
    ).json()
    assert [d["buyer_order"] for d in dump["documents"]] == ["S-1"]


# -- quirks, persistence --------------------------------------------------------------------
def test_quirks_mode_reshapes_answers(mk):
    mk_id = mk.ok(
        "put_document",
        **order(
            product_list=[
                {"code": "big", "unit": "kos", "amount": 1, "price": "1553.29", "tax": "220"}
            ]
        ),
    )["mk_id"]
    r = mk.session.post(f"{mk.url}/_sandbox/quirks", json={"enabled": True}, timeout=5)
    assert r.json() == {"quirks": True}
    doc = mk.ok("get_document", doc_type="sales_order", doc_id=mk_id)
    assert isinstance(doc["product_list"], dict) and doc["product_list"]["price"] == "1.553,29"
    assert doc["sum_all"] == "1.895,01" and doc["doc_date"] == "13.09.2024"
    page = mk.ok("search", doc_type="sales_order", limit=500)
    assert page["limit"] == "500" and "opr_time" in page and page["result_count"] == "1"
    assert mk.state.documents("16")[0]["sum_all"] == "1895.01"  # the store itself is plain


def test_persistence_round_trip(mk):
    a = mk.state.insert_document("16", order("P-1"), last_change=datetime(2024, 3, 1, tzinfo=UTC))
    mk.ok("put_document", company="17", **order("P-2", doc_type="sales_offer"))
    mk.state.set_status_register("17", {"Dobavljeno": "delivered", "Brez kode": None})
    saved = json.loads(json.dumps(mk.state.to_json()))
    restored = MetakockaState.from_json(saved)
    assert restored.documents("16") == mk.state.documents("16")
    assert restored.documents("17") == mk.state.documents("17")
    assert restored.duplicate_check == {"17"}
    assert restored.insert_document("17", order("P-4", status_code="Brez kode"))  # its register
    again = restored.insert_document("16", order("P-3"))
    assert int(again["mk_id"]) > int(a["mk_id"]) and again["count_code"] == "PP-2"
    assert again["partner"]["mk_id"] == a["partner"]["mk_id"]  # partners survive too
    flt = restored.search(
        "16",
        {
            "doc_type": "sales_order",
            "query_advance": [{"type": "last_change_to", "value": "2024-03-01T01:00:00+01:00"}],
        },
    )
    assert [r["mk_id"] for r in flt["result"]] == [a["mk_id"]]
