"""The CRM rows an organization's documents refer to: its members, contacts, products and the
CRM's own Metakocka mapping tables, read in chunks and kept for the client's life (one run).

Why: a document alone does not say how Metakocka knows its customer or its products. The CRM
keeps that in its own tables (fresh-crm.md section 5, "Partners and products"):
- the partner: the document's contact (``customer_id`` / ``contact_id`` -> ``contacts``) and
  ``metakocka_contact_mappings`` (contact -> Metakocka partner id and code);
- a line's Metakocka product code: ``metakocka_product_mappings.metakocka_code`` of its
  product, else the product's ``sku``; the organization's service product code comes after
  (`crm` mapper).
Mapping rows belong to the organization by the CRM's tenancy rule (`crm_tenancy`); when several
do, the organization's own row wins over a member's, then the oldest id.
"""

import threading
from collections.abc import Iterable

from sync_pipeline.crm.profiles import (
    CONTACT_MAPPINGS,
    CONTACTS,
    MEMBERS,
    PRODUCT_MAPPINGS,
    PRODUCTS,
)
from sync_pipeline.crm.query import chunks, in_filter
from sync_pipeline.crm.session import CrmSession
from sync_pipeline.crm.tenancy import CrmTenant, Tenancy
from sync_pipeline.domain.text import stripped_or_none

MAPPING_COLUMNS = "id,user_id,organization_id"


class CrmDirectory:
    """One organization's look-ups (thread-safe). `prefetch_*` reads what is not cached yet;
    the accessors answer from the cache (None when the CRM has nothing)."""

    def __init__(self, client: CrmSession, organization_id: str):
        self.client = client
        self.organization_id = organization_id
        self.tenant: CrmTenant = client.tenant(organization_id)
        self._lock = threading.RLock()
        self._tenancy: Tenancy | None = None
        self._contacts: dict[str, dict | None] = {}
        self._partner_of_contact: dict[str, dict | None] = {}
        self._contact_of_partner: dict[str, str | None] = {}
        self._products: dict[str, dict | None] = {}
        self._code_of_product: dict[str, str | None] = {}
        self._product_of_code: dict[str, str | None] = {}

    # -- tenancy ------------------------------------------------------------------------------
    def tenancy(self) -> Tenancy:
        """The organization's members, and those who belong to other organizations too."""
        with self._lock:
            if self._tenancy is None:
                org = self.organization_id
                members = {
                    str(r["user_id"])
                    for page in self.client.keyset(
                        MEMBERS,
                        [("select", "id,user_id"), ("organization_id", f"eq.{org}")],
                    )
                    for r in page
                }
                ambiguous = set()
                for chunk in chunks(sorted(members)):
                    rows = self.client.counted(
                        MEMBERS,
                        [("select", "id,user_id,organization_id"), ("user_id", in_filter(chunk))],
                    )
                    ambiguous |= {
                        str(r["user_id"]) for r in rows if str(r["organization_id"]) != org
                    }
                self._tenancy = Tenancy(org, frozenset(members), frozenset(ambiguous))
            return self._tenancy

    # -- what documents refer to (CRM -> Metakocka) --------------------------------------------
    def prefetch_references(self, contact_ids: Iterable[str], product_ids: Iterable[str]) -> None:
        """Contacts with their partner mappings, and products with their Metakocka codes."""
        with self._lock:
            contacts = sorted({c for c in contact_ids if c} - self._contacts.keys())
            products = sorted({p for p in product_ids if p} - self._products.keys())
        if contacts:
            found = self._read_by(CONTACTS, "id", contacts, "*")
            mappings = self._mappings(
                CONTACT_MAPPINGS, "contact_id", contacts, "contact_id,metakocka_id,metakocka_code"
            )
            with self._lock:
                for contact_id in contacts:
                    self._contacts[contact_id] = found.get(contact_id, [None])[0]
                    self._partner_of_contact[contact_id] = _first(mappings.get(contact_id))
        if products:
            found = self._read_by(PRODUCTS, "id", products, "id,sku,unit,organization_id")
            mappings = self._mappings(
                PRODUCT_MAPPINGS, "product_id", products, "product_id,metakocka_code"
            )
            with self._lock:
                for product_id in products:
                    product = found.get(product_id, [None])[0]
                    self._products[product_id] = product
                    coded = [
                        m
                        for m in mappings.get(product_id, ())
                        if stripped_or_none(m["metakocka_code"])
                    ]
                    code = stripped_or_none(coded[0]["metakocka_code"]) if coded else None
                    self._code_of_product[product_id] = code or stripped_or_none(
                        (product or {}).get("sku")
                    )

    def contact(self, contact_id: str | None) -> dict | None:
        return self._contacts.get(contact_id) if contact_id else None

    def partner_of_contact(self, contact_id: str | None) -> dict | None:
        """The contact's ``metakocka_contact_mappings`` row (metakocka_id, metakocka_code)."""
        return self._partner_of_contact.get(contact_id) if contact_id else None

    def product(self, product_id: str | None) -> dict | None:
        return self._products.get(product_id) if product_id else None

    def product_code(self, product_id: str | None) -> str | None:
        """The product's Metakocka code: its mapping's ``metakocka_code``, else its ``sku``."""
        return self._code_of_product.get(product_id) if product_id else None

    # -- what Metakocka's documents refer to (Metakocka -> CRM) --------------------------------
    def prefetch_metakocka_references(
        self, partner_ids: Iterable[str], codes: Iterable[str]
    ) -> None:
        """The contacts mapped to Metakocka partners, and the products behind product codes
        (by ``metakocka_product_mappings.metakocka_code``, else by ``products.sku``)."""
        with self._lock:
            partners = sorted({p for p in partner_ids if p} - self._contact_of_partner.keys())
            codes = sorted({c for c in codes if c} - self._product_of_code.keys())
        if partners:
            mappings = self._mappings(
                CONTACT_MAPPINGS, "metakocka_id", partners, "contact_id,metakocka_id"
            )
            with self._lock:
                for partner in partners:
                    first = _first(mappings.get(partner))
                    self._contact_of_partner[partner] = first and str(first["contact_id"])
        if codes:
            mapped = self._mappings(
                PRODUCT_MAPPINGS, "metakocka_code", codes, "product_id,metakocka_code"
            )
            unmapped = [c for c in codes if c not in mapped]
            by_sku = self._read_by(
                PRODUCTS,
                "sku",
                unmapped,
                "id,sku,unit,organization_id",
                [("or", f"(organization_id.eq.{self.organization_id},organization_id.is.null)")],
            )
            with self._lock:
                for code in codes:
                    mapping = _first(mapped.get(code))
                    if mapping is not None:
                        self._product_of_code[code] = str(mapping["product_id"])
                        continue
                    products = list(by_sku.get(code, ()))
                    products.sort(key=lambda p: (p.get("organization_id") is None, p["id"]))
                    self._product_of_code[code] = str(products[0]["id"]) if products else None
                    if products:
                        self._products.setdefault(str(products[0]["id"]), products[0])

    def contact_for_partner(self, partner_id: str | None) -> str | None:
        return self._contact_of_partner.get(partner_id) if partner_id else None

    def product_for_code(self, code: str | None) -> str | None:
        return self._product_of_code.get(code) if code else None

    # -- internals ----------------------------------------------------------------------------
    def _read_by(
        self, table: str, column: str, values: list, select: str, scope: list = ()
    ) -> dict[str, list]:
        """Rows of ``table`` whose ``column`` is one of ``values``, grouped by that value."""
        out: dict[str, list] = {}
        for chunk in chunks(values):
            rows = self.client.counted(
                table, [("select", select), (column, in_filter(chunk)), *scope]
            )
            for row in rows:
                out.setdefault(str(row[column]), []).append(row)
        return out

    def _mappings(self, table: str, column: str, values: list, columns: str) -> dict[str, list]:
        """The organization's rows of a Metakocka mapping table whose ``column`` is one of
        ``values`` (``columns`` besides the tenancy's), grouped by that value (`_owned`)."""
        return self._owned(self._read_by(table, column, values, f"{MAPPING_COLUMNS},{columns}"))

    def _owned(self, grouped: dict[str, list]) -> dict[str, list]:
        """Mapping rows the organization owns, its own first, then the oldest."""
        tenancy = self.tenancy()
        out = {}
        for value, rows in grouped.items():
            owned = [r for r in rows if tenancy.owns(r)]
            owned.sort(key=lambda r: (r.get("organization_id") is None, str(r["id"])))
            if owned:
                out[value] = owned
        return out


def _first(rows: list | None) -> dict | None:
    return rows[0] if rows else None
