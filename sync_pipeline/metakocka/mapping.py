"""Metakocka JSON <-> canonical `SalesDocument`: the one place that knows Metakocka's field names.

Read side: a document as `get_document` / `search` (result_type "doc") returns it. Write side: the
`put_document` body without credentials (the client adds `secret_key` and `company_id`).

Two rules keep the sync from echoing and from losing data:
- everything the content hash covers must survive a write and a read unchanged, so values are
  written in the one form Metakocka always accepts and read in every form it may answer with;
- `put_document` with `mk_id` replaces the whole document, so Metakocka-only header fields read from
  the current document are written back (`current=`), and a document born in Metakocka keeps its own
  `buyer_order` and `title` (only documents the CRM created carry the CRM reference there).
"""

from decimal import Decimal

from sync_pipeline.domain.countries import known_country_code
from sync_pipeline.domain.document import (
    DEFAULT_UNIT,
    HOME_COUNTRY,
    Customer,
    DocumentLine,
    MappingError,
    SalesDocument,
    crm_id_for_metakocka_document,
    crm_id_to_external_ref,
    external_ref_to_crm_id,
)
from sync_pipeline.domain.text import stripped_or_none
from sync_pipeline.metakocka.amounts import (
    PAYMENT_FIELDS,
    document_discount_fields,
    line_price_fields,
    read_document_discount,
    read_line_price,
    read_stated_totals,
)
from sync_pipeline.metakocka.statuses import STANDARD, STATUS_KEY, read_status
from sync_pipeline.metakocka.wire import (
    as_list,
    format_decimal,
    format_mk_date,
    parse_bool,
    parse_decimal,
    parse_mk_date,
)

__all__ = ["MappingError", "canonical_to_metakocka", "metakocka_to_canonical"]

DOC_TYPE_TO_METAKOCKA = {
    "offer": "sales_offer",
    "order": "sales_order",
    "invoice": "sales_bill_domestic",
    "credit_note": "sales_bill_credit_note",
    "proforma": "sales_bill_prepaid",
}
FOREIGN_INVOICE = "sales_bill_foreign"
METAKOCKA_TO_DOC_TYPE = {mk: crm for crm, mk in DOC_TYPE_TO_METAKOCKA.items()} | {
    FOREIGN_INVOICE: "invoice"
}

TAX_CODE_BY_RATE = {
    Decimal("22"): "220",
    Decimal("9.5"): "095",
    Decimal("5"): "050",
    Decimal("0"): "000",
}
"""Codes of the standard Slovenian rates in a tax register; other rates are sent as tax_factor."""
TAX_RATE_BY_CODE = {code: rate for rate, code in TAX_CODE_BY_RATE.items()} | {"EX4": Decimal("22")}

PASSTHROUGH_KEY = "metakocka_passthrough"
PASSTHROUGH_FIELDS = (
    "title", "buyer_order", "customer_order", "receiver", "sales_pricelist_code", "warehouse",
    "delivery_type", "method_of_payment", "priority", "pariteta", "prepayment_percent",
    "prepayment_value", "delivery_deadline", "finish_date", "shipped_date_expected_seller",
    "order_create_ts", "notes_header", "doc_created_email", "commercialist_email",
    "parcel_shop_id", "profit_center", "offer_list", "extra_column", "service_to_date",
    "service_from_date", "location_of_service", "bank_ref_prefix", "bank_ref_number",
    "credit_note_type", "credit_note_bill", "valid_days", "valid_to", "inquiry_num",
    "salesOrderTrackingType",
)  # fmt: skip
"""Settable header fields the CRM has no place for: a full replace must send them back unchanged."""

ISSUED_KEY = "metakocka_issued"
"""`SalesDocument.source_extra` key: True for a bill Metakocka has issued (below)."""
ISSUE_MARKS = ("publish_ts", "furs_eor", "furs_zoi")
"""Fields only an issued bill has (metakocka-api.md section 6: `publish_ts` is the issue time,
`furs_eor`/`furs_zoi` the tax authority's fiscalization): such a bill is never replaced."""
ISSUED_BILL = (
    "an issued invoice in Metakocka (published or fiscalized) cannot be changed: the CRM's edit "
    "is not sent; settle it in Metakocka (a credit note) and in the CRM"
)

METAKOCKA_OWNED_FIELDS = ("status_code",)
"""Header fields Metakocka owns (docs/field-ownership.md): never written from the CRM's values, and
sent back unchanged by a full replace, like the passthrough fields."""


_DOC_TYPES = {doc_type: doc_type for doc_type in METAKOCKA_TO_DOC_TYPE}


def metakocka_to_canonical(doc: dict, organization_id: str) -> SalesDocument:
    """Read a Metakocka document; `MappingError` names the field when it cannot be read."""
    if not isinstance(doc, dict):
        raise MappingError(f"document: expected a JSON object, got {type(doc).__name__}")
    mk_doc_type = stripped_or_none(doc.get("doc_type"))
    mk_doc_type = _DOC_TYPES.get(mk_doc_type, mk_doc_type)  # one object per type, not per document
    document_type = METAKOCKA_TO_DOC_TYPE.get(mk_doc_type)
    if document_type is None:
        raise MappingError(f"doc_type: unsupported document type {mk_doc_type!r}")
    mk_id = stripped_or_none(doc.get("mk_id"))
    if mk_id is None:
        raise MappingError("mk_id: missing")
    document_date = _read(parse_mk_date, doc, "doc_date")
    if document_date is None:
        raise MappingError("doc_date: missing")
    stated_totals = read_stated_totals(doc)
    # the organization's own map applies when planning (sync/statuses)
    status = read_status(doc, stated_totals)
    return SalesDocument(
        organization_id=organization_id,
        document_type=document_type,
        document_date=document_date,
        due_date=_read(parse_mk_date, doc, "duo_payment"),
        customer=_customer(doc.get("partner")),
        lines=tuple(
            _line(raw, number)
            for number, raw in enumerate(as_list(doc.get("product_list")), start=1)
        ),
        **read_document_discount(doc),
        currency=(stripped_or_none(doc.get("currency_code")) or "EUR").upper(),
        notes=stripped_or_none(doc.get("notes")),
        status=STANDARD.crm_status(status),
        crm_document_id=external_ref_to_crm_id(stripped_or_none(doc.get("buyer_order"))),
        metakocka_id=mk_id,
        metakocka_count_code=stripped_or_none(doc.get("count_code")),
        metakocka_doc_type=mk_doc_type,
        updated_at=None,  # Metakocka answers no change time: sync/change_order.py
        source_extra={
            PASSTHROUGH_KEY: {
                key: doc[key]
                for key in (*PASSTHROUGH_FIELDS, *METAKOCKA_OWNED_FIELDS, *PAYMENT_FIELDS)
                if doc.get(key) not in (None, "")
            },
            ISSUED_KEY: mk_doc_type.startswith("sales_bill")
            and any(doc.get(key) not in (None, "") for key in ISSUE_MARKS),
            STATUS_KEY: status,
        },
        stated_totals=stated_totals,
    )


def is_issued_bill(doc) -> bool:
    """Is `doc` (as read from Metakocka) a bill Metakocka has issued, hence never to replace?"""
    extra = getattr(doc, "source_extra", None)
    return bool(extra and extra.get(ISSUED_KEY))


def canonical_to_metakocka(
    doc: SalesDocument, *, mk_id: str | None = None, current: SalesDocument | None = None
) -> dict:
    """The `put_document` body (without credentials): a create, or with `mk_id` a full replace.

    `current` is the document as Metakocka holds it now (from `metakocka_to_canonical`); its
    Metakocka-only header fields and its doc_type are kept, because a replace rewrites everything.
    The CRM's `status` is never written: Metakocka owns the status (payment, fulfilment), so a
    replace keeps Metakocka's and a create leaves it to Metakocka.
    """
    body = dict(doc.source_extra.get(PASSTHROUGH_KEY, {}))
    if current is not None:
        body.update(current.source_extra.get(PASSTHROUGH_KEY, {}))
    body["doc_type"] = _metakocka_doc_type(doc, current)
    if mk_id is not None:
        body["mk_id"] = mk_id
    elif doc.document_number:
        body["count_code"] = doc.document_number
    if doc.crm_document_id and not _born_in_metakocka(doc, mk_id):
        body["buyer_order"] = crm_id_to_external_ref(doc.crm_document_id)
        body["title"] = doc.crm_document_id
    body["doc_date"] = format_mk_date(doc.document_date)
    if doc.due_date is not None:
        body["duo_payment"] = format_mk_date(doc.due_date)
    body["currency_code"] = doc.currency
    body["notes"] = doc.notes or ""
    body["partner"] = _partner(doc.customer)
    body["product_list"] = [_product(line) for line in doc.lines]
    body.update(document_discount_fields(doc, current))
    return body


# -- reading -----------------------------------------------------------------------------


def _read(reader, record: dict, key: str, where: str | None = None):
    try:
        return reader(record.get(key))
    except ValueError as exc:
        raise MappingError(f"{where or key}: {exc}") from None


def _one(value, where: str) -> dict:
    items = as_list(value)
    if len(items) != 1 or not isinstance(items[0], dict):
        raise MappingError(f"{where}: expected one object, got {value!r}")
    return items[0]


def _customer(value) -> Customer:
    if value is None:
        raise MappingError("partner: missing")
    partner = _one(value, "partner")
    contacts = [c for c in as_list(partner.get("partner_contact")) if isinstance(c, dict)]
    street = " ".join(
        filter(None, (stripped_or_none(partner.get(k)) for k in ("street", "street_number")))
    )
    return Customer(
        name=stripped_or_none(partner.get("customer")) or "",
        email=stripped_or_none(contacts[0].get("email")) if contacts else None,
        tax_id=stripped_or_none(partner.get("tax_id_number")),
        address=street or None,
        post_code=stripped_or_none(partner.get("post_number")),
        city=stripped_or_none(partner.get("place")),
        country=_country(partner),
        metakocka_partner_id=stripped_or_none(partner.get("mk_id")),
        metakocka_partner_code=stripped_or_none(partner.get("count_code")),
    )


def _country(partner: dict) -> str | None:
    iso = stripped_or_none(partner.get("country_iso_2"))
    if iso:
        return iso.upper()
    name = stripped_or_none(partner.get("country"))
    if name is None:
        return None
    code = known_country_code(name)
    if code is None:
        raise MappingError(f"partner.country: unknown country {name!r} and no country_iso_2")
    return code


def _line(raw, number: int) -> DocumentLine:
    where = f"product_list line {number}"
    if not isinstance(raw, dict):
        raise MappingError(f"{where}: expected an object, got {raw!r}")
    quantity = _read(parse_decimal, raw, "amount", f"{where} amount")
    if quantity is None:
        raise MappingError(f"{where} amount: missing")
    tax_rate = _tax_rate(raw, where)
    price, price_with_tax = read_line_price(raw, tax_rate, where)
    code = stripped_or_none(raw.get("code"))
    return DocumentLine(
        description=stripped_or_none(raw.get("name")) or "",
        quantity=quantity,
        unit_price=price,
        tax_rate=tax_rate,
        discount_percent=_discount(raw, where),
        product_code=code,
        unit=stripped_or_none(raw.get("unit")),
        service=_says_service(raw, where),
        price_with_tax=price_with_tax,
    )


def _says_service(raw: dict, where: str) -> bool:
    """Is the line a service product's, as the document says: `service` on the line, or its
    `type` (with show_product_detail, metakocka-api.md section 5)? A missing code says nothing:
    only a service product's line may be negative (section 4), so a guess lets through a line
    Metakocka would refuse, or quarantines a coupon it took."""
    return bool(_read(parse_bool, raw, "service", f"{where} service")) or (
        (stripped_or_none(raw.get("type")) or "").lower() == "service"
    )


def _tax_rate(raw: dict, where: str) -> Decimal:
    factor = _read(parse_decimal, raw, "tax_factor", f"{where} tax_factor")
    if factor is not None:
        return factor * 100
    code = stripped_or_none(raw.get("tax"))
    if code is None:
        raise MappingError(f"{where} tax: missing (neither tax nor tax_factor)")
    rate = TAX_RATE_BY_CODE.get(code.upper())
    if rate is None:
        raise MappingError(f"{where} tax: unknown tax code {code!r} and no tax_factor")
    return rate


def _discount(raw: dict, where: str) -> Decimal:
    """A percentage; a cascaded "22;23" is the single percentage with the same effect (39.94)."""
    value = raw.get("discount")
    parts = value.split(";") if isinstance(value, str) else [value]
    remaining = Decimal(1)
    percents = []
    for part in parts:
        try:
            percent = parse_decimal(part)
        except ValueError as exc:
            raise MappingError(f"{where} discount: {exc}") from None
        if percent is not None:
            percents.append(percent)
            remaining *= 1 - percent / 100
    if len(percents) == 1:
        return percents[0]
    return (1 - remaining) * 100


# -- writing -----------------------------------------------------------------------------


def _metakocka_doc_type(doc: SalesDocument, current: SalesDocument | None) -> str:
    """An existing document keeps its type; a new invoice is foreign when the buyer is abroad."""
    for known in (current.metakocka_doc_type if current else None, doc.metakocka_doc_type):
        if known and METAKOCKA_TO_DOC_TYPE.get(known) == doc.document_type:
            return known
    if doc.document_type == "invoice" and (doc.customer.country or HOME_COUNTRY) != HOME_COUNTRY:
        return FOREIGN_INVOICE
    try:
        return DOC_TYPE_TO_METAKOCKA[doc.document_type]
    except KeyError:
        raise MappingError(f"document_type: unsupported {doc.document_type!r}") from None


def _born_in_metakocka(doc: SalesDocument, mk_id: str | None) -> bool:
    return mk_id is not None and doc.crm_document_id == crm_id_for_metakocka_document(
        doc.organization_id, mk_id
    )


def _partner(customer: Customer) -> dict:
    """The partner object; pinned by its Metakocka ids where the CRM knows them (its contact
    mapping), since without ids Metakocka matches a partner by its data or creates a new one
    (metakocka-api.md section 4)."""
    partner = {
        "customer": customer.name,
        "business_entity": "true" if customer.tax_id else "false",
    }
    if customer.metakocka_partner_id:
        partner["mk_id"] = customer.metakocka_partner_id
    if customer.metakocka_partner_code:
        partner["count_code"] = customer.metakocka_partner_code
    optional = {
        "tax_id_number": customer.tax_id,
        "street": customer.address,
        "post_number": customer.post_code,
        "place": customer.city,
        "country": customer.country,
    }
    partner.update({key: value for key, value in optional.items() if value})
    if customer.country:
        partner["foreign_county"] = "false" if customer.country == HOME_COUNTRY else "true"
    if customer.email:
        partner["partner_contact"] = {"email": customer.email}
    return partner


def _product(line: DocumentLine) -> dict:
    product = {"code": line.product_code} if line.product_code else {}
    if line.service or not line.product_code:
        product["service"] = "true"
    product["name"] = line.description
    product["unit"] = line.unit or DEFAULT_UNIT
    product["amount"] = format_decimal(line.quantity)
    product.update(line_price_fields(line))
    if line.discount_percent:
        product["discount"] = format_decimal(line.discount_percent)
    tax_code = TAX_CODE_BY_RATE.get(line.tax_rate)
    if tax_code is not None:
        product["tax"] = tax_code
    else:
        product["tax_factor"] = format_decimal(line.tax_rate / 100)
    return product
