"""Run `dagster dev` (webserver, daemon, code server) for a test or a benchmark, and end it cleanly.

It is started in its own process group and the whole group is ended: `dagster dev` in the
background ignores SIGINT/SIGTERM for its children, which would otherwise keep ports and files.
"""

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from .graphql_helpers import free_port, graphql

REPO_ROOT = Path(__file__).resolve().parents[1]

RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status creationTime startTime endTime
                            tags { key value } } }
  }
}
"""


@contextmanager
def dagster_dev(
    env: dict[str, str],
    dagster_home: Path,
    *,
    timeout_s: float = 120,
    instance_yaml: Path = REPO_ROOT / "dagster.yaml",
) -> Iterator[str]:
    """`dagster dev` on a free loopback port with the project's dagster.yaml (or `instance_yaml`,
    e.g. deploy/dagster.yaml); yields its URL."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(instance_yaml, dagster_home / "dagster.yaml")
    port = free_port()
    log = open(dagster_home / "dagster_dev.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        ["dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO_ROOT,
        env={**env, "DAGSTER_HOME": str(dagster_home)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers(url):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"dagster dev did not start; see {dagster_home}/dagster_dev.log")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/server_info", timeout=2).ok
    except requests.ConnectionError:
        return False


def runs(url: str, **run_filter) -> list[dict]:
    """Runs matching a GraphQL RunsFilter, e.g. `runs(url, pipelineName="sync_documents")`."""
    return graphql(f"{url}/graphql", RUNS, {"filter": run_filter})["runsOrError"]["results"]


RUN_EVENTS = """
query Events($runId: ID!) {
  logsForRun(runId: $runId, limit: 1000) {
    __typename
    ... on EventConnection { events { __typename
      ... on MessageEvent { eventType message timestamp } } }
  }
}
"""


def run_events(url: str, run_id: str) -> list[dict]:
    """The run's event log, oldest first: `eventType` (None for a plain log message),
    `message`, `timestamp` (milliseconds since the epoch, as a string)."""
    return graphql(f"{url}/graphql", RUN_EVENTS, {"runId": run_id})["logsForRun"]["events"]
