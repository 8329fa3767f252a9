"""Screenshots of what an operator sees in the Dagster UI, taken with headless Chromium.

    uv run python docs/screenshots.py [--out docs/screenshots]

Starts the sandbox (in this process) and `dagster dev` against it (the repo's dagster.yaml, a
temporary DAGSTER_HOME), launches one organization's nightly run through GraphQL the way the
launchpad does, waits for it, and saves four pages as PNG: the asset graph (every group
expanded), the run's page, the `sync_report` asset of that organization's partition (tall enough
for all its metadata) and the `sync_documents` launchpad. Needs Debian's `chromium` package.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sync_pipeline.demo import sandbox_environment  # noqa: E402
from sync_pipeline.jobs import NIGHTLY_JOB_NAME, RECONCILIATION_GROUPS  # noqa: E402
from sync_pipeline.ops.launch import JOB_NAME  # noqa: E402
from sync_pipeline.sandbox.runner import start_sandbox  # noqa: E402
from sync_pipeline.settings import slug  # noqa: E402
from sync_pipeline_tests.graphql_helpers import (  # noqa: E402
    LAUNCH,
    LOCATION,
    PARTITION_TAGS,
    RUN_STATUS,
    free_port,
    graphql,
)


def wait_for(condition, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition()
        except requests.ConnectionError:
            value = None
        if value:
            return value
        time.sleep(1)
    raise TimeoutError("the UI did not get there in time")


def screenshot(url: str, path: Path, size: str = "1600,1000") -> None:
    """`size` is the window's, width,height: the page is drawn for it and cut at its height."""
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={size}", "--virtual-time-budget=20000", f"--screenshot={path}", url],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    print(f"saved {path} ({url})")


def expanded_groups() -> str:
    """The asset graph's `expanded` parameter (ui-core AssetGraphExplorer: group ids are
    `global@global:<group>`): the graph shows every asset, not five closed group boxes."""
    return quote(",".join(f"global@global:{group}" for group in RECONCILIATION_GROUPS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, start_sandbox(Path(tmp) / "sandbox") as sandbox:
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        database = f"sqlite:///{Path(tmp) / 'sync.db'}"
        port = free_port()
        env = {
            **os.environ,
            **sandbox_environment(sandbox, database, Path(tmp)),
            "DAGSTER_HOME": str(home),
        }
        ui = subprocess.Popen(
            ["dagster", "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        endpoint = f"{url}/graphql"
        try:
            wait_for(lambda: requests.get(f"{url}/server_info", timeout=2).ok, 180)
            org = sandbox.organizations[0]
            key = slug(org.name)

            def tags():
                answer = graphql(
                    endpoint,
                    PARTITION_TAGS,
                    {
                        "repo": LOCATION,
                        "set": f"{NIGHTLY_JOB_NAME}_partition_set",
                        "partition": key,
                    },
                )["partitionSetOrError"]
                return (
                    answer["partition"]["tagsOrError"]["results"] if "partition" in answer else None
                )

            params = {
                "selector": {**LOCATION, "jobName": NIGHTLY_JOB_NAME},
                "runConfigData": {},
                "executionMetadata": {"tags": wait_for(tags, 120)},
            }
            launched = graphql(endpoint, LAUNCH, {"executionParams": params})["launchRun"]
            run_id = launched["run"]["runId"]
            wait_for(
                lambda: (
                    graphql(endpoint, RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
                    in ("SUCCESS", "FAILURE")
                ),
                300,
            )
            # The global lineage page: the job page opens its info panel over a graph laid out
            # for the full width, and the graph's right half was cut off.
            screenshot(
                f"{url}/asset-groups?expanded={expanded_groups()}",
                args.out / "asset-graph.png",
                "2400,1200",
            )
            # 1500 px: the step chart gets room above its floating search box
            screenshot(f"{url}/runs/{run_id}", args.out / "run.png", "1600,1500")
            screenshot(
                f"{url}/assets/sync_report?partition={key}",
                args.out / "sync-report.png",
                "1600,2300",
            )
            screenshot(
                f"{url}/locations/sync_pipeline/jobs/{JOB_NAME}/playground",
                args.out / "launchpad.png",
            )
        finally:
            os.killpg(ui.pid, signal.SIGTERM)
            ui.wait(timeout=30)


if __name__ == "__main__":
    main()
