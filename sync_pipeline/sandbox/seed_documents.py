"""How one sandbox document looks: customers, products, lines and totals, in CRM and Metakocka form.

Why its own module: ``seed`` decides *which* documents exist (categories, links, timestamps);
this module makes each one consistent and writes it in each system's own shape:
- the CRM as its published schema has it (``crm_ddl``): the organization's users, products with
  a SKU (some also with a ``metakocka_product_mappings`` code), contacts with their address,
  documents owned by a member (``user_id`` NOT NULL; a few with ``organization_id`` NULL, as the
  CRM's own code leaves it), types and statuses of its CHECKs, 2-decimal amounts, lines keyed by
  ``document_id`` (sm60) or ``sales_document_id`` (fixed10), a line's discount in its
  ``metadata.discount`` (sm60, where the CRM's own sync reads it: sales-document-sync.ts) or in
  ``discount_rate`` (fixed10), line totals with tax (``total_amount`` is gross, as the CRM's
  sales-document-sync-service.ts maps it);
- Metakocka as the pipeline would have written it (the "old integration" of linked documents):
  every line with a product code (the mapping's code, else the SKU, else the organization's
  service product), the customer as a partner; documents born in Metakocka also carry what the
  CRM has no column for (a partner's tax number, a service line's unit), and credit notes, which
  only Metakocka has.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from sync_pipeline.sandbox.amounts import line_net_cents, tax_cents, totals_cents
from sync_pipeline.sandbox.crm_store import DOCS, ITEMS, CrmState
from sync_pipeline.sandbox.crm_values import format_timestamp
from sync_pipeline.sandbox.metakocka_values import format_date

SEED_ANCHOR = datetime(2026, 11, 1, tzinfo=UTC)  # seeded timestamps lie before this moment
INVALID_KINDS = ("empty_customer_name", "negative_quantity", "unknown_currency")
CRM_TYPES = ("offer", "order", "invoice", "proforma")
"""The CRM's document types (sm/60's CHECK)."""
METAKOCKA_TYPES = {
    "offer": "sales_offer",
    "order": "sales_order",
    "invoice": "sales_bill_domestic",
    "proforma": "sales_bill_prepaid",
    "credit_note": "sales_bill_credit_note",
}
TYPE_WEIGHTS = {"offer": 2, "order": 2, "invoice": 5, "proforma": 1}
NUMBER_PREFIX = {
    "offer": "PON",
    "order": "NAR",
    "invoice": "RAC",
    "proforma": "PRO",
    "credit_note": "DOB",
}
STATUSES = {
    "offer": ("draft", "sent", "cancelled"),
    "order": ("draft", "sent", "paid"),
    "invoice": ("sent", "paid", "overdue"),
    "proforma": ("sent", "paid"),
    "credit_note": ("sent",),
}
TAX_CODES = {22: "220", 9.5: "095", 0: "000"}
SERVICE_PRODUCT_CODE = "STORITEV"
"""The sandbox organizations' service product in Metakocka, for lines without a product."""
PRODUCTS = (
    ("Pisarniški stol", 22),
    ("Delovna miza", 22),
    ('Monitor 27"', 22),
    ("Tipkovnica", 22),
    ("Namizna svetilka", 22),
    ("Omara za dokumente", 22),
    ("Kava v zrnu 1 kg", 9.5),
    ("Strokovna knjiga", 9.5),
    ("Papir A4", 22),
    ("Toner", 22),
    ("USB ključ", 22),
    ("Slušalke", 22),
    ("Prenosnik", 22),
    ("Čaj zeliščni", 9.5),
    ("Mineralna voda", 9.5),
    ("Tiskalnik", 22),
)
MAPPED_PRODUCTS = 8
"""The first products have a metakocka_product_mappings row; the first half of those with a
Metakocka code that differs from their SKU (so the mapping, not the SKU, must be used)."""
SERVICES = (("Montaža", "ura"), ("Prevoz", "kos"), ("Svetovanje", "ura"), ("Vzdrževanje", "ura"))
PLACES = (
    ("Ljubljana", "1000", "SI"),
    ("Maribor", "2000", "SI"),
    ("Celje", "3000", "SI"),
    ("Kranj", "4000", "SI"),
    ("Koper", "6000", "SI"),
    ("Novo mesto", "8000", "SI"),
    ("Zagreb", "10000", "HR"),
    ("Graz", "8010", "AT"),
    ("München", "80331", "DE"),
    ("Trieste", "34100", "IT"),
)
WORDS = (
    "Alpe",
    "Sava",
    "Triglav",
    "Kras",
    "Pohorje",
    "Soča",
    "Lipa",
    "Bor",
    "Kolpa",
    "Krka",
    "Jelka",
    "Zora",
    "Vrba",
    "Mura",
)
KINDS = ("Trgovina", "Gradnje", "Storitve", "Tehnika", "Elektro", "Les", "Print", "Gostinstvo")
FIRST_NAMES = ("Ana", "Marko", "Petra", "Luka", "Maja", "Jure", "Nina", "Tadej")
NOTES = (
    "Dostava v 14 dneh.",
    "Plačilo na TRR.",
    "Hvala za zaupanje.",
    "Blago ostane v lasti prodajalca do plačila.",
    None,
    None,
    None,
)
DISCOUNTS = (5, 10, 15, 20)
WITHOUT_ORGANIZATION_ID = 0.1
"""Share of CRM documents whose organization_id is NULL (the CRM's own code never writes it):
they belong to the organization through their owner's membership."""


@dataclass
class Line:
    description: str
    quantity: int | float
    unit_price: float
    tax_rate: float
    code: str
    """Metakocka product code: the mapping's, else the SKU, else the service product."""
    unit: str
    product_id: str | None = None
    discount: int | None = None


@dataclass
class SeedDocument:
    """One document, in neither system's shape yet."""

    id: str
    organization_id: str | None
    user_id: str
    document_type: str
    number: str
    document_date: str
    due_date: str | None
    customer: dict[str, Any]
    status: str
    notes: str | None
    created_at: str
    updated_at: str
    lines: list[Line] = field(default_factory=list)
    currency: str = "EUR"
    born_in_metakocka: bool = False


class DocumentFactory:
    """The catalog (users, products, contacts) and consistent documents of one organization,
    from its own RNG. Written for speed: benchmarks seed 100,000 documents per organization."""

    def __init__(
        self,
        organization_id: str,
        rng: random.Random,
        *,
        integration_user_id: str | None = None,
        service_product_code: str = SERVICE_PRODUCT_CODE,
    ) -> None:
        self.organization_id, self.rng, self.random = organization_id, rng, rng.random
        self.users = [random_uuid(rng) for _ in range(3)]
        self.integration_user_id = integration_user_id or random_uuid(rng)
        self.service_product_code = service_product_code
        self.products = [self._product(i, name, rate) for i, (name, rate) in enumerate(PRODUCTS)]
        self.services = [
            {"description": name, "unit": unit, "unit_price": rng.randrange(40, 180) / 2}
            for name, unit in SERVICES
        ]
        self.contacts = [self._contact(i) for i in range(40)]
        self.foreign = [c for c in self.contacts if c["country"] != "SI"]
        self.numbers = dict.fromkeys(NUMBER_PREFIX, 0)
        self.partners: dict[str, dict[str, Any]] = {}

    # -- the catalog --------------------------------------------------------------------------
    def _product(self, i: int, name: str, rate: float) -> dict[str, Any]:
        sku = f"ART-{i + 1:03d}"
        mapped = i < MAPPED_PRODUCTS
        return {
            "id": random_uuid(self.rng),
            "name": name,
            "sku": sku,
            "unit": "kos",
            "unit_price": self.rng.randrange(150, 90000) / 100,
            "tax_rate": rate,
            "mapping_code": (f"MK-{i + 1:04d}" if i < MAPPED_PRODUCTS // 2 else sku)
            if mapped
            else None,
            "code": (f"MK-{i + 1:04d}" if i < MAPPED_PRODUCTS // 2 else sku) if mapped else sku,
        }

    def _contact(self, i: int) -> dict[str, Any]:
        rng = self.rng
        city, post_code, country = PLACES[i % len(PLACES)]
        company = country != "SI" or i % 5 != 4  # every fifth Slovenian customer is a person
        word = WORDS[rng.randrange(len(WORDS))]
        if company:
            name = f"{word} {KINDS[rng.randrange(len(KINDS))]} {i + 1} d.o.o."
            first = last = None
        else:
            first, last = FIRST_NAMES[rng.randrange(len(FIRST_NAMES))], f"{word}nik"
            name = f"{first} {last}"
        slug = (
            name.lower().replace(" ", "-").replace(".", "").replace("č", "c").replace("š", "s")
        ).replace("ž", "z")
        digits = {"SI": 8, "HR": 11, "AT": 8, "DE": 9, "IT": 11}[country]
        return {
            "id": f"c-{self.organization_id[:8]}-{i + 1:03d}",
            "name": name,
            "firstname": first,
            "lastname": last,
            "company": name if company else None,
            "email": f"info@{slug}.{country.lower()}",
            "address": f"{WORDS[rng.randrange(len(WORDS))]}ska cesta {rng.randrange(1, 120)}",
            "postal_code": post_code,
            "city": city,
            "country": country,
            "tax_id": (
                ("ATU" if country == "AT" else country)
                + "".join(str(rng.randrange(10)) for _ in range(digits))
            )
            if company
            else None,
        }

    def catalog_rows(self, organization_name: str) -> list[tuple[str, list[dict]]]:
        """(table, rows) of the organization's users, membership, products, product mappings and
        contacts, in the order their foreign keys need."""
        org, owner = self.organization_id, self.users[0]
        everyone = [*self.users, self.integration_user_id]
        products = [
            {
                "id": p["id"],
                "name": p["name"],
                "sku": p["sku"],
                "unit": p["unit"],
                "organization_id": org,
            }
            for p in self.products
        ]
        mappings = [
            {
                "user_id": owner,
                "product_id": p["id"],
                "metakocka_id": str(7000 + i),
                "metakocka_code": p["mapping_code"],
                "organization_id": org,
            }
            for i, p in enumerate(self.products)
            if p["mapping_code"] is not None
        ]
        contacts = [
            {
                "id": c["id"],
                "firstname": c["firstname"],
                "lastname": c["lastname"],
                "email": c["email"],
                "company": c["company"],
                "address": c["address"],
                "postal_code": c["postal_code"],
                "city": c["city"],
                "country": c["country"],
                "organization_id": org,
            }
            for c in self.contacts
        ]
        return [
            ("auth.users", [{"id": u} for u in everyone]),
            ("organizations", [{"id": org, "name": organization_name}]),
            (
                "organization_members",
                [
                    {
                        "organization_id": org,
                        "user_id": u,
                        "role": "admin" if u in (owner, self.integration_user_id) else "member",
                    }
                    for u in everyone
                ],
            ),
            ("products", products),
            ("metakocka_product_mappings", mappings),
            ("contacts", contacts),
        ]

    # -- documents ----------------------------------------------------------------------------
    def document(
        self, doc_type: str | None = None, *, foreign_invoice: bool = False
    ) -> SeedDocument:
        """One consistent document of the CRM's types (or ``doc_type``, e.g. a credit note)."""
        rnd = self.random
        if foreign_invoice:
            doc_type, contact = "invoice", self.foreign[int(rnd() * len(self.foreign))]
        else:
            doc_type = doc_type or _TYPE_TABLE[int(rnd() * len(_TYPE_TABLE))]
            contact = self.contacts[int(rnd() * len(self.contacts))]
        rate_override = 0 if contact["country"] != "SI" else None
        lines = [self.line(rate_override) for _ in range(1 + int(rnd() * 5))]
        day_iso, day_start, due15, due30 = _day(int(rnd() * 365) + 35)
        created = day_start + timedelta(microseconds=int(rnd() * 9 * 3600e6))
        updated = created + timedelta(microseconds=int(rnd() * 3 * 86400e6))
        self.numbers[doc_type] += 1
        statuses = STATUSES[doc_type]
        owned_by_membership = rnd() < WITHOUT_ORGANIZATION_ID
        return SeedDocument(
            id=random_uuid(self.rng),
            organization_id=None if owned_by_membership else self.organization_id,
            user_id=self.users[int(rnd() * len(self.users))],
            document_type=doc_type,
            number=f"{NUMBER_PREFIX[doc_type]}-{day_iso[:4]}-{self.numbers[doc_type]:06d}",
            document_date=day_iso,
            due_date=None
            if doc_type in ("offer", "credit_note")
            else (due15 if rnd() < 0.5 else due30),
            customer=contact if rnd() < 0.9 else {**contact, "id": None},
            status=statuses[int(rnd() * len(statuses))],
            notes=NOTES[int(rnd() * len(NOTES))],
            created_at=_stamp(created),
            updated_at=_stamp(updated),
            lines=lines,
        )

    def line(self, rate_override: float | None) -> Line:
        rnd = self.random
        discount = DISCOUNTS[int(rnd() * len(DISCOUNTS))] if rnd() < 0.15 else None
        if rnd() < 0.2:
            service = self.services[int(rnd() * len(self.services))]
            halves = 1 + int(rnd() * 15)
            return Line(
                description=service["description"],
                quantity=halves // 2 if halves % 2 == 0 else halves / 2,
                unit_price=service["unit_price"],
                tax_rate=22 if rate_override is None else rate_override,
                code=self.service_product_code,
                unit="kos",  # a CRM line without a product has no unit: Metakocka's piece
                discount=discount,
            )
        product = self.products[int(rnd() * len(self.products))]
        return Line(
            description=product["name"],
            quantity=1 + int(rnd() * 10),
            unit_price=product["unit_price"],
            tax_rate=product["tax_rate"] if rate_override is None else rate_override,
            code=product["code"],
            unit=product["unit"],
            product_id=product["id"],
            discount=discount,
        )

    def born_in_metakocka(self, doc: SeedDocument) -> SeedDocument:
        """The same document as a Metakocka user would have entered it: service lines counted in
        their own units, the partner's tax number, and no CRM owner."""
        lines = [
            replace(
                line,
                unit=next(
                    (s["unit"] for s in self.services if s["description"] == line.description),
                    line.unit,
                ),
            )
            if line.product_id is None
            else line
            for line in doc.lines
        ]
        return replace(doc, lines=lines, born_in_metakocka=True)

    def spoil(self, doc: SeedDocument, kind: str) -> SeedDocument:
        """An invalid document the CRM's table accepts (and Metakocka would refuse)."""
        if kind == "empty_customer_name":
            return replace(doc, customer={**doc.customer, "name": ""})
        if kind == "unknown_currency":
            return replace(doc, currency="XYZ")
        lines = list(doc.lines)
        goods = [i for i, line in enumerate(lines) if line.product_id is not None]
        if not goods:
            product = self.products[0]
            lines[0] = Line(
                product["name"], 1, product["unit_price"], lines[0].tax_rate, product["code"],
                product["unit"], product["id"],
            )  # fmt: skip
            goods = [0]
        lines[goods[0]] = replace(lines[goods[0]], quantity=-abs(lines[goods[0]].quantity))
        return replace(doc, lines=lines)

    def change(self, doc: SeedDocument) -> SeedDocument:
        """The same document after one edit on one side: a line's quantity or the notes."""
        if self.random() < 0.5:
            first = doc.lines[0]
            lines = [replace(first, quantity=first.quantity + 1 + int(self.random() * 3))]
            return replace(doc, lines=lines + doc.lines[1:])
        return replace(doc, notes=f"{doc.notes or ''} Dopolnjeno po dogovoru s kupcem.".strip())

    # -- the CRM's shape ----------------------------------------------------------------------
    def put_in_crm(self, crm: CrmState, doc: SeedDocument) -> None:
        """Store ``doc`` in the CRM as rows the seeder built complete (the fast path)."""
        row, items = crm_rows(crm, doc)
        crm.load(DOCS, [row])
        crm.load(ITEMS, items)

    # -- Metakocka's shape ----------------------------------------------------------------------
    def to_metakocka(self, doc: SeedDocument, *, buyer_order: str | None = None) -> dict[str, Any]:
        """The put_document body the old integration (or a Metakocka user) produced."""
        doc_type = METAKOCKA_TYPES[doc.document_type]
        if doc_type == "sales_bill_domestic" and doc.customer["country"] != "SI":
            doc_type = "sales_bill_foreign"
        payload: dict[str, Any] = {
            "doc_type": doc_type,
            "doc_date": _mk_date(doc.document_date),
            "currency_code": doc.currency,
            "partner": self._partner(doc),
            "product_list": [_metakocka_line(line) for line in doc.lines],
        }
        if buyer_order is not None:  # linked by the old integration: the pipeline's link fields
            payload.update(count_code=doc.number, title=doc.id, buyer_order=buyer_order)
        if doc.due_date:
            payload["duo_payment"] = _mk_date(doc.due_date)
        if doc.notes:
            payload["notes"] = doc.notes
        return payload

    def _partner(self, doc: SeedDocument) -> dict[str, Any]:
        """The partner as the CRM knows the customer (name, e-mail, street; the contact's post
        code, city and country); one born in Metakocka also has its tax number."""
        c = doc.customer
        with_contact = c["id"] is not None
        key = f"{c['name']}|{c['email']}|{with_contact}|{doc.born_in_metakocka}"
        partner = self.partners.get(key)
        if partner is None:  # the same customer is the same partner: build it once
            partner = {
                "customer": c["name"],
                "street": c["address"],
                "partner_contact": {"email": c["email"]},
            }
            if with_contact or doc.born_in_metakocka:
                partner.update(post_number=c["postal_code"], place=c["city"], country=c["country"])
            if doc.born_in_metakocka and c["tax_id"]:
                partner["tax_id_number"] = c["tax_id"]
            self.partners[key] = partner
        return partner


def crm_rows(crm: CrmState, doc: SeedDocument) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``sales_documents`` row and its ``sales_document_items`` rows under the CRM's profile,
    with amounts as the CRM keeps them (2 decimals, tax per line, totals with tax)."""
    fixed10 = crm.profile == "fixed10"
    parent = crm.item_parent
    items, nets = [], []
    for position, line in enumerate(doc.lines):
        net = line_net_cents(line.quantity, line.unit_price, line.discount)
        gross_before_discount = line_net_cents(line.quantity, line.unit_price)
        tax = tax_cents(net, line.tax_rate)
        nets.append((net, line.tax_rate))
        item = crm.blank_row(ITEMS)
        item.update(
            id=_line_id(doc.id, position),
            product_id=line.product_id,
            description=line.description,
            quantity=line.quantity,
            unit_price=line.unit_price,
            tax_rate=line.tax_rate,
            tax_amount=tax / 100,
            total_amount=(net + tax) / 100,
            created_at=doc.created_at,
            updated_at=doc.created_at,
        )
        item[parent] = doc.id
        if fixed10:
            item.update(
                discount_rate=line.discount or 0,
                discount_amount=(gross_before_discount - net) / 100,
                sort_order=position,
            )
        elif line.discount:
            item["metadata"] = {"discount": line.discount}
        items.append(item)
    subtotal, tax, total = totals_cents(nets)
    row = crm.blank_row(DOCS)
    customer = doc.customer
    row.update(
        id=doc.id,
        organization_id=doc.organization_id,
        user_id=doc.user_id,
        document_type=doc.document_type,
        document_number=doc.number,
        document_date=doc.document_date,
        due_date=doc.due_date,
        tax_amount=tax / 100,
        total_amount=total / 100,
        currency=doc.currency,
        status=doc.status,
        notes=doc.notes,
        created_at=doc.created_at,
        updated_at=doc.updated_at,
    )
    if fixed10:
        discounts = sum(i["discount_amount"] for i in items)
        row.update(
            contact_id=customer["id"],
            contact_name=customer["name"],
            contact_email=customer["email"],
            contact_address=customer["address"],
            subtotal=subtotal / 100,
            discount_amount=round(discounts, 2),
        )
    else:
        row.update(
            customer_id=customer["id"],
            customer_name=customer["name"],
            customer_email=customer["email"],
            customer_address=customer["address"],
        )
    return row, items


#: Document types repeated by weight, so a draw is one ``random()`` call.
_TYPE_TABLE = tuple(t for t, w in TYPE_WEIGHTS.items() for _ in range(w))


def _line_id(document_id: str, position: int) -> str:
    """A stable, distinct id per seeded line (the CRM's own would be random)."""
    head = f"{position + 1:08x}"
    return head + document_id[8:]


def _stamp(moment: datetime) -> str:
    """A seeded timestamp as the CRM serves it."""
    return format_timestamp(moment)


@lru_cache(maxsize=512)
def _day(days_before_anchor: int) -> tuple[str, datetime, str, str]:
    """(date, 07:00 UTC that day, date + 15 days, date + 30 days), computed once per day."""
    day = SEED_ANCHOR.date() - timedelta(days=days_before_anchor)
    start = datetime(day.year, day.month, day.day, 7, tzinfo=UTC)
    return (
        day.isoformat(),
        start,
        (day + timedelta(days=15)).isoformat(),
        (day + timedelta(days=30)).isoformat(),
    )


@lru_cache(maxsize=1024)
def _mk_date(iso_day: str) -> str:
    return format_date(date.fromisoformat(iso_day))


def later(timestamp: str, scale: int, rnd: Any) -> str:
    """A moment after ``timestamp``: scale 1 = within the hour (a sync), 2 = up to 20 days."""
    span = 3600e6 if scale == 1 else 20 * 86400e6
    moment = datetime.fromisoformat(timestamp) + timedelta(microseconds=60e6 + int(rnd() * span))
    return _stamp(moment)


def _metakocka_line(line: Line) -> dict[str, str]:
    out = {
        "code": line.code,
        "name": line.description,
        "unit": line.unit,
        "amount": str(line.quantity),
        "price": f"{line.unit_price:.2f}",
        "tax": TAX_CODES[line.tax_rate],
    }
    if line.product_id is None:
        out["service"] = "true"
    if line.discount:
        out["discount"] = str(line.discount)
    return out


def random_uuid(rng: random.Random) -> str:
    """``str(uuid.UUID(int=rng.getrandbits(128), version=4))``, four times faster."""
    h = f"{rng.getrandbits(128) & _UUID_CLEAR | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)
