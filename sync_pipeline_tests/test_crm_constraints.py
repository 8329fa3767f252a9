"""The sandbox CRM refuses what the real CRM's PostgreSQL refuses, with the same error, and stores
what it stores: a corpus of writes replayed against both.

On the PostgreSQL side each write is the SQL PostgREST itself runs for it (``INSERT ... SELECT
... FROM json_populate_recordset(NULL::t, body)``, ``UPDATE ... FROM json_populate_record``,
``DELETE``), on a database built from the published DDL (`crm_ddl/*.sql`), each in a
transaction rolled back afterwards. On the sandbox side the same write goes through the engine
the HTTP layer uses. Compared: the SQLSTATE and message of an error (and the detail of a unique
or foreign-key violation, which names the key), or the values written and the rows left.
"""

import json
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg2
import pytest

from sync_pipeline.sandbox.crm_store import CrmState
from sync_pipeline.sandbox.crm_values import PgError, coerce_payload

from .test_crm_ddl import load_profile

U1, U2 = "10000000-0000-4000-8000-000000000001", "10000000-0000-4000-8000-000000000002"
O1, O2 = "20000000-0000-4000-8000-000000000001", "20000000-0000-4000-8000-000000000002"
P1 = "30000000-0000-4000-8000-000000000001"
D1, D2 = "40000000-0000-4000-8000-000000000001", "40000000-0000-4000-8000-000000000002"
I1 = "50000000-0000-4000-8000-000000000001"
MISSING = "99999999-9999-4999-8999-999999999999"

PARENT = {"sm60": "document_id", "fixed10": "sales_document_id"}
NAME = {"sm60": "customer_name", "fixed10": "contact_name"}


def base_rows(profile: str) -> list[tuple[str, dict]]:
    """Rows every case starts from: two users and organizations, a product, a document with a
    line, a product mapping."""
    doc = {
        "id": D1,
        "user_id": U1,
        "organization_id": O1,
        "document_type": "invoice",
        "document_number": "A-1",
        "document_date": "2026-11-02",
        NAME[profile]: "Kupec d.o.o.",
    }
    return [
        ("auth.users", {"id": U1}),
        ("auth.users", {"id": U2}),
        ("organizations", {"id": O1, "name": "One"}),
        ("organizations", {"id": O2, "name": "Two"}),
        ("organization_members", {"organization_id": O1, "user_id": U1}),
        ("products", {"id": P1, "name": "Stol", "sku": "ART-1", "organization_id": O1}),
        ("sales_documents", doc),
        (
            "sales_document_items",
            {"id": I1, PARENT[profile]: D1, "description": "Stol", "product_id": P1},
        ),
        (
            "metakocka_product_mappings",
            {"user_id": U1, "product_id": P1, "metakocka_id": "77", "metakocka_code": "ART-1"},
        ),
    ]


@dataclass
class Case:
    name: str
    table: str
    op: str  # insert | upsert | ignore | update | delete
    rows: list[dict] = field(default_factory=list)
    target: str | None = None
    """update / delete: the id of the row."""
    check: list[tuple[str, str, str]] = field(default_factory=list)
    """(table, id, column) whose value after the write is compared."""


def cases(profile: str) -> list[Case]:
    parent, name = PARENT[profile], NAME[profile]
    doc = {"user_id": U1, "organization_id": O1, "document_type": "offer", name: "X"}
    doc["document_date"] = "2026-11-03"
    line = {parent: D1, "description": "Miza"}
    out = [
        Case("no user_id", "sales_documents", "insert", [{k: v for k, v in doc.items() if k != "user_id"}]),
        Case("duplicate primary key", "sales_documents", "insert", [{**doc, "id": D1}]),
        Case("organization that does not exist", "sales_documents", "insert", [{**doc, "organization_id": MISSING}]),
        Case("user that does not exist", "sales_documents", "insert", [{**doc, "user_id": MISSING}]),
        Case("bad uuid", "sales_documents", "insert", [{**doc, "organization_id": "org-1"}]),
        Case("uuid with braces", "sales_documents", "insert", [{**doc, "id": "{" + D2 + "}"}], check=[("sales_documents", D2, "id")]),
        Case("date out of range", "sales_documents", "insert", [{**doc, "document_date": "2026-02-30"}]),
        Case("date that is no date", "sales_documents", "insert", [{**doc, "due_date": "soon"}]),
        Case("timestamp with an offset", "sales_documents", "insert", [{**doc, "id": D2, "updated_at": "2026-11-03T10:00:00.120+01:00"}], check=[("sales_documents", D2, "updated_at")]),
        Case("amount rounded half away from zero", "sales_documents", "insert", [{**doc, "id": D2, "total_amount": "-1.005", "tax_amount": 2.675}], check=[("sales_documents", D2, "total_amount"), ("sales_documents", D2, "tax_amount")]),
        Case("amount overflow", "sales_documents", "insert", [{**doc, "total_amount": "10000000000000"}]),
        Case("amount that is no number", "sales_documents", "insert", [{**doc, "total_amount": "12,50"}]),
        Case("a second row with the first one's key", "sales_documents", "insert", [{**doc, "id": D2}, {**doc, "id": D2}]),
        Case("line without description", "sales_document_items", "insert", [{parent: D1}]),
        Case("line of a document that does not exist", "sales_document_items", "insert", [{**line, parent: MISSING}]),
        Case("line quantity rounded to the column's scale", "sales_document_items", "insert", [{**line, "id": MISSING, "quantity": "1.2345", "unit_price": "1.235"}], check=[("sales_document_items", MISSING, "quantity"), ("sales_document_items", MISSING, "unit_price")]),
        Case("line price overflow", "sales_document_items", "insert", [{**line, "unit_price": 1e13}]),
        Case("upsert a line twice in one request", "sales_document_items", "upsert", [{**line, "id": MISSING}, {**line, "id": MISSING}]),
        Case("upsert an existing line", "sales_document_items", "upsert", [{"id": I1, parent: D1, "description": "Nov opis"}], check=[("sales_document_items", I1, "description")]),
        Case("ignore-duplicates skips an existing line", "sales_document_items", "ignore", [{"id": I1, parent: D1, "description": "Nov opis"}], check=[("sales_document_items", I1, "description")]),
        Case("upsert proposes a row without a required column", "sales_document_items", "upsert", [{"id": I1, parent: D1}]),
        Case("update to NULL a required column", "sales_documents", "update", [{"user_id": None}], target=D1),
        Case("update the key of a referenced row", "sales_documents", "update", [{"id": D2}], target=D1),
        Case("delete a document: its lines go with it", "sales_documents", "delete", target=D1, check=[("sales_document_items", I1, "id")]),
        Case("delete a product: lines keep a NULL product", "products", "delete", target=P1, check=[("sales_document_items", I1, "product_id")]),
        Case("delete a referenced organization", "organizations", "delete", target=O1),
        Case("product mapping of a product that does not exist", "metakocka_product_mappings", "insert", [{"user_id": U1, "product_id": MISSING, "metakocka_id": "1"}]),
        Case("duplicate product mapping", "metakocka_product_mappings", "insert", [{"user_id": U1, "product_id": P1, "metakocka_id": "77"}]),
        Case("integration log without entity", "metakocka_integration_logs", "insert", [{"user_id": U1, "entity_type": "sales_document", "operation": "sync", "status": "error"}]),
        Case("integration log tags", "metakocka_integration_logs", "insert", [{"id": MISSING, "user_id": U1, "entity_type": "sales_document", "entity_id": D1, "operation": "sync", "status": "error", "tags": ["a", 1]}], check=[("metakocka_integration_logs", MISSING, "tags")]),
        Case("boolean spelled yes", "metakocka_credentials", "insert", [{"id": MISSING, "user_id": U1, "company_id": "16", "secret_key": "s", "is_active": "yes"}], check=[("metakocka_credentials", MISSING, "is_active")]),
    ]  # fmt: skip
    if profile == "sm60":
        out += [
            Case("status spelled canceled", "sales_documents", "insert", [{**doc, "status": "canceled"}]),
            Case("credit_note is no CRM type", "sales_documents", "insert", [{**doc, "document_type": "credit_note"}]),
            Case("two checks fail: the first by name", "sales_documents", "insert", [{**doc, "document_type": "quote", "status": "confirmed"}]),
            Case("no customer_name", "sales_documents", "insert", [{k: v for k, v in doc.items() if k != name}]),
            Case("same number twice for one user and type", "sales_documents", "insert", [{**doc, "document_type": "invoice", "document_number": "A-1"}]),
            Case("document date defaults to today", "sales_documents", "insert", [{**{k: v for k, v in doc.items() if k != "document_date"}, "id": D2}], check=[("sales_documents", D2, "document_date")]),
            Case("mapping status outside its CHECK", "metakocka_sales_document_mappings", "insert", [{"user_id": U1, "document_id": D1, "metakocka_id": "1", "metakocka_document_type": "sales_order", "sync_status": "failed"}]),
        ]  # fmt: skip
    else:
        out += [
            Case("any status and type", "sales_documents", "insert", [{**doc, "id": D2, "status": "canceled", "document_type": "credit_note"}], check=[("sales_documents", D2, "status")]),
            Case("type longer than varchar(50)", "sales_documents", "insert", [{**doc, "document_type": "x" * 51}]),
            Case("no document date", "sales_documents", "insert", [{k: v for k, v in doc.items() if k != "document_date"}]),
            Case("no contact name", "sales_documents", "insert", [{**{k: v for k, v in doc.items() if k != name}, "id": D2}], check=[("sales_documents", D2, name)]),
            Case("mapping twice for one document and Metakocka id", "metakocka_sales_document_mappings", "insert", [{"user_id": U1, "sales_document_id": D1, "metakocka_id": "1", "metakocka_document_type": "t"}] * 2),
        ]  # fmt: skip
    return out


def pg_apply(conn, case: Case) -> None:
    table = case.table
    if case.op in ("insert", "upsert", "ignore"):
        cols = ", ".join(case.rows[0])
        sql = f"INSERT INTO {table} ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{table}, %s)"
        if case.op == "ignore":
            sql += " ON CONFLICT (id) DO NOTHING"
        elif case.op == "upsert":
            sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in case.rows[0])
            sql += f" ON CONFLICT (id) DO UPDATE SET {sets}"
        conn.execute(sql, (json.dumps(case.rows),))
    elif case.op == "update":
        sets = ", ".join(f"{c} = _.{c}" for c in case.rows[0])
        conn.execute(
            f"UPDATE {table} SET {sets} FROM json_populate_record(NULL::{table}, %s) _ "
            f"WHERE {table}.id = %s",
            (json.dumps(case.rows[0]), case.target),
        )
    else:
        conn.execute(f"DELETE FROM {table} WHERE id = %s", (case.target,))


def sandbox_apply(state: CrmState, case: Case) -> None:
    table = case.table

    def write(stmt):
        if case.op in ("insert", "upsert", "ignore"):
            resolution = {"upsert": "merge", "ignore": "ignore"}.get(case.op)
            stmt.insert(table, case.rows, list(case.rows[0]), resolution=resolution)
        elif case.op == "update":
            row = state.tables[table].rows[case.target]
            stmt.update(table, [row], coerce_payload(state.specs[table], case.rows[0]))
        else:
            stmt.delete(table, [state.tables[table].rows[case.target]])

    state.run(write)


def comparable(value):
    """A value as both sides can compare it: numbers by value, everything else as text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float, Decimal)):
        return Decimal(str(value)).normalize()
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value)


@pytest.mark.parametrize("profile", ["sm60", "fixed10"])
def test_crm_constraints_match_postgres(pg_url, profile):
    engine = load_profile(pg_url, profile)
    with engine.begin() as conn:
        for table, row in base_rows(profile):
            cols = ", ".join(row)
            conn.exec_driver_sql(
                f"INSERT INTO {table} ({cols}) SELECT {cols} "
                f"FROM json_populate_record(NULL::{table}, %s)",
                (json.dumps(row),),
            )
    raw = engine.raw_connection()
    mismatches, outcomes = [], set()
    try:
        for case in cases(profile):
            cursor = raw.cursor()
            cursor.execute("SET TIME ZONE 'UTC'")
            try:
                pg_apply(cursor, case)
                pg = ("ok", _pg_values(cursor, case))
            except psycopg2.Error as exc:
                detail = exc.diag.message_detail if exc.pgcode in ("23505", "23503") else None
                pg = (exc.pgcode, exc.diag.message_primary, detail)
            raw.rollback()

            state = CrmState(profile=profile)
            for table, row in base_rows(profile):
                state.insert(table, [row])
            try:
                sandbox_apply(state, case)
                ours = ("ok", _sandbox_values(state, case))
            except PgError as exc:
                detail = exc.details if exc.code in ("23505", "23503") else None
                ours = (exc.code, exc.message, detail)
            outcomes.add(pg[0] == "ok")
            if pg != ours:
                mismatches.append((case.name, pg, ours))
    finally:
        raw.close()
        engine.dispose()
    assert mismatches == []
    assert outcomes == {True, False}  # the corpus holds writes and refusals alike


def _pg_values(cursor, case: Case) -> list:
    out = []
    for table, row_id, column in case.check:
        cursor.execute(
            f"SELECT to_json({column}) FROM {table} WHERE id::text = %s", (row_id.strip("{}"),)
        )
        found = cursor.fetchone()
        out.append(comparable(found[0]) if found else "(no row)")
    return out


def _sandbox_values(state: CrmState, case: Case) -> list:
    out = []
    for table, row_id, column in case.check:
        row = state.tables[table].rows.get(row_id)
        out.append(comparable(row[column]) if row else "(no row)")
    return out
