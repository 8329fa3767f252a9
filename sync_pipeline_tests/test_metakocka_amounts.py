"""Metakocka's amounts in the mappers: gross lines, Metakocka's own sums, payments in Slovenian
decimals (issue 16, item 4); a document's own discount and coupon lines of service products
(item 3). The same over real HTTP: test_amounts_e2e.py."""

from dataclasses import replace
from decimal import Decimal

import pytest

from sync_pipeline.crm.mapping import OURS, canonical_to_crm_write, crm_row_to_canonical
from sync_pipeline.crm.profiles import FIXED10, PROFILES
from sync_pipeline.domain.amounts import StatedTotals, split_in_proportion
from sync_pipeline.domain.document import MappingError, crm_id_for_metakocka_document
from sync_pipeline.domain.frames import documents_frame, lines_frame
from sync_pipeline.metakocka.mapping import canonical_to_metakocka, metakocka_to_canonical
from sync_pipeline.schemas import validate_documents

from .test_mappers import LOOKUPS, ORG, PRODUCT_A, Lookups, crm_context, document, line, mk_order

D = Decimal
GROSS_LINE = {"code": "W-1", "name": "Widget", "unit": "kos", "amount": "3",
              "price_with_tax": "19,99", "tax": "220"}  # fmt: skip


def test_a_gross_line_is_read_as_its_net_price_and_keeps_its_gross_price():
    doc = metakocka_to_canonical(mk_order(product_list=[GROSS_LINE]), ORG)
    (gross,) = doc.lines
    assert gross.unit_price == D("16.385246")  # 19.99 / 1.22, what the CRM keeps as 16.39
    assert gross.gross_price == D("19.99")
    # Metakocka's rule for a gross line: 3 x 19.99 = 59.97 with its tax in it, not 3 x 16.39.
    assert (doc.total, doc.tax_amount, doc.subtotal) == (D("59.97"), D("10.81"), D("49.16"))


def test_a_line_answered_with_both_prices_keeps_metakocka_s_net_price():
    both = GROSS_LINE | {"price": "16.3852"}
    (read,) = metakocka_to_canonical(mk_order(product_list=[both]), ORG).lines
    assert (read.unit_price, read.gross_price) == (D("16.3852"), D("19.99"))


def test_a_gross_line_goes_back_gross_until_its_price_or_tax_changes_in_the_crm():
    crm_copy = line(quantity=D("3"), unit_price=D("16.39"), price_with_tax=D("19.99"))

    (sent,) = canonical_to_metakocka(document(lines=(crm_copy,)))["product_list"]
    assert sent["price_with_tax"] == "19.99" and "price" not in sent

    for changed in (replace(crm_copy, unit_price=D("17")), replace(crm_copy, tax_rate=D("9.5"))):
        (sent,) = canonical_to_metakocka(document(lines=(changed,)))["product_list"]
        assert "price_with_tax" not in sent and sent["price"] == format(changed.unit_price, ".4f")


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_the_crm_gets_metakocka_s_own_sums_and_keeps_the_gross_price(profile):
    sums = {"sum_basic": "1.046,19", "sum_discount": "20,12", "sum_tax_ex4": "230,16",
            "sum_tax_000": "0.00", "sum_all": "1276.35"}  # fmt: skip
    mk_doc = metakocka_to_canonical(mk_order(product_list=[GROSS_LINE], **sums), ORG)
    assert mk_doc.stated_totals == StatedTotals(
        subtotal=D("1046.19"),
        discount=D("20.12"),
        tax_by_code=(("ex4", D("230.16")), ("000", D("0"))),
        total=D("1276.35"),
    )
    ctx = crm_context(profile)
    crm_id = crm_id_for_metakocka_document(ORG, mk_doc.metakocka_id)

    write = canonical_to_crm_write(mk_doc, ctx, crm_document_id=crm_id, create=True)

    header = write.header  # Metakocka's, never the 59.97 recomputed from the line
    assert (header["total_amount"], header["tax_amount"]) == ("1276.35", "230.16")
    if profile is FIXED10:
        assert (header["subtotal"], header["discount_amount"]) == ("1046.19", "20.12")
    (item,) = write.lines
    assert item["metadata"][OURS]["price_with_tax"] == "19.99"
    assert (item["tax_amount"], item["total_amount"]) == ("10.81", "59.97")  # gross line
    read = crm_row_to_canonical(
        header | {"sales_document_items": [item | {"unit_price": "16.39"}]}, ctx
    )
    assert read.lines[0].gross_price == D("19.99")


def test_a_document_without_sums_gets_derived_totals_in_the_crm():
    write = canonical_to_crm_write(document(), crm_context(), crm_document_id=ORG, create=True)
    assert (write.header["total_amount"], write.header["tax_amount"]) == ("25.62", "4.62")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sum_all": "lots"}, "sum_all: not a number: 'lots'"),
        ({"sum_tax_220": "x"}, "sum_tax_220: not a number: 'x'"),
        ({"sum_paid": None, "mark_paid": [{"amount": "?"}]}, "mark_paid amount: not a number"),
        (
            {"product_list": [{"amount": "1", "price_with_tax": "19.99 EUR", "tax": "220"}]},
            "product_list line 1 price_with_tax: not a number",
        ),
        (
            {"product_list": [{"amount": "1", "tax": "220"}]},
            "product_list line 1 price: missing (neither price nor price_with_tax)",
        ),
    ],
)
def test_an_unreadable_amount_is_a_mapping_error_never_a_silent_zero(change, reason):
    with pytest.raises(MappingError) as caught:
        metakocka_to_canonical(mk_order() | change, ORG)
    assert reason in caught.value.reason


PAYPAL = {"payment_type": "PayPal", "date": "12.03.2024+01:00"}


@pytest.mark.parametrize(
    ("payments", "status"),
    [
        ({"sum_all": "1895.01", "sum_paid": "1.895,01"}, "paid"),
        ({"sum_all": "1895.01", "sum_paid": "1.000,00"}, "sent"),  # the label: Poslano
        ({"sum_all": "1895.01", "mark_paid": [PAYPAL | {"amount": "1.895,01"}]}, "paid"),
        ({"sum_all": "1895.01", "mark_paid": PAYPAL | {"amount": "895,01"}}, "sent"),
    ],
)
def test_payments_in_slovenian_decimals_read_as_paid(payments, status):
    assert metakocka_to_canonical(mk_order() | payments, ORG).status == status


def test_a_replace_sends_metakocka_s_payments_back_unchanged():
    paid = [PAYPAL | {"amount": "1.895,01"}]
    current = metakocka_to_canonical(mk_order(mark_paid=paid, sum_paid="1.895,01"), ORG)
    body = canonical_to_metakocka(document(), mk_id=current.metakocka_id, current=current)
    assert body["mark_paid"] == paid
    assert "mark_paid" not in canonical_to_metakocka(document())  # a create has none


# -- item 3: the document's own discount, coupon lines -------------------------------------------


def test_a_document_discount_both_ways_is_read_applied_and_written_back():
    lines = [{"code": "a", "name": "A", "amount": "1", "price": "100", "tax": "220"},
             {"code": "b", "name": "B", "amount": "2", "price": "25", "tax": "095"}]  # fmt: skip
    raw = mk_order(product_list=lines, discount_percent="10", discount_value="15,00")
    doc = metakocka_to_canonical(raw, ORG)
    assert (doc.discount_percent, doc.discount_value) == (D("10"), D("15"))
    # 10 % off each rate's sum (90, 45), then 15.00 in proportion (10, 5): the sandbox's sums.
    assert (doc.subtotal, doc.tax_amount, doc.total) == (D("120.00"), D("21.40"), D("141.40"))
    assert doc.totals.discount == D("30.00")

    body = canonical_to_metakocka(doc)
    assert (body["discount_percent"], body["discount_value"]) == ("10", "15")
    plain = document()
    assert "discount_percent" not in canonical_to_metakocka(plain)
    removed = canonical_to_metakocka(plain, mk_id=doc.metakocka_id, current=doc)
    assert (removed["discount_percent"], removed["discount_value"]) == ("0", "0")


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_the_crm_keeps_the_document_discount_and_its_totals_include_it(profile):
    doc = document(discount_percent=D("5"), discount_value=D("1.5"))  # 21.00 -> 19.95 -> 18.45
    ctx = crm_context(profile)
    write = canonical_to_crm_write(doc, ctx, crm_document_id=doc.crm_document_id, create=True)
    header = write.header
    assert header["metadata"][OURS]["discount"] == {"percent": "5", "value": "1.5"}
    assert (header["total_amount"], header["tax_amount"]) == ("22.51", "4.06")
    if profile is FIXED10:
        assert (header["subtotal"], header["discount_amount"]) == ("18.45", "2.55")
    read = crm_row_to_canonical(header | {"sales_document_items": write.lines}, ctx)
    assert (read.discount_percent, read.discount_value) == (D("5"), D("1.5"))


def test_split_in_proportion_adds_up_to_the_cent():
    odd_cent = split_in_proportion(D("0.01"), {"a": D("90"), "b": D("45")})
    assert odd_cent == {"a": D("0.01"), "b": D("0.00")}  # to the largest remainder
    shares = split_in_proportion(D("10"), {"a": D("1"), "b": D("1"), "c": D("1"), "d": D("-5")})
    assert shares == {"a": D("3.34"), "b": D("3.33"), "c": D("3.33")}  # the first on a tie
    assert split_in_proportion(D("2"), {"x": D("-1")}) == {"x": D("2")}
    assert split_in_proportion(D("0"), {"a": D("1")}) == {}


COUPON = {"code": "KUPON", "name": "Kupon", "amount": "-1", "price": "10", "tax": "220"}


@pytest.mark.parametrize(
    ("says", "service"),
    [({"type": "service"}, True), ({"service": "true"}, True), ({"type": "Service"}, True),
     ({"type": "product"}, False), ({}, False)],
)  # fmt: skip
def test_a_service_line_is_what_the_document_says_not_a_missing_code(says, service):
    doc = metakocka_to_canonical(mk_order(product_list=[COUPON | says]), ORG)
    assert doc.lines[0].service is service
    result = validate_documents(documents_frame([doc]), lines_frame([doc]), "metakocka_id")
    assert (result.valid_keys == {doc.metakocka_id}) is service  # negative: only a service's


def test_a_coupon_of_a_product_the_crm_knows_reads_back_as_a_service_line():
    lookups = Lookups(products=LOOKUPS.products, codes={PRODUCT_A: "KUPON"})
    ctx = crm_context(lookups=lookups)
    mk_doc = metakocka_to_canonical(mk_order(product_list=[COUPON | {"type": "service"}]), ORG)
    write = canonical_to_crm_write(mk_doc, ctx, crm_document_id=ORG, create=True)
    (item,) = write.lines
    assert item["product_id"] == PRODUCT_A and item["metadata"][OURS]["service"] is True
    read = crm_row_to_canonical(write.header | {"id": ORG, "sales_document_items": [item]}, ctx)
    assert read.lines[0].service and read.lines[0].product_code == "KUPON"
