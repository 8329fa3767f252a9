"""Fault lab: run the nightly reconciliation against a misbehaving sandbox and audit the result.

Used by the fault, crash and concurrency tests and by `benchmarks/fault_matrix.py` (which puts the
repository root on its path to import it), so the claims "no duplicates, nothing lost" are checked
the same way everywhere. It lives with the tests: a harness, not part of the product.

- the run goes through the production `Definitions` (`build_definitions`), with resources that
  only swap numbers (short timeouts, a small retry budget, a short claim TTL) and keep reading
  every secret from the environment by name (`EnvVar`), as a deployment does;
- the audit reads the sandbox's OWN stores (not the pipeline's tables) to count duplicates by
  external id: Metakocka documents sharing a `buyer_order`, CRM documents sharing a number (a
  Metakocka-born document is numbered with its `count_code`); and it counts a document as lost
  when it is valid, not synced, and has no open sync_error_log row that names it or its
  organization. A Metakocka credit note is not lost when its sync_status says `no_crm_type`
  (the CRM has no type for it: it is reported, never copied).
"""

import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from sync_pipeline.definitions import build_definitions, build_resources
from sync_pipeline.demo import sandbox_environment
from sync_pipeline.domain.document import (
    crm_id_for_metakocka_document,
    crm_id_to_external_ref,
    external_ref_to_crm_id,
)
from sync_pipeline.jobs import NIGHTLY_JOB_NAME, partition_key_of
from sync_pipeline.resources import (
    CrmResource,
    MetakockaResource,
    RetryConfig,
    SyncStoreResource,
)
from sync_pipeline.runs import TAG_REQUESTED_BY
from sync_pipeline.sandbox.runner import start_sandbox
from sync_pipeline.settings import Settings, organizations_to_json
from sync_pipeline.store.engine import make_engine

# -- the fault matrix ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultCase:
    """One row of the matrix: the sandbox rules per system and the error_type they must log."""

    name: str
    rules: dict[str, list[dict]]
    error_type: str


def fault_cases(rate: float, *, cap: int | None = None, delay_s: float = 1.5) -> list[FaultCase]:
    """Every fault kind of the issue, at `rate` per matching call (at most `cap` firings per rule).

    Transport faults hit every endpoint of both systems; `timeout_after_commit` hits the writes
    (it commits, then answers too late); `slow` stalls any call for `delay_s` before answering,
    longer than the client timeouts `lab_resources` sets.
    """

    def rule(fault: str, endpoints: list[str] | None = None, **extra) -> dict:
        return {"fault": fault, "rate": rate, "count": cap, "endpoints": endpoints, **extra}

    # The CRM gets a few calls per hundred documents (whole documents are written in batches,
    # sync/export/to_crm.py), so at the same rate its faults would hardly ever fire: it gets
    # a higher one.
    crm_rate = min(1.0, 4 * rate)

    def crm_rule(fault: str, endpoints: list[str] | None = None, **extra) -> dict:
        return {**rule(fault, endpoints, **extra), "rate": crm_rate}

    writes_mk = ["put_document"]
    writes_crm = ["POST sales_documents", "POST sales_document_items"]
    return [
        FaultCase(
            "error_5xx_html",
            {"metakocka": [rule("error_5xx_html")], "crm": [crm_rule("error_5xx_html")]},
            "transient",
        ),
        FaultCase("opr_code_1", {"metakocka": [rule("opr_code_1")]}, "transient"),
        FaultCase("opr_code_5", {"metakocka": [rule("opr_code_5")]}, "rate_limited"),
        FaultCase(
            "rate_limit_429",
            {"crm": [crm_rule("rate_limit_429", retry_after_s=0.2)]},
            "rate_limited",
        ),
        FaultCase(
            "timeout_after_commit",
            {
                "metakocka": [rule("timeout_after_commit", writes_mk, delay_s=delay_s)],
                "crm": [crm_rule("timeout_after_commit", writes_crm, delay_s=delay_s)],
            },
            "transient",
        ),
        FaultCase(
            "connection_reset",
            {"metakocka": [rule("connection_reset")], "crm": [crm_rule("connection_reset")]},
            "transient",
        ),
        FaultCase(
            "malformed_body",
            {"metakocka": [rule("malformed_body")], "crm": [crm_rule("malformed_body")]},
            "transient",
        ),
        FaultCase(
            "slow",
            {
                "metakocka": [rule("slow", delay_s=delay_s)],
                "crm": [crm_rule("slow", delay_s=delay_s)],
            },
            "transient",
        ),
    ]


def configure_case(sandbox, case: FaultCase | None, seed: int = 1) -> None:
    """Apply a case's rules to the sandbox (no case: clear every fault)."""
    for system in ("crm", "metakocka"):
        rules = case.rules.get(system, []) if case else []
        sandbox.configure_faults(system, {"seed": seed, "rules": rules})


# -- running the nightly job --------------------------------------------------------------------


@dataclass(frozen=True)
class LabConfig:
    """The numbers a lab run swaps in (everything else is production configuration)."""

    timeout_s: float = 1.0
    create_settle_s: float = 2.0
    claim_ttl_s: float = 8.0
    max_attempts: int = 5
    initial_wait_s: float = 0.05
    max_wait_s: float = 0.5
    max_retry_after_s: float = 2.0


def lab_resources(
    settings: Settings, config: LabConfig = LabConfig(), environment: dict | None = None
) -> dict:
    """Resources with short timeouts and waits.

    URLs and secrets come from `EnvVar`s, as in a deployment, unless `environment` is given: then
    its values are used directly, so several labs with different sandboxes can run in one process
    at once (the process environment is global)."""

    def value(name: str):
        return environment[name] if environment is not None else dg.EnvVar(name)

    retry = RetryConfig(
        max_attempts=config.max_attempts,
        initial_wait_s=config.initial_wait_s,
        max_wait_s=config.max_wait_s,
        max_retry_after_s=config.max_retry_after_s,
    )
    return {
        "crm": CrmResource(
            base_url=value("CRM_BASE_URL"),
            api_key=value("CRM_API_KEY"),
            organizations_json=organizations_to_json(settings.organizations),
            timeout_s=config.timeout_s,
            connect_timeout_s=config.timeout_s,
            retry=retry,
        ),
        "metakocka": MetakockaResource(
            base_url=value("METAKOCKA_BASE_URL"),
            secret_keys=value("METAKOCKA_SECRET_KEYS"),
            read_timeout_s=config.timeout_s,
            write_timeout_s=config.timeout_s,
            connect_timeout_s=config.timeout_s,
            create_settle_s=config.create_settle_s,
            retry=retry,
        ),
        "sync_store": SyncStoreResource(
            database_url=value("SYNC_DATABASE_URL"), claim_ttl_s=config.claim_ttl_s
        ),
    }


LAB_JOB_NAME = "nightly_reconciliation_lab"
LAB_LEAVES_OUT = ("sync_report",)
"""Left out of the lab's job: a report for people (a plot), the slowest step, and nothing that
exactly-once depends on. `nightly_job(..., full=True)` runs the whole nightly job."""


def lab_definitions(
    settings: Settings, config: LabConfig = LabConfig(), *, environment: dict | None = None
) -> dg.Definitions:
    """The production `Definitions` with `lab_resources`, plus the lab's nightly job (the nightly
    selection without `LAB_LEAVES_OUT`)."""
    resources = {**build_resources(settings), **lab_resources(settings, config, environment)}
    defs = build_definitions(settings, resources=resources)
    nightly = next(job for job in defs.jobs or [] if job.name == NIGHTLY_JOB_NAME)
    known = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    left_out = [name for name in LAB_LEAVES_OUT if name in known]
    lab_job = dg.define_asset_job(
        LAB_JOB_NAME,
        selection=nightly.selection - dg.AssetSelection.assets(*left_out),
        executor_def=dg.in_process_executor,
        config=nightly.config,  # partitioned as the nightly job, its runs tagged alike
    )
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[lab_job]))


def nightly_job(
    settings: Settings,
    config: LabConfig = LabConfig(),
    *,
    environment: dict | None = None,
    full: bool = False,
):
    """The nightly job with `lab_resources` in place of the default numbers (the lab's variant,
    without `LAB_LEAVES_OUT`, unless `full`)."""
    defs = lab_definitions(settings, config, environment=environment)
    return defs.resolve_job_def(NIGHTLY_JOB_NAME if full else LAB_JOB_NAME)


def run_nightly(job, instance, organization_id: str, **kwargs):
    return job.execute_in_process(
        partition_key=partition_key_of(job, organization_id),
        instance=instance,
        raise_on_error=False,
        tags={TAG_REQUESTED_BY: "faultlab"},
        **kwargs,
    )


# -- the audit (the sandbox's own stores, then the sync tables) ---------------------------------


METAKOCKA_ONLY_TYPES = ("sales_bill_credit_note",)
"""Metakocka document types the CRM has no type for."""


@dataclass
class Audit:
    organization_id: str
    crm_documents: int
    metakocka_documents: int
    metakocka_duplicates: dict[str, int]
    """buyer_order -> how many Metakocka documents carry it (only those above 1)."""
    crm_duplicates: dict[str, int]
    """document_number -> how many CRM documents carry it (only those above 1)."""
    unpaired: list[str] = field(default_factory=list)
    """Valid documents without their counterpart in the other system."""
    not_synced: list[str] = field(default_factory=list)
    """Valid documents whose sync_status is not `synced` (or that have no row)."""
    lost: list[str] = field(default_factory=list)
    """Valid documents not synced and without an open error row naming them or the org."""
    invalid: int = 0

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.metakocka_duplicates.values()) + sum(
            n - 1 for n in self.crm_duplicates.values()
        )

    @property
    def converged(self) -> bool:
        return not self.unpaired and not self.not_synced and self.duplicates == 0


def audit(sandbox, organization, database_url: str, invalid_crm_ids=()) -> Audit:
    """Check one organization: duplicates by external id in the sandbox's stores, pairing, and
    what the sync tables say about every valid document."""
    org_id, company = organization.id, organization.metakocka_company_id
    crm_docs = sandbox.crm_state.documents(org_id)
    mk_docs = sandbox.metakocka_state.documents(company)
    refs = Counter(d.get("buyer_order") for d in mk_docs if d.get("buyer_order"))
    numbers = Counter(d.get("document_number") for d in crm_docs if d.get("document_number"))
    result = Audit(
        org_id,
        len(crm_docs),
        len(mk_docs),
        {ref: n for ref, n in refs.items() if n > 1},
        {number: n for number, n in numbers.items() if n > 1},
    )
    invalid = set(invalid_crm_ids)
    result.invalid = len(invalid)
    crm_ids = {d["id"] for d in crm_docs}
    born_in_mk = {crm_id_for_metakocka_document(org_id, str(d["mk_id"])) for d in mk_docs}
    valid: list[tuple[str, str]] = []  # ("crm"|"mk", id)
    for doc in crm_docs:
        if doc["id"] in invalid:
            continue
        valid.append(("crm", doc["id"]))
        if not refs.get(crm_id_to_external_ref(doc["id"])) and doc["id"] not in born_in_mk:
            result.unpaired.append(f"crm:{doc['id']}")
    statuses, open_errors = _sync_tables(database_url, org_id)
    no_crm_type = {r["metakocka_id"] for r in statuses if r["status"] == "no_crm_type"}
    for doc in mk_docs:
        claimed = external_ref_to_crm_id(doc.get("buyer_order"))
        if claimed in invalid:
            continue
        if doc["doc_type"] in METAKOCKA_ONLY_TYPES:
            if str(doc["mk_id"]) not in no_crm_type:
                result.lost.append(f"mk:{doc['mk_id']}")
            continue
        valid.append(("mk", str(doc["mk_id"])))
        twin = claimed or crm_id_for_metakocka_document(org_id, str(doc["mk_id"]))
        if twin not in crm_ids:
            result.unpaired.append(f"mk:{doc['mk_id']}")

    synced_crm = {r["crm_document_id"] for r in statuses if r["status"] == "synced"}
    synced_mk = {r["metakocka_id"] for r in statuses if r["status"] == "synced"}
    open_crm = {r["crm_document_id"] for r in open_errors if r["crm_document_id"]}
    open_mk = {r["metakocka_id"] for r in open_errors if r["metakocka_id"]}
    org_level = any(not r["crm_document_id"] and not r["metakocka_id"] for r in open_errors)
    for side, doc_id in valid:
        synced = doc_id in (synced_crm if side == "crm" else synced_mk)
        if synced:
            continue
        result.not_synced.append(f"{side}:{doc_id}")
        if not org_level and doc_id not in (open_crm if side == "crm" else open_mk):
            result.lost.append(f"{side}:{doc_id}")
    return result


def _sync_tables(database_url: str, org_id: str) -> tuple[list[dict], list[dict]]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            statuses = conn.execute(
                sa.text("select * from sync_status where organization_id = :o"), {"o": org_id}
            ).mappings()
            statuses = [dict(r) for r in statuses]
            errors = conn.execute(
                sa.text(
                    "select * from sync_error_log where organization_id = :o "
                    "and resolved_at is null"
                ),
                {"o": org_id},
            ).mappings()
            return statuses, [dict(r) for r in errors]
    finally:
        engine.dispose()


def error_log(database_url: str, organization_id: str | None = None) -> list[dict]:
    """Every sync_error_log row (of one organization)."""
    engine = make_engine(database_url)
    try:
        query = "select * from sync_error_log"
        params = {}
        if organization_id:
            query += " where organization_id = :o"
            params["o"] = organization_id
        with engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(sa.text(query), params).mappings()]
    finally:
        engine.dispose()
    for row in rows:  # plain SQL on SQLite hands JSON back as text
        if isinstance(row.get("details"), str):
            row["details"] = json.loads(row["details"])
    return rows


def converge(
    job,
    instance,
    sandbox,
    organization,
    database_url: str,
    *,
    max_runs: int = 3,
    invalid_crm_ids=(),
    between_runs: Callable[[int], None] | None = None,
) -> tuple[list, Audit]:
    """Run the nightly job until the audit says converged (at most `max_runs` runs)."""
    results = []
    report = None
    for n in range(1, max_runs + 1):
        results.append(run_nightly(job, instance, organization.id))
        report = audit(sandbox, organization, database_url, invalid_crm_ids)
        if report.converged:
            break
        if between_runs is not None:
            between_runs(n)
    return results, report


@dataclass
class CaseResult:
    """What one fault case did: its runs, the audit after the last one, and the evidence."""

    runs: int
    successes: list[bool]
    report: Audit
    fired: dict[str, list[int]]
    """Per system, how often each of the case's rules fired."""
    error_rows: list[dict]
    """The sync_error_log rows the case's runs wrote."""
    seconds: float


def run_case(
    case: FaultCase, workdir: Path, config: LabConfig, *, documents: int, max_runs: int = 3
) -> CaseResult:
    """A fresh sandbox of one organization with `documents` documents misbehaving as `case`
    says, and the nightly job run until converged (at most `max_runs` runs) against a SQLite
    sync database in `workdir` (its schema already created: alembic's context is process-wide,
    so callers running cases in threads migrate first, one by one)."""
    db_url = f"sqlite:///{workdir / 'sync.db'}"
    with (
        start_sandbox(
            workdir / "sandbox", organizations=1, documents_per_org=documents, reset=True
        ) as sandbox,
        dg.DagsterInstance.ephemeral() as instance,
    ):
        org = sandbox.organizations[0]
        environment = sandbox_environment(sandbox, db_url, workdir)
        job = nightly_job(Settings.from_env(environment), config, environment=environment)
        configure_case(sandbox, case)
        started = time.perf_counter()
        results, report = converge(
            job,
            instance,
            sandbox,
            org,
            db_url,
            max_runs=max_runs,
            invalid_crm_ids=invalid_crm_ids(sandbox, org),
        )
        seconds = time.perf_counter() - started
        injectors = {"crm": sandbox.crm_faults, "metakocka": sandbox.metakocka_faults}
        fired = {
            system: [rule["fired"] for rule in injectors[system].snapshot()["rules"]]
            for system in case.rules
        }
    run_ids = {result.run_id for result in results}
    rows = [row for row in error_log(db_url, org.id) if row["run_id"] in run_ids]
    return CaseResult(len(results), [r.success for r in results], report, fired, rows, seconds)


def invalid_crm_ids(sandbox, organization) -> list[str]:
    """The CRM documents the seed spoiled on purpose (they must stay `invalid`, never synced)."""
    seeded = sandbox.seed_summary["organizations"][organization.id]
    return list(seeded.get("invalid_documents", {}))


# -- the crash child ----------------------------------------------------------------------------

_CONTEXT = None


def crash_context():
    """A forkserver that has already imported the pipeline and Dagster: a child starts in tens of
    milliseconds instead of seconds, which keeps twenty kill trials cheap."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(["sync_pipeline_tests.faultlab"])
    return _CONTEXT


def job_child(
    environment: dict,
    job_name: str,
    organization_id: str | None,
    run_config: dict | None,
    config: dict,
    ready,
    go,
) -> None:
    """Entry point of a child process: run one job of the lab's Definitions in process, exit.

    The parent (the test) serves the sandbox and may kill this process with SIGKILL at a moment
    it chooses; the sandbox outlives it. `ready` is set once the job is built; the run starts
    when `go` is set (so several children can start at the same moment).
    """
    os.environ.update(environment)
    job = lab_definitions(Settings.from_env(), LabConfig(**config)).resolve_job_def(job_name)
    with dg.DagsterInstance.ephemeral() as instance:
        ready.set()
        go.wait()
        result = job.execute_in_process(
            partition_key=partition_key_of(job, organization_id) if organization_id else None,
            run_config=run_config,
            instance=instance,
            raise_on_error=False,
            tags={TAG_REQUESTED_BY: "faultlab"},
        )
    os._exit(0 if result.success else 1)


def start_child(
    environment: dict,
    organization_id: str | None,
    config: LabConfig,
    go=None,
    *,
    job_name: str = NIGHTLY_JOB_NAME,
    run_config: dict | None = None,
):
    """Start `job_child` (by default the full nightly job of the organization `organization_id`)
    in a forked process; returns (process, ready event, go event). Without `go` the run starts as
    soon as the job is built."""
    context = crash_context()
    ready = context.Event()
    if go is None:
        go = context.Event()
        go.set()
    process = context.Process(
        target=job_child,
        args=(environment, job_name, organization_id, run_config, config.__dict__, ready, go),
        daemon=True,
    )
    process.start()
    return process, ready, go


def metakocka_writes(sandbox, company_id: str) -> int:
    """Successful Metakocka writes the sandbox has answered for the company (its own count)."""
    import requests

    stats = requests.get(sandbox.metakocka_url + "/_sandbox/stats", timeout=5).json()
    return sum(stats["writes"].get(company_id, {}).values())


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()
