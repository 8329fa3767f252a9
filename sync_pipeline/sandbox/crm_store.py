"""In-memory tables of the sandbox CRM (``sales_documents`` and ``sales_document_items``).

Why it looks like this: the pipeline pages through up to 100,000 documents per organization by
``updated_at``, so reads must not sort the whole table on every page. Documents are kept in
``(updated_at, id)`` order (every server write takes the newest timestamp and moves the row to the
end), with indexes by organization and by document for the lines. Writes are all-or-nothing per
call, like one PostgREST request in one transaction.

Decisions where the real schema is unknown (fresh-crm.md): writing a line "touches" its document
(``updated_at`` moves), as a trigger would, so a change to lines alone shows up in the change
cursor; ``updated_at`` is always set by the server on HTTP writes (a trigger), strictly increasing
even within one microsecond. The Python API (``insert_document``) keeps timestamps it is given, so
seeds can be back-dated.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sync_pipeline.sandbox.amounts import item_totals, line_net_cents
from sync_pipeline.sandbox.crm_schema import (
    COLUMNS,
    SALES_DOCUMENT_ITEMS,
    SALES_DOCUMENTS,
    STATIC_DEFAULTS,
    TABLES,
    PgError,
    check_row,
    coerce_payload,
    foreign_key_violation,
    format_timestamp,
    get_table,
    new_uuid,
    parse_timestamp,
    unique_violation,
)

DOCS, ITEMS = SALES_DOCUMENTS.name, SALES_DOCUMENT_ITEMS.name
ITEMS_KEY = ITEMS  # key under which a document carries its embedded lines
Row = dict[str, Any]


class CrmState:
    """The CRM's data plus the API keys that may read it (service-role keys: they see every org)."""

    def __init__(self, api_keys: Iterable[str] = ()) -> None:
        self.api_keys: set[str] = set(api_keys)
        self.lock = threading.RLock()
        self.version = 0  # bumped by every write
        self._docs: dict[str, Row] = {}  # kept in (updated_at, id) order, see finish_bulk_load
        self._by_org: dict[str, dict[str, Row]] = {}
        self._items: dict[str, Row] = {}  # insertion order
        self._items_by_doc: dict[str, dict[str, Row]] = {}
        self._last_ts = ""  # newest timestamp handed out or loaded (fixed-width text)
        self._unordered = False

    # -- Python API (seeding, tests, the simulated UI) ----------------------------------------
    def insert_document(self, row: Row, items: Iterable[Row] = (), *, validate: bool = True) -> str:
        """Insert one document with its lines; returns its id.

        Given ``created_at``/``updated_at`` are kept (back-dated seeds); missing ones are "now".
        ``validate=False`` skips coercion and constraint checks: the seeder's fast path for rows
        it built itself (100,000 documents per organization must seed in seconds); complete
        row dicts are then stored as they are, not copied.
        """
        with self.lock:
            if validate:
                doc = self._insert(DOCS, [row], server_clock=False)[0]
                lines = [dict(i, document_id=doc["id"]) for i in items]
                if lines:
                    self._insert(ITEMS, lines, server_clock=False)
            else:
                doc = self._fill(DOCS, row)
                self._add_doc(doc)
                for item in items:
                    line = self._fill(ITEMS, item)
                    line["document_id"] = doc["id"]
                    self._add_item(line)
            self.version += 1
            return doc["id"]

    def documents(self, organization_id: str | None = None) -> list[Row]:
        """Copies of all documents (of one organization), lines embedded, in change order."""
        with self.lock:
            return [
                self._with_items(d)
                for d in self.rows(
                    DOCS, organization_ids=None if organization_id is None else [organization_id]
                )
            ]

    def document_with_items(self, document_id: str) -> Row | None:
        with self.lock:
            doc = self._docs.get(document_id)
            return None if doc is None else self._with_items(doc)

    def edit_document(self, document_id: str, changes: Row) -> Row:
        """Simulate a user editing a document in the CRM UI (``POST /_sandbox/edit``).

        ``changes`` holds document columns and optionally ``items``: the complete new list of
        lines. When lines change and the totals are not given, they are recomputed as the UI
        would, so the document stays internally consistent.
        """
        changes = dict(changes)
        items = changes.pop("items", None)
        with self.lock:
            doc = self._docs.get(document_id)
            if doc is None:
                raise PgError(404, "PGRST116", f"document {document_id} not found")
            if items is not None:
                lines = [dict(i, document_id=document_id) for i in items]
                for line in lines:
                    line.pop("id", None)
                    if line.get("total_amount") is None:
                        line["total_amount"] = (
                            line_net_cents(
                                line["quantity"], line["unit_price"], line.get("discount_percent")
                            )
                            / 100
                        )
                if "subtotal_amount" not in changes:
                    subtotal, tax, total = item_totals(lines)
                    changes.update(
                        subtotal_amount=subtotal / 100,
                        tax_amount=tax / 100,
                        total_amount=total / 100,
                    )
                self._delete(
                    ITEMS,
                    list(self._items_by_doc.get(document_id, {}).values()),
                    server_clock=False,
                )
                if lines:
                    self._insert(ITEMS, lines, server_clock=False)
            self._update(DOCS, [doc], changes)
            return self.document_with_items(document_id)

    def delete_document(self, document_id: str) -> bool:
        with self.lock:
            doc = self._docs.get(document_id)
            if doc is not None:
                self._delete(DOCS, [doc])
            return doc is not None

    # -- table operations (the PostgREST layer) --------------------------------------------
    def rows(
        self,
        table: str,
        *,
        ids: Iterable[str] | None = None,
        organization_ids: Iterable[str] | None = None,
        document_ids: Iterable[str] | None = None,
    ) -> list[Row]:
        """Rows in natural order (documents: ``(updated_at, id)``; lines: insertion), narrowed by
        an index when the caller knows the query pins ids, organizations or parent documents."""
        self.finish_bulk_load()
        store = self._docs if table == DOCS else self._items
        if ids is not None:
            found = [r for r in (store.get(i) for i in dict.fromkeys(ids)) if r is not None]
            if table == DOCS:
                found.sort(key=_change_key)
            return found
        if table == DOCS and organization_ids is not None:
            orgs = list(dict.fromkeys(organization_ids))
            found = [r for o in orgs for r in self._by_org.get(o, {}).values()]
            if len(orgs) > 1:
                found.sort(key=_change_key)
            return found
        if table == ITEMS and document_ids is not None:
            return [
                r
                for d in dict.fromkeys(document_ids)
                for r in self._items_by_doc.get(d, {}).values()
            ]
        return list(store.values())

    def items_of(self, document_id: str) -> list[Row]:
        return list(self._items_by_doc.get(document_id, {}).values())

    def document(self, document_id: str) -> Row | None:
        return self._docs.get(document_id)

    def insert_rows(
        self,
        table: str,
        payloads: list[Row],
        *,
        resolution: str | None = None,
        on_conflict: str | None = None,
    ) -> list[Row]:
        """POST: insert, or upsert with ``resolution`` ``merge`` / ``ignore`` on the key."""
        tbl = get_table(table)
        if on_conflict not in (None, tbl.primary_key):
            tbl.column(on_conflict)
            raise PgError(
                400,
                "42P10",
                "there is no unique or exclusion constraint matching the ON CONFLICT specification",
            )
        with self.lock:
            return self._insert(table, payloads, resolution=resolution, server_clock=True)

    def update_rows(self, table: str, rows: list[Row], patch: Row) -> list[Row]:
        with self.lock:
            return self._update(table, rows, patch)

    def delete_rows(self, table: str, rows: list[Row]) -> list[Row]:
        with self.lock:
            return self._delete(table, rows)

    # -- persistence --------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Column lists plus row arrays: half the size of row objects for 100k-document saves."""
        with self.lock:
            self.finish_bulk_load()
            tables = {}
            for name, store in ((DOCS, self._docs), (ITEMS, self._items)):
                cols = list(COLUMNS[name])
                tables[name] = {
                    "columns": cols,
                    "rows": [[r[c] for c in cols] for r in store.values()],
                }
            return {
                "format": "sandbox-crm/1",
                "api_keys": sorted(self.api_keys),
                "last_timestamp": self._last_ts,
                "tables": tables,
            }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CrmState:
        state = cls(data.get("api_keys", ()))
        for name, add in ((DOCS, state._add_doc), (ITEMS, state._add_item)):
            blob = data["tables"][name]
            cols = blob["columns"]
            for values in blob["rows"]:
                add(state._fill(name, dict(zip(cols, values, strict=True))))
        state._last_ts = max(state._last_ts, data.get("last_timestamp") or "")
        state.finish_bulk_load()
        return state

    # -- internals ----------------------------------------------------------------------------
    def _tick(self) -> str:
        """A fresh ``now``, strictly after every timestamp handed out so far."""
        now = format_timestamp(datetime.now(UTC))
        if now <= self._last_ts:
            now = format_timestamp(parse_timestamp(self._last_ts) + timedelta(microseconds=1))
        self._last_ts = now
        return now

    def _fill(self, table: str, row: Row) -> Row:
        """A complete row (trusted input): missing columns get defaults or NULL."""
        if (
            len(row) == len(COLUMNS[table])
            and row.get("id")
            and (table == ITEMS or (row.get("updated_at") and row.get("created_at")))
        ):
            return row  # already complete (the seeder's rows): no copy
        full = dict.fromkeys(COLUMNS[table])
        full.update(STATIC_DEFAULTS[table])
        full.update(row)
        if full["id"] is None:
            full["id"] = new_uuid()
        if table == DOCS:
            if full["updated_at"] is None:
                full["updated_at"] = self._tick()
            if full["created_at"] is None:
                full["created_at"] = full["updated_at"]
        return full

    def _add_doc(self, doc: Row) -> None:
        if self._docs and _change_key(doc) < _change_key(next(reversed(self._docs.values()))):
            self._unordered = True
        self._docs[doc["id"]] = doc
        self._by_org.setdefault(doc["organization_id"], {})[doc["id"]] = doc
        if doc["updated_at"] > self._last_ts:
            self._last_ts = doc["updated_at"]

    def _add_item(self, item: Row) -> None:
        self._items[item["id"]] = item
        self._items_by_doc.setdefault(item["document_id"], {})[item["id"]] = item

    def finish_bulk_load(self) -> None:
        """Restore ``(updated_at, id)`` order after back-dated inserts (seeding, loading).

        Reads call it too, but sorting 200,000 documents takes a second: bulk loaders call it
        once at the end, so the first request after start does not pay for it.
        """
        if not self._unordered:
            return
        self._docs = dict(sorted(self._docs.items(), key=lambda kv: _change_key(kv[1])))
        self._by_org = {}
        for doc in self._docs.values():
            self._by_org.setdefault(doc["organization_id"], {})[doc["id"]] = doc
        self._unordered = False

    def _with_items(self, doc: Row) -> Row:
        return dict(doc, **{ITEMS_KEY: [dict(i) for i in self.items_of(doc["id"])]})

    def _insert(
        self, table: str, payloads: list[Row], *, resolution: str | None = None, server_clock: bool
    ) -> list[Row]:
        tbl = TABLES[table]
        store = self._docs if table == DOCS else self._items
        plan: list[tuple[Row | None, Row, Row]] = []  # (existing, proposed row, payload)
        seen: set[str] = set()
        for payload in payloads:
            given = coerce_payload(table, payload)
            if server_clock and table == DOCS:
                given.pop("updated_at", None)
            proposed = self._fill(table, given)  # server clock: takes its tick now, in order
            check_row(tbl, proposed)  # PostgreSQL checks the proposed row before ON CONFLICT
            key = proposed["id"]
            existing = store.get(key)
            if key in seen or (existing is not None and resolution is None):
                if key in seen and resolution == "merge":
                    raise PgError(
                        400,
                        "21000",
                        "ON CONFLICT DO UPDATE command cannot affect row a second time",
                    )
                if resolution is None:
                    raise unique_violation(table, key)
                continue
            seen.add(key)
            if existing is not None and resolution == "ignore":
                continue
            if table == ITEMS:
                self._check_parent(proposed["document_id"])
            plan.append((existing, proposed, given))
        out = []
        for existing, proposed, given in plan:
            if existing is None:
                (self._add_doc if table == DOCS else self._add_item)(proposed)
                if server_clock and table == ITEMS:
                    self._touch(proposed["document_id"])
                out.append(proposed)
            else:  # merge: the existing row takes the payload's columns and the proposed stamp
                out.append(
                    self._apply_update(
                        table, existing, given, proposed["updated_at"] if table == DOCS else None
                    )
                )
        self.version += 1
        return out

    def _update(self, table: str, rows: list[Row], patch: Row) -> list[Row]:
        given = coerce_payload(table, patch)
        if table == DOCS:
            given.pop("updated_at", None)
        tbl = TABLES[table]
        new_id = given.get("id")
        for row in rows:
            check_row(tbl, {**row, **given})
            if new_id is not None and new_id != row["id"]:
                self._check_key_change(table, row, new_id, len(rows))
            if table == ITEMS and "document_id" in given:
                self._check_parent(given["document_id"])
        out = [self._apply_update(table, row, given) for row in rows]
        self.version += 1
        return out

    def _apply_update(self, table: str, row: Row, given: Row, stamp: str | None = None) -> Row:
        """Change one stored row in place; a document takes ``stamp`` (or a fresh tick) as its
        ``updated_at`` and moves to the end of the change order; a line touches its document."""
        if table == DOCS:
            self._remove_doc(row)
            row.update(given)
            row["updated_at"] = stamp or self._tick()
            self._add_doc(row)
        else:
            old_parent = row["document_id"]
            self._remove_item(row)
            row.update(given)
            self._add_item(row)
            for parent in dict.fromkeys((old_parent, row["document_id"])):
                self._touch(parent)
        return row

    def _delete(self, table: str, rows: list[Row], *, server_clock: bool = True) -> list[Row]:
        parents: dict[str, None] = {}
        for row in rows:
            if table == DOCS:
                self._remove_doc(row)
                for item in list(self._items_by_doc.get(row["id"], {}).values()):
                    self._remove_item(item)
                self._items_by_doc.pop(row["id"], None)
            else:
                self._remove_item(row)
                parents[row["document_id"]] = None
        if server_clock:
            for parent in parents:
                if parent in self._docs:
                    self._touch(parent)
        self.version += 1
        return rows

    def _remove_doc(self, doc: Row) -> None:
        del self._docs[doc["id"]]
        org_rows = self._by_org.get(doc["organization_id"], {})
        org_rows.pop(doc["id"], None)

    def _remove_item(self, item: Row) -> None:
        self._items.pop(item["id"], None)
        self._items_by_doc.get(item["document_id"], {}).pop(item["id"], None)

    def _touch(self, document_id: str) -> None:
        doc = self._docs.get(document_id)
        if doc is not None:
            self._apply_update(DOCS, doc, {})

    def _check_parent(self, document_id: str | None) -> None:
        if document_id not in self._docs:
            raise foreign_key_violation(document_id)

    def _check_key_change(self, table: str, row: Row, new_id: str, n_rows: int) -> None:
        store = self._docs if table == DOCS else self._items
        if n_rows > 1 or new_id in store:
            raise unique_violation(table, new_id)
        if table == DOCS and self._items_by_doc.get(row["id"]):
            raise foreign_key_violation(row["id"], referenced=True)


def _change_key(doc: Row) -> tuple[str, str]:
    return doc["updated_at"], doc["id"]
