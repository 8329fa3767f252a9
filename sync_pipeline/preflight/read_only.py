"""HTTP sessions that cannot write: the preflight's promise, kept below the API clients.

Why not by care alone: the preflight runs the same clients and use cases as the nightly run
(extract, validate, plan), so a later change to one of them could make it write without anyone
noticing. Every request of the preflight's clients goes through a `ReadOnlySession`, which
refuses, before anything is sent, whatever is not on its system's list of reads:

- the CRM (PostgREST): GET and HEAD on any table, and POST only to docs/crm-setup.sql's status
  function, which reads the catalog (PostgREST calls every function by POST);
- Metakocka: every call is a POST (metakocka-api.md section 1), so reads are told apart by
  endpoint: ``search``, ``get_document`` and ``search_query_advance_discovery``. Anything else
  (``put_document``, ``update_document``, ``change_document_status``, ``put_transaction``, ...)
  is refused, including endpoints this list has never heard of.

A refusal is a `WriteRefused`, not a `SyncError`: no retry policy or error handler mistakes it for
the remote system failing; it ends the preflight with a traceback that names the request.

The session also times each exchange it lets through: the latency at which the preflight prices
the first run (`estimate.py`).
"""

import statistics
import threading
import time
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import requests

from sync_pipeline.adapters.http_session import new_session
from sync_pipeline.crm.client import API_PATH as CRM_API_PATH
from sync_pipeline.crm.profiles import SETUP_FUNCTION
from sync_pipeline.metakocka.client import API_PATH as METAKOCKA_API_PATH


class WriteRefused(RuntimeError):
    """A request the preflight's session will not send: it could change a system."""


@dataclass(frozen=True)
class ReadRule:
    """Which requests of one system are reads."""

    system: str
    methods: frozenset[str]
    """Methods that read wherever they go."""
    read_posts: tuple[str, ...]
    """Path endings where a POST reads."""

    def allows(self, method: str, path: str) -> bool:
        method = method.upper()
        if method in self.methods:
            return True
        return method == "POST" and path.rstrip("/").endswith(self.read_posts)


CRM_READS = ReadRule(
    "CRM",
    frozenset({"GET", "HEAD"}),
    (f"{CRM_API_PATH}rpc/{SETUP_FUNCTION}",),
)
METAKOCKA_READS = ReadRule(
    "Metakocka",
    frozenset(),
    tuple(
        f"{METAKOCKA_API_PATH}{endpoint}"
        for endpoint in ("search", "get_document", "search_query_advance_discovery")
    ),
)


class ReadOnlySession(requests.Session):
    """A session that sends only `rule`'s reads, and times them."""

    def __init__(self, rule: ReadRule):
        super().__init__()
        self.rule = rule
        self._lock = threading.Lock()
        self._seconds: list[float] = []

    def request(self, method, url, *args, **kwargs):
        path = urlsplit(str(url)).path
        if not self.rule.allows(str(method), path):
            raise WriteRefused(
                f"the preflight is read-only: {self.rule.system} {str(method).upper()} {path} "
                "was refused before it was sent"
            )
        started = time.perf_counter()
        try:
            return super().request(method, url, *args, **kwargs)
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self._seconds.append(elapsed)

    def median_latency_s(self) -> float | None:
        """The median time of one exchange so far (None before the first)."""
        with self._lock:
            return statistics.median(self._seconds) if self._seconds else None


def read_only_session(base_url: str, rule: ReadRule, pool_size: int) -> ReadOnlySession:
    """A `ReadOnlySession` set up as the clients set up their own (`new_session`)."""
    return cast(ReadOnlySession, new_session(base_url, pool_size, lambda: ReadOnlySession(rule)))
