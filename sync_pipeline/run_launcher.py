"""A run launcher that starts on-demand runs in run workers forked from a warm process.

Why: with Dagster's DefaultRunLauncher every run is a new Python process that imports Dagster,
pandas, SQLAlchemy, pandera and the code location before its first step, and more on first use
after it. For the CRM's Sync button that is most of the wait (benchmarks/on_demand_latency.py:
`worker_up` and `load_code`), while the sync itself takes a tenth of a second; and the sync needs
those libraries, so importing less is not the way out.

How: for the runs of the jobs listed in `jobs`, the launcher keeps a warm process
(`run_worker.py`: it has imported what the job's last run imported, built the job and opened the
instance, and waits). When the daemon takes such a run off the run queue (under the queue's
limits, like any run), the warm process forks a run worker that executes it with Dagster's own
`dagster api execute_run`, the command Dagster's Docker and Kubernetes launchers start per run.
Each run is still a process of its own, with its events in the run's log and the UI, and can be
terminated from the UI (SIGTERM, which `dagster api execute_run` turns into a cancelation).
Everything else goes through the DefaultRunLauncher (a process per run, started by the code
server): runs of other jobs, the first run of a job after the daemon starts (it starts the warm
process), and a run whose code location is not the one the warm process was warmed up on
(another interpreter or module, or reloaded since: the warm process imported the code before; it
is stopped and a new one started).

The warm process runs on the daemon's host, started by the daemon with its environment: use this
launcher where the daemon and the code location share a host and environment, as under `dagster
dev` (dagster.yaml); a deployment with a separate code server keeps the DefaultRunLauncher
(deploy/dagster.yaml, docs/deploy.md).
"""

import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import DagsterRun, DefaultRunLauncher, serialize_value

from sync_pipeline.dagster_private import (
    ConfigurableClassData,
    ExecuteRunArgs,
    LaunchRunContext,
    ModuleCodePointer,
)

WORKER_TAG = "sync_pipeline/run_worker"
"""`{"host": ..., "pid": ...}` of the forked run worker that executes the run (to terminate it)."""


@dataclass
class WarmProcess:
    """The process run workers are forked from, warmed up on a run of `repository_origin` while
    the code location's server was `server_id`."""

    process: subprocess.Popen
    repository_origin: Any
    server_id: str | None
    forked: int = 0

    def fork(self, run_args: ExecuteRunArgs) -> int | None:
        """The pid of a child executing the run; None when the warm process has died."""
        if self.process.poll() is not None:
            return None
        try:
            self.process.stdin.write(serialize_value(run_args) + "\n")
            self.process.stdin.flush()
            answer = self.process.stdout.readline()  # at once, or when its warm-up ends
        except OSError:  # it died meanwhile (BrokenPipeError)
            return None
        if not answer.strip():
            return None
        self.forked += 1
        return int(answer)

    def stop(self) -> None:
        """End of input: it exits once warm (its children run on), reaped in the background."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        threading.Thread(target=self.process.wait, daemon=True).start()


class PrestartedRunLauncher(DefaultRunLauncher):
    def __init__(self, inst_data: ConfigurableClassData | None = None, jobs: list[str] = ()):
        super().__init__(inst_data=inst_data)
        self.jobs = frozenset(jobs)
        self._warm: WarmProcess | None = None
        self._broken = False
        """A warm process died before forking any run: its warm-up fails, no new one is started."""
        self._lock = threading.Lock()

    @classmethod
    def config_type(cls):
        return {"jobs": [str]}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data, jobs=config_value["jobs"])

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        if run.job_name not in self.jobs or not _from_a_module(run):
            super().launch_run(context)
            return
        with self._lock:
            server_id = _server_id(context)
            warm = self._warm_process_for(run, server_id)
            pid = warm.fork(self._run_args(run)) if warm is not None else None
            if pid is None:
                if warm is not None:
                    self._lost(warm, run)
                super().launch_run(context)
                if not self._broken:
                    self._start_warm_process(run, server_id)
                return
        worker = {"host": socket.gethostname(), "pid": pid}
        self._instance.add_run_tags(run.run_id, {WORKER_TAG: json.dumps(worker)})

    def _warm_process_for(self, run: DagsterRun, server_id: str | None) -> WarmProcess | None:
        """The warm process if it was warmed up on the run's code location as loaded now; one
        warmed up on another (reloaded since, another interpreter or module) is stopped."""
        warm = self._warm
        if warm is not None and (
            warm.repository_origin != run.job_code_origin.repository_origin
            or warm.server_id != server_id
        ):
            warm.stop()
            warm = self._warm = None
        return warm

    def _lost(self, warm: WarmProcess, run: DagsterRun) -> None:
        """The warm process has died; the run that found it so says why in its log."""
        self._warm = None
        self._broken = warm.forked == 0
        self._instance.report_engine_event(
            f"The warm process of run workers (pid {warm.process.pid}) exited with code "
            f"{warm.process.wait()}; this run starts in a new process"
            + (" and so will the next ones: see the daemon's log" if self._broken else ""),
            run,
            cls=self.__class__,
        )

    def _start_warm_process(self, run: DagsterRun, server_id: str | None) -> None:
        """Start the warm process, warming up on this run's arguments (it executes only later
        runs)."""
        origin = run.job_code_origin
        modules = Path(self._instance.root_directory, "run_workers", f"{run.job_name}.json")
        process = subprocess.Popen(
            [origin.executable_path, "-m", "sync_pipeline.run_worker", "--modules-file", modules],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=origin.repository_origin.code_pointer.working_directory or None,
        )
        try:
            process.stdin.write(serialize_value(self._run_args(run)) + "\n")
            process.stdin.flush()
        except OSError:
            return
        self._warm = WarmProcess(process, origin.repository_origin, server_id)

    def _run_args(self, run: DagsterRun) -> ExecuteRunArgs:
        """What `dagster api execute_run` takes (as Dagster's Docker and Kubernetes launchers
        pass it)."""
        return ExecuteRunArgs(
            job_origin=run.job_code_origin, run_id=run.run_id, instance_ref=self._instance.get_ref()
        )

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or WORKER_TAG not in run.tags:
            return super().terminate(run_id)
        worker = json.loads(run.tags[WORKER_TAG])
        if run.is_finished or worker["host"] != socket.gethostname():
            return False
        if not _is_a_run_worker(worker["pid"]):
            return False
        self._instance.report_run_canceling(run)
        try:
            os.kill(worker["pid"], signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True

    def dispose(self) -> None:
        with self._lock:
            if self._warm is not None:
                self._warm.stop()
                self._warm = None
        super().dispose()


def _from_a_module(run: DagsterRun) -> bool:
    """A warm process imports code locations loaded from a module (workspace.yaml's
    python_module)."""
    origin = run.job_code_origin
    return origin is not None and isinstance(
        origin.repository_origin.code_pointer, ModuleCodePointer
    )


def _server_id(context: LaunchRunContext) -> str | None:
    """The id of the code server the run's location is loaded from: new on every reload."""
    name = context.dagster_run.remote_job_origin.location_name
    return getattr(context.workspace.get_code_location(name), "server_id", None)


def _is_a_run_worker(pid: int) -> bool:
    """Whether `pid` is still a run worker (not another process given a dead worker's pid); taken
    as yes where /proc cannot tell."""
    try:
        return b"sync_pipeline.run_worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
