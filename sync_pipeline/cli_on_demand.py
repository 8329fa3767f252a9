"""`sync-pipeline api | request | status | unsynced`: the on-demand syncs from a terminal.

`request` writes to the same queue as the HTTP API (the request sensor launches the run);
`status` and `unsynced` read the sync database (and, with `--remote`, both systems).
Environment: the code location's variables (`SYNC_DATABASE_URL`, `SYNC_ORGANIZATIONS`, the CRM and
Metakocka URLs and keys) and, for `api`, `SYNC_API_TOKENS` and the Supabase keys (api/config.py).
"""

import json

import click


def _settings():
    from sync_pipeline.settings import Settings

    return Settings.from_env()


def _store(db_url: str | None):
    from sync_pipeline.store.repository import SyncStore

    store = SyncStore(db_url or _settings().database_url)
    store.create_schema()
    return store


def _check_org(organization: str) -> None:
    settings = _settings()
    if settings.organizations and organization not in settings.organization_ids:
        raise click.BadParameter(
            f"unknown organization {organization!r}; see SYNC_ORGANIZATIONS", param_hint="--org"
        )


def _echo_rows(rows: list[dict], columns: list[str], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2))
        return
    click.echo("\t".join(columns))
    for row in rows:
        click.echo("\t".join("" if row.get(c) is None else str(row.get(c)) for c in columns))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8710, show_default=True, type=int)
def api(host: str, port: int) -> None:
    """Serve the sync API (OpenAPI at /openapi.json, docs at /docs)."""
    import uvicorn

    from sync_pipeline.api.app import create_app
    from sync_pipeline.api.config import ApiConfig

    uvicorn.run(create_app(ApiConfig.from_env()), host=host, port=port)


@click.command()
@click.option("--org", "organization", required=True, help="CRM organization id.")
@click.option(
    "--direction",
    type=click.Choice(["crm_to_metakocka", "metakocka_to_crm", "both"]),
    default="crm_to_metakocka",
    show_default=True,
)
@click.option("--all-unsynced", is_flag=True, help="Every unsynced document of the source side.")
@click.option("--requested-by", default="cli", show_default=True)
@click.option("--idempotency-key", default=None, help="Posting the same key again is a no-op.")
@click.option("--db-url", default=None, help="Sync database URL (default: SYNC_DATABASE_URL).")
@click.argument("document_ids", nargs=-1)
def request(
    organization: str,
    direction: str,
    all_unsynced: bool,
    requested_by: str,
    idempotency_key: str | None,
    db_url: str | None,
    document_ids: tuple[str, ...],
) -> None:
    """Queue a sync of DOCUMENT_IDS (CRM ids, or Metakocka ids for metakocka_to_crm)."""
    from sync_pipeline.domain.sync_request import split_document_ids

    _check_org(organization)
    try:
        crm_ids, mk_ids = split_document_ids(direction, document_ids)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="DOCUMENT_IDS") from None
    if not (crm_ids or mk_ids or all_unsynced):
        raise click.UsageError("name document ids, or pass --all-unsynced")
    queue = _store(db_url).requests
    request, created = queue.enqueue(
        organization,
        direction,
        [*crm_ids, *mk_ids],
        all_unsynced=all_unsynced,
        requested_by=requested_by,
        idempotency_key=idempotency_key,
    )
    note = "queued" if created else f"already requested ({request.state})"
    click.echo(f"{request.id}\t{note}")


@click.command()
@click.option("--org", "organization", required=True, help="CRM organization id.")
@click.option("--document", "document_id", default=None, help="A CRM or Metakocka id.")
@click.option("--request", "request_id", default=None, help="A sync request id.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--db-url", default=None)
def status(
    organization: str,
    document_id: str | None,
    request_id: str | None,
    as_json: bool,
    db_url: str | None,
) -> None:
    """A document's sync status, a request's state, or the organization's counts."""
    store = _store(db_url)
    queue = store.requests
    if request_id:
        found = queue.get(request_id, organization)
        if found is None:
            raise click.ClickException(f"no request {request_id} in organization {organization}")
        click.echo(json.dumps(found.as_json(), indent=2))
        return
    if document_id:
        row = store.status.of_document(organization, document_id)
        if row is None:
            raise click.ClickException(f"{document_id} has no sync status (never synced?)")
        click.echo(json.dumps(row, default=str, indent=2))
        return
    counts = {
        "documents": store.status.counts(organization),
        "requests": queue.counts(organization),
    }
    if as_json:
        click.echo(json.dumps(counts, indent=2))
        return
    for kind, by_state in counts.items():
        click.echo(f"{kind}:")
        for state, n in sorted(by_state.items()):
            click.echo(f"  {state:<22}{n:>8}")


@click.command()
@click.option("--org", "organization", required=True, help="CRM organization id.")
@click.option("--remote", is_flag=True, help="Also read both systems for never-synced documents.")
@click.option("--limit", default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--db-url", default=None)
def unsynced(
    organization: str, remote: bool, limit: int, as_json: bool, db_url: str | None
) -> None:
    """Documents of the organization that are not in sync, with the reason."""
    store = _store(db_url)
    rows = [
        {
            "crm_document_id": r["crm_document_id"],
            "metakocka_id": r["metakocka_id"],
            "document_type": r["document_type"],
            "status": r["status"],
            "reason": r["last_error"],
        }
        for r in store.status.not_synced(organization, limit=limit)
    ]
    if remote:
        rows += _remote_unsynced(store, organization)
    columns = ["crm_document_id", "metakocka_id", "document_type", "status", "reason"]
    _echo_rows(rows[:limit], columns, as_json)


def _remote_unsynced(store, organization: str) -> list[dict]:
    """Documents of either system whose content is not on the other side yet (no status row)."""
    from sync_pipeline.adapters.errors import SyncError
    from sync_pipeline.resources import resources_with_values
    from sync_pipeline.sync.credentials import metakocka_credentials
    from sync_pipeline.sync.extract import Quarantined, extract_crm, extract_metakocka
    from sync_pipeline.sync.targeted import unsynced_documents

    settings = _settings()
    org = settings.organization(organization)
    crm_resource, metakocka_resource = resources_with_values(settings)
    crm = crm_resource.client()
    try:
        found = metakocka_credentials(org, env_secrets=settings.metakocka_secrets(), crm=crm)
    except (SyncError, KeyError) as exc:  # a readable line, not a traceback
        raise click.ClickException(str(exc)) from None
    mk = metakocka_resource.client(found)
    links = store.links.frame(organization)
    rows = []
    crm_side = extract_crm(crm, organization)
    mk_side = extract_metakocka(mk, organization, precision=crm_side.precision)
    for extraction in (crm_side, mk_side):
        for doc in unsynced_documents(extraction, links):
            quarantined = isinstance(doc, Quarantined)
            rows.append(
                {
                    "crm_document_id": doc.crm_document_id if extraction.side == "crm" else None,
                    "metakocka_id": doc.metakocka_id,
                    "document_type": doc.document_type,
                    "status": f"unsynced in {extraction.side}",
                    "reason": "; ".join(doc.reasons) if quarantined else "content not synced",
                }
            )
    return rows


COMMANDS = (api, request, status, unsynced)


def register(group: click.Group) -> None:
    for command in COMMANDS:
        group.add_command(command)
