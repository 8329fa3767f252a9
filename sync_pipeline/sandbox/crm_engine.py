"""An in-memory database that enforces the CRM's published constraints the way PostgreSQL does.

Why not a dict per table: the point of the sandbox CRM is that a write the real CRM refuses is
refused here too, with the same error, and one the real CRM accepts is accepted. So each
statement (one PostgREST request: one transaction) follows PostgreSQL's order:

- rows are processed one at a time: the row's values are read by their types (``crm_values``),
  defaults fill the columns the statement does not name, BEFORE triggers run, then NOT NULL
  (in column order) and CHECK constraints (by name) are checked, then the primary key and the
  unique constraints (an ``ON CONFLICT`` target first: ``DO NOTHING`` skips the row, ``DO
  UPDATE`` turns it into an update of the existing row, which is checked again);
- foreign keys are checked when the statement ends (they are AFTER triggers in PostgreSQL), and
  a delete's ``ON DELETE CASCADE`` / ``SET NULL`` / ``NO ACTION`` happen then too;
- a statement that fails leaves nothing behind (an undo log rolls it back).

`test_crm_constraints_match_postgres` replays a corpus of writes against the real PostgreSQL with
the published DDL and against this engine, and compares the error codes and messages.

Indexes serve the reads PostgREST makes fast: the primary key, every foreign-key column (lines
by document, children for cascades and embeds), and an ordered index per organization over
``(updated_at, id)`` for the documents table, so keyset pages start by bisection.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sortedcontainers import SortedKeyList

from sync_pipeline.sandbox.crm_ddl import Column, ForeignKey, Table
from sync_pipeline.sandbox.crm_values import (
    PgError,
    coerce,
    format_timestamp,
    new_uuid,
    parse_timestamp,
)

Row = dict[str, Any]
Trigger = Callable[["Statement", str, Row, Row | None], None]
"""A row trigger: (statement, "INSERT" | "UPDATE" | "DELETE", the row, the row before an UPDATE).
BEFORE triggers may change the row."""


def qualified(table: Table | ForeignKey) -> str:
    """The engine's key of a table (or of a foreign key's target): ``name`` in ``public``,
    ``schema.name`` elsewhere (``auth.users``)."""
    name = table.table if isinstance(table, ForeignKey) else table.name
    return name if table.schema == "public" else f"{table.schema}.{name}"


class TableData:
    """One table's rows (by primary key, insertion order) and its indexes."""

    def __init__(self, spec: Table, ordered_by: str | None = None) -> None:
        self.spec = spec
        self.rows: dict[Any, Row] = {}
        self.pk = spec.primary_key.columns[0]
        self.uniques = [u for u in spec.uniques if not u.primary]
        self.unique_index: dict[str, dict[tuple, Row]] = {u.name: {} for u in self.uniques}
        self.fk_index: dict[str, dict[Any, dict[Any, Row]]] = {
            fk.column: {} for fk in spec.foreign_keys
        }
        self.ordered_by = ordered_by
        """Partition column of the ``(updated_at, id)`` index (the documents table only)."""
        self.ordered: dict[Any, SortedKeyList] = {}

    def add(self, row: Row) -> None:
        self.rows[row[self.pk]] = row
        for u in self.uniques:
            key = tuple(row[c] for c in u.columns)
            if None not in key:
                self.unique_index[u.name][key] = row
        for column, index in self.fk_index.items():
            value = row[column]
            if value is not None:
                index.setdefault(value, {})[row[self.pk]] = row
        if self.ordered_by is not None:
            part = self.ordered.get(row[self.ordered_by])
            if part is None:
                part = self.ordered[row[self.ordered_by]] = SortedKeyList(key=change_key)
            part.add(row)

    def remove(self, row: Row) -> None:
        del self.rows[row[self.pk]]
        for u in self.uniques:
            key = tuple(row[c] for c in u.columns)
            if None not in key and self.unique_index[u.name].get(key) is row:
                del self.unique_index[u.name][key]
        for column, index in self.fk_index.items():
            children = index.get(row[column])
            if children is not None:
                children.pop(row[self.pk], None)
                if not children:
                    del index[row[column]]
        if self.ordered_by is not None:
            self.ordered[row[self.ordered_by]].remove(row)

    def children(self, column: str, value: Any) -> list[Row]:
        return list(self.fk_index[column].get(value, {}).values())


def change_key(row: Row) -> tuple:
    """``ORDER BY updated_at, id`` with PostgreSQL's NULLS LAST for ascending order."""
    updated = row["updated_at"]
    return (updated is None, updated or "", row["id"])


class Database:
    """Tables of one schema profile, and statements that change them."""

    def __init__(self, tables: Iterable[Table], *, ordered: dict[str, str] | None = None) -> None:
        ordered = ordered or {}
        self.specs = {qualified(t): t for t in tables}
        self.tables = {key: TableData(t, ordered.get(key)) for key, t in self.specs.items()}
        self.referenced_by: dict[str, list[tuple[str, ForeignKey]]] = {}
        for key, spec in self.specs.items():
            for fk in spec.foreign_keys:
                self.referenced_by.setdefault(qualified(fk), []).append((key, fk))
        self.before: dict[str, list[Trigger]] = {}
        """BEFORE INSERT OR UPDATE row triggers per table."""
        self.after: dict[str, list[Trigger]] = {}
        """AFTER row triggers per table (run when the statement ends, with the changed row)."""
        self._last_now = ""

    def statement(self) -> Statement:
        return Statement(self, self._now())

    def _now(self) -> str:
        """``now()``: one value per statement, after every value handed out before."""
        now = format_timestamp(datetime.now(UTC))
        if now <= self._last_now:
            now = format_timestamp(parse_timestamp(self._last_now) + timedelta(microseconds=1))
        self._last_now = now
        return now

    def saw_timestamp(self, text: str | None) -> None:
        """Keep ``now()`` after a timestamp loaded from elsewhere (seeds, saved states)."""
        if text and text > self._last_now:
            self._last_now = text


class Statement:
    """One statement in one transaction: changes are applied as they go and undone on error."""

    def __init__(self, db: Database, now: str) -> None:
        self.db, self.now = db, now
        self._undo: list[tuple] = []
        self._fk_pending: list[tuple[str, Row]] = []
        self._after: list[tuple[str, str, Row, Row | None]] = []
        self._updated_in_statement: set[int] = set()
        self.inserted = 0
        """Rows this statement inserted (``ON CONFLICT DO UPDATE`` rows are updates)."""

    def __enter__(self) -> Statement:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.finish()
                return
            except BaseException:
                self.rollback()
                raise
        self.rollback()

    # -- the three statements -----------------------------------------------------------------
    def insert(
        self,
        table: str,
        payloads: list[Row],
        columns: list[str],
        *,
        on_conflict: tuple[str, ...] | None = None,
        resolution: str | None = None,
        use_defaults: bool = True,
    ) -> list[Row]:
        """INSERT ... (``columns``) [ON CONFLICT (``on_conflict``) DO NOTHING | DO UPDATE].

        A payload key outside ``columns`` is ignored; a column of ``columns`` missing from a
        payload is NULL, or its default when ``use_defaults`` (``Prefer: missing=default``).
        Returns the rows inserted, and those updated by ``DO UPDATE``."""
        data = self.db.tables[table]
        spec = data.spec
        target = self._conflict_target(spec, on_conflict) if resolution else None
        out = []
        for payload in payloads:
            row = self._new_row(spec, payload, columns, use_defaults)
            self._before(table, "INSERT", row)
            check_row(spec, row)
            existing = self._conflicting(data, target, row) if target else None
            if existing is not None:
                if resolution == "ignore":
                    continue
                if id(existing) in self._updated_in_statement:
                    raise PgError(
                        400,
                        "21000",
                        "ON CONFLICT DO UPDATE command cannot affect row a second time",
                        hint="Ensure that no rows proposed for insertion within the same "
                        "command have duplicate constrained values.",
                    )
                out.append(self._update_row(table, existing, {c: row[c] for c in columns}))
                continue
            self._check_unique(data, row)
            data.add(row)
            self.inserted += 1
            self._undo.append(("insert", table, row))
            self._updated_in_statement.add(id(row))
            self._fk_pending.append((table, row))
            self._after.append(("INSERT", table, row, None))
            out.append(row)
        return out

    def update(self, table: str, rows: list[Row], patch: Row) -> list[Row]:
        """UPDATE ... SET (the patch's columns, already read by their types) for ``rows``."""
        return [self._update_row(table, row, patch) for row in rows]

    def delete(self, table: str, rows: list[Row]) -> list[Row]:
        """DELETE ``rows``; ON DELETE actions of referencing tables follow at the end."""
        deleted = []
        for row in rows:
            if row[self.db.tables[table].pk] not in self.db.tables[table].rows:
                continue  # already gone by a cascade earlier in this statement
            self._delete_row(table, row)
            deleted.append(row)
        return deleted

    # -- the statement's end and its undo -----------------------------------------------------
    def finish(self) -> None:
        """AFTER triggers (in row order), then every foreign key of the rows written."""
        ran = 0
        while ran < len(self._after):  # a trigger may write (and queue) more rows
            event, table, row, old = self._after[ran]
            ran += 1
            for trigger in self.db.after.get(table, ()):
                trigger(self, event, row, old)
        for table, row in self._fk_pending:
            data = self.db.tables[table]
            if data.rows.get(row[data.pk]) is not row:
                continue  # deleted later in the statement
            for fk in data.spec.foreign_keys:
                value = row[fk.column]
                if value is not None and value not in self.db.tables[qualified(fk)].rows:
                    raise fk_missing_parent(table, fk, value)

    def rollback(self) -> None:
        for entry in reversed(self._undo):
            op, table, row = entry[:3]
            data = self.db.tables[table]
            if op == "insert":
                data.remove(row)
            elif op == "delete":
                data.add(row)
            else:
                data.remove(row)
                row.clear()
                row.update(entry[3])
                data.add(row)
        self._undo.clear()

    # -- internals ----------------------------------------------------------------------------
    def _new_row(self, spec: Table, payload: Row, columns: list[str], use_defaults: bool) -> Row:
        named = set(columns)
        row: Row = {}
        for col in spec.columns:
            if col.name in named:
                if col.name in payload:
                    row[col.name] = coerce(spec.name, col, payload[col.name])
                    continue
                if not use_defaults:
                    row[col.name] = None
                    continue
            row[col.name] = self.default(col)
        return row

    def default(self, col: Column) -> Any:
        """The value of a column DEFAULT expression (as ``crm_ddl`` writes them)."""
        expr = col.default
        if expr is None:
            return None
        if expr == "gen_random_uuid()":
            return new_uuid()
        if expr in ("now()", "CURRENT_TIMESTAMP"):
            return self.now
        if expr == "CURRENT_DATE":  # Supabase's sessions run in UTC
            return self.now[:10]
        if expr.startswith("'"):
            literal = expr[1 : expr.rindex("'")]
            return [] if literal == "{}" else literal
        if expr in ("true", "false"):
            return expr == "true"
        return coerce(col.name, col, expr)

    def _before(self, table: str, event: str, row: Row) -> None:
        for trigger in self.db.before.get(table, ()):
            trigger(self, event, row, None)

    def _update_row(self, table: str, row: Row, patch: Row) -> Row:
        data = self.db.tables[table]
        new = {**row, **patch}
        self._before(table, "UPDATE", new)
        check_row(data.spec, new)
        old_key = row[data.pk]
        if new[data.pk] != old_key and data.rows.get(new[data.pk]) is not None:
            raise unique_violation(data.spec.primary_key, new)
        for unique in data.uniques:
            key = tuple(new[c] for c in unique.columns)
            holder = data.unique_index[unique.name].get(key) if None not in key else None
            if holder is not None and holder is not row:
                raise unique_violation(unique, new)
        if new[data.pk] != old_key:
            for child_table, fk in self.db.referenced_by.get(table, ()):
                if self.db.tables[child_table].children(fk.column, old_key):
                    raise fk_still_referenced(table, child_table, fk, old_key)
        old = dict(row)
        data.remove(row)
        row.update(new)
        data.add(row)
        self._undo.append(("update", table, row, old))
        self._updated_in_statement.add(id(row))
        self._fk_pending.append((table, row))
        self._after.append(("UPDATE", table, row, old))
        return row

    def _delete_row(self, table: str, row: Row) -> None:
        data = self.db.tables[table]
        data.remove(row)
        self._undo.append(("delete", table, row))
        self._after.append(("DELETE", table, row, None))
        key = row[data.pk]
        for child_table, fk in self.db.referenced_by.get(table, ()):
            children = self.db.tables[child_table].children(fk.column, key)
            if not children:
                continue
            if fk.on_delete == "CASCADE":
                for child in children:
                    self._delete_row(child_table, child)
            elif fk.on_delete == "SET NULL":
                for child in children:
                    self._update_row(child_table, child, {fk.column: None})
            else:
                raise fk_still_referenced(table, child_table, fk, key)

    def _conflict_target(self, spec: Table, columns: tuple[str, ...] | None):
        wanted = set(columns or spec.primary_key.columns)
        for unique in spec.uniques:
            if set(unique.columns) == wanted:
                return unique
        raise PgError(
            400,
            "42P10",
            "there is no unique or exclusion constraint matching the ON CONFLICT specification",
        )

    def _conflicting(self, data: TableData, target, row: Row) -> Row | None:
        key = tuple(row[c] for c in target.columns)
        if None in key:
            return None
        if target.primary:
            return data.rows.get(key[0])
        return data.unique_index[target.name].get(key)

    def _check_unique(self, data: TableData, row: Row) -> None:
        if row[data.pk] in data.rows:
            raise unique_violation(data.spec.primary_key, row)
        for unique in data.uniques:
            key = tuple(row[c] for c in unique.columns)
            if None not in key and key in data.unique_index[unique.name]:
                raise unique_violation(unique, row)


def check_row(spec: Table, row: Row) -> None:
    """NOT NULL in column order, then CHECK constraints by name (PostgreSQL's order)."""
    for col in spec.columns:
        if not col.nullable and row.get(col.name) is None:
            raise PgError(
                400,
                "23502",
                f'null value in column "{col.name}" of relation "{spec.name}" violates '
                "not-null constraint",
                failing_row(spec, row),
            )
    for check in sorted(spec.checks, key=operator.attrgetter("name")):
        if not check.passes(row):
            raise PgError(
                400,
                "23514",
                f'new row for relation "{spec.name}" violates check constraint "{check.name}"',
                failing_row(spec, row),
            )


def failing_row(spec: Table, row: Row) -> str:
    values = ", ".join(_pg_text(row.get(c.name)) for c in spec.columns)
    return f"Failing row contains ({values})."


def _pg_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, list):
        return "{" + ",".join(str(v) for v in value) + "}"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def unique_violation(unique, row: Row) -> PgError:
    columns = ", ".join(unique.columns)
    values = ", ".join(_pg_text(row[c]) for c in unique.columns)
    return PgError(
        409,
        "23505",
        f'duplicate key value violates unique constraint "{unique.name}"',
        f"Key ({columns})=({values}) already exists.",
    )


def fk_missing_parent(table: str, fk: ForeignKey, value: Any) -> PgError:
    return PgError(
        409,
        "23503",
        f'insert or update on table "{table}" violates foreign key constraint "{fk.name}"',
        f'Key ({fk.column})=({value}) is not present in table "{fk.table}".',
    )


def fk_still_referenced(table: str, child_table: str, fk: ForeignKey, value: Any) -> PgError:
    parent = table.split(".")[-1]
    return PgError(
        409,
        "23503",
        f'update or delete on table "{parent}" violates foreign key constraint "{fk.name}" '
        f'on table "{child_table}"',
        f'Key (id)=({value}) is still referenced from table "{child_table}".',
    )
