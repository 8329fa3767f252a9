"""docs/crm-setup.sql, the SQL a CRM owner runs, does what the pipeline relies on, on the real
PostgreSQL with each published schema; the sandbox's emulation of it behaves the same."""

import json
from pathlib import Path

import pytest

from sync_pipeline.sandbox.crm_store import CrmState

from .test_crm_ddl import load_profile

SETUP_SQL = Path(__file__).resolve().parents[1] / "docs" / "crm-setup.sql"
USER, ORG = "10000000-0000-4000-8000-000000000001", "20000000-0000-4000-8000-000000000001"
DOC, LINE = "40000000-0000-4000-8000-000000000001", "50000000-0000-4000-8000-000000000001"
PARENT = {"sm60": "document_id", "fixed10": "sales_document_id"}
NAME = {"sm60": "customer_name", "fixed10": "contact_name"}


def steps(profile: str) -> list[tuple[str, str, dict]]:
    """(what, table, change) in order; each is one transaction / one statement."""
    parent, past = PARENT[profile], "2020-01-01T00:00:00+00:00"
    line = {"id": LINE, parent: DOC, "description": "x"}
    document = {
        "id": DOC,
        "user_id": USER,
        "organization_id": ORG,
        "document_type": "invoice",
        "document_date": "2026-01-01",
        NAME[profile]: "K",
        "updated_at": past,
    }
    return [
        ("insert a document back-dated", "insert:sales_documents", document),
        ("edit its notes", "update:sales_documents", {"notes": "edited"}),
        ("set updated_at back by hand", "update:sales_documents", {"updated_at": past}),
        ("insert a line", "insert:sales_document_items", line),
        ("edit the line", "update:sales_document_items", {"quantity": 3}),
        ("delete the line", "delete:sales_document_items", {}),
    ]  # fmt: skip


def postgres_moves(raw, profile: str) -> list[bool]:
    moved, cursor = [], raw.cursor()
    for _what, action, change in steps(profile):
        cursor.execute("SELECT updated_at FROM sales_documents WHERE id = %s", (DOC,))
        before = cursor.fetchone()
        op, table = action.split(":")
        row_id = DOC if table == "sales_documents" else LINE
        if op == "insert":
            cols = ", ".join(change)
            cursor.execute(
                f"INSERT INTO {table} ({cols}) SELECT {cols} "
                f"FROM json_populate_record(NULL::{table}, %s)",
                (json.dumps(change),),
            )
        elif op == "update":
            sets = ", ".join(f"{c} = _.{c}" for c in change)
            cursor.execute(
                f"UPDATE {table} SET {sets} FROM json_populate_record(NULL::{table}, %s) _ "
                f"WHERE {table}.id = %s",
                (json.dumps(change), row_id),
            )
        else:
            cursor.execute(f"DELETE FROM {table} WHERE id = %s", (row_id,))
        raw.commit()
        cursor.execute("SELECT updated_at FROM sales_documents WHERE id = %s", (DOC,))
        after = cursor.fetchone()[0]
        moved.append(before is None or after > before[0])
        if before is None:
            moved[-1] = after.isoformat() != "2020-01-01T00:00:00+00:00"
    return moved


def sandbox_moves(profile: str, installed: bool) -> list[bool]:
    state = CrmState(profile=profile, setup_installed=installed)
    state.insert("auth.users", [{"id": USER}])
    state.insert("organizations", [{"id": ORG, "name": "O"}])
    moved = []
    for _what, action, change in steps(profile):
        doc = state.document(DOC)
        before = doc["updated_at"] if doc else None
        op, table = action.split(":")
        if op == "insert":
            state.insert(table, [change])
        else:
            row = state.tables[table].rows[DOC if table == "sales_documents" else LINE]
            if op == "update":
                state.run(lambda stmt, t=table, r=row, c=change: stmt.update(t, [r], c))
            else:
                state.run(lambda stmt, t=table, r=row: stmt.delete(t, [r]))
        after = state.document(DOC)["updated_at"]
        moved.append(after > before if before else after != "2020-01-01T00:00:00+00:00")
    return moved


@pytest.mark.parametrize("profile", ["sm60", "fixed10"])
def test_crm_setup_sql_keeps_updated_at_truthful_and_reports_itself(pg_url, profile):
    engine = load_profile(pg_url, profile)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for _ in range(2):  # safe to run again
            cursor.execute(SETUP_SQL.read_text())
            raw.commit()
        cursor.execute("INSERT INTO auth.users (id) VALUES (%s)", (USER,))
        cursor.execute("INSERT INTO organizations (id, name) VALUES (%s, 'O')", (ORG,))
        raw.commit()

        moves = postgres_moves(raw, profile)
        assert moves == [True] * len(steps(profile))
        assert moves == sandbox_moves(profile, installed=True)

        cursor.execute("SELECT public.sync_pipeline_crm_setup()")
        assert cursor.fetchone()[0] == {
            "version": 1,
            "updated_at_trigger": True,
            "line_trigger": True,
        }
        cursor.execute("ALTER TABLE sales_documents DISABLE TRIGGER sync_pipeline_set_updated_at")
        cursor.execute("SELECT public.sync_pipeline_crm_setup()->>'updated_at_trigger'")
        assert cursor.fetchone()[0] == "false"  # a trigger switched off later shows
        raw.rollback()
        cursor.execute(
            "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'sync\\_pipeline\\_%%'"
        )
        assert cursor.fetchone()[0] == 7
    finally:
        raw.close()
        engine.dispose()


@pytest.mark.parametrize("profile", ["sm60", "fixed10"])
def test_without_the_setup_updated_at_moves_only_when_a_writer_sets_it(pg_url, profile):
    """The published schema as it is: the sandbox leaves updated_at alone exactly where
    PostgreSQL does."""
    engine = load_profile(pg_url, profile)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("INSERT INTO auth.users (id) VALUES (%s)", (USER,))
        cursor.execute("INSERT INTO organizations (id, name) VALUES (%s, 'O')", (ORG,))
        raw.commit()
        moves = postgres_moves(raw, profile)
        assert moves == [False, False, False, False, False, False]
        assert moves == sandbox_moves(profile, installed=False)
    finally:
        raw.close()
        engine.dispose()
