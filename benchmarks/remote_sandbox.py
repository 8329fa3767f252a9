"""The sandbox in a child process, so the benchmark process measures the pipeline's CPU alone.

The child runs `start_sandbox(None, ...)` (no persistence), optionally seeds every organization
with documents that are already in sync on both sides (`in_sync=True`: each CRM document has its
Metakocka twin carrying the CRM reference in `buyer_order`, as the old integration left them), and
then serves commands over a pipe: change documents on either side as a user would (directly on the
in-memory states, which is instant), report its own CPU time, and stop. Faults and call counters go
through the sandbox's own HTTP admin endpoints (`/_sandbox/faults`, `/_sandbox/stats`).
"""

import multiprocessing
import random
import resource
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import requests

SYSTEMS = ("crm", "metakocka")


@dataclass(frozen=True)
class RemoteOrganization:
    id: str
    name: str
    crm_api_key: str
    metakocka_company_id: str
    metakocka_secret_key: str
    integration_user_id: str
    service_product_code: str


class RemoteSandbox:
    """Handle on a sandbox running in a child process; use as a context manager."""

    def __init__(self, documents_per_org: int, *, organizations: int = 1, in_sync: bool = False):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(
            target=_serve,
            args=(child, documents_per_org, organizations, in_sync),
            name="benchmark-sandbox",
            daemon=True,
        )
        started = time.perf_counter()
        self._process.start()
        child.close()
        info = self._receive()
        self.seed_seconds = time.perf_counter() - started
        self.crm_url, self.metakocka_url = info["crm_url"], info["metakocka_url"]
        self.organizations = [RemoteOrganization(**o) for o in info["organizations"]]
        self.pid = self._process.pid

    # -- commands -----------------------------------------------------------------------------
    def _receive(self):
        status, value = self._conn.recv()
        if status == "error":
            raise RuntimeError(f"benchmark sandbox failed: {value}")
        return value

    def _command(self, name: str, **kwargs):
        self._conn.send((name, kwargs))
        return self._receive()

    def change_documents(
        self,
        organization: int = 0,
        *,
        crm_edits: int = 0,
        crm_new: int = 0,
        metakocka_edits: int = 0,
        metakocka_new: int = 0,
    ) -> dict:
        """Edit linked documents and add new ones on each side, as users would."""
        return self._command(
            "change",
            organization=organization,
            crm_edits=crm_edits,
            crm_new=crm_new,
            metakocka_edits=metakocka_edits,
            metakocka_new=metakocka_new,
        )

    def cpu_seconds(self) -> float:
        """User + system CPU time the sandbox process has used so far."""
        return self._command("cpu")

    def configure_faults(self, system: str, spec: dict) -> None:
        response = requests.post(self._url(system, "faults"), json=spec, timeout=30)
        response.raise_for_status()

    def install_crm_setup(self) -> None:
        """Run docs/crm-setup.sql in the sandbox CRM (its triggers keep updated_at truthful):
        from then on incremental runs read only the CRM documents that changed."""
        response = requests.post(
            self._url("crm", "config"), json={"setup_installed": True}, timeout=30
        )
        response.raise_for_status()

    def reset_stats(self) -> None:
        for system in SYSTEMS:
            requests.post(self._url(system, "stats/reset"), timeout=30).raise_for_status()

    def stats(self) -> dict[str, dict]:
        return {
            system: requests.get(self._url(system, "stats"), timeout=30).json()
            for system in SYSTEMS
        }

    def _url(self, system: str, name: str) -> str:
        base = self.crm_url if system == "crm" else self.metakocka_url
        return f"{base}/_sandbox/{name}"

    def stop(self) -> None:
        if self._process.is_alive():
            try:
                self._command("stop")
            except (EOFError, BrokenPipeError, RuntimeError):
                pass
            self._process.join(15)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)

    def __enter__(self) -> "RemoteSandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def api_calls(stats: dict[str, dict]) -> dict[str, int]:
    """Calls and successful writes per system from a `/_sandbox/stats` snapshot of each."""
    crm, mk = stats["crm"], stats["metakocka"]
    return {
        "crm_calls": sum(crm["calls"].values()),
        "crm_writes": crm["writes"],
        "metakocka_calls": mk["calls_total"],
        "metakocka_searches": sum(mk["calls"].get("search", {}).values()),
        "metakocka_writes": mk["writes_total"],
    }


# -- the child process --------------------------------------------------------------------------


def _serve(conn, documents_per_org: int, organizations: int, in_sync: bool) -> None:
    from sync_pipeline.sandbox.runner import start_sandbox

    try:
        sandbox = start_sandbox(
            None,
            documents_per_org=0 if in_sync else documents_per_org,
            organizations=organizations,
        )
        if in_sync:
            _seed_in_sync(sandbox, documents_per_org)
        conn.send(
            (
                "ok",
                {
                    "crm_url": sandbox.crm_url,
                    "metakocka_url": sandbox.metakocka_url,
                    "organizations": [vars(o) for o in sandbox.organizations],
                },
            )
        )
    except BaseException as exc:  # report, then exit: the parent raises
        conn.send(("error", repr(exc)))
        return
    changers: dict[int, _Changer] = {}
    try:
        while True:
            name, kwargs = conn.recv()
            try:
                if name == "stop":
                    conn.send(("ok", None))
                    return
                if name == "cpu":
                    usage = resource.getrusage(resource.RUSAGE_SELF)
                    conn.send(("ok", usage.ru_utime + usage.ru_stime))
                elif name == "change":
                    index = kwargs.pop("organization")
                    changer = changers.setdefault(index, _Changer(sandbox, index))
                    conn.send(("ok", changer.change(**kwargs)))
                else:
                    conn.send(("error", f"unknown command {name!r}"))
            except Exception as exc:
                conn.send(("error", repr(exc)))
    except EOFError:
        pass
    finally:
        sandbox.stop()


def _seed_in_sync(sandbox, documents_per_org: int) -> None:
    """Every organization gets `documents_per_org` documents held identically by both systems
    (the sandbox seeded each organization's catalog, and no documents, from the same seed)."""
    from sync_pipeline.sandbox.gc_pause import paused_gc
    from sync_pipeline.sandbox.seed import metakocka_link, organization_factory
    from sync_pipeline.sandbox.seed_documents import later

    crm, mk = sandbox.crm_state, sandbox.metakocka_state
    with paused_gc():
        for org in sandbox.organizations:
            factory = organization_factory(org, sandbox.seed_summary["seed"])
            for _ in range(documents_per_org):
                doc = factory.document()
                payload = factory.to_metakocka(doc, buyer_order=metakocka_link(doc.id))
                moment = later(doc.updated_at, 1, factory.random)
                factory.put_in_crm(crm, doc)
                mk.insert_document(
                    org.metakocka_company_id, payload, last_change=datetime.fromisoformat(moment)
                )


class _Changer:
    """Changes one organization's documents the way users do, reproducibly."""

    def __init__(self, sandbox, index: int):
        from sync_pipeline.sandbox.seed import organization_factory

        self.sandbox = sandbox
        self.org = sandbox.organizations[index]
        self.factory = organization_factory(self.org, sandbox.seed_summary["seed"])
        self.factory.rng.seed(f"changes:{self.org.id}")  # new documents, not the seeded ones
        self.rng = random.Random(f"pick:{self.org.id}")
        self.round = 0

    def change(self, *, crm_edits: int, crm_new: int, metakocka_edits: int, metakocka_new: int):
        self.round += 1
        crm, mk = self.sandbox.crm_state, self.sandbox.metakocka_state
        company = self.org.metakocka_company_id
        note = f"Sprememba {self.round}."
        # Edit documents both systems hold (CRM documents with a Metakocka twin), each once.
        linked = [d for d in mk.documents(company) if d.get("buyer_order")]
        picked = self.rng.sample(linked, min(len(linked), crm_edits + metakocka_edits))
        for doc in picked[:crm_edits]:
            crm_id = doc["title"]
            current = crm.document(crm_id)
            crm.edit_document(crm_id, {"notes": f"{current.get('notes') or ''} {note}".strip()})
        for doc in picked[crm_edits:]:
            # Metakocka's users change what Metakocka owns (docs/field-ownership.md): the status.
            # By its register label (cancelled in the CRM, or back to shipped: sent).
            status = "Poslano" if doc.get("status_desc") == "canceled" else "Preklicano"
            mk.edit_document(company, doc["mk_id"], {"status_code": status})
        from sync_pipeline.sandbox.crm_values import format_timestamp

        now = format_timestamp(datetime.now(UTC))  # as the CRM prints it (CrmState.load)
        for _ in range(crm_new):
            self.factory.put_in_crm(
                crm, replace(self.factory.document(), created_at=now, updated_at=now)
            )
        for _ in range(metakocka_new):
            doc = self.factory.born_in_metakocka(self.factory.document())
            mk.insert_document(company, self.factory.to_metakocka(doc))
        return {
            "crm_edits": len(picked[:crm_edits]),
            "metakocka_edits": len(picked[crm_edits:]),
            "crm_new": crm_new,
            "metakocka_new": metakocka_new,
        }
