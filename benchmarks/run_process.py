"""One measured nightly run, in the process `benchmarks/reconcile.py` starts for it.

This module is all that process imports besides the code location: no sandbox, no web framework,
no demo (the parent's `benchmarks.reconcile` imports those). A run worker imports the code
location and Dagster, not the benchmark's harness, so the peak RSS measured here is a run's own;
before, the child imported the sandbox's FastAPI app through `sync_pipeline.demo` (about 8 MiB
no run has: RSS before any document 173 -> 165 MiB, docs/performance.md).
"""

import os
import resource
import threading
import time
from unittest import mock

import dagster as dg
import psutil

from sync_pipeline.jobs import NIGHTLY_JOB_NAME, partition_key_of
from sync_pipeline.settings import Settings


def run_once(environment: dict, organization_id: str, run_config: dict, one_at_a_time: bool):
    """One nightly run in this (fresh) process; wall, CPU and peak RSS of the process."""
    with mock.patch.dict(os.environ, environment):
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
