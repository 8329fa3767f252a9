"""How one sandbox document looks: customers, products, lines and totals, CRM and Metakocka form.

Why its own module: ``seed`` decides *which* documents exist (categories, links, timestamps);
this module makes each one consistent (Metakocka's rounding in the CRM totals, ISO country
codes, tax codes) and turns a CRM document into the put_document body Metakocka would have got.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from sync_pipeline.sandbox.amounts import line_net_cents, totals_cents
from sync_pipeline.sandbox.metakocka_values import format_date

SEED_ANCHOR = datetime(2026, 11, 1, tzinfo=UTC)  # seeded timestamps lie before this moment
INVALID_KINDS = ("empty_customer_name", "negative_quantity", "unknown_currency")
TYPE_MAP = {
    "offer": "sales_offer",
    "order": "sales_order",
    "invoice": "sales_bill_domestic",
    "credit_note": "sales_bill_credit_note",
    "proforma": "sales_bill_prepaid",
}
DOC_TYPES = tuple(TYPE_MAP)
TYPE_WEIGHTS = (0.2, 0.2, 0.4, 0.1, 0.1)
NUMBER_PREFIX = {
    "offer": "PON",
    "order": "NAR",
    "invoice": "RAC",
    "credit_note": "DOB",
    "proforma": "PRO",
}
STATUSES = {
    "offer": ("draft", "sent", "canceled"),
    "order": ("draft", "sent", "paid"),
    "invoice": ("sent", "paid", "overdue"),
    "credit_note": ("sent", "paid"),
    "proforma": ("sent", "paid"),
}
TAX_CODES = {22: "220", 9.5: "095", 0: "000"}
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
NOTES = (
    "Dostava v 14 dneh.",
    "Plačilo na TRR.",
    "Hvala za zaupanje.",
    "Blago ostane v lasti prodajalca do plačila.",
    None,
    None,
    None,
)


class DocumentFactory:
    """Customers, products and consistent documents of one organization, from its own RNG.

    Written for speed (benchmarks seed 100,000 documents per organization): ``rng.random``
    instead of ``randrange``, line templates per product, dates formatted once per day.
    """

    def __init__(self, organization_id: str, rng: random.Random) -> None:
        self.organization_id, self.rng, self.random = organization_id, rng, rng.random
        self.users = [random_uuid(rng) for _ in range(3)]
        self.goods = [
            {
                "product_id": random_uuid(rng),
                "product_code": f"ART-{i + 1:03d}",
                "description": name,
                "unit": "kos",
                "unit_price": rng.randrange(150, 90000) / 100,
                "tax_rate": rate,
            }
            for i, (name, rate) in enumerate(PRODUCTS)
        ]
        self.services = [
            {
                "product_id": None,
                "product_code": None,
                "description": name,
                "unit": unit,
                "unit_price": rng.randrange(40, 180) / 2,
                "tax_rate": 22,
            }
            for name, unit in SERVICES
        ]
        self.customers = [self._customer(i) for i in range(40)]
        self.foreign = [c for c in self.customers if c["customer_country"] != "SI"]
        self.numbers = dict.fromkeys(DOC_TYPES, 0)
        self.partners: dict[tuple[str, str], dict[str, Any]] = {}

    def _customer(self, i: int) -> dict[str, Any]:
        rng = self.rng
        city, post_code, country = PLACES[i % len(PLACES)]
        name = f"{WORDS[rng.randrange(len(WORDS))]} {KINDS[rng.randrange(len(KINDS))]} {i + 1}"
        company = country != "SI" or i % 5 != 4  # every fifth Slovenian customer is a person
        digits = {"SI": 8, "HR": 11, "AT": 8, "DE": 9, "IT": 11}[country]
        tax_id = (
            (
                ("ATU" if country == "AT" else country)
                + "".join(str(rng.randrange(10)) for _ in range(digits))
            )
            if company
            else None
        )
        slug = name.lower().replace(" ", "-").replace("č", "c").replace("š", "s").replace("ž", "z")
        return {
            "customer_name": f"{name} d.o.o." if company else name,
            "customer_email": f"info@{slug}.{country.lower()}",
            "customer_tax_id": tax_id,
            "customer_address": f"{WORDS[rng.randrange(len(WORDS))]}ska cesta "
            f"{rng.randrange(1, 120)}",
            "customer_post_code": post_code,
            "customer_city": city,
            "customer_country": country,
        }

    def document(
        self, doc_type: str | None, foreign_invoice: bool = False
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One consistent CRM document (header + lines) with Metakocka's totals."""
        rnd = self.random
        if foreign_invoice:
            doc_type, customer = "invoice", self.foreign[int(rnd() * len(self.foreign))]
        else:
            doc_type = doc_type or DOC_TYPES[_TYPE_TABLE[int(rnd() * len(_TYPE_TABLE))]]
            customer = self.customers[int(rnd() * len(self.customers))]
        doc_id = random_uuid(self.rng)
        rate_override = 0 if customer["customer_country"] != "SI" else None
        items = [self.line(doc_id, rate_override) for _ in range(1 + int(rnd() * 5))]
        day_iso, day_start, due15, due30 = _day(int(rnd() * 365) + 35)
        created = day_start + timedelta(microseconds=int(rnd() * 9 * 3600e6))
        updated = created + timedelta(microseconds=int(rnd() * 3 * 86400e6))
        self.numbers[doc_type] += 1
        statuses = STATUSES[doc_type]
        user = self.users[int(rnd() * len(self.users))]
        row = {
            "id": doc_id,
            "organization_id": self.organization_id,
            "document_type": doc_type,
            "document_number": f"{NUMBER_PREFIX[doc_type]}-{day_iso[:4]}-"
            f"{self.numbers[doc_type]:06d}",
            "document_date": day_iso,
            "due_date": None
            if doc_type in ("offer", "credit_note")
            else (due15 if rnd() < 0.5 else due30),
            **customer,
            "currency": "EUR",
            "subtotal_amount": None,
            "tax_amount": None,
            "total_amount": None,
            "status": statuses[int(rnd() * len(statuses))],
            "notes": NOTES[int(rnd() * len(NOTES))],
            "created_at": created.isoformat(timespec="microseconds"),
            "updated_at": updated.isoformat(timespec="microseconds"),
            "created_by": user,
            "updated_by": user,
        }
        _set_totals(row, items)
        return row, items

    def line(self, doc_id: str, rate_override: int | None) -> dict[str, Any]:
        rnd = self.random
        quantity: int | float
        if rnd() < 0.2:
            template = self.services[int(rnd() * len(self.services))]
            halves = 1 + int(rnd() * 15)
            quantity = halves // 2 if halves % 2 == 0 else halves / 2
        else:
            template = self.goods[int(rnd() * len(self.goods))]
            quantity = 1 + int(rnd() * 10)
        discount = DISCOUNTS[int(rnd() * len(DISCOUNTS))] if rnd() < 0.15 else None
        net = line_net_cents(quantity, template["unit_price"], discount)
        return {
            "id": random_uuid(self.rng),
            "document_id": doc_id,
            "product_id": template["product_id"],
            "product_code": template["product_code"],
            "description": template["description"],
            "quantity": quantity,
            "unit": template["unit"],
            "unit_price": template["unit_price"],
            "discount_percent": discount,
            "tax_rate": template["tax_rate"] if rate_override is None else rate_override,
            "total_amount": net / 100,
        }

    def spoil(self, row: dict, items: list[dict], kind: str) -> tuple[dict, list[dict]]:
        """An invalid document the permissive CRM table accepts (and Metakocka would refuse)."""
        row, items = dict(row), [dict(i) for i in items]
        if kind == "empty_customer_name":
            row["customer_name"] = ""
        elif kind == "unknown_currency":
            row["currency"] = "XYZ"
        else:
            goods = [i for i in items if i["product_code"] is not None]
            if not goods:
                items[0].update({k: v for k, v in self.goods[0].items() if k != "tax_rate"})
                goods = [items[0]]
            goods[0]["quantity"] = -abs(goods[0]["quantity"])
            _set_line_total(goods[0])
            _set_totals(row, items)
        return row, items

    def change(self, row: dict, items: list[dict]) -> tuple[dict, list[dict]]:
        """The same document after one edit on one side: a line's quantity or the notes."""
        row, items = dict(row), [dict(i) for i in items]
        if self.random() < 0.5:
            items[0]["quantity"] += 1 + int(self.random() * 3)
            _set_line_total(items[0])
            _set_totals(row, items)
        else:
            row["notes"] = f"{row['notes'] or ''} Dopolnjeno po dogovoru s kupcem.".strip()
        return row, items

    def to_metakocka(
        self, row: dict, items: list[dict], *, buyer_order: str | None = None
    ) -> dict[str, Any]:
        """The put_document body the old integration (or a Metakocka user) produced."""
        doc_type = TYPE_MAP[row["document_type"]]
        if doc_type == "sales_bill_domestic" and row["customer_country"] != "SI":
            doc_type = "sales_bill_foreign"
        key = (row["customer_name"], row["customer_email"])
        partner = self.partners.get(key)
        if partner is None:  # the same customer is the same partner: build it once
            partner = {
                "customer": row["customer_name"],
                "tax_id_number": row["customer_tax_id"],
                "street": row["customer_address"],
                "post_number": row["customer_post_code"],
                "place": row["customer_city"],
                "country": row["customer_country"],
                "partner_contact": {"email": row["customer_email"]},
            }
            partner = self.partners[key] = {k: v for k, v in partner.items() if v is not None}
        payload: dict[str, Any] = {
            "doc_type": doc_type,
            "doc_date": _mk_date(row["document_date"]),
            "currency_code": row["currency"],
            "partner": partner,
            "product_list": [_metakocka_line(i) for i in items],
        }
        if buyer_order is not None:  # linked by the old integration: the pipeline's link fields
            payload.update(
                count_code=row["document_number"], title=row["id"], buyer_order=buyer_order
            )
        if row["due_date"]:
            payload["duo_payment"] = _mk_date(row["due_date"])
        if row["notes"]:
            payload["notes"] = row["notes"]
        return payload


DISCOUNTS = (5, 10, 15, 20)
#: DOC_TYPES indexes repeated by weight, so a draw is one ``random()`` call.
_TYPE_TABLE = tuple(i for i, w in enumerate(TYPE_WEIGHTS) for _ in range(round(w * 10)))


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
    return moment.isoformat(timespec="microseconds")


def _metakocka_line(item: dict[str, Any]) -> dict[str, str]:
    line = {
        "name": item["description"],
        "unit": item["unit"],
        "amount": str(item["quantity"]),
        "price": f"{item['unit_price']:.2f}",
        "tax": TAX_CODES[item["tax_rate"]],
    }
    if item["product_code"] is None:
        line["service"] = "true"
    else:
        line["code"] = item["product_code"]
    if item["discount_percent"]:
        line["discount"] = str(item["discount_percent"])
    return line


def _set_line_total(item: dict[str, Any]) -> None:
    item["total_amount"] = (
        line_net_cents(item["quantity"], item["unit_price"], item["discount_percent"]) / 100
    )


def _set_totals(row: dict[str, Any], items: list[dict[str, Any]]) -> None:
    subtotal, tax, total = totals_cents(
        (line_net_cents(i["quantity"], i["unit_price"], i["discount_percent"]), i["tax_rate"])
        for i in items
    )
    row.update(subtotal_amount=subtotal / 100, tax_amount=tax / 100, total_amount=total / 100)


def random_uuid(rng: random.Random) -> str:
    """``str(uuid.UUID(int=rng.getrandbits(128), version=4))``, four times faster."""
    h = f"{rng.getrandbits(128) & _UUID_CLEAR | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)
