"""How the reconciliation's steps hand their documents to each other: in memory, within the run.

The extracted, validated and planned documents of an organization are large (100,000 documents
per side are hundreds of MB of objects). Dagster's default IO manager pickles every output to disk
and unpickles it in each consumer: measured on 20,000 documents per side, that was half of a
run's time, and each consumer held its own copy, tripling the memory. It also wrote customers'
documents into Dagster's storage directory, where they outlive the run.

So these outputs stay in the memory of the run's process, in a dict owned by the IO manager that
Dagster creates for the run (and drops with it). When the run's steps do not share a process
(the multiprocess executor, e.g. a materialization launched from the UI), outputs are pickled to
disk as before, so every executor works. A later run cannot load an in-memory output of an earlier
one: re-executing part of a finished in-process run fails with a message that says to run the
whole job again (a reconciliation is safe to repeat).

While a run (or, with the multiprocess executor, a step) executes, the objects its process held
when it started are frozen (`gc.freeze`): the cycle collector's full collections then scan what the
run allocated, not Dagster, pandas and every imported module as well. Measured on a reconciliation
of 2,000 changed documents per side (benchmarks/run.py, item 2): two full collections of 270 and
310 ms, each holding the GIL, one during the extraction and one during the pushes, where every
thread, and so both of Metakocka's request slots, waited on it; frozen, the run took 0.3-0.7 s less.
The heap is unfrozen when the run ends, so a process that runs many (tests, `dagster dev`) keeps
nothing alive that the collector would otherwise free.
"""

import gc
from typing import Any

import dagster as dg
from pydantic import Field

from sync_pipeline.jobs import NIGHTLY_JOB_NAME

RESOURCE_KEY = "reconciliation_io_manager"

IN_PROCESS_EXECUTORS = {"in_process", "execute_in_process_executor"}
SELECTABLE_EXECUTORS = {
    # executor name -> the run config key that selects in-process execution, and its default
    "in_process_or_multiprocess": ("in_process", True),
    "multi_or_in_process_executor": ("in_process", False),
}


class ReconciliationIOManager(dg.ConfigurableIOManagerFactory):
    """Memory within a run executed in one process; pickles on disk otherwise."""

    base_dir: str | None = Field(
        default=None,
        description="Where outputs are pickled when steps run in separate processes "
        "(default: Dagster's storage).",
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        gc.freeze()  # see the module docstring

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        gc.unfreeze()

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.IOManager:
        disk = dg.FilesystemIOManager(base_dir=self.base_dir).create_io_manager(context)
        return _MemoryFirst(disk)


class _MemoryFirst(dg.IOManager):
    def __init__(self, disk: dg.IOManager):
        self._disk = disk
        self._values: dict[tuple, Any] = {}

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if _steps_share_a_process(context):
            self._values[_key(context)] = obj
        else:
            self._disk.handle_output(context, obj)

    def load_input(self, context: dg.InputContext) -> Any:
        key = _key(context.upstream_output)
        if key in self._values:
            return self._values[key]
        try:
            return self._disk.load_input(context)
        except FileNotFoundError:
            raise dg.Failure(
                description=(
                    f"Launch the job {NIGHTLY_JOB_NAME} for this organization instead: this step "
                    f"needs the output of {context.upstream_output.step_key}, which only the run "
                    "that made it held in memory, so part of a reconciliation cannot be run on "
                    "its own (a whole reconciliation is safe to repeat)."
                ),
                metadata={"launch_job": NIGHTLY_JOB_NAME, "missing_input": context.name},
            ) from None


def _key(context: dg.OutputContext) -> tuple:
    """An output of one step of one run (a reconciliation run is for a single partition)."""
    return (context.run_id, context.step_key, context.name)


def _steps_share_a_process(context: dg.OutputContext) -> bool:
    """True when every step of this run executes in this process."""
    try:
        step_context = context.step_context
        name = step_context.job_def.executor_def.name
        execution = step_context.run_config.get("execution") or {}
    except Exception:  # no step context (direct invocation): keep it in memory
        return True
    if name in IN_PROCESS_EXECUTORS:
        return True
    if name in SELECTABLE_EXECUTORS:
        key, default = SELECTABLE_EXECUTORS[name]
        selected = (execution.get("config") or {}) if isinstance(execution, dict) else {}
        return key in selected if selected else default
    return False
