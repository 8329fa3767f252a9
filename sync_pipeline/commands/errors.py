"""`sync-pipeline errors list | resolve | stats | export`: the error log from a terminal.

Filters (all commands): `--organization`, `--type`, `--document` (CRM id or Metakocka mk_id),
`--state open|resolved|all`, `--since` / `--until` (a date, or a date and time, UTC), `--run`.
Resolving an error of a document that is still failing (sync_status `failed`, `invalid` or
`conflict`) is refused: fix the document and the next run closes the error itself.
"""

import sys

import click

from sync_pipeline.commands.common import (
    DATE_FORMATS,
    check_organization,
    db_url_option,
    echo_json,
    echo_table,
    organization_option,
    sync_store,
    utc,
)

LIST_COLUMNS = [
    "id",
    "occurred_at",
    "organization_id",
    "error_type",
    "crm_document_id",
    "metakocka_id",
    "message",
    "resolved_at",
]


def filter_options(state_default: str):
    def decorate(command):
        for option in reversed(
            [
                organization_option(required=False),
                click.option("--type", "error_type", help="error_type, e.g. validation."),
                click.option("--document", help="A CRM document id or a Metakocka mk_id."),
                click.option(
                    "--state",
                    type=click.Choice(["open", "resolved", "all"]),
                    default=state_default,
                    show_default=True,
                ),
                click.option("--since", type=click.DateTime(DATE_FORMATS), help="From (UTC)."),
                click.option("--until", type=click.DateTime(DATE_FORMATS), help="Before (UTC)."),
                click.option("--run", "run_id", help="Dagster run id."),
                db_url_option,
            ]
        ):
            command = option(command)
        return command

    return decorate


def _filter(organization, error_type, document, state, since, until, run_id):
    from sync_pipeline.store.error_filter import ErrorFilter

    check_organization(organization)
    return ErrorFilter(
        organization_id=organization,
        error_type=error_type,
        document_id=document,
        state=state,
        since=utc(since),
        until=utc(until),
        run_id=run_id,
    )


@click.group()
def errors() -> None:
    """List, resolve, count and export sync errors (the sync_error_log table)."""


@errors.command("list")
@filter_options("open")
@click.option("--limit", default=50, show_default=True, help="Newest rows to show (0: all).")
@click.option("--json", "as_json", is_flag=True, help="Full rows as JSON.")
def list_command(
    organization, error_type, document, state, since, until, run_id, db_url, limit, as_json
):
    """Errors matching the filters, newest first (open ones by default)."""
    where = _filter(organization, error_type, document, state, since, until, run_id)
    with sync_store(db_url) as store:
        rows = store.errors.matching(where, limit=limit or None)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no errors match")
        return
    echo_table(rows, LIST_COLUMNS, widths={"message": 90})


@errors.command("resolve")
@click.argument("ids", nargs=-1, type=int)
@filter_options("open")
@click.option("--all-matching", is_flag=True, help="Resolve every open error the filters match.")
@click.option("--note", required=True, help="Why they are resolved (kept with each error).")
@click.option("--by", "resolved_by", default=None, help="Who resolves them.")
def resolve_command(
    ids,
    organization,
    error_type,
    document,
    state,
    since,
    until,
    run_id,
    db_url,
    all_matching,
    note,
    resolved_by,
):
    """Resolve errors by id (`resolve 12 13 --note ...`) or by filters (`--all-matching`).

    Errors of documents that are still failing are refused, and the command then exits 1.
    """
    if not ids and not all_matching:
        raise click.UsageError("name the error ids, or use filters with --all-matching")
    where = None
    if all_matching:
        if not any([organization, error_type, document, since, until, run_id]):
            raise click.UsageError(
                "--all-matching needs at least one filter (--organization, --type, ...)"
            )
        where = _filter(organization, error_type, document, "open", since, until, run_id)
    if not note.strip():
        raise click.BadParameter("the note must not be empty", param_hint="--note")
    with sync_store(db_url) as store:
        result = store.errors.resolve(ids=ids, where=where, note=note, resolved_by=resolved_by)
    click.echo(f"resolved {len(result.resolved)} error(s)" + _ids(result.resolved))
    for refusal in result.refused:
        click.echo(f"refused: {refusal.message}", err=True)
    if result.missing:
        click.echo(
            f"not open (unknown or already resolved): {', '.join(map(str, result.missing))}",
            err=True,
        )
    if result.refused or result.missing:
        sys.exit(1)


@errors.command("stats")
@filter_options("all")
@click.option("--days", default=30, show_default=True, help="Last N days (unless --since).")
@click.option("--json", "as_json", is_flag=True)
def stats_command(
    organization, error_type, document, state, since, until, run_id, db_url, days, as_json
):
    """Errors by type, and by day and type: total, open, resolved."""
    from datetime import UTC, datetime, timedelta

    if since is None and days:
        since = (datetime.now(UTC) - timedelta(days=days)).replace(tzinfo=None)
    where = _filter(organization, error_type, document, state, since, until, run_id)
    with sync_store(db_url) as store:
        rows = store.errors.statistics(where)
    by_type: dict[str, dict] = {}
    for row in rows:
        total = by_type.setdefault(
            row["error_type"], {"error_type": row["error_type"], "total": 0, "open": 0}
        )
        total["total"] += row["total"]
        total["open"] += row["open"]
    for total in by_type.values():
        total["resolved"] = total["total"] - total["open"]
    if as_json:
        echo_json({"by_type": list(by_type.values()), "by_day": rows})
        return
    if not rows:
        click.echo("no errors match")
        return
    click.echo("by type")
    echo_table(sorted(by_type.values(), key=lambda r: -r["total"]), _STATS)
    click.echo("\nby day")
    echo_table(rows, ["day", *_STATS])


_STATS = ["error_type", "total", "open", "resolved"]


@errors.command("export")
@filter_options("all")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), default="-",
    help="CSV file (default: standard output).",
)  # fmt: skip
def export_command(organization, error_type, document, state, since, until, run_id, db_url, output):
    """Every matching error as CSV (all columns; details as JSON)."""
    where = _filter(organization, error_type, document, state, since, until, run_id)
    with sync_store(db_url) as store:
        if output == "-":
            count = store.errors.export_csv(where, sys.stdout)
        else:
            with open(output, "w", newline="", encoding="utf-8") as out:
                count = store.errors.export_csv(where, out)
    click.echo(f"exported {count} error(s)", err=True)


def _ids(ids: list[int]) -> str:
    if not ids:
        return ""
    shown = ", ".join(map(str, ids[:20]))
    return f": {shown}" + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
