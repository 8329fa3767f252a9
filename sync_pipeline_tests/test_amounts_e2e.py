"""Amounts between Metakocka and the CRM over real HTTP, on both published CRM schemas (issue 16,
items 4 and 3).

Item 4: what the pipeline reads from Metakocka carries Metakocka's own sums to the cent, and
those are what the CRM gets; a line entered with its gross price (`price_with_tax`) goes back
to Metakocka gross; a document Metakocka records as paid (payments in Slovenian decimals under
`show_payment_detail`) reads as paid, and keeps its payments when the CRM's edit replaces it.

Item 3: a document discount (`discount_percent`, `discount_value`) and a coupon (a negative line
of a service product that has a code) are ordinary documents: synced both ways, the discount
kept in the CRM and in its totals; a negative line of a product that is not a service stays
refused.
"""

from decimal import Decimal

import dagster as dg
import pytest

from sync_pipeline.assets.validate import CHECK_METAKOCKA_TOTALS
from sync_pipeline.domain.document import crm_id_for_metakocka_document, crm_id_to_external_ref

from .edits import Users, pushes, run
from .helpers import CrmHttp, MetakockaHttp, ProfileLab, profile_sandbox, status_rows
from .on_demand_helpers import new_crm_order


class Lab(ProfileLab):
    def run(self, **kwargs):
        return run(self.settings, self.instance, self.org.id, **kwargs)

    def new_order(self, label: str, lines: list[dict], **header) -> tuple[str, str]:
        """An order a Metakocka user entered: its mk_id and the CRM id it gets there."""
        answer = MetakockaHttp(self.sandbox, self.org).call(
            "put_document",
            {
                "doc_type": "sales_order",
                "doc_date": "2026-06-02+02:00",
                "count_code": f"MK-{label}",
                "partner": {"customer": f"Kupec {label} d.o.o.", "country": "SI"},
                "product_list": lines,
                **header,
            },
        )
        mk_id = str(answer["mk_id"])
        return mk_id, crm_id_for_metakocka_document(self.org.id, mk_id)

    def metakocka(self, mk_id: str, **flags) -> dict:
        return MetakockaHttp(self.sandbox, self.org).call(
            "get_document", {"doc_type": "sales_order", "doc_id": mk_id, **flags}
        )

    def status(self, crm_id: str) -> dict:
        (row,) = [
            r for r in status_rows(self.database_url, self.org.id) if r["crm_document_id"] == crm_id
        ]
        return row


@pytest.fixture(params=("sm60", "fixed10"))
def lab(request, tmp_path):
    with profile_sandbox(tmp_path, request.param, documents=4) as (
        sandbox,
        settings,
        database_url,
        instance,
    ):
        yield Lab(sandbox, settings, database_url, instance, request.param)


def money(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def crm_totals(lab: Lab, crm_id: str) -> dict:
    row = lab.sandbox.crm_state.document(crm_id)
    columns = ["total_amount", "tax_amount"] + (["subtotal"] if lab.profile == "fixed10" else [])
    return {column: money(row[column]) for column in columns}


def stated_totals(lab: Lab, mk_doc: dict) -> dict:
    """Metakocka's sums under the CRM's column names."""
    taxes = sum(money(v) for k, v in mk_doc.items() if k.startswith("sum_tax_"))
    totals = {"total_amount": money(mk_doc["sum_all"]), "tax_amount": taxes}
    return totals | ({"subtotal": money(mk_doc["sum_basic"])} if lab.profile == "fixed10" else {})


def gross_line(code: str, amount: str, gross: str, tax: str = "220") -> dict:
    return {"code": code, "name": f"Izdelek {code}", "unit": "kos", "amount": amount,
            "price_with_tax": gross, "tax": tax}  # fmt: skip


def test_a_gross_priced_order_reaches_the_crm_to_the_cent_and_goes_back_gross(lab):
    lines = [gross_line("G-1", "3", "19,99"), gross_line("G-2", "1", "4.99", tax="095")]
    mk_id, crm_id = lab.new_order("GROSS", lines)

    lab.run()

    mk_doc = lab.metakocka(mk_id)
    assert mk_doc["sum_all"] == "64.96"  # 3 x 19.99 + 4.99, as the customer was charged
    assert crm_totals(lab, crm_id) == stated_totals(lab, mk_doc)
    assert lab.status(crm_id)["status"] == "synced"
    for full_sweep in (False, True):  # nothing flips: the pair stays synced
        assert pushes(lab.run(full_sweep=full_sweep)) == []

    Users(lab.sandbox, lab.org).edit_in_crm(crm_id, notes="dostava v petek")
    result = lab.run()

    assert [(o.action, o.metakocka_id) for o in pushes(result)] == [("update_in_metakocka", mk_id)]
    after = lab.metakocka(mk_id)
    assert after["notes"] == "dostava v petek"
    assert [line.get("price_with_tax") for line in after["product_list"]] == ["19.99", "4.99"]
    assert after["sum_all"] == "64.96"  # not 3 x 16.39 x 1.22 + 4.56 x 1.095
    assert crm_totals(lab, crm_id) == stated_totals(lab, after)


def test_metakocka_s_sums_win_where_its_rounding_differs_and_the_run_warns(lab):
    """Metakocka rounds tax per tax code; EX4 and 220 are both 22 %, which the pipeline's
    derived totals sum as one rate: 2 x round(10.07 x 0.22) = 4.44 against round(20.14 x 0.22) =
    4.43. The CRM gets Metakocka's 4.44; the run says the two differ, and nothing is refused."""
    lines = [
        {"code": "N-1", "name": "Vijak", "unit": "kos", "amount": "1", "price": "10.07",
         "tax": "220"},
        {"code": "N-2", "name": "Matica", "unit": "kos", "amount": "1", "price": "10.07",
         "tax": "EX4"},
    ]  # fmt: skip
    mk_id, crm_id = lab.new_order("CODES", lines)

    result = lab.run()

    assert crm_totals(lab, crm_id)["tax_amount"] == Decimal("4.44")
    assert crm_totals(lab, crm_id)["total_amount"] == Decimal("24.58")
    assert lab.status(crm_id)["status"] == "synced"
    (check,) = [
        c for c in result.get_asset_check_evaluations() if c.check_name == CHECK_METAKOCKA_TOTALS
    ]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["documents"].value == 1
    assert mk_id in check.metadata["sample"].value and "4.43" in check.metadata["sample"].value


def test_a_paid_order_reads_as_paid_and_a_replace_keeps_its_payments(lab):
    lines = [{"code": "P-1", "name": "Stol", "unit": "kos", "amount": "1", "price": "1553.29",
              "tax": "220"}]  # fmt: skip
    payments = [
        {"payment_type": "PayPal", "date": "12.03.2026", "amount": "1.000,00"},
        {"payment_type": "Gotovina", "date": "13.03.2026"},
    ]
    mk_id, crm_id = lab.new_order("PAID", lines, mark_paid=payments)
    assert lab.metakocka(mk_id, show_payment_detail="true")["sum_paid"] == "1.895,01"

    lab.run()

    assert lab.sandbox.crm_state.document(crm_id)["status"] == "paid"
    Users(lab.sandbox, lab.org).edit_in_crm(crm_id, notes="račun poslan")
    assert [o.action for o in pushes(lab.run())] == ["update_in_metakocka"]
    after = lab.metakocka(mk_id, show_payment_detail="true")
    assert after["notes"] == "račun poslan"
    assert after["sum_paid"] == "1.895,01"  # the replace sent Metakocka's payments back
    assert [p["amount"] for p in after["mark_paid"]] == ["1.000,00", "895,01"]
    assert lab.sandbox.crm_state.document(crm_id)["status"] == "paid"


def coupon_order(lab: Lab, label: str) -> tuple[str, str]:
    """An order with a document discount both ways and a coupon line on a service product with
    a code ("KUPON"), as a web shop writes one."""
    lines = [
        {"code": "S-1", "name": "Stol", "unit": "kos", "amount": "2", "price": "100",
         "tax": "220"},
        {"code": "K-1", "name": "Knjiga", "unit": "kos", "amount": "1", "price": "30",
         "tax": "095"},
        {"code": "KUPON", "name": "Kupon -10 EUR", "unit": "kos", "service": "true",
         "amount": "-1", "price": "10", "tax": "220"},
    ]  # fmt: skip
    return lab.new_order(label, lines, discount_percent="5", discount_value="3,50")


def test_a_document_discount_and_a_coupon_line_are_synced_both_ways(lab):
    mk_id, crm_id = coupon_order(lab, "KUPON")

    result = lab.run()

    assert lab.status(crm_id)["status"] == "synced"  # not quarantined
    mk_doc = lab.metakocka(mk_id)
    assert crm_totals(lab, crm_id) == stated_totals(lab, mk_doc)
    row = lab.sandbox.crm_state.document(crm_id)
    assert row["metadata"]["metakocka"]["discount"] == {"percent": "5", "value": "3.5"}
    if lab.profile == "fixed10":
        assert money(row["discount_amount"]) == money(mk_doc["sum_discount"])
    coupon = lab.sandbox.crm_state.items_of(crm_id)[2]
    assert Decimal(str(coupon["quantity"])) == -1
    (check,) = [  # the pipeline's own rule agrees with Metakocka's sums
        c for c in result.get_asset_check_evaluations() if c.check_name == CHECK_METAKOCKA_TOTALS
    ]
    assert check.passed
    for full_sweep in (False, True):
        assert pushes(lab.run(full_sweep=full_sweep)) == []

    # Back to Metakocka: the CRM's discount is the one sent, with the coupon line as it was.
    metadata = row["metadata"]
    metadata["metakocka"]["discount"] = {"percent": "7"}
    Users(lab.sandbox, lab.org).edit_in_crm(crm_id, metadata=metadata)
    assert [o.action for o in pushes(lab.run())] == ["update_in_metakocka"]

    after = lab.metakocka(mk_id, show_product_detail="true")
    assert after["discount_percent"] == "7" and after.get("discount_value") in (None, "0")
    assert [(line["code"], line["type"], line["amount"]) for line in after["product_list"]] == [
        ("S-1", "product", "2"),
        ("K-1", "product", "1"),
        ("KUPON", "service", "-1"),
    ]
    assert (mk_doc["sum_basic"], after["sum_basic"]) == ("205.50", "204.60")  # 7 % of 190 and 30
    assert pushes(lab.run()) == []
    assert lab.status(crm_id)["status"] == "synced"


def test_a_coupon_line_of_a_service_product_with_a_code_is_an_ordinary_line(lab):
    """Metakocka says a line is a service product's in its `type` (show_product_detail): the
    coupon has a code, and it is still a service line, so its negative amount is fine."""
    lines = [
        {"code": "S-2", "name": "Miza", "unit": "kos", "amount": "1", "price": "80", "tax": "220"},
        {"code": "KUPON", "name": "Kupon", "unit": "kos", "service": "true", "amount": "-1",
         "price": "8", "tax": "220"},
    ]  # fmt: skip
    mk_id, crm_id = lab.new_order("COUPON", lines)

    lab.run()

    assert lab.status(crm_id)["status"] == "synced"
    coupon = next(i for i in lab.sandbox.crm_state.items_of(crm_id) if i["description"] == "Kupon")
    assert Decimal(str(coupon["quantity"])) == -1
    assert coupon["metadata"]["metakocka"]["service"] is True
    assert crm_totals(lab, crm_id) == stated_totals(lab, lab.metakocka(mk_id))
    assert pushes(lab.run(full_sweep=True)) == []


def test_a_negative_line_of_a_product_that_is_not_a_service_stays_refused(lab):
    """The CRM lets a user enter one; Metakocka takes it only for a service product (section 4),
    so the document is quarantined with the reason, before any call. A negative line without a
    product goes to Metakocka as the organization's service product (docs/crm.md): synced."""
    mk = MetakockaHttp(lab.sandbox, lab.org)
    products = lab.sandbox.crm_state.tables["products"].rows.values()
    product = next(p for p in products if p["organization_id"] == lab.org.id and p["sku"])
    crm = CrmHttp(lab.sandbox)
    bad = crm.insert_document(*with_negative_line(lab, "SO-NEG-GOODS", product["id"]))
    good = crm.insert_document(*with_negative_line(lab, "SO-NEG-SERVICE", None))

    lab.run()

    refused = lab.status(bad["id"])
    assert refused["status"] == "invalid"
    assert "quantity: must be > 0 (got -1)" in refused["last_error"]
    assert lab.status(good["id"])["status"] == "synced"
    (held,) = mk.find_by_buyer_order("sales_order", crm_id_to_external_ref(good["id"]))
    assert sorted(line["amount"] for line in as_list(held["product_list"])) == ["-1", "2"]
    assert not mk.find_by_buyer_order("sales_order", crm_id_to_external_ref(bad["id"]))


def with_negative_line(lab: Lab, number: str, product_id: str | None) -> tuple[dict, list]:
    """A CRM order whose second line is negative, of `product_id` (None: no product)."""
    row, items = new_crm_order(lab.org, number, lab.profile)
    negative = {"description": "Popust", "quantity": -1, "unit_price": 10, "tax_rate": 22,
                "tax_amount": -2.2, "total_amount": -12.2}  # fmt: skip
    lines = [{**item, "product_id": None} for item in items]
    return row, [*lines, {**negative, "product_id": product_id}]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]
