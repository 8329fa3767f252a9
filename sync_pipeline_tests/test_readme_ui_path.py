"""The README's "The Dagster UI" path, on a fresh clone, as an operator follows it.

A fresh `git clone` of this repository (no `.sync_pipeline/` folder, no `.env`, no
`DAGSTER_HOME`), then exactly the README's two commands (`uv run sync-pipeline sandbox --env-file
.env`, `uv run dagster dev`; only the ports differ, so the test never collides with anything).
The nightly run is launched through GraphQL the way the launchpad does it (the partition's tags
first, then the launch), and everything is asserted through GraphQL, as an operator would see it:
the run succeeded, its tags name the organization and its Metakocka company, no sensor tick
failed, and the freshness check of the organization passed inside its run.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from sync_pipeline.jobs import NIGHTLY_JOB_NAME
from sync_pipeline.runs import METAKOCKA_COMPANY_TAG, ORGANIZATION_ID_TAG, ORGANIZATION_NAME_TAG
from sync_pipeline.settings import parse_organizations, slug

from .graphql_helpers import LAUNCH, LOCATION, PARTITION_TAGS, RUN_STATUS, free_port, graphql

REPO_ROOT = Path(__file__).resolve().parents[1]

SENSOR_TICKS = """
query Ticks($repo: RepositorySelector!) {
  sensorsOrError(repositorySelector: $repo) {
    __typename
    ... on Sensors { results { name sensorState { ticks(limit: 50) {
      status error { message } } } } }
  }
}
"""
CHECKS = """
query Checks {
  assetCheckExecutions(assetKey: {path: ["sync_status"]}, checkName: "reconciled_within_26_hours",
                       limit: 5) {
    runId status evaluation { success description }
  }
}
"""


def _wait(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (requests.ConnectionError, FileNotFoundError):
            value = None
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"{what} within {timeout_s} s")


def _start(command: list[str], cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the whole group (uv, the server, dagster's children) ends
    )


def _stop(process: subprocess.Popen, signum: int) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signum)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _tail(log: Path) -> str:
    """The end of a process's log, for a failure's message."""
    return log.read_text(errors="replace")[-4000:] if log.exists() else f"(no {log.name})"


def _reap(folder: Path) -> None:
    """End whatever still runs from the clone: dagster dev's code server starts its own process
    group, so it can outlive the group `_stop` signalled."""
    subprocess.run(["pkill", "-f", str(folder)], check=False)


@pytest.fixture
def fresh_clone(tmp_path) -> Path:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
    return clone


def test_the_readme_ui_path_on_a_fresh_clone(fresh_clone, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNC_", "DAGSTER_", "CRM_"))}
    env.pop("METAKOCKA_BASE_URL", None)
    env.pop("METAKOCKA_SECRET_KEYS", None)
    env.pop("VIRTUAL_ENV", None)  # uv run uses the clone's own environment
    crm_port, mk_port, ui_port = free_port(), free_port(), free_port()
    sandbox = _start(
        ["uv", "run", "sync-pipeline", "sandbox", "--env-file", ".env",
         "--crm-port", str(crm_port), "--metakocka-port", str(mk_port)],
        fresh_clone, env, tmp_path / "sandbox.log",
    )  # fmt: skip
    dagster = None
    try:
        env_file = fresh_clone / ".env"
        _wait(lambda: env_file.exists() and "SYNC_ORGANIZATIONS" in env_file.read_text(), 300,
              "the sandbox did not write .env")  # fmt: skip
        dagster = _start(
            ["uv", "run", "dagster", "dev", "-h", "127.0.0.1", "-p", str(ui_port)],
            fresh_clone, env, tmp_path / "dagster.log",
        )  # fmt: skip
        url = f"http://127.0.0.1:{ui_port}"
        endpoint = f"{url}/graphql"
        _wait(lambda: requests.get(f"{url}/server_info", timeout=2).ok, 180, "no UI")
        org = _first_organization(env_file)
        org_id, key = org["id"], org["key"]
        assert key == slug(org["name"]) != org_id  # the UI shows "acme-d-o-o", not a uuid

        def partition_tags():
            answer = graphql(
                endpoint,
                PARTITION_TAGS,
                {"repo": LOCATION, "set": f"{NIGHTLY_JOB_NAME}_partition_set", "partition": key},
            )["partitionSetOrError"]
            if answer["__typename"] != "PartitionSet":
                return None  # the code location is still loading
            return answer["partition"]["tagsOrError"]["results"]

        tags = _wait(partition_tags, 120, "the code location did not load")
        tags = [*tags, {"key": "dagster/partition", "value": key}]
        params = {
            "selector": {**LOCATION, "jobName": NIGHTLY_JOB_NAME},
            "runConfigData": {},
            "executionMetadata": {"tags": tags},
        }
        launched = graphql(endpoint, LAUNCH, {"executionParams": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]

        def finished():
            run = graphql(endpoint, RUN_STATUS, {"runId": run_id})["runOrError"]
            return run if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

        run = _wait(finished, 240, "the nightly run did not finish")
        assert run["status"] == "SUCCESS", _tail(tmp_path / "dagster.log")
        run_tags = {t["key"]: t["value"] for t in run["tags"]}
        assert run_tags["dagster/partition"] == key
        assert run_tags[ORGANIZATION_NAME_TAG] == org["name"]
        assert run_tags[ORGANIZATION_ID_TAG] == org_id
        assert run_tags[METAKOCKA_COMPANY_TAG]  # so the per-company run limit applies

        checks = graphql(endpoint, CHECKS, {})["assetCheckExecutions"]
        own = [c for c in checks if c["runId"] == run_id]
        assert own and own[0]["evaluation"]["success"], (checks, _tail(tmp_path / "dagster.log"))
        assert run_tags[ORGANIZATION_NAME_TAG] in own[0]["evaluation"]["description"]

        time.sleep(6)  # every sensor has ticked at least once since the run (5 s intervals)
        sensors = graphql(endpoint, SENSOR_TICKS, {"repo": LOCATION})["sensorsOrError"]
        failed = {
            s["name"]: [t["error"]["message"] for t in s["sensorState"]["ticks"] if t["error"]]
            for s in sensors["results"]
        }
        assert not any(failed.values()), (failed, _tail(tmp_path / "dagster.log"))
        ticked = sum(len(s["sensorState"]["ticks"]) for s in sensors["results"])
        assert ticked > 0
        assert (fresh_clone / ".sync_pipeline" / "sync.db").exists()
    finally:
        if dagster is not None:
            _stop(dagster, signal.SIGTERM)
        _stop(sandbox, signal.SIGINT)  # the sandbox saves and stops on Ctrl-C
        _reap(fresh_clone)


def _first_organization(env_file: Path) -> dict:
    """The first organization as `.env` configures it (the sandbox wrote it)."""
    for line in env_file.read_text().splitlines():
        if line.startswith("SYNC_ORGANIZATIONS="):
            (org, *_) = parse_organizations(line.split("=", 1)[1].strip().strip("'\""))
            return {"id": org.id, "name": org.name, "key": org.key}
    raise AssertionError("no SYNC_ORGANIZATIONS in .env")
