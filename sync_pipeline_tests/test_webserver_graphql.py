"""Boot the code location under `dagster dev` (webserver and daemon, with the project's
dagster.yaml and its queued run coordinator) and launch the nightly job through GraphQL, as the
UI's launchpad does."""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from sync_pipeline.demo import sandbox_environment

from .helpers import status_rows

REPO_ROOT = Path(__file__).resolve().parents[1]

LAUNCH = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

RUN_STATUS = """
query Status($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } }
}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(url: str, query: str, variables: dict) -> dict:
    response = requests.post(url, json={"query": query, "variables": variables}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture
def webserver(sandbox, sqlite_url, tmp_path):
    port = _free_port()
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {
        **os.environ,
        **sandbox_environment(sandbox, sqlite_url, tmp_path),
        "DAGSTER_HOME": str(dagster_home),
    }
    process = subprocess.Popen(
        ["dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # so the whole group (code server included) can be ended
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("dagster dev did not start within 120 s")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_launch_nightly_job_through_graphql(webserver, sandbox, sqlite_url):
    org = sandbox.organizations[1]
    graphql = f"{webserver}/graphql"
    params = {
        "selector": {
            "repositoryLocationName": "sync_pipeline",
            "repositoryName": "__repository__",
            "jobName": "nightly_reconciliation",
        },
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": org.id}]},
    }
    deadline = time.monotonic() + 60
    while True:  # the code location may still be loading right after the server answers
        launched = _graphql(graphql, LAUNCH, {"executionParams": params})["launchRun"]
        if launched["__typename"] == "LaunchRunSuccess" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    deadline = time.monotonic() + 180
    status = None
    while time.monotonic() < deadline:
        status = _graphql(graphql, RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS"

    rows = status_rows(sqlite_url, org.id)
    assert rows and {r["status"] for r in rows} <= {"synced", "invalid", "no_crm_type"}
