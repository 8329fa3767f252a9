"""Start both sandbox servers (CRM and Metakocka) with seeded or saved data: the one entry point.

Why: the demo, the tests, the CLI (``sync-pipeline sandbox``) and the benchmarks all need the
same thing, "two fake outside systems on loopback with known organizations", and must not each
wire servers, seeds and persistence their own way. State persists in
``<data_dir>/sandbox_state.json`` (written atomically) so a sandbox can be stopped and resumed
with the same documents and credentials; ``reset`` reseeds.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sync_pipeline.sandbox.crm_app import create_crm_app
from sync_pipeline.sandbox.crm_ddl import DEFAULT_PROFILE
from sync_pipeline.sandbox.crm_store import DEFAULT_MAX_ROWS, CrmState
from sync_pipeline.sandbox.faults import FaultInjector
from sync_pipeline.sandbox.gc_pause import paused_gc
from sync_pipeline.sandbox.metakocka_app import create_metakocka_app
from sync_pipeline.sandbox.metakocka_store import MetakockaState
from sync_pipeline.sandbox.seed import SandboxOrganization, make_organizations, seed_sandbox
from sync_pipeline.sandbox.serve import serve_in_thread

STATE_FILE = "sandbox_state.json"
STATE_FORMAT = "sync-pipeline-sandbox/2"
__all__ = ["Sandbox", "SandboxOrganization", "start_sandbox", "serve_forever", "env_lines"]


class Sandbox:
    """Both simulators running on loopback, their states, and the organizations seeded into them.

    ``crm_url`` / ``metakocka_url`` are base URLs; the APIs live at ``crm_url + "/rest/v1"``
    and ``metakocka_url + "/rest/eshop/v1"``. Use as a context manager, or call ``stop()``.
    """

    def __init__(
        self,
        *,
        crm_state: CrmState,
        metakocka_state: MetakockaState,
        organizations: list[SandboxOrganization],
        seed_summary: dict[str, Any],
        data_dir: Path,
        persistent: bool,
        seed: int,
        host: str,
        crm_port: int,
        metakocka_port: int,
        tempdir: tempfile.TemporaryDirectory | None = None,
    ) -> None:
        self.crm_state, self.metakocka_state = crm_state, metakocka_state
        self.organizations, self.seed_summary = organizations, seed_summary
        self.data_dir, self.persistent, self._tempdir = data_dir, persistent, tempdir
        self.crm_faults, self.metakocka_faults = FaultInjector(seed), FaultInjector(seed)
        self._stopped = False
        self._servers: list[Any] = []
        try:
            self._servers.append(
                serve_in_thread(create_crm_app(crm_state, self.crm_faults), host, crm_port)
            )
            self._servers.append(
                serve_in_thread(
                    create_metakocka_app(metakocka_state, self.metakocka_faults),
                    host,
                    metakocka_port,
                )
            )
        except BaseException:
            self._stop_servers()
            raise
        self.crm_url, self.metakocka_url = self._servers[0].url, self._servers[1].url

    @property
    def crm_rest_url(self) -> str:
        return self.crm_url + "/rest/v1"

    @property
    def metakocka_api_url(self) -> str:
        return self.metakocka_url + "/rest/eshop/v1"

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    def configure_faults(self, system: str, spec: dict[str, Any]) -> None:
        """Replace the fault configuration of ``"crm"`` or ``"metakocka"`` (see faults.py)."""
        injectors = {"crm": self.crm_faults, "metakocka": self.metakocka_faults}
        if system not in injectors:
            raise ValueError(f"system must be 'crm' or 'metakocka', not {system!r}")
        injectors[system].configure(spec)

    def save(self) -> None:
        """Write both states atomically (temp file, then rename) to ``data_dir/STATE_FILE``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.data_dir, prefix=".sandbox_state.", suffix=".tmp")
        try:
            with paused_gc(), os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(
                    json.dumps(
                        {  # one dumps, not json.dump: 100k-doc saves run faster
                            "format": STATE_FORMAT,
                            "organizations": [asdict(o) for o in self.organizations],
                            "seed_summary": self.seed_summary,
                            "crm": self.crm_state.to_json(),
                            "metakocka": self.metakocka_state.to_json(),
                        },
                        ensure_ascii=False,
                        separators=(",", ":"),
                    )
                )
            os.replace(tmp, self.state_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def stop(self) -> None:
        """Save (when ``data_dir`` was given), then stop both servers. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.persistent:
                self.save()
        finally:
            self._stop_servers()
            if self._tempdir is not None:
                self._tempdir.cleanup()

    def _stop_servers(self) -> None:
        for server in self._servers:
            server.stop()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sandbox(
    data_dir: str | Path | None = None,
    *,
    documents_per_org: int = 60,
    organizations: int = 2,
    reset: bool = False,
    seed: int = 7,
    host: str = "127.0.0.1",
    crm_port: int = 0,
    metakocka_port: int = 0,
    crm_profile: str = DEFAULT_PROFILE,
    crm_max_rows: int = DEFAULT_MAX_ROWS,
    crm_setup_installed: bool = False,
) -> Sandbox:
    """Start both servers, resuming ``<data_dir>/sandbox_state.json`` unless ``reset``.

    A saved state wins over ``documents_per_org``/``organizations``/``seed`` and the CRM options
    (it is resumed as it was). ``data_dir=None``: a throwaway temp dir, nothing is saved on stop.
    Port 0 picks a free port. The CRM options: its schema profile (``sm60`` or ``fixed10``),
    Supabase's ``max-rows`` and whether ``docs/crm-setup.sql`` is installed (``crm_store``).
    """
    tempdir = None
    if data_dir is None:
        tempdir = tempfile.TemporaryDirectory(prefix="sync-pipeline-sandbox-")
        path = Path(tempdir.name)
    else:
        path = Path(data_dir)
    state_file = path / STATE_FILE
    if state_file.exists() and not reset:
        crm, mk, orgs, summary = _load(state_file)
    else:  # a fresh seed is not saved until stop(): the same seed rebuilds the same data
        state_file.unlink(missing_ok=True)
        orgs = make_organizations(organizations, seed)
        crm = CrmState(
            (o.crm_api_key for o in orgs),
            profile=crm_profile,
            max_rows=crm_max_rows,
            setup_installed=crm_setup_installed,
        )
        mk = MetakockaState({o.metakocka_company_id: o.metakocka_secret_key for o in orgs})
        summary = seed_sandbox(crm, mk, orgs, documents_per_org, seed)
    sandbox = Sandbox(
        crm_state=crm,
        metakocka_state=mk,
        organizations=orgs,
        seed_summary=summary,
        data_dir=path,
        persistent=data_dir is not None,
        seed=seed,
        host=host,
        crm_port=crm_port,
        metakocka_port=metakocka_port,
        tempdir=tempdir,
    )
    return sandbox


def env_values(sandbox: Sandbox) -> dict[str, str]:
    """The environment variables that point the pipeline at this sandbox.

    The names are the ones ``sync_pipeline/settings.py`` and the resources read (spelled out
    here, not imported: the sandbox imports nothing from the pipeline). Every CRM key is a
    service-role key that sees every organization, so ``CRM_API_KEY`` takes the first one.
    """
    orgs = sandbox.organizations
    return {
        "CRM_BASE_URL": sandbox.crm_url,
        "CRM_API_KEY": orgs[0].crm_api_key if orgs else "",
        "METAKOCKA_BASE_URL": sandbox.metakocka_url,
        "METAKOCKA_SECRET_KEYS": json.dumps(
            {o.metakocka_company_id: o.metakocka_secret_key for o in orgs}
        ),
        "SYNC_ORGANIZATIONS": json.dumps(
            [
                {
                    "id": o.id,
                    "name": o.name,
                    "metakocka_company_id": o.metakocka_company_id,
                    "crm_integration_user_id": o.integration_user_id,
                    "service_product_code": o.service_product_code,
                }
                for o in orgs
            ],
            ensure_ascii=False,
        ),
    }


def env_lines(sandbox: Sandbox) -> list[str]:
    """Shell lines (``KEY='value'``) of `env_values`, then one comment line per organization."""
    orgs = sandbox.organizations
    values = env_values(sandbox)
    lines = [f"{key}={shlex.quote(value)}" for key, value in values.items()]
    for org in orgs:
        lines.append(
            f"# {org.name}: organization {org.id}, CRM key {org.crm_api_key}, "
            f"Metakocka company {org.metakocka_company_id} / "
            f"{org.metakocka_secret_key}"
        )
    return lines


def serve_forever(
    data_dir: str | Path | None = ".sandbox",
    *,
    documents_per_org: int = 60,
    organizations: int = 2,
    reset: bool = False,
    seed: int = 7,
    host: str = "127.0.0.1",
    crm_port: int = 54321,
    metakocka_port: int = 54331,
    out: Any = None,
    stop: threading.Event | None = None,
    env_file: str | Path | None = None,
    crm_profile: str = DEFAULT_PROFILE,
    crm_max_rows: int = DEFAULT_MAX_ROWS,
    crm_setup_installed: bool = False,
) -> None:
    """Foreground sandbox for ``sync-pipeline sandbox``: print URLs and credentials, serve until
    Ctrl-C, SIGTERM or ``stop`` is set, then save and exit. The keys are sandbox-only ones
    (drawn from the seed), so printing them is the point."""
    sandbox = start_sandbox(
        data_dir,
        documents_per_org=documents_per_org,
        organizations=organizations,
        reset=reset,
        seed=seed,
        host=host,
        crm_port=crm_port,
        metakocka_port=metakocka_port,
        crm_profile=crm_profile,
        crm_max_rows=crm_max_rows,
        crm_setup_installed=crm_setup_installed,
    )
    done = stop or threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    crm = sandbox.crm_state
    try:
        write = (out or sys.stdout).write
        write(
            f"Sandbox CRM (PostgREST) at {sandbox.crm_rest_url}: schema {crm.profile}, "
            f"max-rows {crm.max_rows}, crm-setup.sql "
            f"{'installed' if crm.setup_installed else 'not installed'}\n"
            f"Sandbox Metakocka at {sandbox.metakocka_api_url}\n"
            f"State file: {sandbox.state_path if sandbox.persistent else '(not saved)'}\n\n"
        )
        lines = env_lines(sandbox)
        write("\n".join(lines) + "\n\nPress Ctrl-C to save and stop.\n")
        if env_file is not None:
            Path(env_file).write_text("\n".join(lines) + "\n", encoding="utf-8")
            write(f"Wrote {env_file} (dagster dev reads .env in its working directory).\n")
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _load(path: Path) -> tuple[CrmState, MetakockaState, list[SandboxOrganization], dict]:
    with paused_gc():
        with path.open(encoding="utf-8") as fh:
            blob = json.load(fh)
        if blob.get("format") != STATE_FORMAT:
            raise ValueError(
                f"{path} is not a sandbox state file ({blob.get('format')!r}); "
                "start with reset=True to reseed"
            )
        orgs = [SandboxOrganization(**o) for o in blob["organizations"]]
        return (
            CrmState.from_json(blob["crm"]),
            MetakockaState.from_json(blob["metakocka"]),
            orgs,
            blob.get("seed_summary") or {},
        )
