"""`sync-pipeline conflicts list | resolve`: documents held back because both sides changed them.

`resolve` stores which side wins; the next reconciliation of the organization writes that side's
content to the other and the document is `synced` again. The pick is used once.
"""

import click

from sync_pipeline.commands.common import (
    check_organization,
    db_url_option,
    echo_json,
    organization_option,
    sync_store,
)
from sync_pipeline.domain.policies import WINNER_CRM, WINNERS


@click.group()
def conflicts() -> None:
    """List documents in conflict and pick the side that wins."""


@conflicts.command("list")
@organization_option(required=True)
@db_url_option
@click.option("--json", "as_json", is_flag=True, help="As JSON, with every difference.")
@click.option("--fields", default=10, show_default=True, help="Differences shown per document.")
def list_command(organization, db_url, as_json, fields):
    """The organization's documents in conflict, with how the two versions differ."""
    from dataclasses import asdict

    check_organization(organization)
    with sync_store(db_url) as store:
        views = store.resolutions.conflicts(organization)
    if as_json:
        echo_json([asdict(v) for v in views])
        return
    if not views:
        click.echo("no conflicts")
        return
    for view in views:
        numbers = " / ".join(filter(None, (view.crm_document_number, view.metakocka_count_code)))
        click.echo(
            f"{view.document_type or 'document'} {numbers or ''}  "
            f"CRM {view.crm_document_id or '-'}  Metakocka {view.metakocka_id or '-'}"
        )
        click.echo(f"  why: {view.reason}")
        if view.since:
            click.echo(f"  since: {view.since:%Y-%m-%d %H:%M} UTC")
        if view.pending_winner:
            click.echo(f"  resolved: {view.pending_winner} wins at the next reconciliation")
        for diff in view.differences[:fields]:
            click.echo(f"  {diff['field']}: CRM {diff['crm']!r} | Metakocka {diff['metakocka']!r}")
        if len(view.differences) > fields:
            click.echo(f"  … and {len(view.differences) - fields} more difference(s)")
    click.echo(f"{len(views)} conflict(s)")


@conflicts.command("resolve")
@organization_option(required=True)
@click.option("--document", required=True, help="The document's CRM id or Metakocka mk_id.")
@click.option("--winner", required=True, type=click.Choice(WINNERS), help="The side that wins.")
@click.option("--note", default=None, help="Why (kept with the resolution).")
@click.option("--by", "resolved_by", default=None, help="Who decides (default: $USER).")
@db_url_option
def resolve_command(organization, document, winner, note, resolved_by, db_url):
    """Pick the winning side of one conflict; the next reconciliation carries it out."""
    import getpass

    from sync_pipeline.store.resolutions import ResolutionRefused

    check_organization(organization)
    try:
        with sync_store(db_url) as store:
            resolution = store.resolutions.resolve(
                organization,
                document,
                winner,
                resolved_by=resolved_by or f"cli:{getpass.getuser()}",
                note=note,
            )
    except ResolutionRefused as exc:
        raise click.ClickException(str(exc)) from None
    source, target = ("CRM", "Metakocka") if winner == WINNER_CRM else ("Metakocka", "CRM")
    click.echo(
        f"resolved: the next reconciliation writes the {source} version of CRM document "
        f"{resolution.crm_document_id} / Metakocka {resolution.metakocka_id} to the {target}"
    )
