"""How the simulated Metakocka turns a put_document request into a stored document.

Why its own module: this is where MK is strict (registers, product resolution, negative lines,
partner matching) and where a client learns whether its payloads are right. Building is pure:
nothing is stored here. New partners/products are returned to the caller, which creates them
only if the whole document is accepted, so a refused request leaves no trace.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sync_pipeline.sandbox.metakocka_sums import compute_totals, document_discount, payments
from sync_pipeline.sandbox.metakocka_values import (
    COUNT_CODE_PREFIX,
    CURRENCIES,
    MkError,
    as_list,
    country_iso,
    discount_factor,
    format_date,
    format_decimal,
    format_timestamp,
    invalid,
    is_true,
    ljubljana_offset,
    parse_date,
    parse_decimal,
    parse_timestamp,
    resolve_status,
    resolve_tax,
    to_wire,
)

if TYPE_CHECKING:
    from sync_pipeline.sandbox.metakocka_index import CompanyStore

_TEXT_FIELDS = frozenset(
    (
        "title",
        "warehouse",
        "delivery_type",
        "method_of_payment",
        "priority",
        "pariteta",
        "sales_pricelist_code",
        "notes_header",
        "notes",
        "doc_created_email",
        "commercialist_email",
        "parcel_shop_id",
        "profit_center",
        "salesOrderTrackingType",
        "location_of_service",
        "bank_ref_prefix",
        "bank_ref_number",
        "credit_note_type",
        "credit_note_bill",
        "valid_days",
        "inquiry_num",
        "prepayment_percent",
        "prepayment_value",
        "tracking_code",
        "tracking_intermediate_code",
        "eshop_name",
        "webshop_eshop_sync_id",
        "link_to_web_store",
    )
)
_DATE_FIELDS = frozenset(
    (
        "duo_payment",
        "delivery_deadline",
        "finish_date",
        "shipped_date_expected_seller",
        "service_to_date",
        "service_from_date",
        "valid_to",
        "shipped_date",
    )
)
_LIST_FIELDS = ("extra_column", "meta_data", "offer_list")
_LINE_PASSTHROUGH = frozenset(
    (
        "name_desc",
        "doc_desc",
        "barcode",
        "microlocation",
        "lot_number_value",
        "serial_number_value",
        "expiration_date_value",
    )
)
_PARTNER_IDS = ("mk_id", "count_code", "country_iso_2", "mk_address_id")


def local_today() -> date:
    now = datetime.now(UTC)
    return (now + timedelta(hours=ljubljana_offset(now))).date()


def build_document(
    state: Any,
    comp: CompanyStore,
    doc_type: str,
    req: dict[str, Any],
    existing: dict | None,
    *,
    keep_row_ids: bool = False,
) -> tuple[dict, dict | None, list[dict]]:
    """Validate ``req`` and build the stored form of the document.

    Returns ``(doc, new_partner, new_products)``; ids, count_code, timestamps are filled in
    by the store on commit. With ``existing`` (a replace) the count_code is kept (§4).
    """
    doc: dict[str, Any] = {"mk_id": "", "doc_type": doc_type}
    if existing is not None:
        doc["count_code"] = existing["count_code"]
    else:
        count_code = str(to_wire(req.get("count_code") or "")).strip()
        if not count_code or count_code.startswith("COUNT_CODE_SELECT#"):
            doc["_count_prefix"] = (
                count_code.split("#", 1)[1] if count_code else COUNT_CODE_PREFIX[doc_type]
            )
            count_code = ""
        doc["count_code"] = count_code
    doc_date = parse_date(req["doc_date"], "doc_date") if _given(req, "doc_date") else local_today()
    doc["doc_date"] = format_date(doc_date)
    buyer_order = (
        req.get("buyer_order") if _given(req, "buyer_order") else req.get("customer_order")
    )
    if buyer_order not in (None, ""):
        buyer_order = str(to_wire(buyer_order)).strip()
        if len(buyer_order) > 30:
            raise invalid("buyer_order", buyer_order, "max 30 characters")
        doc["buyer_order"] = buyer_order
    for name in [n for n in req if n in _TEXT_FIELDS]:  # request order; cheap
        if _given(req, name):
            doc[name] = str(to_wire(req[name]))
    currency = str(req.get("currency_code") or "EUR").strip().upper()
    if currency not in CURRENCIES:
        raise invalid("currency_code", currency, ",".join(sorted(CURRENCIES)))
    doc["currency_code"] = currency
    label = resolve_status(comp.status_register, req.get("status_code") or "")
    if label is not None:  # a response carries the label and the internal code (§5)
        doc["status_code"] = label
        if comp.status_register[label]:
            doc["status_desc"] = comp.status_register[label]
    for name in [n for n in req if n in _DATE_FIELDS]:
        if _given(req, name):
            doc[name] = format_date(parse_date(req[name], name))
    if "duo_payment" not in doc and _given(req, "duo_payment_days"):
        days = int(parse_decimal(req["duo_payment_days"], "duo_payment_days"))
        doc["duo_payment"] = format_date(doc_date + timedelta(days=days))
    if _given(req, "order_create_ts"):
        doc["order_create_ts"] = format_timestamp(
            parse_timestamp(req["order_create_ts"], "order_create_ts")
        )
    for name in _LIST_FIELDS:
        if _given(req, name):
            doc[name] = to_wire(as_list(req[name]))
    pending: dict[str, dict] = {}
    not_found: list[str] = []
    lines = [
        _build_line(comp, raw, i, pending, not_found, keep_row_ids)
        for i, raw in enumerate(as_list(req.get("product_list")))
    ]
    if not_found:
        raise MkError(
            "2",
            f"Product with code {not_found[0]} not found - unit must be set to add new product",
            product_not_found_list=[{"code": code} for code in not_found],
        )
    doc["partner"], new_partner = _resolve_partner(comp, req.get("partner"))
    if _given(req, "receiver"):
        receiver = to_wire(req["receiver"])
        if not isinstance(receiver, dict):
            raise invalid("receiver", req["receiver"])
        if receiver.get("country"):
            receiver["country_iso_2"] = country_iso(receiver["country"])
        doc["receiver"] = receiver
    doc["product_list"] = lines
    discount = document_discount(req)
    doc.update(discount)
    doc.update(compute_totals(lines, discount))
    doc["mark_paid"], doc["sum_paid"] = payments(req.get("mark_paid"), doc["sum_all"])
    if not doc["mark_paid"]:
        del doc["mark_paid"]
    return doc, new_partner, list(pending.values())


def _given(req: dict[str, Any], name: str) -> bool:
    return req.get(name) not in (None, "")


def _build_line(
    comp: CompanyStore,
    raw: Any,
    i: int,
    pending: dict[str, dict],
    not_found: list[str],
    keep_row_ids: bool,
) -> dict:
    where = f"product_list[{i}]"
    if not isinstance(raw, dict):
        raise invalid(where, raw)
    code = str(to_wire(raw.get("code") or "")).strip()
    product = comp.products.get(code) if code else None
    if product is None and not code:
        ref = str(to_wire(raw.get("count_code") or raw.get("mk_id") or "")).strip()
        if ref:
            code = comp.product_by_id.get(ref, "")
            product = comp.products.get(code)
            if product is None:
                not_found.append(ref)
                return {}
    if product is None and code:
        product = pending.get(code)
        if product is None:
            if not _given(raw, "unit"):
                not_found.append(code)
                return {}
            product = pending[code] = {
                "code": code,
                "name": str(to_wire(raw.get("name") or code)),
                "unit": str(to_wire(raw["unit"])),
                "service": "true" if is_true(to_wire(raw.get("service"))) else "false",
            }
    if product is None and not (is_true(to_wire(raw.get("service"))) and _given(raw, "name")):
        raise MkError("2", f"Paramether 'code' is missing in {where}")
    service = product is None or product["service"] == "true"
    amount = parse_decimal(raw.get("amount", "1"), f"{where}.amount")
    tax = resolve_tax(raw, where)
    price = _price(raw, where)
    (price_value,) = price.values()
    if not service and (amount < 0 or price_value.startswith("-")):
        # §4: a negative line is allowed only for service products; a negative price is a
        # negative line too (stricter reading). Service is the product register's word.
        raise MkError("2", f"Negative amount is allowed only for service products ({where})")
    line: dict[str, Any] = {}
    if product is not None:
        if product.get("mk_id"):
            line["mk_id"] = product["mk_id"]
        line["code"] = code
        line["name"] = str(to_wire(raw.get("name") or product["name"]))
        line["unit"] = str(to_wire(raw.get("unit") or product["unit"]))
    else:
        line["name"] = str(to_wire(raw["name"]))
        if _given(raw, "unit"):
            line["unit"] = str(to_wire(raw["unit"]))
        line["service"] = "true"
    line["amount"] = format_decimal(amount)
    line.update(price)
    if _given(raw, "discount"):
        text = str(to_wire(raw["discount"])).strip()
        discount_factor(text, where)  # validates
        line["discount"] = (
            text if ";" in text else format_decimal(parse_decimal(text, f"{where}.discount"))
        )
    line["tax"] = tax
    for name in [n for n in raw if n in _LINE_PASSTHROUGH]:
        if _given(raw, name):
            line[name] = str(to_wire(raw[name]))
    if keep_row_ids and _given(raw, "mk_row_id"):
        line["mk_row_id"] = str(raw["mk_row_id"])
    line["type"] = "service" if service else "product"
    return line


def _price(raw: dict, where: str) -> dict[str, str]:
    """``price`` (net) or ``price_with_tax`` (gross), kept as entered (§4: one or the other;
    sending both is refused, the stricter reading, since the docs say which one wins nowhere)."""
    given = [name for name in ("price", "price_with_tax") if _given(raw, name)]
    if not given:
        raise MkError("2", f"Paramether 'price' is missing in {where}")
    if len(given) == 2:
        raise MkError("2", f"Paramether 'price_with_tax' cannot be sent with 'price' in {where}")
    (name,) = given
    return {name: format_decimal(parse_decimal(raw[name], f"{where}.{name}"))}


def partner_key(data: dict[str, Any]) -> tuple[str, ...]:
    """What "the same partner" means when no id is sent: tax number + name for companies,
    name + address otherwise."""
    tax_id = str(data.get("tax_id_number") or "").replace(" ", "").upper()
    customer = str(data.get("customer") or "").strip().lower()
    if tax_id:
        return ("tax", tax_id, customer)
    return (
        "name",
        customer,
        str(data.get("street") or "").strip().lower(),
        str(data.get("post_number") or "").strip(),
    )


def _resolve_partner(comp: CompanyStore, raw: Any) -> tuple[dict, dict | None]:
    if not isinstance(raw, dict) or not raw:
        raise MkError("2", "Paramether 'partner' is missing")
    sent = to_wire(raw)
    pid = str(sent.get("mk_id") or "").strip()
    pcc = str(sent.get("count_code") or "").strip()
    sent = {k: v for k, v in sent.items() if k not in _PARTNER_IDS}
    record = None
    if pid:
        record = comp.partners.get(pid)
        if record is None:
            raise MkError("2", f"Cannot find partner with mk_id {pid}")
    elif pcc:
        record = comp.partners.get(comp.partner_by_count_code.get(pcc, ""))
        if record is None:
            raise MkError("2", f"Cannot find partner with count_code {pcc}")
    data = {**record["data"], **sent} if record is not None else sent
    iso = country_iso(data.get("country"))
    new_partner = None
    if record is None:
        if not str(data.get("customer") or "").strip():
            raise MkError("2", "Paramether 'partner.customer' is missing")
        key = partner_key(data)
        record = comp.partners.get(comp.partner_by_key.get(key, ""))
        if record is None:
            record = new_partner = {
                "mk_id": "",
                "count_code": "",
                "key": list(key),
                "data": dict(data),
            }
    partner = {
        **data,
        "mk_id": record["mk_id"],
        "count_code": record["count_code"],
        "country_iso_2": iso,
    }
    return partner, new_partner


def line_changes(doc: dict, req: dict[str, Any]) -> dict[str, Any]:
    """product_add / product_remove / product_list-by-mk_row_id of update_document (§6)."""
    if not any(k in req for k in ("product_add", "product_remove", "product_list")):
        return {}
    lines = [dict(line) for line in doc["product_list"]]
    remove = {
        str(r.get("mk_row_id") if isinstance(r, dict) else r)
        for r in req.get("product_remove") or ()
    }
    lines = [line for line in lines if line["mk_row_id"] not in remove]
    by_row = {line["mk_row_id"]: line for line in lines}
    for upd in req.get("product_list") or ():
        row = str(upd.get("mk_row_id", "")) if isinstance(upd, dict) else ""
        if row not in by_row:
            raise MkError("6", f"Cannot find product row with mk_row_id {row}")
        if {"price", "price_with_tax"} & upd.keys():  # a new price replaces either kind
            by_row[row].pop("price", None)
            by_row[row].pop("price_with_tax", None)
        by_row[row].update({k: v for k, v in upd.items() if k != "mk_row_id"})
    add = req.get("product_add") or []
    return {"product_list": lines + (add if isinstance(add, list) else [add])}
