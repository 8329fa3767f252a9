"""The HTTP session both API clients use.

Why one place: a session must fit the client's concurrency (one pooled connection per request
slot), must never resend a request by itself (a resent create could be a duplicate; retries are
the policy's business, `retry.py`), and must not redo per call what can be done once. requests'
`trust_env` looks the proxy variables up in the process environment and stats `~/.netrc` on every
request, about a fifth of a call's CPU time in profiles; requests reads the proxies once, here,
instead (so `HTTPS_PROXY` / `NO_PROXY` still apply), and the APIs' credentials travel in
headers or bodies, never in a netrc file. And the slots that keep the requests in flight within an
API's allowance (`RequestSlots`) hand a freed slot over at once.
"""

import threading
import time
from collections.abc import Callable

import requests
from requests.adapters import HTTPAdapter


def new_session(
    base_url: str,
    pool_size: int,
    factory: Callable[[], requests.Session] = requests.Session,
) -> requests.Session:
    """`factory`: what makes the bare session, e.g. one that watches every request (the
    preflight's read-only guard, `preflight/read_only.py`)."""
    session = factory()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"Accept": "application/json"})
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    return session


class RequestSlots:
    """At most `limit` requests in flight (`with slots:` around one HTTP exchange).

    A freed slot is handed over at once. The thread that frees it goes on to read its answer and
    do its bookkeeping holding the GIL, and the thread waiting for the slot could run only when
    that thread let go of the GIL, up to the interpreter's 5 ms switch interval later: at 20 ms a
    call, Metakocka's two slots stood idle 4 % of a push (benchmarks/run.py, item 2). Yielding
    the GIL right after the release (`time.sleep(0)`) lets the waiting thread send its request
    first.
    """

    def __init__(self, limit: int):
        self._semaphore = threading.BoundedSemaphore(limit)

    def __enter__(self) -> "RequestSlots":
        self._semaphore.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self._semaphore.release()
        time.sleep(0)
