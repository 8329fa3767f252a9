"""The reconciliation's IO manager: outputs stay in memory when a run's steps share a process, and
go to disk when they do not."""

from types import SimpleNamespace

import dagster as dg

from sync_pipeline.definitions import build_definitions
from sync_pipeline.io_managers import ReconciliationIOManager, _steps_share_a_process
from sync_pipeline.jobs import NIGHTLY_JOB_NAME, partition_key_of


def test_in_process_run_keeps_outputs_in_memory(tmp_path):
    @dg.asset(io_manager_key="io")
    def documents() -> list[int]:
        return [1, 2, 3]

    @dg.asset(io_manager_key="io")
    def total(documents: list[int]) -> int:
        return sum(documents)

    defs = dg.Definitions(
        assets=[documents, total], resources={"io": ReconciliationIOManager(base_dir=str(tmp_path))}
    )
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process()
    assert result.output_for_node("total") == 6
    assert not any(tmp_path.iterdir())  # nothing pickled


def _context(executor: str, execution: dict | None):
    job_def = SimpleNamespace(executor_def=SimpleNamespace(name=executor))
    run_config = {"execution": execution} if execution is not None else {}
    return SimpleNamespace(step_context=SimpleNamespace(job_def=job_def, run_config=run_config))


def test_steps_in_other_processes_get_pickles():
    assert _steps_share_a_process(_context("in_process", None))
    # the nightly job's executor: in process unless the run config picks multiprocess
    assert _steps_share_a_process(_context("in_process_or_multiprocess", None))
    multiprocess = {"config": {"multiprocess": {"max_concurrent": 2}}}
    assert not _steps_share_a_process(_context("in_process_or_multiprocess", multiprocess))
    # Dagster's default executor: multiprocess unless the run config picks in_process
    assert not _steps_share_a_process(_context("multi_or_in_process_executor", None))
    in_process = {"config": {"in_process": {}}}
    assert _steps_share_a_process(_context("multi_or_in_process_executor", in_process))
    assert not _steps_share_a_process(_context("k8s_job_executor", None))


def test_one_reconciliation_asset_on_its_own_names_the_job_to_launch(
    sandbox, pipeline_env, dagster_instance
):
    """The UI's "Materialize" on one asset of the reconciliation: its inputs lived only in the
    memory of the run that made them, so the run fails, saying which job to launch instead."""
    org = sandbox.organizations[0]
    defs = build_definitions(pipeline_env)
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dagster_instance,
        asset_selection=[dg.AssetKey("sync_plan")],
        partition_key=partition_key_of(defs.resolve_job_def(NIGHTLY_JOB_NAME), org.id),
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.user_failure_data
    assert error.description.startswith(f"Launch the job {NIGHTLY_JOB_NAME} for this organization")
    assert error.metadata["launch_job"].value == NIGHTLY_JOB_NAME


def test_a_sync_database_that_cannot_be_opened_says_so_in_the_first_line(
    sandbox, pipeline_env, dagster_instance, tmp_path
):
    """A fresh clone's classic: the database's folder cannot be created. The step's failure
    names the database and the setting to check, not a bare exception behind a generic line."""
    (tmp_path / "a-file").write_text("where the database's folder should be")
    broken = pipeline_env.model_copy(
        update={
            "database_url": f"sqlite:///{tmp_path / 'a-file' / 'sync.db'}",
            "database_url_from_env": False,
        }
    )
    job = build_definitions(broken).resolve_job_def(NIGHTLY_JOB_NAME)
    result = job.execute_in_process(
        instance=dagster_instance,
        partition_key=partition_key_of(job, sandbox.organizations[0].id),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    error = failure.step_failure_data.user_failure_data
    assert error.description.startswith("The sync database cannot be opened (sqlite:///")
    assert "SYNC_DATABASE_URL" in error.description
