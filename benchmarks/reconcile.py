"""Run the real nightly job (Dagster, in process) against a `RemoteSandbox`, and measure it.

Everything the pipeline does in production happens here: the same `Definitions`, resources built
from the same environment variables, a SQLite sync database on disk. Only the concurrency of the
API clients can be turned down (for the one-at-a-time baseline).
"""

import multiprocessing
import os
import tempfile
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from benchmarks.remote_sandbox import RemoteSandbox, api_calls
from benchmarks.run_process import run_once
from sync_pipeline.demo import sandbox_environment

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
    """The highest RSS seen during each step (sampled every `run_process.RSS_SAMPLE_S`): where
    the peak is."""

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
                figures = pool.submit(run_once, *arguments).result()
        else:
            figures = run_once(*arguments)
        return RunFigures(
            **figures,
            sandbox_cpu_s=self.sandbox.cpu_seconds() - sandbox_cpu,
            calls=api_calls(self.sandbox.stats()),
        )

    def close(self) -> None:
        self._database.drop()
        self._tmp.cleanup()
