"""Latency of an on-demand sync under `dagster dev`: from `POST .../sync` to status `synced`.

Starts the sandbox, `dagster dev` (webserver + daemon, with the project's dagster.yaml, in its own
process group) and the sync API (in this process; it submits each request's run through the
webserver, or with `--via-sensor` leaves every run to the request sensor), then for each of N new
CRM documents: POST /sync, poll GET /sync?documentId= every 100 ms until it says `synced`. Two
rounds:
- sequential: one request at a time (what one user clicking sees);
- burst: N requests posted at once (the API submits the first at once; the request sensor batches
  the rest, one run per tick).
Each sequential sample is split into phases from the run's own event log (timestamps written by
the webserver, the daemon and the run worker):
- `accept`: POST -> request queued (authentication, the document's look-up);
- `to_run`: -> run created and enqueued (the request sensor's next tick, or the API's own
  submission);
- `queue`: -> RUN_STARTING (the daemon took it off the run queue: its dequeue interval);
- `worker_up`: -> the run worker's first event (the launch over gRPC, a new interpreter,
  `import dagster`);
- `load_code`: -> RUN_START (the code location imported and the job built in the worker);
- `step_start`: -> STEP_START (the run's set-up: resources, plan, events);
- `sync_seen`: -> status seen `synced` (the sync itself, then the API's read, up to 100 ms of
  polling).

Absolute times drift on a shared machine, so the baseline of the same run is the sync itself,
done in this process without Dagster (`sync.targeted.sync_documents` on one new document): the
ratio says how much of the latency is orchestration.

    uv run python benchmarks/on_demand_latency.py [--requests 20] [--skip-burst] [--via-sensor]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from sync_pipeline.api.app import PREFIX, create_app  # noqa: E402
from sync_pipeline.api.config import DAGSTER_URL_ENV, TOKENS_ENV, ApiConfig  # noqa: E402
from sync_pipeline.demo import patched_environ, sandbox_crm_client, sandbox_environment  # noqa: E402
from sync_pipeline.metakocka.client import MetakockaClient  # noqa: E402
from sync_pipeline.ops.sync_documents import JOB_NAME  # noqa: E402
from sync_pipeline.sandbox.runner import start_sandbox  # noqa: E402
from sync_pipeline.sandbox.serve import serve_in_thread  # noqa: E402
from sync_pipeline.sensors import CHANGE_INTERVAL_ENV  # noqa: E402
from sync_pipeline.store.repository import SyncStore  # noqa: E402
from sync_pipeline.sync.targeted import sync_documents  # noqa: E402
from sync_pipeline_tests.dagster_dev import dagster_dev, run_events, runs  # noqa: E402
from sync_pipeline_tests.helpers import CrmHttp  # noqa: E402
from sync_pipeline_tests.on_demand_helpers import new_crm_order  # noqa: E402

TIMEOUT_S = 180


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


class Client:
    def __init__(self, url: str, token: str, org_id: str):
        self.url, self.org_id = url + PREFIX, org_id
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def request_sync(self, document_id: str) -> str:
        response = self.session.post(
            f"{self.url}/sync", json={"documentId": document_id}, timeout=30
        )
        response.raise_for_status()
        return response.json()["requestId"]

    def wait_synced(self, document_id: str) -> float:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            body = self.session.get(
                f"{self.url}/sync", params={"documentId": document_id}, timeout=30
            ).json()
            if body["status"] == "synced":
                return time.monotonic()
            if body.get("latestRequest") and body["latestRequest"]["state"] == "failed":
                raise RuntimeError(f"request failed: {body}")
            time.sleep(0.1)
        raise TimeoutError(f"{document_id} not synced after {TIMEOUT_S} s")

    def request_row(self, request_id: str) -> dict:
        return self.session.get(f"{self.url}/requests/{request_id}", timeout=30).json()


def one_sync(client: Client, crm: CrmHttp, org, number: str) -> tuple[float, str, float]:
    """(latency, request id, wall-clock time of the POST)."""
    document = crm.insert_document(*new_crm_order(org, number))
    posted, start = time.time(), time.monotonic()
    request_id = client.request_sync(document["id"])
    done = client.wait_synced(document["id"])
    return done - start, request_id, posted


def phases(dagster_url: str, client: Client, request_id: str, posted: float, latency: float):
    """Split one sample using the run's event log (seconds, summing to the latency)."""
    row = client.request_row(request_id)
    events = run_events(dagster_url, row["runId"])
    first = {}
    for event in events:
        first.setdefault(event["eventType"], float(event["timestamp"]) / 1000)
    worker = next(
        float(e["timestamp"]) / 1000 for e in events if e["message"].startswith("Started process")
    )
    marks = {
        "accept": datetime.fromisoformat(row["createdAt"]).timestamp(),
        "to_run": first["RUN_ENQUEUED"],
        "queue": first["RUN_STARTING"],
        "worker_up": worker,
        "load_code": first["RUN_START"],
        "step_start": first["STEP_START"],
    }
    split, previous = {}, posted
    for name, at in marks.items():
        split[name] = at - previous
        previous = at
    split["sync_seen"] = latency - (previous - posted)
    return split


def baseline(sandbox, org, database_url: str, crm: CrmHttp, samples: int = 5) -> float:
    """Median time of the sync itself, in process, without Dagster."""
    store = SyncStore(database_url)
    store.create_schema()
    crm_client = sandbox_crm_client(sandbox, org.crm_api_key)
    mk = MetakockaClient(sandbox.metakocka_url, org.metakocka_company_id, org.metakocka_secret_key)
    times = []
    for i in range(samples):
        document = crm.insert_document(*new_crm_order(org, f"SO-BASE-{i}"))
        start = time.perf_counter()
        sync_documents(
            org.id,
            "crm_to_metakocka",
            crm_ids=[document["id"]],
            crm=crm_client,
            metakocka=mk,
            store=store,
        )
        times.append(time.perf_counter() - start)
    store.dispose()
    return statistics.median(times)


def summary(name: str, latencies: list[float]) -> str:
    return (
        f"{name:<11} n={len(latencies):<3} p50={percentile(latencies, 50):6.2f} s  "
        f"p95={percentile(latencies, 95):6.2f} s  min={min(latencies):6.2f} s  "
        f"max={max(latencies):6.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--skip-burst", action="store_true")
    parser.add_argument(
        "--via-sensor",
        action="store_true",
        help=f"the API without {DAGSTER_URL_ENV}: every run launched by the request sensor",
    )
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="on-demand-latency-"))
    database_url = f"sqlite:///{work / 'sync.db'}"
    with start_sandbox(work / "sandbox", documents_per_org=30, reset=True) as sandbox:
        org = sandbox.organizations[0]
        token = "bench-token"
        env = {
            **sandbox_environment(sandbox, database_url, work),
            TOKENS_ENV: json.dumps({token: org.id}),
            # The change sensor would also queue each new document the benchmark creates (it is
            # a real change); off, so every run measured is the one the API asked for.
            CHANGE_INTERVAL_ENV: "0",
        }
        with patched_environ(env):
            crm = CrmHttp(sandbox)
            base = baseline(sandbox, org, database_url, crm)
            with dagster_dev(dict(os.environ), work / "dagster_home") as dagster_url:
                api_env = {} if args.via_sensor else {DAGSTER_URL_ENV: dagster_url}
                config = ApiConfig.from_env({**os.environ, **api_env})
                server = serve_in_thread(create_app(config))
                client = Client(server.url, token, org.id)
                try:
                    print("warming up (code location, daemon, first run)...", flush=True)
                    one_sync(client, crm, org, "SO-WARMUP")
                    sequential, parts = [], []
                    for i in range(args.requests):
                        latency, request_id, posted = one_sync(client, crm, org, f"SO-SEQ-{i}")
                        sequential.append(latency)
                        parts.append(phases(dagster_url, client, request_id, posted, latency))
                        print(
                            f"  sequential {i + 1:>2}/{args.requests}: {latency:5.2f} s", flush=True
                        )
                    burst = []
                    if not args.skip_burst:
                        with ThreadPoolExecutor(max_workers=args.requests) as pool:
                            futures = [
                                pool.submit(one_sync, client, crm, org, f"SO-BURST-{i}")
                                for i in range(args.requests)
                            ]
                            burst = [f.result()[0] for f in futures]
                        burst_runs = (
                            len(runs(dagster_url, pipelineName=JOB_NAME)) - args.requests - 1
                        )
                finally:
                    server.stop()
                    config.store.dispose()

    path = "the request sensor" if args.via_sensor else f"the API ({DAGSTER_URL_ENV})"
    print()
    print(
        f"on-demand latency, POST .../sync -> status synced ({args.requests} requests each), "
        f"runs launched by {path}"
    )
    print(summary("sequential", sequential))
    if burst:
        print(summary("burst", burst) + f"  ({burst_runs} run(s) for {args.requests} requests)")
    print(
        "sequential phases (median): "
        + ", ".join(f"{k} {statistics.median(p[k] for p in parts):.2f} s" for k in parts[0])
    )
    print(f"baseline: the sync itself in process, median {base:.3f} s")
    print(f"ratio p50 / baseline: {percentile(sequential, 50) / base:.1f}x")
    target = percentile(sequential, 50) <= 2
    print(f"target p50 <= 2 s (issue 20): {'met' if target else 'NOT met'}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
