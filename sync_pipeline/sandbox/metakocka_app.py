"""The simulated Metakocka REST/JSON API as a plain ASGI app.

Why plain ASGI instead of FastAPI routing: every MK call is a POST of one JSON body to
``/rest/eshop/v1/<endpoint>``, benchmarks push 100,000 documents per company through it, and
the fault injector needs the raw ``send`` to drop a connection. One dispatch function keeps the
per-request overhead to JSON parsing plus the store operation.

Order of a call: parse JSON (non-JSON -> opr_code 2) -> count it -> in-flight cap per company
(over it -> opr_code 5 "Quote exceeds" at once) -> fault pick (transport faults and opr_code 1/5
answer after the latency, before auth) -> auth (opr_code 3) -> searches queue per company, their
latency counted from their turn (metakocka-api.md §11) -> store operation -> the encoded answer,
sent once the call's latency has passed (the latency is the response time, the app's own work
included: ``FaultInjector.deadline``) -> ``timeout_after_commit`` stall.
API errors are HTTP 200 with ``opr_code``; a wrong path is an HTML 404, as from a proxy.

Admin endpoints (not MK API; for tests, demo and benchmarks) live under ``/_sandbox/``:
``POST|GET /_sandbox/faults``, ``GET /_sandbox/documents?company_id=``, ``GET /_sandbox/stats``,
``POST /_sandbox/stats/reset``, ``POST /_sandbox/edit``, ``POST /_sandbox/duplicate_check``,
``POST /_sandbox/not_found_code`` (``{"opr_code": "2"}``: how a missing document is answered),
``POST /_sandbox/quirks``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter, defaultdict
from typing import Any
from urllib.parse import parse_qs

from sync_pipeline.sandbox.faults import FaultInjector, apply_transport_fault, stall_after_commit
from sync_pipeline.sandbox.metakocka_store import NOT_FOUND_CODES, MetakockaError, MetakockaState
from sync_pipeline.sandbox.metakocka_values import MkError

API_PREFIX = "/rest/eshop/v1/"
WRITE_ENDPOINTS = frozenset(
    {"put_document", "update_document", "change_document_status", "delete_document"}
)
ENDPOINTS = frozenset(
    {"get_document", "search", "search_query_advance_discovery"} | WRITE_ENDPOINTS
)
_log = logging.getLogger("sync_pipeline.sandbox.metakocka")
_HTML_404 = (
    b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body>"
    b"<h1>Not Found</h1><p>The requested URL was not found on this server.</p>"
    b"</body></html>"
)


class CallStats:
    """Call counts per endpoint and company; benchmarks read them to count API calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "_lock", threading.Lock()):
            self.calls: defaultdict[str, Counter[str]] = defaultdict(Counter)
            self.writes: defaultdict[str, Counter[str]] = defaultdict(Counter)
            self.write_calls: Counter[str] = Counter()
            """Calls to a write endpoint, whatever the answer (a refused write was still
            attempted: what a test of a read-only client counts)."""
            self.opr_codes: Counter[str] = Counter()
            self.faults: Counter[str] = Counter()
            self.rejected_over_cap: Counter[str] = Counter()

    def call(self, endpoint: str, company: str) -> None:
        with self._lock:
            self.calls[endpoint][company] += 1
            if endpoint in WRITE_ENDPOINTS:
                self.write_calls[company] += 1

    def answered(self, endpoint: str, company: str, opr_code: str) -> None:
        with self._lock:
            self.opr_codes[opr_code] += 1
            if opr_code == "0" and endpoint in WRITE_ENDPOINTS:
                self.writes[company][endpoint] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def over_cap(self, company: str) -> None:
        with self._lock:
            self.rejected_over_cap[company] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            by_company: Counter[str] = Counter()
            for per_company in self.calls.values():
                by_company.update(per_company)
            return {
                "calls_total": sum(by_company.values()),
                "calls": {ep: dict(c) for ep, c in self.calls.items()},
                "calls_by_company": dict(by_company),
                "writes_total": sum(sum(c.values()) for c in self.writes.values()),
                "writes": {cid: dict(c) for cid, c in self.writes.items()},
                "write_calls_total": sum(self.write_calls.values()),
                "opr_codes": dict(self.opr_codes),
                "faults": dict(self.faults),
                "rejected_over_concurrency_cap": dict(self.rejected_over_cap),
            }


class MetakockaApp:
    """ASGI callable; ``.state``, ``.faults`` and ``.stats`` are there for in-process tests."""

    def __init__(self, state: MetakockaState, faults: FaultInjector) -> None:
        self.state = state
        self.faults = faults
        self.stats = CallStats()
        self._handlers = {
            "put_document": state.put_document,
            "get_document": state.get_document,
            "update_document": state.update_document,
            "change_document_status": state.change_document_status,
            "delete_document": state.delete_document,
            "search_query_advance_discovery": state.query_advance_discovery,
        }

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith(API_PREFIX) and path[len(API_PREFIX) :] in ENDPOINTS:
            if scope["method"] != "POST":
                await _send(
                    send,
                    405,
                    b"<html><body><h1>405 Method Not Allowed</h1></body></html>",
                    b"text/html",
                )
                return
            await self._api_call(path[len(API_PREFIX) :], scope, receive, send)
        elif path.startswith("/_sandbox/"):
            await self._admin(path[len("/_sandbox/") :], scope, receive, send)
        else:
            await _send(send, 404, _HTML_404, b"text/html")

    async def _api_call(self, endpoint: str, scope: dict, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        answer_at = self.faults.deadline()  # searches: counted from their turn in the queue
        try:
            body = json.loads(await _read_body(receive))
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            self.stats.call(endpoint, "")
            self.stats.answered(endpoint, "", "2")
            await _send_json(send, {"opr_code": "2", "opr_desc": "Request body is not valid JSON"})
            return
        claimed = str(body.get("company_id", ""))
        self.stats.call(endpoint, claimed)
        faults = self.faults
        if not faults.try_acquire(claimed):
            self.stats.over_cap(claimed)
            self.stats.answered(endpoint, claimed, "5")
            await _send_json(send, {"opr_code": "5", "opr_desc": "Quote exceeds"})
            return
        try:
            rule = faults.pick(endpoint)
            if rule is not None:
                if endpoint != "search":
                    await faults.wait_until(answer_at)  # a fault answers after the latency too
                self.stats.fault(rule.fault)
                if rule.fault in ("opr_code_1", "opr_code_5"):
                    code = rule.fault[-1]
                    desc = "Unknown internal server error" if code == "1" else "Quote exceeds"
                    self.stats.answered(endpoint, claimed, code)
                    await _send_json(send, {"opr_code": code, "opr_desc": desc})
                    return
                fault_response = await apply_transport_fault(rule, self.stats.faults[rule.fault])
                if fault_response is not None:
                    await fault_response(scope, receive, send)
                    return
            code, answer = await self._run(endpoint, body, started, answer_at)
            self.stats.answered(endpoint, claimed, code)
            await stall_after_commit(rule)
            await _send(send, 200, answer, JSON_CONTENT_TYPE)
        finally:
            faults.release(claimed)

    async def _run(
        self, endpoint: str, body: dict[str, Any], started: float, answer_at: float
    ) -> tuple[str, bytes]:
        """Carry out the call: its opr_code and encoded answer, once its latency has passed (a
        search's counted from its turn in the company's queue, which it holds until then)."""
        try:
            company = self.state.authenticate(body)
            if endpoint == "search":
                async with self.faults.search_slot(company):
                    answer_at = self.faults.deadline()
                    page = self.state.search(company, body, echo_requested_limit=self.state.quirks)
                    return await self._answer_when_due(endpoint, page, started, answer_at)
            result = self._handlers[endpoint](company, body)
        except MkError as exc:
            result = dict(exc.body)
        except Exception:  # a sandbox bug must look like MK's own internal error, and be logged
            _log.exception("sandbox Metakocka failed on %s", endpoint)
            result = {"opr_code": "1", "opr_desc": "Unknown internal server error"}
        return await self._answer_when_due(endpoint, result, started, answer_at)

    async def _answer_when_due(
        self, endpoint: str, result: dict[str, Any], started: float, answer_at: float
    ) -> tuple[str, bytes]:
        """The answer, encoded before the latency has passed: encoding is the service's work
        too, done within its response time (`FaultInjector.deadline`)."""
        due_in = max(0.0, answer_at - asyncio.get_running_loop().time())
        elapsed = str(int((time.perf_counter() - started + due_in) * 1000))
        code = str(result["opr_code"])
        if endpoint == "search" and self.state.quirks:
            result = {**result, "opr_time": elapsed}  # §7: some answers name it opr_time
        else:
            result = {"opr_code": result.pop("opr_code"), "opr_time_ms": elapsed, **result}
        answer = _encode(result)
        await self.faults.wait_until(answer_at)
        return code, answer

    # -- admin -----------------------------------------------------------------------------
    async def _admin(self, name: str, scope: dict, receive: Any, send: Any) -> None:
        method = scope["method"]
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        try:
            body = json.loads(await _read_body(receive) or b"{}") if method == "POST" else {}
            status, answer = self._admin_answer(method, name, query, body)
        except (ValueError, TypeError, KeyError) as exc:
            status, answer = 400, {"error": f"{type(exc).__name__}: {exc}"}
        except MetakockaError as exc:
            status, answer = (404 if exc.body.get("opr_code") == "6" else 400), exc.body
        await _send_json(send, answer, status)

    def _admin_answer(
        self, method: str, name: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        state = self.state
        if name == "faults" and method == "POST":
            self.faults.configure(body)
            return 200, self.faults.snapshot()
        if name == "faults" and method == "GET":
            return 200, self.faults.snapshot()
        if name == "stats" and method == "GET":
            return 200, self.stats.snapshot()
        if name == "stats/reset" and method == "POST":
            self.stats.reset()
            return 200, self.stats.snapshot()
        if name == "documents" and method == "GET":
            cid = query.get("company_id", "")
            if cid not in state.companies:
                return 404, {"error": f"unknown company_id {cid!r}"}
            return 200, {"company_id": cid, "documents": state.documents(cid)}
        if name == "edit" and method == "POST":
            cid = str(body["company_id"])
            if cid not in state.companies:
                return 404, {"error": f"unknown company_id {cid!r}"}
            doc = state.edit_document(cid, str(body["mk_id"]), dict(body["changes"]))
            return 200, {"document": doc}
        if name == "duplicate_check" and method == "POST":
            state.set_duplicate_check(str(body["company_id"]), bool(body["enabled"]))
            return 200, {"duplicate_check": sorted(state.duplicate_check)}
        if name == "not_found_code" and method == "POST":
            code = str(body["opr_code"])
            if code not in NOT_FOUND_CODES:
                return 400, {"error": f"opr_code must be one of {NOT_FOUND_CODES}"}
            state.not_found_code = code
            return 200, {"not_found_code": code}
        if name == "quirks" and method == "POST":
            state.quirks = bool(body["enabled"])
            return 200, {"quirks": state.quirks}
        return 404, {"error": f"no admin endpoint {method} /_sandbox/{name}"}


def create_metakocka_app(state: MetakockaState, faults: FaultInjector) -> MetakockaApp:
    """The ASGI app serving ``state`` with ``faults`` (serve it with ``serve_in_thread``)."""
    return MetakockaApp(state, faults)


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _send(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


JSON_CONTENT_TYPE = b"application/json;charset=UTF-8"


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def _send_json(send: Any, obj: Any, status: int = 200) -> None:
    await _send(send, status, _encode(obj), JSON_CONTENT_TYPE)


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
