"""The sandbox CRM's data: one schema profile of the published DDL, its tenancy, and the optional
setup (``docs/crm-setup.sql``) a CRM owner may install.

What the real CRM does, and so what this store does (fresh-crm.md, sections 1.1 and 5):
- **No trigger maintains ``updated_at``.** It is the column's default on insert and otherwise
  changes only when a writer sets it (the CRM's own editor does; its status routes and its line
  edits do not). With the setup installed, the triggers of ``docs/crm-setup.sql`` are emulated:
  ``updated_at = now()`` on every insert and update of a document, and every insert, update or
  delete of a line touches its document. The setup's ``sync_pipeline_crm_setup()`` function
  answers only when the setup is installed (PostgREST's ``/rpc/``).
- **Tenancy**: a document belongs to an organization by ``organization_id``, or, where that is
  NULL, by its owner (``user_id``) being a member of the organization (``organization_members``).
- ``max_rows`` is Supabase's ``db-max-rows`` (1000 by default), applied by the HTTP layer.

The Python API below (``insert``, ``edit_document``, ``documents``) is for seeds, tests and the
simulated CRM UI; it goes through the same constraints as an HTTP request, except ``load``, the
seeder's fast path for rows it built complete and consistent itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from sync_pipeline.sandbox.amounts import line_net_cents, tax_cents, totals_cents
from sync_pipeline.sandbox.crm_ddl import DEFAULT_PROFILE, PROFILES, AnyNotNull, Table
from sync_pipeline.sandbox.crm_engine import Database, Row, Statement
from sync_pipeline.sandbox.crm_values import PgError, coerce_payload, printed_timestamp

DOCS, ITEMS = "sales_documents", "sales_document_items"
ITEMS_KEY = ITEMS
"""Key under which the Python API's document dicts carry their lines."""
MEMBERS = "organization_members"
ITEM_PARENT = {"sm60": "document_id", "fixed10": "sales_document_id"}
"""The lines' foreign key to their document, per profile (sm/60 vs sm/fixed/10)."""
SETUP_FUNCTION = "sync_pipeline_crm_setup"
SETUP_VERSION = 1
STATE_FORMAT = "sandbox-crm/2"
DEFAULT_MAX_ROWS = 1000


class CrmState(Database):
    """The CRM's tables under one profile, plus the API keys that may read them (service-role
    keys: they see every organization)."""

    def __init__(
        self,
        api_keys: Iterable[str] = (),
        *,
        profile: str = DEFAULT_PROFILE,
        max_rows: int = DEFAULT_MAX_ROWS,
        setup_installed: bool = False,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown CRM profile {profile!r}; one of {sorted(PROFILES)}")
        super().__init__(PROFILES[profile], ordered={DOCS: "organization_id"})
        self.profile = profile
        self.item_parent = ITEM_PARENT[profile]
        self.api_keys: set[str] = set(api_keys)
        self.lock = threading.RLock()
        self.version = 0
        """Bumped by every write."""
        self.max_rows = max_rows
        self.setup_installed = False
        if setup_installed:
            self.install_setup()
        self.dropped_columns: list[str] = []
        """``table.column`` names dropped from the published schema (`drop_column`)."""

    # -- schema -------------------------------------------------------------------------------
    def public_table(self, name: str) -> Table:
        """A table PostgREST serves (the ``public`` schema), or PostgREST's PGRST205."""
        spec = self.specs.get(name)
        if spec is None or spec.schema != "public":
            raise PgError(
                404, "PGRST205", f"Could not find the table 'public.{name}' in the schema cache"
            )
        return spec

    def install_setup(self) -> None:
        """Emulate ``docs/crm-setup.sql``: its triggers and its status function."""
        if self.setup_installed:
            return
        self.setup_installed = True
        self.before.setdefault(DOCS, []).append(_stamp_now)
        self.before.setdefault(ITEMS, []).append(_stamp_now)
        self.after.setdefault(ITEMS, []).append(self._touch_parent)

    def drop_column(self, table: str, column: str) -> None:
        """``ALTER TABLE <table> DROP COLUMN <column>``, then PostgREST's schema cache reload
        (``NOTIFY pgrst, 'reload schema'``): the column leaves the rows, every query and the
        OpenAPI description (PostgREST docs, "Schema Cache"). A CRM that never ran one of the
        published migrations looks like this. Only a column no constraint or index names can
        go: PostgreSQL would drop those with it (or refuse, for a foreign key's target), which
        the sandbox does not model."""
        spec = self.public_table(table)
        if column not in spec.by_name:
            raise PgError(400, "42703", f'column "{column}" of relation "{table}" does not exist')
        named = {name for unique in spec.uniques for name in unique.columns}
        for check in spec.checks:
            named |= set(check.columns) if isinstance(check, AnyNotNull) else {check.column}
        named |= {fk.column for fk in spec.foreign_keys}
        named |= {"updated_at", "organization_id", self.item_parent}  # the store's indexes
        if column in named:
            raise ValueError(
                f"the sandbox does not drop {table}.{column}: a constraint or an index names it"
            )
        narrower = replace(spec, columns=tuple(c for c in spec.columns if c.name != column))
        with self.lock:
            self.specs[table] = narrower
            self.tables[table].spec = narrower
            for row in self.tables[table].rows.values():
                row.pop(column, None)
            self.dropped_columns.append(f"{table}.{column}")
            self.version += 1

    def call(self, function: str, args: dict[str, Any]) -> Any:
        """``POST /rpc/<function>``: the setup's status function, when it is installed."""
        if function == SETUP_FUNCTION and self.setup_installed and not args:
            return {"version": SETUP_VERSION, "updated_at_trigger": True, "line_trigger": True}
        signature = ", ".join(sorted(args))
        raise PgError(
            404,
            "PGRST202",
            f"Could not find the function public.{function}({signature}) in the schema cache",
        )

    # -- writes (one statement each, as one PostgREST request) --------------------------------
    def insert(self, table: str, rows: list[Row]) -> list[Row]:
        """INSERT with the columns the rows name (others take their defaults)."""
        columns = list(dict.fromkeys(c for row in rows for c in row))
        with self.lock, self.statement() as stmt:
            out = stmt.insert(table, rows, columns)
        self.version += 1
        return out

    def insert_document(self, row: Row, items: Iterable[Row] = ()) -> str:
        """A document, then its lines (two statements, as a CRM client inserts them); returns
        the document's id."""
        [doc] = self.insert(DOCS, [row])
        lines = [{**item, self.item_parent: doc["id"]} for item in items]
        if lines:
            self.insert(ITEMS, lines)
        return doc["id"]

    def run(self, work) -> Any:
        """``work(statement)`` as one statement under the lock (the HTTP layer's writes)."""
        with self.lock, self.statement() as stmt:
            out = work(stmt)
        self.version += 1
        return out

    def load(self, table: str, rows: Iterable[Row]) -> None:
        """Add rows the caller built complete and consistent (the seeder's fast path): no
        defaults, coercion, triggers or checks. Timestamps move ``now()`` past them, and must be
        printed as PostgreSQL prints them (`crm_values.printed_timestamp`): the ``(updated_at,
        id)`` order and keyset paging compare that text, and a moment printed otherwise made a
        keyset read get the same page forever."""
        data = self.tables[table]
        with self.lock:
            for row in rows:
                data.add(row)
                if "updated_at" in row:
                    self.saw_timestamp(printed_timestamp(row["updated_at"]))
            self.version += 1

    def blank_row(self, table: str) -> Row:
        """Every column of ``table``, NULL (for the seeder to fill)."""
        return dict.fromkeys(c.name for c in self.specs[table].columns)

    # -- tenancy ------------------------------------------------------------------------------
    def members(self, organization_id: str) -> set[str]:
        return {
            m["user_id"] for m in self.tables[MEMBERS].children("organization_id", organization_id)
        }

    def documents_of(self, organization_id: str) -> list[Row]:
        """The organization's documents (by organization_id, or by a member owner where it is
        NULL), in ``(updated_at, id)`` order within each of the two groups."""
        ordered = self.tables[DOCS].ordered
        members = self.members(organization_id)
        own = list(ordered.get(organization_id, ()))
        by_owner = [d for d in ordered.get(None, ()) if d["user_id"] in members]
        return own + by_owner

    # -- the Python API: seeds, tests and the simulated CRM UI --------------------------------
    def document(self, document_id: str) -> Row | None:
        return self.tables[DOCS].rows.get(document_id)

    def items_of(self, document_id: str) -> list[Row]:
        return self.tables[ITEMS].children(self.item_parent, document_id)

    def document_with_items(self, document_id: str) -> Row | None:
        with self.lock:
            doc = self.document(document_id)
            return None if doc is None else self._with_items(doc)

    def documents(self, organization_id: str | None = None) -> list[Row]:
        """Copies of all documents (or one organization's), lines embedded under ``ITEMS_KEY``."""
        with self.lock:
            docs = (
                self.tables[DOCS].rows.values()
                if organization_id is None
                else self.documents_of(organization_id)
            )
            return [self._with_items(d) for d in docs]

    def edit_document(
        self,
        document_id: str,
        changes: Row,
        items: list[Row] | None = None,
        *,
        sets_updated_at: bool = True,
    ) -> Row:
        """A user's edit in the CRM, as the CRM's code makes it (``src/lib/sales-documents/
        data.ts``, updateSalesDocument): the header update sets ``updated_at`` itself
        (``sets_updated_at=False``: a route that does not, e.g. the orders status route), then
        the lines are replaced by deleting them all and inserting the new ones: two more
        requests, so a failure in between leaves the document without lines, as in the CRM.

        Line and document amounts the edit does not give are computed as the editor would
        (``amounts``: tax per line, totals with tax; the line discount of the profile)."""
        with self.lock:
            doc = self.document(document_id)
            if doc is None:
                raise PgError(404, "PGRST116", f"document {document_id} not found")
            if items is not None:
                items = [self._with_amounts(item) for item in items]
                changes = {**self._totals(items), **changes}

            def header(stmt: Statement) -> None:
                patch = coerce_payload(self.specs[DOCS], changes)
                if sets_updated_at:
                    patch["updated_at"] = stmt.now
                stmt.update(DOCS, [doc], patch)

            if changes or sets_updated_at:
                self.run(header)
            if items is not None:
                self.run(lambda stmt: stmt.delete(ITEMS, self.items_of(document_id)))
                lines = [{**i, self.item_parent: document_id} for i in items]
                if lines:
                    self.insert(ITEMS, lines)
            return self._with_items(doc)

    def delete_document(self, document_id: str) -> bool:
        with self.lock:
            doc = self.document(document_id)
            if doc is not None:
                self.run(lambda stmt: stmt.delete(DOCS, [doc]))
            return doc is not None

    def _with_amounts(self, item: Row) -> Row:
        """A line with its tax and gross total (and, fixed10, its discount amount) filled in."""
        discount = item.get("discount_rate") or (item.get("metadata") or {}).get("discount")
        net = line_net_cents(item.get("quantity", 1), item.get("unit_price", 0), discount)
        tax = tax_cents(net, item.get("tax_rate") or 0)
        filled = {"tax_amount": tax / 100, "total_amount": (net + tax) / 100}
        if self.profile == "fixed10":
            before = line_net_cents(item.get("quantity", 1), item.get("unit_price", 0))
            filled["discount_amount"] = (before - net) / 100
        return {**filled, **item}

    def _totals(self, items: list[Row]) -> Row:
        subtotal, tax, total = totals_cents(
            (round(100 * (i["total_amount"] - i["tax_amount"])), i.get("tax_rate") or 0)
            for i in items
        )
        totals = {"tax_amount": tax / 100, "total_amount": total / 100}
        if self.profile == "fixed10":
            totals["subtotal"] = subtotal / 100
            totals["discount_amount"] = round(sum(i["discount_amount"] for i in items), 2)
        return totals

    # -- persistence --------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Column lists plus row arrays (half the size of row objects for 100k-document saves)."""
        with self.lock:
            tables = {}
            for key, data in self.tables.items():
                cols = [c.name for c in data.spec.columns]
                tables[key] = {
                    "columns": cols,
                    "rows": [[r[c] for c in cols] for r in data.rows.values()],
                }
            return {
                "format": STATE_FORMAT,
                "profile": self.profile,
                "max_rows": self.max_rows,
                "setup_installed": self.setup_installed,
                "dropped_columns": list(self.dropped_columns),
                "api_keys": sorted(self.api_keys),
                "last_timestamp": self._last_now,
                "tables": tables,
            }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CrmState:
        if data.get("format") != STATE_FORMAT:
            raise ValueError(
                f"not a sandbox CRM state of format {STATE_FORMAT} ({data.get('format')!r}); "
                "reset the sandbox to reseed it"
            )
        state = cls(
            data.get("api_keys", ()),
            profile=data["profile"],
            max_rows=data.get("max_rows", DEFAULT_MAX_ROWS),
            setup_installed=data.get("setup_installed", False),
        )
        for dropped in data.get("dropped_columns", ()):
            state.drop_column(*dropped.split(".", 1))
        for key, blob in data["tables"].items():
            cols = blob["columns"]
            state.load(key, (dict(zip(cols, values, strict=True)) for values in blob["rows"]))
        state.saw_timestamp(data.get("last_timestamp"))
        return state

    # -- internals ----------------------------------------------------------------------------
    def _with_items(self, doc: Row) -> Row:
        return dict(doc, **{ITEMS_KEY: [dict(i) for i in self.items_of(doc["id"])]})

    def _touch_parent(self, stmt: Statement, event: str, row: Row, old: Row | None) -> None:
        """The setup's line trigger: a line written or deleted touches its document(s)."""
        parents = {row[self.item_parent], (old or row)[self.item_parent]}
        for parent_id in parents:
            parent = self.tables[DOCS].rows.get(parent_id)
            if parent is not None and parent["updated_at"] != stmt.now:
                stmt.update(DOCS, [parent], {})


def _stamp_now(stmt: Statement, event: str, row: Row, old: Row | None) -> None:
    """The setup's BEFORE INSERT OR UPDATE trigger: ``NEW.updated_at := now()``."""
    row["updated_at"] = stmt.now
