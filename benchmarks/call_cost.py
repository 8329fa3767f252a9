"""What one Metakocka call costs on this machine, beyond the sandbox's latency, per HTTP client.

    uv run python benchmarks/call_cost.py               # 20 ms, 300 calls per client
    uv run python benchmarks/call_cost.py --latency-ms 0

Item 2 of `benchmarks/run.py` divides the bound (calls x latency / slots) by the wall time, so
whatever a call costs beyond its latency is lost efficiency that no scheduling can win back. This
measures that cost alone: the same `get_document` call, one at a time, against the sandbox (in its
own process, answering `--latency-ms` after a request arrives), sent by stacks from the bare
socket up to the pipeline's own client. Each row's `ceiling` is latency / time per call: the best
`api_bound_efficiency` a client of that kind could reach with every slot always busy.
"""

import argparse
import http.client
import json
import socket
import statistics
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import urllib3

from benchmarks.remote_sandbox import RemoteSandbox
from sync_pipeline.adapters.http_session import new_session
from sync_pipeline.metakocka.client import API_PATH, MetakockaClient

DOC_TYPE = "sales_order"


def timed(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """Mean wall and CPU (this thread) time of `call`, in ms, after a few warm-up calls."""
    for _ in range(5):
        call()
    walls, cpus = [], []
    for _ in range(calls):
        wall, cpu = time.perf_counter(), time.thread_time()
        call()
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return 1000 * statistics.mean(walls), 1000 * statistics.mean(cpus)


def clients(url: str, body: dict, mk: MetakockaClient, mk_id: str) -> dict[str, Callable]:
    """One `get_document` exchange per stack, each on its own kept-alive connection."""
    endpoint = url + "get_document"
    parts = urlsplit(endpoint)
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}

    raw = socket.create_connection((parts.hostname, parts.port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data
    reader = raw.makefile("rb")

    def bare_socket() -> None:
        raw.sendall(request)
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        reader.read(length)

    connection = http.client.HTTPConnection(parts.hostname, parts.port)

    def stdlib() -> None:
        connection.request("POST", parts.path, body=data, headers=headers)
        connection.getresponse().read()

    pool = urllib3.HTTPConnectionPool(parts.hostname, parts.port, maxsize=1, retries=False)
    session = new_session(url, 1)

    return {
        "bare socket (hand-written HTTP/1.1)": bare_socket,
        "http.client": stdlib,
        "urllib3": lambda: pool.request("POST", parts.path, body=data, headers=headers).data,
        "requests (the clients' session)": lambda: session.post(endpoint, json=body).json(),
        "MetakockaClient.get_document": lambda: mk.get_document(DOC_TYPE, mk_id),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    with RemoteSandbox(200, in_sync=True) as sandbox:
        org = sandbox.organizations[0]
        mk = MetakockaClient(
            sandbox.metakocka_url, org.metakocka_company_id, org.metakocka_secret_key
        )
        mk_id = str(next(iter(mk.search(DOC_TYPE, result_type=None)))["mk_id"])
        sandbox.configure_faults("metakocka", {"latency_ms": args.latency_ms, "rules": []})
        url = sandbox.metakocka_url.rstrip("/") + API_PATH
        body = {
            "doc_type": DOC_TYPE,
            "doc_id": mk_id,
            "secret_key": org.metakocka_secret_key,
            "company_id": org.metakocka_company_id,
        }
        print(
            f"one Metakocka get_document at a time, sandbox latency {args.latency_ms:g} ms, "
            f"{args.calls} calls per client"
        )
        print(f"{'client':<38}{'ms/call':>9}{'over latency':>14}{'CPU ms':>9}{'ceiling':>9}")
        for name, call in clients(url, body, mk, mk_id).items():
            wall, cpu = timed(call, args.calls)
            ceiling = f"{args.latency_ms / wall:.2f}" if args.latency_ms else "-"
            print(f"{name:<38}{wall:>9.2f}{wall - args.latency_ms:>14.2f}{cpu:>9.2f}{ceiling:>9}")


if __name__ == "__main__":
    main()
