"""Run the real nightly job (Dagster, in process) against a `RemoteSandbox`, and measure it.

Everything the pipeline does in production happens here: the same `Definitions`, resources built
from the same environment variables, a SQLite sync database on disk. Only the concurrency of the
API clients can be turned down (for the one-at-a-time baseline).
"""

import multiprocessing
import os
import resource
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import psutil
import sqlalchemy as sa

from benchmarks.remote_sandbox import RemoteSandbox, api_calls
from sync_pipeline.demo import patched_environ, sandbox_environment
from sync_pipeline.jobs import NIGHTLY_JOB_NAME, partition_key_of
from sync_pipeline.settings import Settings

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
DATABASE_ENV = "SYNC_BENCH_POSTGRES_URL"
"""A PostgreSQL server URL (e.g. postgresql+psycopg2://postgres@127.0.0.1:5432/test): each run of
the benchmark gets a fresh database there instead of a SQLite file."""


class _Database:
    def __init__(self, server_url: str | None, data_dir: Path):
        self._server, self._name = server_url, None
        if not server_url:
            self.url = f"sqlite:///{data_dir / 'sync.db'}"
            return
        self._name = f"sync_bench_{uuid.uuid4().hex[:10]}"
        with self._admin() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self._name}"'))
        url = sa.engine.make_url(server_url).set(database=self._name)
        self.url = url.render_as_string(hide_password=False)

    def _admin(self):
        return sa.create_engine(self._server, isolation_level="AUTOCOMMIT").connect()

    def drop(self) -> None:
        if self._name:
            with self._admin() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)'))


@dataclass
class RunFigures:
    wall_s: float
    cpu_s: float
    sandbox_cpu_s: float
    peak_rss_mib: float
    rss_before_run_mib: float
    calls: dict[str, int]
    actions: dict[str, int] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)
    step_rss_mib: dict[str, float] = field(default_factory=dict)
    """The highest RSS seen during each step (sampled every `RSS_SAMPLE_S`): where the peak is."""

    @property
    def writes(self) -> int:
        return self.calls["crm_writes"] + self.calls["metakocka_writes"]

    @property
    def total_calls(self) -> int:
        return self.calls["crm_calls"] + self.calls["metakocka_calls"]


class Reconciler:
    """The nightly job of the sandbox's first organization, ready to run again and again.

    With `fresh_process` each run executes in a process of its own, as Dagster's run launcher
    starts one per run: its peak RSS and CPU time are that run's alone (the parent keeps no
    documents), start-up included. Without, runs share this process (quicker; peak RSS is then
    the highest so far).
    """

    def __init__(
        self, sandbox: RemoteSandbox, *, one_at_a_time: bool = False, fresh_process: bool = True
    ):
        self.sandbox = sandbox
        self.one_at_a_time = one_at_a_time
        self.fresh_process = fresh_process
        self._tmp = tempfile.TemporaryDirectory(prefix="sync-bench-")
        data_dir = Path(self._tmp.name)
        self._database = _Database(os.environ.get(DATABASE_ENV), data_dir)
        self.database_url = self._database.url
        self.environment = sandbox_environment(sandbox, self.database_url, data_dir)
        if one_at_a_time:
            self.environment["SYNC_PUSH_CONCURRENCY"] = "1"
        self.organization_id = sandbox.organizations[0].id

    def run(self, run_config: dict | None = None) -> RunFigures:
        self.sandbox.reset_stats()
        sandbox_cpu = self.sandbox.cpu_seconds()
        arguments = (
            self.environment,
            self.organization_id,
            {**QUIET, **(run_config or {})},
            self.one_at_a_time,
        )
        if self.fresh_process:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(1, mp_context=context) as pool:
                figures = pool.submit(_run_once, *arguments).result()
        else:
            figures = _run_once(*arguments)
        return RunFigures(
            **figures,
            sandbox_cpu_s=self.sandbox.cpu_seconds() - sandbox_cpu,
            calls=api_calls(self.sandbox.stats()),
        )

    def close(self) -> None:
        self._database.drop()
        self._tmp.cleanup()


def _run_once(environment: dict, organization_id: str, run_config: dict, one_at_a_time: bool):
    """One nightly run in this (fresh) process; wall, CPU and peak RSS of the process."""
    with patched_environ(environment):
        job = _job(Settings.from_env(), one_at_a_time)
        with dg.DagsterInstance.ephemeral() as instance:
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            with _RssSamples() as samples:
                cpu, started = time.process_time(), time.perf_counter()
                result = job.execute_in_process(
                    partition_key=partition_key_of(job, organization_id),
                    instance=instance,
                    run_config=run_config,
                    tags={"sync_pipeline/requested_by": "benchmark"},
                )
                wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            if not result.success:
                raise RuntimeError("the benchmark's reconciliation run failed")
            plan = result.output_for_node("sync_plan")
            stats = instance.get_run_step_stats(result.run_id)
            steps = {s.step_key: round(s.end_time - s.start_time, 3) for s in stats}
            step_rss = {s.step_key: samples.highest(s.start_time, s.end_time) for s in stats}
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_run_mib": rss_before,
        "actions": {k: int(v) for k, v in plan["action"].value_counts().items()},
        "steps": steps,
        "step_rss_mib": {key: rss for key, rss in step_rss.items() if rss is not None},
    }


RSS_SAMPLE_S = 0.02


class _RssSamples:
    """This process's RSS every `RSS_SAMPLE_S`, in a thread, while the context is open."""

    def __init__(self):
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-samples", daemon=True)

    def __enter__(self) -> "_RssSamples":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self._samples.append((time.time(), process.memory_info().rss / 2**20))
            self._stop.wait(RSS_SAMPLE_S)

    def highest(self, start: float, end: float) -> float | None:
        """The highest RSS sampled between two epoch times (a step's start and end)."""
        return max((rss for at, rss in self._samples if start <= at <= end), default=None)


def _job(settings: Settings, one_at_a_time: bool):
    from sync_pipeline.definitions import build_definitions
    from sync_pipeline.resources import CrmResource, MetakockaResource
    from sync_pipeline.settings import organizations_to_json

    defs = build_definitions(settings)
    if not one_at_a_time:
        return defs.resolve_job_def(NIGHTLY_JOB_NAME)
    resources = dict(defs.resources)
    resources["crm"] = CrmResource(
        base_url=dg.EnvVar("CRM_BASE_URL"),
        api_key=dg.EnvVar("CRM_API_KEY"),
        organizations_json=organizations_to_json(settings.organizations),
        max_concurrent_requests=1,
    )
    resources["metakocka"] = MetakockaResource(
        base_url=dg.EnvVar("METAKOCKA_BASE_URL"),
        secret_keys=dg.EnvVar("METAKOCKA_SECRET_KEYS"),
        max_concurrent_requests=1,
    )
    single = dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs, resources=resources
    )
    return single.resolve_job_def(NIGHTLY_JOB_NAME)
