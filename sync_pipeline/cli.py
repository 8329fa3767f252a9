"""The `sync-pipeline` command: demo, sandbox and the operator's everyday commands."""

from pathlib import Path

import click

from sync_pipeline.cli_migrate import migrate
from sync_pipeline.cli_on_demand import register as register_on_demand_commands
from sync_pipeline.commands.conflicts import conflicts
from sync_pipeline.commands.errors import errors
from sync_pipeline.commands.preflight import preflight
from sync_pipeline.settings import DEFAULT_DATA_DIR


def sandbox_crm_options(command):
    """The sandbox CRM's options: its schema, Supabase's max-rows, docs/crm-setup.sql or not (a
    sandbox resumed from its saved state keeps the options it was seeded with)."""
    options = [
        click.option(
            "--crm-profile",
            type=click.Choice(["sm60", "fixed10"]),
            default="sm60",
            show_default=True,
            help="The CRM's published schema variant (docs/crm.md).",
        ),
        click.option(
            "--crm-max-rows", default=1000, show_default=True, help="Supabase's max-rows."
        ),
        click.option(
            "--crm-setup/--no-crm-setup",
            default=False,
            show_default=True,
            help="Whether docs/crm-setup.sql (the updated_at triggers) is installed in the CRM.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group()
def main() -> None:
    """Two-way sync of sales documents between Fresh AI CRM and Metakocka."""


@main.command()
@click.option("--db-url", default=None, help="Sync database URL (default: SQLite in the data dir).")
@click.option(
    "--documents", default=60, show_default=True, help="Seeded documents per organization."
)
@click.option("--data-dir", default=DEFAULT_DATA_DIR, show_default=True, type=click.Path())
@click.option("--reset", is_flag=True, help="Start the sandbox over from freshly seeded data.")
@sandbox_crm_options
def demo(
    db_url: str | None,
    documents: int,
    data_dir: str,
    reset: bool,
    crm_profile: str,
    crm_max_rows: int,
    crm_setup: bool,
) -> None:
    """Start the sandbox, reconcile every sandbox organization, print a summary."""
    from sync_pipeline.demo import run_demo

    code = run_demo(
        data_dir=Path(data_dir),
        database_url=db_url,
        documents=documents,
        reset=reset,
        echo=click.echo,
        crm_options={
            "crm_profile": crm_profile,
            "crm_max_rows": crm_max_rows,
            "crm_setup_installed": crm_setup,
        },
    )
    raise SystemExit(code)


@main.command()
@click.option("--data-dir", default=DEFAULT_DATA_DIR, show_default=True, type=click.Path())
@click.option(
    "--documents", default=60, show_default=True, help="Seeded documents per organization."
)
@click.option("--crm-port", default=8701, show_default=True)
@click.option("--metakocka-port", default=8702, show_default=True)
@click.option("--reset", is_flag=True, help="Start over from freshly seeded data.")
@click.option(
    "--env-file",
    default=None,
    type=click.Path(),
    help="Also write the pipeline's environment variables here (e.g. .env for dagster dev).",
)
@sandbox_crm_options
def sandbox(
    data_dir: str,
    documents: int,
    crm_port: int,
    metakocka_port: int,
    reset: bool,
    env_file: str | None,
    crm_profile: str,
    crm_max_rows: int,
    crm_setup: bool,
) -> None:
    """Serve the sandbox CRM and Metakocka in the foreground (Ctrl-C saves and stops)."""
    from sync_pipeline.sandbox.runner import serve_forever

    serve_forever(
        Path(data_dir) / "sandbox",
        documents_per_org=documents,
        reset=reset,
        crm_port=crm_port,
        metakocka_port=metakocka_port,
        env_file=env_file,
        crm_profile=crm_profile,
        crm_max_rows=crm_max_rows,
        crm_setup_installed=crm_setup,
    )


main.add_command(migrate)
main.add_command(errors)
main.add_command(conflicts)
main.add_command(preflight)
register_on_demand_commands(main)

if __name__ == "__main__":
    main()
