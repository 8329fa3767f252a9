"""Which of the CRM's published schemas a CRM has, found out from PostgREST's own description.

The Fresh AI CRM's public source holds two conflicting ``CREATE TABLE IF NOT EXISTS`` variants of
its sales-document tables (docs/crm.md, shared/fresh-crm.md section 1): whichever ran first in a
CRM's database is the one it has. The pipeline supports both, as *profiles*:

- ``sm60``: sql-migrations/60 + 61 plus the nullable ``organization_id`` of 65/68, the variant
  the CRM's own code uses (the default): the customer on ``customer_*`` columns, lines keyed by
  ``document_id``, no subtotal, no line discount column (the CRM's sync keeps a line's discount
  in its ``metadata.discount``), quantities with 2 decimals;
- ``fixed10``: sql-migrations/fixed/10 + fixed/11: ``contact_*`` columns, lines keyed by
  ``sales_document_id`` with ``discount_rate`` and ``sort_order``, quantities with 3 decimals.

At start-up the client reads PostgREST's OpenAPI document (``GET /rest/v1/``: every exposed
table with its columns), picks the first profile all of whose columns are there, and otherwise
refuses to run, naming every missing column of each profile. Columns outside a profile are
never written (``CrmSchema.check_writable``).
"""

from dataclasses import dataclass, field

from sync_pipeline.adapters.errors import RejectedError

DOCS, ITEMS = "sales_documents", "sales_document_items"
MEMBERS, CONTACTS, PRODUCTS = "organization_members", "contacts", "products"
CONTACT_MAPPINGS, PRODUCT_MAPPINGS = "metakocka_contact_mappings", "metakocka_product_mappings"
SETUP_FUNCTION = "sync_pipeline_crm_setup"
"""docs/crm-setup.sql's status function: present (and saying so) when its triggers are."""

_SHARED = {
    MEMBERS: ("organization_id", "user_id"),
    PRODUCTS: ("id", "sku", "unit"),
    CONTACTS: ("id",),
    CONTACT_MAPPINGS: ("user_id", "contact_id", "metakocka_id", "metakocka_code"),
    PRODUCT_MAPPINGS: ("user_id", "product_id", "metakocka_id", "metakocka_code"),
}
_HEADER = (
    "id", "user_id", "organization_id", "document_type", "document_number", "document_date",
    "due_date", "tax_amount", "total_amount", "currency", "status", "notes", "metadata",
    "created_at", "updated_at",
)  # fmt: skip
_LINE = (
    "id", "product_id", "description", "quantity", "unit_price", "tax_rate", "tax_amount",
    "total_amount", "metadata", "created_at",
)  # fmt: skip


@dataclass(frozen=True)
class CrmProfile:
    """One published variant of the sales-document tables: the names the pipeline uses."""

    name: str
    source: str
    item_parent: str
    """The lines' foreign key to their document."""
    customer: dict[str, str]
    """Canonical customer field (name, email, address, contact) -> document column."""
    quantity_decimals: int
    subtotal: str | None = None
    discount_amount: str | None = None
    line_discount: str | None = None
    """The line's discount percentage column; None: ``metadata.discount`` (the CRM's sync)."""
    line_discount_amount: str | None = None
    line_sort: str | None = None
    required: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Table -> the columns the pipeline reads or writes: all must exist."""

    def __post_init__(self) -> None:
        header = (*_HEADER, *self.customer.values(), self.subtotal, self.discount_amount)
        line = (*_LINE, self.item_parent, self.line_discount, self.line_discount_amount)
        required = {
            DOCS: tuple(c for c in header if c),
            ITEMS: tuple(c for c in (*line, self.line_sort) if c),
            **_SHARED,
        }
        object.__setattr__(self, "required", required)


SM60 = CrmProfile(
    name="sm60",
    source="sql-migrations/60 + 61 (+ organization_id of 65/68)",
    item_parent="document_id",
    customer={
        "name": "customer_name",
        "email": "customer_email",
        "address": "customer_address",
        "contact": "customer_id",
    },
    quantity_decimals=2,
)
FIXED10 = CrmProfile(
    name="fixed10",
    source="sql-migrations/fixed/10 + fixed/11",
    item_parent="sales_document_id",
    customer={
        "name": "contact_name",
        "email": "contact_email",
        "address": "contact_address",
        "contact": "contact_id",
    },
    quantity_decimals=3,
    subtotal="subtotal",
    discount_amount="discount_amount",
    line_discount="discount_rate",
    line_discount_amount="discount_amount",
    line_sort="sort_order",
)
PROFILES = (SM60, FIXED10)


class CrmSchemaError(RejectedError):
    """The CRM's tables fit no supported profile (or the pipeline would write a column the CRM
    does not have). Not retryable: the schema must change, or the pipeline."""


@dataclass(frozen=True)
class CrmSchema:
    """What the CRM has: its profile, every column PostgREST serves, and whether the setup's
    triggers keep ``updated_at`` truthful (docs/crm-setup.sql)."""

    profile: CrmProfile
    columns: dict[str, frozenset[str]]
    change_tracking: bool = False
    """True when docs/crm-setup.sql's triggers are installed and enabled: a document's
    ``updated_at`` then moves on every write of it or of its lines."""

    def has(self, table: str, column: str) -> bool:
        return column in self.columns.get(table, ())

    def check_writable(self, table: str, row: dict) -> None:
        """Refuse, before any request, a write naming a column the CRM does not have."""
        unknown = sorted(set(row) - self.columns.get(table, frozenset()))
        if unknown:
            raise CrmSchemaError(
                f"the CRM's {table} has no column {', '.join(unknown)} "
                f"(schema {self.profile.name}): nothing was written",
                details={"table": table, "columns": unknown},
            )


def detect_schema(openapi: dict, setup: dict | None = None) -> CrmSchema:
    """The first profile whose every required column the OpenAPI document lists; otherwise a
    `CrmSchemaError` that names, for each profile, every missing column."""
    columns = tables_of(openapi)
    missing_by_profile: dict[str, list[str]] = {}
    for profile in PROFILES:
        missing = [
            f"{table}.{column}"
            for table, needed in profile.required.items()
            for column in needed
            if column not in columns.get(table, ())
        ]
        if not missing:
            tracked = bool(setup and setup.get("updated_at_trigger") and setup.get("line_trigger"))
            return CrmSchema(profile, columns, change_tracking=tracked)
        missing_by_profile[profile.name] = missing
    described = "; ".join(
        f"{p.name} ({p.source}) is missing {', '.join(missing_by_profile[p.name])}"
        for p in PROFILES
    )
    raise CrmSchemaError(
        f"the CRM's tables match no supported schema: {described}. See docs/crm.md.",
        details={"missing": missing_by_profile},
    )


def tables_of(openapi: dict) -> dict[str, frozenset[str]]:
    """Table -> columns, from PostgREST's Swagger 2.0 ``definitions``."""
    definitions = openapi.get("definitions") if isinstance(openapi, dict) else None
    if not isinstance(definitions, dict):
        return {}
    return {
        name: frozenset((spec.get("properties") or {}).keys())
        for name, spec in definitions.items()
        if isinstance(spec, dict)
    }


def has_setup_function(openapi: dict) -> bool:
    paths = openapi.get("paths") if isinstance(openapi, dict) else None
    return isinstance(paths, dict) and f"/rpc/{SETUP_FUNCTION}" in paths
