"""Dagster's own webserver (UI and GraphQL) served from the test process, over a test instance with
the project's run queue, for tests that submit runs through GraphQL without `dagster dev`.

The code location is loaded in this process (no code server) and no daemon runs: a submitted run
is created and waits in the run queue (QUEUED), where the test can read it, with its config and
tags, from the instance. The full path through the daemon is `dagster_dev.py`'s.
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster_webserver.app import create_app_from_workspace_process_context

from sync_pipeline.api.dagster_runs import LOCATION_NAME
from sync_pipeline.sandbox.serve import serve_in_thread

REPO_ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def queued_instance() -> Iterator[dg.DagsterInstance]:
    """A test instance whose run coordinator is the project's (dagster.yaml): the run queue and
    its per-organization limits."""
    config = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    with dg.instance_for_test(overrides={"run_coordinator": config["run_coordinator"]}) as instance:
        yield instance


@contextmanager
def dagster_webserver(instance: dg.DagsterInstance) -> Iterator[str]:
    """The webserver on a loopback port, serving the code location as workspace.yaml names it;
    yields its URL."""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name="sync_pipeline.definitions",
            working_directory=str(REPO_ROOT),
        ),
        location_name=LOCATION_NAME,
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context:
        server = serve_in_thread(create_app_from_workspace_process_context(context))
        try:
            yield server.url
        finally:
            server.stop()
