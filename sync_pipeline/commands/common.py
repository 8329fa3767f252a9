"""What the command groups share: the sync database, the organization check, plain tables."""

import json
from contextlib import contextmanager
from datetime import UTC, datetime

import click

DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"]

db_url_option = click.option(
    "--db-url",
    default=None,
    help="Sync database URL (default: SYNC_DATABASE_URL, else SQLite in SYNC_DATA_DIR).",
)


def organization_option(required: bool):
    return click.option(
        "--organization",
        "--org",
        "organization",
        required=required,
        help="CRM organization id (see SYNC_ORGANIZATIONS).",
    )


@contextmanager
def sync_store(db_url: str | None):
    """The sync database, migrated to the newest schema; disposed afterwards."""
    from sync_pipeline.settings import Settings
    from sync_pipeline.store.repository import SyncStore

    store = SyncStore(db_url or Settings.from_env().database_url)
    try:
        store.create_schema()
        yield store
    finally:
        store.dispose()


def check_organization(organization: str | None) -> None:
    from sync_pipeline.settings import Settings

    settings = Settings.from_env()
    if organization and settings.organizations and organization not in settings.organization_ids:
        raise click.BadParameter(
            f"unknown organization {organization!r}; see SYNC_ORGANIZATIONS",
            param_hint="--organization",
        )


def utc(moment: datetime | None) -> datetime | None:
    """A command-line time (naive: UTC) as an aware datetime."""
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def echo_table(rows: list[dict], columns: list[str], *, widths: dict[str, int] | None = None):
    """Aligned columns for a terminal; long cells are cut to `widths[column]`."""
    widths = widths or {}

    def text(row, column) -> str:
        value = row.get(column)
        if isinstance(value, datetime):
            value = value.strftime("%Y-%m-%d %H:%M:%S")
        cell = "" if value is None else str(value).replace("\n", " ")
        limit = widths.get(column)
        return cell if not limit or len(cell) <= limit else cell[: limit - 1] + "…"

    cells = [[text(row, c) for c in columns] for row in rows]
    sizes = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(sizes[i]) for i, c in enumerate(columns)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(sizes[i]) for i, v in enumerate(row)).rstrip())


def echo_json(value) -> None:
    click.echo(json.dumps(value, default=str, indent=2))
