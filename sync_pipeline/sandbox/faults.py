"""Fault injection shared by the sandbox servers (Metakocka and CRM).

Why it exists: the pipeline's retry policy, its "no blind retry of a create" rule and its
rate-limit handling can only be trusted if they are exercised against the failures the real
services produce. This module decides *when* a fault fires (deterministically, from a seed and
the call order, so a failing test can be replayed) and implements the faults that live below
the application protocol (dropped connections, broken bodies, HTML error pages, stalls).
Application-level faults (Metakocka ``opr_code`` 1/5, a CRM 429 body) are rendered by each app.

It imports only the standard library and Starlette, because the sandbox plays the outside
world and must never share code with the pipeline it tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, fields
from typing import Any

from starlette.responses import HTMLResponse, Response

FAULT_KINDS = (
    "error_5xx_html",
    "opr_code_1",
    "opr_code_5",
    "rate_limit_429",
    "timeout_after_commit",
    "connection_reset",
    "malformed_body",
    "slow",
)

#: Faults that apply before the request is processed and replace the answer entirely.
TRANSPORT_FAULTS = frozenset(
    {"error_5xx_html", "rate_limit_429", "connection_reset", "malformed_body"}
)

#: Scope key under which :func:`expose_transport` stores the raw asyncio transport.
TRANSPORT_SCOPE_KEY = "sandbox.transport"

#: Default number of searches a Metakocka company may run at once (metakocka-api.md §11: one).
DEFAULT_MAX_CONCURRENT_SEARCHES = 1


@dataclass
class FaultRule:
    """One way to misbehave: which fault, how often, on which endpoints, how many times.

    ``endpoints`` holds endpoint names as the app reports them (``"put_document"``,
    ``"GET sales_documents"``). A name without a method (``"sales_documents"``) also matches the
    method-qualified names, so one rule can cover every method of a resource.
    """

    fault: str
    rate: float = 1.0
    endpoints: list[str] | None = None
    count: int | None = None
    delay_s: float = 5.0
    retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        if self.fault not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.fault!r}; expected one of {FAULT_KINDS}")
        if not 0.0 <= float(self.rate) <= 1.0:
            raise ValueError(f"rate must be within [0, 1], got {self.rate!r}")
        if self.endpoints is not None:
            self.endpoints = [str(e) for e in self.endpoints]

    def matches(self, endpoint: str) -> bool:
        if self.endpoints is None:
            return True
        return endpoint in self.endpoints or endpoint.rsplit(" ", 1)[-1] in self.endpoints

    @classmethod
    def from_dict(cls, data: dict[str, Any] | FaultRule) -> FaultRule:
        if isinstance(data, FaultRule):
            return cls(**asdict(data))
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown FaultRule keys: {sorted(unknown)}")
        return cls(**data)


class FaultInjector:
    """Seeded fault picker plus the per-key concurrency limits of a sandbox server.

    Thread-safe: the apps run in one event loop, but tests reconfigure from other threads.
    ``pick`` draws from one ``random.Random`` in call order, so the same seed and the same
    sequence of calls give the same faults.
    """

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._search_gates: dict[tuple[int, str], asyncio.Semaphore] = {}
        self._in_flight: dict[str, int] = {}
        self.configure({"seed": seed})

    # -- configuration -------------------------------------------------------------------
    def configure(self, spec: dict[str, Any]) -> None:
        """Replace the whole configuration and reset every counter.

        ``spec`` keys: ``seed``, ``latency_ms`` (the response time of a call, see ``deadline``),
        ``max_concurrent`` (in-flight calls per key; above it the app answers with its rate-limit
        error at once), ``max_concurrent_searches`` (Metakocka: searches per company that run at
        once, the others wait; absent -> 1 as on the real service, ``None`` -> unlimited) and
        ``rules`` (FaultRule dicts).
        """
        spec = dict(spec or {})
        unknown = set(spec) - {
            "seed",
            "latency_ms",
            "max_concurrent",
            "max_concurrent_searches",
            "rules",
        }
        if unknown:
            raise ValueError(f"unknown fault spec keys: {sorted(unknown)}")
        rules = [FaultRule.from_dict(r) for r in spec.get("rules") or []]
        seed = int(spec.get("seed", 0))
        max_searches = spec.get("max_concurrent_searches", DEFAULT_MAX_CONCURRENT_SEARCHES)
        max_concurrent = spec.get("max_concurrent")
        with self._lock:
            self._seed = seed
            self._rng = random.Random(seed)
            self._latency_s = max(0.0, float(spec.get("latency_ms", 0.0) or 0.0)) / 1000.0
            self._max_concurrent = None if max_concurrent is None else int(max_concurrent)
            self._max_searches = None if max_searches is None else max(1, int(max_searches))
            self._rules = rules
            self._fired = [0] * len(rules)
            self._search_gates = {}
            self._rejected_over_cap = 0

    def snapshot(self) -> dict[str, Any]:
        """Current configuration and how often each rule fired (``GET /_sandbox/faults``)."""
        with self._lock:
            return {
                "seed": self._seed,
                "latency_ms": self._latency_s * 1000.0,
                "max_concurrent": self._max_concurrent,
                "max_concurrent_searches": self._max_searches,
                "rules": [
                    asdict(r) | {"fired": n} for r, n in zip(self._rules, self._fired, strict=True)
                ],
                "rejected_over_concurrency_cap": self._rejected_over_cap,
                "in_flight": {k: v for k, v in self._in_flight.items() if v},
            }

    @property
    def latency_s(self) -> float:
        return self._latency_s

    @property
    def max_concurrent(self) -> int | None:
        return self._max_concurrent

    @property
    def max_concurrent_searches(self) -> int | None:
        return self._max_searches

    # -- picking -------------------------------------------------------------------------
    def pick(self, endpoint: str) -> FaultRule | None:
        """Return the first rule that fires for this call, or None. Counts the firing."""
        if not self._rules:  # fast path: no lock, no draw
            return None
        with self._lock:
            for i, rule in enumerate(self._rules):
                if not rule.matches(endpoint):
                    continue
                if rule.count is not None and self._fired[i] >= rule.count:
                    continue
                if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                    continue
                self._fired[i] += 1
                return rule
        return None

    def fired(self, index: int) -> int:
        with self._lock:
            return self._fired[index]

    # -- concurrency ---------------------------------------------------------------------
    def try_acquire(self, key: str) -> bool:
        """Take an in-flight slot for ``key`` (company / API key); False when over the cap."""
        with self._lock:
            n = self._in_flight.get(key, 0)
            if self._max_concurrent is not None and n >= self._max_concurrent:
                self._rejected_over_cap += 1
                return False
            self._in_flight[key] = n + 1
            return True

    def release(self, key: str) -> None:
        with self._lock:
            self._in_flight[key] = max(0, self._in_flight.get(key, 0) - 1)

    @contextlib.asynccontextmanager
    async def search_slot(self, key: str) -> AsyncIterator[None]:
        """Queue a search behind the running ones of the same company (metakocka-api.md §11)."""
        limit = self._max_searches
        if limit is None:
            yield
            return
        gate_key = (id(asyncio.get_running_loop()), key)
        with self._lock:
            gate = self._search_gates.get(gate_key)
            if gate is None:
                gate = self._search_gates[gate_key] = asyncio.Semaphore(limit)
        async with gate:
            yield

    def deadline(self) -> float:
        """When a call that arrives now is answered, in event-loop time.

        ``latency_ms`` is the service's response time: the app does its own work (parsing, the
        store, the answer) within it, as a real service does, rather than on top of it. So a
        benchmark at 20 ms per call measures calls that take 20 ms, not 20 ms plus the
        simulator's own cost. Work that takes longer than the latency answers when it is done.
        """
        return asyncio.get_running_loop().time() + self._latency_s

    @staticmethod
    async def wait_until(deadline: float) -> None:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining > 0:
            await asyncio.sleep(remaining)


# -- transport-level faults -----------------------------------------------------------------
_HTML_PAGES = {
    502: "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
    "</h1></center><hr><center>nginx</center></body></html>",
    503: "<html><head><title>503 Service Temporarily Unavailable</title></head><body><center>"
    "<h1>503 Service Temporarily Unavailable</h1></center><hr><center>nginx</center></body>"
    "</html>",
}


def _abortable_transport(scope: dict, send: Any) -> asyncio.Transport | None:
    transport = scope.get(TRANSPORT_SCOPE_KEY)
    if transport is None:
        transport = getattr(getattr(send, "__self__", None), "transport", None)
    return transport


class ConnectionResetResponse(Response):
    """Drop the TCP connection without an answer (RST), as a crashed proxy or node would.

    The client sees a connection error, not an HTTP status: exactly the "did my write land?"
    situation the pipeline must resolve by looking the document up. Needs the raw transport
    (see :func:`expose_transport`; ``serve_in_thread`` wires it). Without it the fallback sends
    headers announcing a longer body than it delivers and closes the stream, which clients
    report as a broken response (requests: ``ChunkedEncodingError``).
    """

    def __init__(self) -> None:
        super().__init__(content=b"", status_code=200)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        transport = _abortable_transport(scope, send)
        if transport is not None and not transport.is_closing():
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
            # Let the server's connection_lost run, so it does not try to send a 500 itself.
            for _ in range(3):
                await asyncio.sleep(0)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send(
            {"type": "http.response.body", "body": b'{"opr_code":"0","mk_', "more_body": True}
        )
        raise ConnectionResetError("sandbox fault: connection_reset")


def expose_transport(app: Any) -> Any:
    """Wrap an ASGI app so responses deeper in the stack can reach the raw transport.

    Middleware (Starlette/FastAPI) wraps ``send``; only the outermost layer sees the server's
    own ``send`` whose owner holds the asyncio transport. Costs one dict assignment per request.
    """

    async def wrapped(scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if transport is not None:
                scope[TRANSPORT_SCOPE_KEY] = transport
        await app(scope, receive, send)

    wrapped.__wrapped__ = app  # type: ignore[attr-defined]
    return wrapped


def html_error_response(rule: FaultRule, nth: int = 0) -> Response:
    """A proxy's HTML error page (502, or 503 with Retry-After on every second firing)."""
    status = 503 if nth % 2 else 502
    headers = {"Retry-After": _retry_after(rule)} if status == 503 else None
    return HTMLResponse(_HTML_PAGES[status], status_code=status, headers=headers)


def malformed_json_response() -> Response:
    """HTTP 200 whose JSON body is cut off: the client must not treat it as success."""
    return Response(
        b'{"opr_code":"0","opr_time_ms":"12","mk_id":"16002',
        status_code=200,
        media_type="application/json",
    )


def rate_limit_429_response(rule: FaultRule) -> Response:
    """A gateway's 429 with Retry-After (apps with their own 429 body can build their own)."""
    return Response(
        b'{"message":"Too Many Requests"}',
        status_code=429,
        media_type="application/json",
        headers={"Retry-After": _retry_after(rule)},
    )


def _retry_after(rule: FaultRule) -> str:
    secs = max(0.0, float(rule.retry_after_s))
    return str(int(secs)) if secs == int(secs) else f"{secs:g}"


async def apply_transport_fault(rule: FaultRule | None, nth: int = 0) -> Response | None:
    """Carry out the transport part of a picked fault.

    Returns a response that replaces the normal answer (HTML 5xx, 429, malformed body, dropped
    connection), or None when the app should answer normally. ``slow`` sleeps here and returns
    None; app-level kinds (``opr_code_*``, ``timeout_after_commit``) also return None and are
    handled by the app (``timeout_after_commit``: write, then :func:`stall_after_commit`).
    """
    if rule is None:
        return None
    kind = rule.fault
    if kind == "slow":
        await asyncio.sleep(rule.delay_s)
        return None
    if kind == "error_5xx_html":
        return html_error_response(rule, nth)
    if kind == "malformed_body":
        return malformed_json_response()
    if kind == "rate_limit_429":
        return rate_limit_429_response(rule)
    if kind == "connection_reset":
        return ConnectionResetResponse()
    return None


async def stall_after_commit(rule: FaultRule | None) -> None:
    """For ``timeout_after_commit``: the write is stored, then the answer comes too late."""
    if rule is not None and rule.fault == "timeout_after_commit":
        await asyncio.sleep(rule.delay_s)
