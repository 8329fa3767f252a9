"""`sync-pipeline preflight`: before the first run, what it will do and what will stop it.

Read-only against the configured CRM and Metakocka (`sync_pipeline/preflight/`), with the code
location's environment (`SYNC_ORGANIZATIONS`, `CRM_*`, `METAKOCKA_*`); the sync database is not
opened. Exit code 1 when any organization has a blocker (or the settings are missing), else 0.
"""

import json
from pathlib import Path

import click

from sync_pipeline.commands.common import organization_option


@click.command()
@organization_option(required=False)
@click.option(
    "--json",
    "json_file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write every finding, with its figures, to FILE as JSON.",
)
def preflight(organization: str | None, json_file: Path | None) -> None:
    """Read-only checks of the CRM, Metakocka and the first run's plan, per organization: a
    table of ok / warn / blocker with the fix for each. Exit code 1 on any blocker."""
    from sync_pipeline.preflight.render import report_table, reports_json
    from sync_pipeline.preflight.run import READ_ONLY_NOTICE, preflight_organization
    from sync_pipeline.resources import resources_with_values
    from sync_pipeline.settings import Settings

    click.echo(READ_ONLY_NOTICE)
    settings = Settings.from_env()
    organizations = [o for o in settings.organizations if organization in (None, o.id, o.key)]
    if not organizations:
        which = f"the organization {organization!r}" if organization else "any organization"
        raise click.ClickException(f"SYNC_ORGANIZATIONS does not list {which}")
    required = {
        "CRM_BASE_URL": settings.crm_base_url,
        "CRM_API_KEY": settings.crm_api_key.get_secret_value(),
        "METAKOCKA_BASE_URL": settings.metakocka_base_url,
        "METAKOCKA_SECRET_KEYS": settings.metakocka_secret_keys.get_secret_value(),
    }
    missing = [name for name, value in required.items() if not value]
    if missing:
        raise click.ClickException(f"not set: {', '.join(missing)} (README, Settings)")
    try:
        settings.metakocka_secrets()
    except ValueError:
        raise click.ClickException(
            'METAKOCKA_SECRET_KEYS is not JSON: {"<company id>": "<secret key>"}'
        ) from None
    crm, metakocka = resources_with_values(settings)
    click.echo(f"CRM {crm.base_url}; Metakocka {metakocka.base_url}")
    reports = []
    for org in organizations:
        report = preflight_organization(org, crm, metakocka)
        reports.append(report)
        click.echo("")
        click.echo(report_table(report))
    if json_file is not None:
        document = reports_json(reports, crm_url=crm.base_url, metakocka_url=metakocka.base_url)
        json_file.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    blocked = [r.name for r in reports if r.count("blocker")]
    click.echo("")
    if blocked:
        click.echo(f"Blocked (fix the blockers before the first run): {', '.join(blocked)}")
        raise SystemExit(1)
    click.echo("No blocker: the first run can start.")
