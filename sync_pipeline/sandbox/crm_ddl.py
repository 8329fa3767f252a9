"""The CRM's published schema as data: every table, column, default and constraint, both profiles.

Transcribed from the Fresh AI CRM's public source (aware88/fresh-ai-crm), as the SQL files beside
this module hold it (``crm_ddl/``, copied from ``shared/crm-ddl``): ``profile-sm60.sql`` (sm/60 +
sm/61 + the nullable organization_id of sm/65/68: the variant the CRM's own code uses),
``profile-fixed10.sql`` (sm/fixed/10 + fixed/11) and ``common-integration-tables.sql`` (sm/57, 59,
63, 64). The sandbox enforces exactly these constraints, with PostgreSQL's constraint names
(``<table>_pkey``, ``<table>_<columns>_key``, ``<table>_<column>_check``, ``<table>_<column>_fkey``)
and its error texts; ``test_crm_ddl_matches_postgres`` loads the SQL files into the real
PostgreSQL and compares its catalog with these objects, so the two cannot drift apart.

Types are PostgreSQL's own names (what ``format_type`` prints and PostgREST's OpenAPI document
shows as ``format``); defaults are the expressions as ``pg_get_expr`` renders them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PUBLIC, AUTH = "public", "auth"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    """PostgreSQL base type: uuid, text, character varying, numeric, date, integer, boolean,
    jsonb, text[], timestamp with time zone."""
    nullable: bool = True
    default: str | None = None
    """The default expression as ``pg_get_expr`` renders it (``now()``, ``'EUR'::text``, ``0``)."""
    length: int | None = None
    """character varying(n)."""
    precision: int | None = None
    scale: int | None = None
    """numeric(precision, scale)."""

    @property
    def sql_type(self) -> str:
        """The type as ``format_type`` prints it, e.g. ``numeric(15,2)``."""
        if self.length is not None:
            return f"{self.type}({self.length})"
        if self.precision is not None:
            return f"{self.type}({self.precision},{self.scale})"
        return self.type


@dataclass(frozen=True)
class Unique:
    """PRIMARY KEY or UNIQUE over ``columns`` (NULLs are distinct, as in PostgreSQL)."""

    name: str
    columns: tuple[str, ...]
    primary: bool = False

    @property
    def definition(self) -> str:
        return f"{'PRIMARY KEY' if self.primary else 'UNIQUE'} ({', '.join(self.columns)})"


@dataclass(frozen=True)
class InList:
    """CHECK (column IN (values)): NULL passes, as in SQL."""

    name: str
    column: str
    values: tuple[str, ...]
    cast: str = "text"

    def passes(self, row: dict) -> bool:
        value = row.get(self.column)
        return value is None or value in self.values

    @property
    def definition(self) -> str:
        items = ", ".join(f"'{v}'::{self.cast}" for v in self.values)
        return f"CHECK (({self.column} = ANY (ARRAY[{items}])))"


@dataclass(frozen=True)
class AnyNotNull:
    """CHECK (a IS NOT NULL OR b IS NOT NULL ...)."""

    name: str
    columns: tuple[str, ...]

    def passes(self, row: dict) -> bool:
        return any(row.get(c) is not None for c in self.columns)

    @property
    def definition(self) -> str:
        return "CHECK ((" + " OR ".join(f"({c} IS NOT NULL)" for c in self.columns) + "))"


@dataclass(frozen=True)
class ForeignKey:
    """``column`` REFERENCES ``table``(``target``); ``on_delete``: NO ACTION, CASCADE, SET NULL."""

    name: str
    column: str
    table: str
    target: str = "id"
    on_delete: str = "NO ACTION"
    schema: str = PUBLIC

    @property
    def definition(self) -> str:
        where = self.table if self.schema == PUBLIC else f"{self.schema}.{self.table}"
        text = f"FOREIGN KEY ({self.column}) REFERENCES {where}({self.target})"
        return text if self.on_delete == "NO ACTION" else f"{text} ON DELETE {self.on_delete}"


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    uniques: tuple[Unique, ...] = ()
    checks: tuple[InList | AnyNotNull, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    schema: str = PUBLIC
    by_name: dict[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {c.name: c for c in self.columns})

    @property
    def primary_key(self) -> Unique:
        return next(u for u in self.uniques if u.primary)

    @property
    def constraints(self) -> dict[str, str]:
        """Constraint name -> definition, as ``pg_get_constraintdef`` renders it."""
        return {c.name: c.definition for c in (*self.uniques, *self.checks, *self.foreign_keys)}


# -- building blocks ---------------------------------------------------------------------------

NOW, CURRENT_TIMESTAMP = "now()", "CURRENT_TIMESTAMP"
NEW_UUID = "gen_random_uuid()"


def col(name: str, type_: str, *, null: bool = True, default: str | None = None, **kw) -> Column:
    return Column(name, type_, nullable=null, default=default, **kw)


def uuid_pk() -> Column:
    return col("id", "uuid", null=False, default=NEW_UUID)


def varchar(name: str, length: int, *, null: bool = True, default: str | None = None) -> Column:
    default = f"'{default}'::character varying" if default is not None else None
    return col(name, "character varying", null=null, default=default, length=length)


def money(name: str, *, null: bool = False, precision: int = 15, scale: int = 2) -> Column:
    """numeric(p, s) NOT NULL DEFAULT 0, the CRM's amount columns."""
    return col(name, "numeric", null=null, default="0", precision=precision, scale=scale)


def text_default(name: str, value: str, *, null: bool = True) -> Column:
    return col(name, "text", null=null, default=f"'{value}'::text")


def stamps(default: str = NOW) -> tuple[Column, Column]:
    return (
        col("created_at", "timestamp with time zone", default=default),
        col("updated_at", "timestamp with time zone", default=default),
    )


def pkey(table: str) -> Unique:
    return Unique(f"{table}_pkey", ("id",), primary=True)


def unique(table: str, *columns: str, name: str | None = None) -> Unique:
    return Unique(name or f"{table}_{'_'.join(columns)}_key", columns)


def fk(table: str, column: str, target: str, on_delete: str = "NO ACTION", **kw) -> ForeignKey:
    return ForeignKey(f"{table}_{column}_fkey", column, target, on_delete=on_delete, **kw)


def in_list(table: str, column: str, *values: str) -> InList:
    return InList(f"{table}_{column}_check", column, values)


def users_fk(table: str, on_delete: str = "NO ACTION") -> ForeignKey:
    return fk(table, "user_id", "users", on_delete, schema=AUTH)


# -- tables both profiles share ----------------------------------------------------------------
# profile-*.sql: minimal stand-ins for auth.users, organizations, organization_members, products.

USERS = Table("users", (col("id", "uuid", null=False),), (pkey("users"),), schema=AUTH)
ORGANIZATIONS = Table(
    "organizations", (uuid_pk(), col("name", "text", null=False)), (pkey("organizations"),)
)
ORGANIZATION_MEMBERS = Table(
    "organization_members",
    (
        uuid_pk(),
        col("organization_id", "uuid", null=False),
        col("user_id", "uuid", null=False),
        text_default("role", "member", null=False),
    ),
    (pkey("organization_members"),),
    foreign_keys=(
        fk("organization_members", "organization_id", "organizations", "CASCADE"),
        users_fk("organization_members", "CASCADE"),
    ),
)
PRODUCTS = Table(
    "products",
    (
        uuid_pk(),
        col("name", "text", null=False),
        col("sku", "text"),
        col("unit", "text"),
        col("organization_id", "uuid"),
    ),
    (pkey("products"),),
    foreign_keys=(fk("products", "organization_id", "organizations"),),
)

# common-integration-tables.sql (sm/57, 59, 63, 64; organization_id from 65/68).

METAKOCKA_CREDENTIALS = Table(
    "metakocka_credentials",
    (
        uuid_pk(),
        col("user_id", "uuid", null=False),
        varchar("company_id", 50, null=False),
        varchar("secret_key", 255, null=False),
        varchar("api_endpoint", 255, default="https://main.metakocka.si/rest/eshop/v1/json/"),
        col("is_active", "boolean", default="true"),
        *stamps(CURRENT_TIMESTAMP),
        col("organization_id", "uuid"),
    ),
    (pkey("metakocka_credentials"), unique("metakocka_credentials", "user_id")),
    foreign_keys=(
        users_fk("metakocka_credentials", "CASCADE"),
        fk("metakocka_credentials", "organization_id", "organizations", "SET NULL"),
    ),
)
CONTACTS = Table(
    "contacts",
    (
        col("id", "text", null=False),
        *(
            col(name, "text")
            for name in (
                "firstname",
                "lastname",
                "email",
                "company",
                "address",
                "postal_code",
                "city",
                "country",
            )
        ),
        col("organization_id", "uuid"),
    ),
    (pkey("contacts"),),
    foreign_keys=(fk("contacts", "organization_id", "organizations"),),
)
METAKOCKA_CONTACT_MAPPINGS = Table(
    "metakocka_contact_mappings",
    (
        uuid_pk(),
        col("user_id", "uuid", null=False),
        col("contact_id", "text", null=False),
        col("metakocka_id", "text", null=False),
        col("metakocka_code", "text"),
        col("last_synced_at", "timestamp with time zone", default=NOW),
        *stamps(),
        text_default("sync_status", "synced"),
        col("sync_error", "text"),
        col("metadata", "jsonb"),
        col("organization_id", "uuid"),
    ),
    (
        pkey("metakocka_contact_mappings"),
        unique("metakocka_contact_mappings", "user_id", "contact_id"),
    ),
    foreign_keys=(
        users_fk("metakocka_contact_mappings", "CASCADE"),
        fk("metakocka_contact_mappings", "organization_id", "organizations", "SET NULL"),
    ),
)
METAKOCKA_PRODUCT_MAPPINGS = Table(
    "metakocka_product_mappings",
    (
        uuid_pk(),
        col("user_id", "uuid", null=False),
        col("product_id", "uuid", null=False),
        varchar("metakocka_id", 255, null=False),
        varchar("metakocka_code", 255),
        col("last_synced_at", "timestamp with time zone", default=CURRENT_TIMESTAMP),
        *stamps(CURRENT_TIMESTAMP),
        varchar("sync_status", 50, default="synced"),
        col("sync_error", "text"),
        col("metadata", "jsonb"),
        col("organization_id", "uuid"),
    ),
    (
        pkey("metakocka_product_mappings"),
        unique("metakocka_product_mappings", "product_id", "metakocka_id"),
    ),
    foreign_keys=(
        users_fk("metakocka_product_mappings"),
        fk("metakocka_product_mappings", "product_id", "products", "CASCADE"),
        fk("metakocka_product_mappings", "organization_id", "organizations"),
    ),
)
METAKOCKA_INTEGRATION_LOGS = Table(
    "metakocka_integration_logs",
    (
        uuid_pk(),
        col("user_id", "uuid", null=False),
        varchar("entity_type", 50, null=False),
        col("entity_id", "uuid", null=False),
        varchar("operation", 50, null=False),
        varchar("status", 50, null=False),
        col("message", "text"),
        col("details", "jsonb"),
        col("created_at", "timestamp with time zone", default=CURRENT_TIMESTAMP),
        col("organization_id", "uuid"),
        col("tags", "text[]", default="'{}'::text[]"),
    ),
    (pkey("metakocka_integration_logs"),),
    foreign_keys=(
        users_fk("metakocka_integration_logs"),
        fk("metakocka_integration_logs", "organization_id", "organizations"),
    ),
)
COMMON = (
    USERS,
    ORGANIZATIONS,
    ORGANIZATION_MEMBERS,
    PRODUCTS,
    METAKOCKA_CREDENTIALS,
    CONTACTS,
    METAKOCKA_CONTACT_MAPPINGS,
    METAKOCKA_PRODUCT_MAPPINGS,
    METAKOCKA_INTEGRATION_LOGS,
)

# -- profile sm60: sql-migrations/60 + 61 (+ organization_id of 65/68) --------------------------

_SM60_DOCS = "sales_documents"
SM60_SALES_DOCUMENTS = Table(
    _SM60_DOCS,
    (
        uuid_pk(),
        col("user_id", "uuid", null=False),
        col("document_type", "text", null=False),
        col("document_number", "text"),
        col("document_date", "date", null=False, default="CURRENT_DATE"),
        col("due_date", "date"),
        col("customer_id", "text"),
        col("customer_name", "text", null=False),
        col("customer_address", "text"),
        col("customer_email", "text"),
        money("total_amount"),
        money("tax_amount"),
        text_default("currency", "EUR", null=False),
        text_default("status", "draft", null=False),
        col("notes", "text"),
        *stamps(),
        col("metadata", "jsonb"),
        col("organization_id", "uuid"),
    ),
    (pkey(_SM60_DOCS), unique(_SM60_DOCS, "user_id", "document_type", "document_number")),
    (
        in_list(_SM60_DOCS, "document_type", "invoice", "offer", "order", "proforma"),
        in_list(_SM60_DOCS, "status", "draft", "sent", "paid", "overdue", "cancelled"),
    ),
    (
        users_fk(_SM60_DOCS, "CASCADE"),
        fk(_SM60_DOCS, "organization_id", "organizations", "SET NULL"),
    ),
)
_SM60_ITEMS = "sales_document_items"
SM60_SALES_DOCUMENT_ITEMS = Table(
    _SM60_ITEMS,
    (
        uuid_pk(),
        col("document_id", "uuid", null=False),
        col("product_id", "uuid"),
        col("description", "text", null=False),
        col("quantity", "numeric", null=False, default="1", precision=15, scale=2),
        money("unit_price"),
        col("tax_rate", "numeric", null=False, default="0", precision=5, scale=2),
        money("tax_amount"),
        money("total_amount"),
        *stamps(),
        col("metadata", "jsonb"),
        col("organization_id", "uuid"),
    ),
    (pkey(_SM60_ITEMS),),
    foreign_keys=(
        fk(_SM60_ITEMS, "document_id", _SM60_DOCS, "CASCADE"),
        fk(_SM60_ITEMS, "product_id", "products", "SET NULL"),
        fk(_SM60_ITEMS, "organization_id", "organizations", "SET NULL"),
    ),
)
_SM61 = "metakocka_sales_document_mappings"
SM61_MAPPINGS = Table(
    _SM61,
    (
        uuid_pk(),
        col("user_id", "uuid", null=False),
        col("document_id", "uuid", null=False),
        col("metakocka_id", "text", null=False),
        col("metakocka_document_type", "text", null=False),
        col("metakocka_document_number", "text"),
        col("metakocka_status", "text"),
        text_default("sync_direction", "crm_to_metakocka", null=False),
        col("last_synced_at", "timestamp with time zone", default=NOW),
        *stamps(),
        text_default("sync_status", "synced"),
        col("sync_error", "text"),
        col("metadata", "jsonb"),
        col("organization_id", "uuid"),
    ),
    (pkey(_SM61), unique(_SM61, "user_id", "document_id")),
    (
        in_list(_SM61, "sync_direction", "crm_to_metakocka", "metakocka_to_crm", "bidirectional"),
        in_list(_SM61, "sync_status", "synced", "pending", "error", "needs_review"),
    ),
    (
        users_fk(_SM61, "CASCADE"),
        fk(_SM61, "document_id", _SM60_DOCS, "CASCADE"),
        fk(_SM61, "organization_id", "organizations", "SET NULL"),
    ),
)

# -- profile fixed10: sql-migrations/fixed/10 + fixed/11 --------------------------------------

_OR_USER = AnyNotNull("organization_or_user_required", ("organization_id", "user_id"))
FIXED10_SALES_DOCUMENTS = Table(
    _SM60_DOCS,
    (
        uuid_pk(),
        col("organization_id", "uuid"),
        col("user_id", "uuid", null=False),
        varchar("document_type", 50, null=False),
        varchar("document_number", 100),
        col("document_date", "date", null=False),
        col("due_date", "date"),
        varchar("contact_name", 255),
        varchar("contact_email", 255),
        col("contact_address", "text"),
        money("subtotal"),
        money("tax_amount"),
        money("discount_amount"),
        money("total_amount"),
        varchar("currency", 10, default="EUR"),
        varchar("status", 50, default="draft"),
        col("notes", "text"),
        col("terms", "text"),
        *stamps(CURRENT_TIMESTAMP),
        col("metadata", "jsonb"),
        col("contact_id", "text"),
    ),
    (pkey(_SM60_DOCS),),
    (_OR_USER,),
    (fk(_SM60_DOCS, "organization_id", "organizations"), users_fk(_SM60_DOCS)),
)
FIXED10_SALES_DOCUMENT_ITEMS = Table(
    _SM60_ITEMS,
    (
        uuid_pk(),
        col("organization_id", "uuid"),
        col("product_id", "uuid"),
        col("description", "text", null=False),
        col("quantity", "numeric", null=False, default="1", precision=15, scale=3),
        money("unit_price"),
        col("tax_rate", "numeric", default="0", precision=5, scale=2),
        money("tax_amount", null=True),
        col("discount_rate", "numeric", default="0", precision=5, scale=2),
        money("discount_amount", null=True),
        money("total_amount"),
        col("sort_order", "integer", default="0"),
        *stamps(CURRENT_TIMESTAMP),
        col("metadata", "jsonb"),
        col("sales_document_id", "uuid", null=False),
    ),
    (pkey(_SM60_ITEMS),),
    foreign_keys=(
        fk(_SM60_ITEMS, "organization_id", "organizations"),
        fk(_SM60_ITEMS, "product_id", "products"),
        fk(_SM60_ITEMS, "sales_document_id", _SM60_DOCS, "CASCADE"),
    ),
)
FIXED11_MAPPINGS = Table(
    _SM61,
    (
        uuid_pk(),
        col("organization_id", "uuid"),
        col("user_id", "uuid", null=False),
        varchar("metakocka_id", 255, null=False),
        varchar("metakocka_document_type", 50, null=False),
        col("last_synced_at", "timestamp with time zone", default=CURRENT_TIMESTAMP),
        *stamps(CURRENT_TIMESTAMP),
        varchar("sync_status", 50, default="synced"),
        col("sync_error", "text"),
        col("metadata", "jsonb"),
        col("sales_document_id", "uuid", null=False),
    ),
    (
        pkey(_SM61),
        unique(_SM61, "sales_document_id", "metakocka_id", name="mappings_document_metakocka_key"),
    ),
    (_OR_USER,),
    (
        fk(_SM61, "organization_id", "organizations"),
        users_fk(_SM61),
        fk(_SM61, "sales_document_id", _SM60_DOCS, "CASCADE"),
    ),
)

PROFILES: dict[str, tuple[Table, ...]] = {
    "sm60": (*COMMON, SM60_SALES_DOCUMENTS, SM60_SALES_DOCUMENT_ITEMS, SM61_MAPPINGS),
    "fixed10": (*COMMON, FIXED10_SALES_DOCUMENTS, FIXED10_SALES_DOCUMENT_ITEMS, FIXED11_MAPPINGS),
}
"""Profile name -> its tables (``auth.users`` included: a foreign-key target PostgREST does not
serve, since Supabase exposes only the ``public`` schema)."""
DEFAULT_PROFILE = "sm60"
SQL_FILES = {
    "sm60": ("profile-sm60.sql", "common-integration-tables.sql"),
    "fixed10": ("profile-fixed10.sql", "common-integration-tables.sql"),
}
"""The published DDL each profile transcribes (in ``crm_ddl/``), in the order to apply it."""
