"""The Dagster internals this code location uses, named in one place, with why.

Dagster has no public API for a custom run launcher or for executing a run inside a process one
already has: its own Docker, Kubernetes and ECS launchers (dagster-docker, dagster-k8s,
dagster-aws) import these same names from `dagster._core` and `dagster._grpc`. Only the warm-process
launcher (`run_launcher.py`, issue 20 item 2) and its run worker (`run_worker.py`) need them; the
rest of the package uses `dagster`'s public names. An upgrade of Dagster (pinned in `uv.lock`) that
moves one of them breaks this module's import, in every test that loads the launcher, not a run
in production: `sync_pipeline_tests/test_architecture.py` keeps every other module off
`dagster._*`.
"""

from dagster._cli.api import api_cli
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.launcher import LaunchRunContext
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClassData
from dagster._utils.hosted_user_process import recon_job_from_origin

__all__ = [
    "ConfigurableClassData",
    "ExecuteRunArgs",
    "LaunchRunContext",
    "ModuleCodePointer",
    "api_cli",
    "recon_job_from_origin",
]
"""- `ConfigurableClassData`: how `dagster.yaml` hands a launcher its config (`from_config_value`);
- `LaunchRunContext`: what `RunLauncher.launch_run` receives;
- `ExecuteRunArgs`: the arguments of `dagster api execute_run`, what Dagster's own launchers
  start a run process with; the warm process receives them one per line;
- `ModuleCodePointer`: tells a code location loaded by module (one the warm process can import);
- `api_cli`: the `dagster api` command group, run in the forked worker (`execute_run`);
- `recon_job_from_origin`: builds the job from a run's origin, to warm the process up."""
