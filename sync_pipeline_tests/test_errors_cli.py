"""`sync-pipeline errors ...` and `conflicts resolve` refusals against a real sync database
(SQLite, and PostgreSQL when reachable)."""

import csv
import io
import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from sync_pipeline.cli import main
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.tables import sync_error_log

ORG, OTHER = "org-a", "org-b"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, sqlite_url):
    return sqlite_url if request.param == "sqlite" else request.getfixturevalue("pg_url")


def status(crm_id, mk_id, state, org=ORG):
    return {
        "organization_id": org,
        "crm_document_id": crm_id,
        "metakocka_id": mk_id,
        "document_type": "order",
        "status": state,
        "attempts": 0,
        "last_error": "both changed" if state == "conflict" else None,
        "updated_at": datetime.now(UTC),
    }


def error(crm_id, mk_id, error_type, message, day, org=ORG):
    return {
        "organization_id": org,
        "crm_document_id": crm_id,
        "metakocka_id": mk_id,
        "error_type": error_type,
        "message": message,
        "details": {"why": message},
        "occurred_at": datetime(2026, 11, day, 10, 0, tzinfo=UTC),
    }


@pytest.fixture
def seeded(db_url):
    """Documents: c-ok synced, c-bad invalid, c-fail failed, c-conf in conflict, c-half a
    conflict without a counterpart; and errors of them, on two days, in two organizations."""
    store = SyncStore(db_url)
    store.create_schema()
    store.status.replace(
        ORG,
        [
            status("c-ok", "m-ok", "synced"),
            status("c-bad", None, "invalid"),
            status("c-fail", None, "failed"),
            status("c-conf", "m-conf", "conflict"),
            status(None, "m-half", "conflict"),
        ],
    )
    store.status.replace(OTHER, [status("o-1", "om-1", "synced", org=OTHER)])
    store.errors.log(
        [
            error("c-ok", "m-ok", "transient", "Metakocka timed out", 20),
            error("c-ok", "m-ok", "rejected", "bad tax code", 21),
            error("c-bad", None, "validation", "customer_name: must not be empty", 21),
            error("c-fail", None, "rejected", "product not found", 21),
            error("c-conf", "m-conf", "conflict", "conflict: changed on both sides", 21),
            error("o-1", "om-1", "transient", "CRM 503", 21, org=OTHER),
        ]
    )
    with store.engine.connect() as conn:
        ids = dict(conn.execute(sa.select(sync_error_log.c.message, sync_error_log.c.id)).all())
    yield db_url, ids
    store.dispose()


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def listed_ids(db_url, *filters) -> set[int]:
    result = cli("errors", "list", "--db-url", db_url, "--json", *filters)
    assert result.exit_code == 0, result.output
    return {row["id"] for row in json.loads(result.output)}


def test_list_filters(seeded):
    db_url, ids = seeded
    assert len(listed_ids(db_url)) == 6
    assert listed_ids(db_url, "--organization", OTHER) == {ids["CRM 503"]}
    assert listed_ids(db_url, "--org", ORG, "--type", "rejected") == {
        ids["bad tax code"],
        ids["product not found"],
    }
    assert listed_ids(db_url, "--document", "m-ok") == {
        ids["Metakocka timed out"],
        ids["bad tax code"],
    }
    assert listed_ids(db_url, "--until", "2026-11-21") == {ids["Metakocka timed out"]}
    assert listed_ids(db_url, "--since", "2026-11-21", "--type", "transient") == {ids["CRM 503"]}
    assert listed_ids(db_url, "--state", "resolved") == set()
    table = cli("errors", "list", "--db-url", db_url, "--organization", OTHER)
    assert table.exit_code == 0 and "CRM 503" in table.output and "occurred_at" in table.output


def test_resolve_one_or_many_with_a_note(seeded):
    db_url, ids = seeded
    one = cli("errors", "resolve", ids["Metakocka timed out"], "--note", "retried fine",
              "--db-url", db_url)  # fmt: skip
    assert one.exit_code == 0, one.output
    assert "resolved 1 error(s)" in one.output
    many = cli("errors", "resolve", "--all-matching", "--organization", OTHER,
               "--note", "CRM maintenance window", "--by", "ana", "--db-url", db_url)  # fmt: skip
    assert many.exit_code == 0, many.output
    resolved = json.loads(
        cli("errors", "list", "--db-url", db_url, "--state", "resolved", "--json").output
    )
    notes = {row["id"]: row["resolution_note"] for row in resolved}
    assert notes == {
        ids["Metakocka timed out"]: "retried fine",
        ids["CRM 503"]: "CRM maintenance window (by ana)",
    }
    again = cli("errors", "resolve", ids["CRM 503"], "--note", "x", "--db-url", db_url)
    assert again.exit_code == 1 and "already resolved" in again.output


def test_resolving_an_error_of_a_still_failing_document_is_refused(seeded):
    db_url, ids = seeded
    refused = [ids["customer_name: must not be empty"], ids["product not found"],
               ids["conflict: changed on both sides"]]  # fmt: skip
    result = cli("errors", "resolve", *refused, ids["bad tax code"], "--note", "done",
                 "--db-url", db_url)  # fmt: skip
    assert result.exit_code == 1
    assert "resolved 1 error(s)" in result.output  # the synced document's error
    for document, state in (("c-bad", "invalid"), ("c-fail", "failed"), ("c-conf", "conflict")):
        assert f"document {document} is still {state}" in result.output
    assert listed_ids(db_url, "--organization", ORG) == {*refused, ids["Metakocka timed out"]}
    everything = cli("errors", "resolve", "--all-matching", "--organization", ORG,
                     "--note", "cleanup", "--db-url", db_url)  # fmt: skip
    assert everything.exit_code == 1 and listed_ids(db_url, "--organization", ORG) == set(refused)
    with_no_target = cli("errors", "resolve", "--note", "x", "--db-url", db_url)
    assert with_no_target.exit_code == 2


def test_stats_by_type_and_day_and_csv_export(seeded, tmp_path):
    db_url, ids = seeded
    cli("errors", "resolve", ids["Metakocka timed out"], "--note", "ok", "--db-url", db_url)
    stats = cli("errors", "stats", "--db-url", db_url, "--since", "2026-11-01", "--json")
    assert stats.exit_code == 0, stats.output
    data = json.loads(stats.output)
    by_type = {row["error_type"]: row for row in data["by_type"]}
    assert (by_type["transient"]["total"], by_type["transient"]["open"]) == (2, 1)
    assert by_type["rejected"]["total"] == 2
    by_day = {(row["day"], row["error_type"]): row["total"] for row in data["by_day"]}
    assert by_day[("2026-11-20", "transient")] == 1
    assert by_day[("2026-11-21", "transient")] == 1
    text = cli("errors", "stats", "--db-url", db_url, "--since", "2026-11-01")
    assert "by type" in text.output and "by day" in text.output

    out = tmp_path / "errors.csv"
    export = cli("errors", "export", "--db-url", db_url, "--organization", ORG, "-o", out)
    assert export.exit_code == 0, export.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 5 and {r["organization_id"] for r in rows} == {ORG}
    assert json.loads(rows[0]["details"])["why"]


def test_conflict_resolution_is_refused_unless_the_document_is_in_a_two_sided_conflict(seeded):
    db_url, _ = seeded

    def resolve(document):
        return cli("conflicts", "resolve", "--organization", ORG, "--document", document,
                   "--winner", "crm", "--db-url", db_url)  # fmt: skip

    assert "not in conflict (status synced)" in resolve("c-ok").output
    assert "without a counterpart" in resolve("m-half").output
    assert "unknown in organization" in resolve("nope").output
    assert resolve("m-conf").exit_code == 0  # by its Metakocka id
    listed = cli("conflicts", "list", "--organization", ORG, "--db-url", db_url)
    assert "resolved: crm wins at the next reconciliation" in listed.output
