"""The sandbox CRM: Supabase's PostgREST over the CRM's published schema (``crm_ddl``).

Why: the pipeline's CRM adapter must be tested against what Supabase really does over HTTP
(auth headers, ``max-rows``, ``Content-Range``, error bodies, 429s under load, constraints as
PostgreSQL enforces them), not against a mock of our own client. Served at ``/rest/v1/<table>``
for every table of the profile, the OpenAPI description at ``/rest/v1/``, functions at
``/rest/v1/rpc/<name>``; see ``postgrest_parse`` / ``postgrest_query`` for the query language
and ``crm_engine`` for write semantics. Admin endpoints under ``/_sandbox/`` (not part of
PostgREST) configure faults and settings, report call statistics and simulate a user editing a
document in the CRM's UI.

PostgREST's rules followed here (``src/PostgREST/RangeQuery.hs``, ``Response.hs``, docs):
- ``max-rows`` caps every GET and every embedded list; without ``Prefer: count=...`` the answer
  is 200 with ``Content-Range: 0-999/*``, so a short page says nothing about the end; with a
  count, 206 when the page is not the whole result; an offset past a counted total is 416;
- a POST answers 201 (``merge-duplicates`` that inserted nothing: 200), with the rows only under
  ``Prefer: return=representation``; an array's objects must have the same keys unless
  ``columns=`` names them (missing keys are NULL, or defaults under ``Prefer: missing=default``);
- PATCH and DELETE answer 204, or 200 with the rows; a filter matching nothing is not an error.
- A request line over 8 KB is refused with 414 (Supabase's gateway; fresh-crm.md section 5,
  postgrest-js issue #423: "URI too long" for a long ``in.(...)`` list).

Metakocka-flavoured faults map to their CRM equivalents: ``opr_code_5`` is a 429, ``opr_code_1``
a JSON 500. Transport faults (HTML 5xx, dropped connection, cut-off body) answer before the
request is processed; ``timeout_after_commit`` commits, then stalls.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from typing import Any

from fastapi import FastAPI, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from sync_pipeline.sandbox.crm_openapi import openapi_document
from sync_pipeline.sandbox.crm_store import DOCS, ITEMS, CrmState
from sync_pipeline.sandbox.crm_values import PgError, coerce_payload, unknown_column
from sync_pipeline.sandbox.faults import (
    FaultInjector,
    FaultRule,
    apply_transport_fault,
    stall_after_commit,
)
from sync_pipeline.sandbox.postgrest_parse import Condition, Logic, parse_request
from sync_pipeline.sandbox.postgrest_query import matching_rows, project, read_rows

SINGLE_OBJECT = "application/vnd.pgrst.object+json"
JSON_TYPE = "application/json; charset=utf-8"
OPENAPI_TYPE = "application/openapi+json; charset=utf-8"
MAX_REQUEST_LINE = 8192
"""Bytes of path and query string the gateway accepts (fresh-crm.md section 5: ~8 KB)."""


class RequestStats:
    """Call counts per endpoint (``"GET sales_documents"``), statuses, rows written, faults."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls: Counter[str] = Counter()
        self.statuses: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.rows_written: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.unscoped: Counter[str] = Counter()
        self.offsets: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.peak_in_flight: Counter[str] = Counter()
        self.longest_request_line = 0

    def enter(self, key: str) -> None:
        self.in_flight[key] += 1
        self.peak_in_flight[key] = max(self.peak_in_flight[key], self.in_flight[key])

    def snapshot(self) -> dict[str, Any]:
        calls = dict(self.calls)
        return {
            "calls": calls,
            # A function call (POST rpc/...) reads: crm-setup.sql's one writes nothing.
            "writes": sum(n for ep, n in calls.items() if not ep.startswith(("GET ", "POST rpc/"))),
            "statuses": {ep: dict(c) for ep, c in self.statuses.items()},
            "rows_written": dict(self.rows_written),
            "faults_injected": dict(self.faults),
            # Every document query must be scoped to one organization (fresh-crm.md section 5).
            "queries_without_organization_filter": dict(self.unscoped),
            # Reads that paged by offset (slower with depth, and they skip rows edited meanwhile).
            "reads_with_offset": dict(self.offsets),
            "peak_in_flight_per_key": dict(self.peak_in_flight),
            "longest_request_line": self.longest_request_line,
        }


def create_crm_app(state: CrmState, faults: FaultInjector) -> FastAPI:
    """The ASGI app serving ``state`` with ``faults`` applied to every ``/rest/v1`` call."""
    app = FastAPI(
        title="Sandbox Fresh AI CRM (PostgREST)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    stats = RequestStats()
    app.state.stats = stats

    @app.get("/rest/v1/")
    async def describe(request: Request) -> Response:
        """PostgREST's OpenAPI description of the exposed schema (Supabase: service role). It
        goes through the same key check, limiter and fault rules as any other request."""
        return await _handled(request, "GET /", "", "DESCRIBE")

    @app.api_route("/rest/v1/{table}", methods=["GET", "HEAD", "POST", "PATCH", "DELETE"])
    async def rest(table: str, request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await _handled(request, f"{method} {table}", table, method)

    @app.post("/rest/v1/rpc/{function}")
    async def rpc(function: str, request: Request) -> Response:
        return await _handled(request, f"POST rpc/{function}", function, "RPC")

    async def _handled(request: Request, endpoint: str, name: str, method: str) -> Response:
        stats.calls[endpoint] += 1
        response = await _guarded(request, name, method, endpoint)
        stats.statuses[endpoint][str(response.status_code)] += 1
        return response

    async def _guarded(request: Request, name: str, method: str, endpoint: str) -> Response:
        answer_at = faults.deadline()  # the latency is the response time (FaultInjector.deadline)
        line = len(request.url.path) + len(request.url.query) + 1
        stats.longest_request_line = max(stats.longest_request_line, line)
        if line > MAX_REQUEST_LINE:
            return Response(b"414 Request-URI Too Large", status_code=414, media_type="text/plain")
        try:
            key = _fingerprint(_authenticate(request, state))
        except PgError as exc:
            return _error(exc)
        if not faults.try_acquire(key):
            return _too_many(f"at most {faults.max_concurrent} requests in flight per API key")
        stats.enter(key)
        try:
            rule = faults.pick(endpoint)
            if rule is not None:
                await faults.wait_until(answer_at)  # a fault answers after the latency too
                stats.faults[rule.fault] += 1
                early = await _fault_response(rule, stats.faults[rule.fault] - 1)
                if early is not None:
                    return early
            try:
                body = await request.body()
            except ClientDisconnect:
                # The client gave up (its timeout) before the body arrived: nothing is written,
                # as with a real server, and nobody reads this answer.
                return Response(status_code=499)
            try:
                with state.lock:
                    if method == "DESCRIBE":
                        document = openapi_document(state, request.url.netloc)
                        response = _json(document, media_type=OPENAPI_TYPE)
                    elif method == "RPC":
                        response = _json(state.call(name, _json_body(body) if body else {}))
                    else:
                        response = _dispatch(state, stats, request, name, method, endpoint, body)
            except PgError as exc:
                await faults.wait_until(answer_at)
                return _error(exc)
            await faults.wait_until(answer_at)
            await stall_after_commit(rule)
            return response
        finally:
            stats.in_flight[key] -= 1
            faults.release(key)

    @app.get("/_sandbox/faults")
    async def get_faults() -> dict:
        return faults.snapshot()

    @app.post("/_sandbox/faults")
    async def set_faults(request: Request) -> Response:
        try:
            faults.configure(await request.json())
        except (ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json(faults.snapshot())

    @app.get("/_sandbox/config")
    async def get_config() -> dict:
        return _config(state)

    @app.post("/_sandbox/config")
    async def set_config(request: Request) -> Response:
        """``{"max_rows": n}`` (Supabase's db-max-rows), ``{"setup_installed": true}`` (run
        ``docs/crm-setup.sql``: its triggers and its function), ``{"drop_columns":
        ["sales_documents.customer_email"]}`` (a CRM without a column of its published schema:
        ``CrmState.drop_column``)."""
        try:
            body = await request.json()
            with state.lock:
                if "max_rows" in body:
                    max_rows = int(body["max_rows"])
                    if max_rows < 1:
                        raise ValueError("max_rows must be positive")
                    state.max_rows = max_rows
                if body.get("setup_installed"):
                    state.install_setup()
                for name in body.get("drop_columns", ()):
                    table, _, column = str(name).partition(".")
                    state.drop_column(table, column)
        except PgError as exc:
            return _error(exc)
        except (ValueError, TypeError, AttributeError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json(_config(state))

    @app.get("/_sandbox/stats")
    async def get_stats() -> dict:
        with state.lock:
            sizes = {DOCS: len(state.tables[DOCS].rows), ITEMS: len(state.tables[ITEMS].rows)}
        return stats.snapshot() | {"rows": sizes}

    @app.post("/_sandbox/stats/reset")
    async def reset_stats() -> dict:
        stats.reset()
        return {"ok": True}

    @app.post("/_sandbox/edit")
    async def edit(request: Request) -> Response:
        """A user editing a document in the CRM's UI: ``{"id", "changes", "items"?,
        "sets_updated_at"?}`` (``items``: the complete new lines; ``sets_updated_at`` false: an
        edit through a route that leaves ``updated_at`` alone)."""
        try:
            body = await request.json()
            changes = dict(body.get("changes") or {})
            items = body.get("items", changes.pop("items", None))
            doc = state.edit_document(
                str(body["id"]),
                changes,
                items,
                sets_updated_at=bool(body.get("sets_updated_at", True)),
            )
        except PgError as exc:
            return _error(exc)
        except (KeyError, TypeError, ValueError) as exc:
            return _json({"error": f"expected {{id, changes}}: {exc}"}, 400)
        return _json(doc)

    return app


def _config(state: CrmState) -> dict[str, Any]:
    return {
        "profile": state.profile,
        "max_rows": state.max_rows,
        "setup_installed": state.setup_installed,
    }


def _dispatch(
    state: CrmState,
    stats: RequestStats,
    request: Request,
    table: str,
    method: str,
    endpoint: str,
    body: bytes,
) -> Response:
    """Run one PostgREST request against the store (the caller holds ``state.lock``)."""
    params = list(request.query_params.multi_items())
    prefer = _prefer(request)
    query = parse_request(state, table, params, request.headers.get("range"))
    if method != "POST" and table == DOCS and not _scoped(query.where):
        stats.unscoped[endpoint] += 1
    if any(k == "offset" and v.strip() not in ("", "0") for k, v in params):
        stats.offsets[endpoint] += 1
    representation = prefer.get("return") == "representation"

    if method == "GET":
        page, total = read_rows(state, query, count="count" in prefer, max_rows=state.max_rows)
        if total is not None and query.offset > total:
            raise PgError(
                416,
                "PGRST103",
                "Requested range not satisfiable",
                f"An offset of {query.offset} was requested, but there are only {total} rows.",
            )
        rows = project(state, table, page, query.select, state.max_rows)
        last = query.offset + len(rows) - 1
        content_range = (
            f"{query.offset}-{last}" if rows else "*"
        ) + f"/{'*' if total is None else total}"
        status = 206 if total is not None and len(rows) < total else 200
        if request.method == "HEAD":
            return Response(
                status_code=status, media_type=JSON_TYPE, headers={"Content-Range": content_range}
            )
        response = _rows_response(request, rows, status)
        response.headers["Content-Range"] = content_range
        return response

    spec = state.public_table(table)
    if method == "POST":
        payload = _json_body(body)
        payloads = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(p, dict) for p in payloads):
            raise PgError(400, "PGRST102", "Empty or invalid json")
        named = request.query_params.get("columns")
        if named is not None:
            columns = [c.strip().strip('"') for c in named.split(",") if c.strip()]
        else:
            if len({frozenset(p) for p in payloads}) > 1:
                raise PgError(400, "PGRST102", "All object keys must match")
            columns = list(payloads[0]) if payloads else []
        for column in columns:
            if column not in spec.by_name:
                raise unknown_column(table, column)
        resolution = {"merge-duplicates": "merge", "ignore-duplicates": "ignore"}.get(
            prefer.get("resolution", "")
        )
        target = request.query_params.get("on_conflict")
        on_conflict = tuple(c.strip() for c in target.split(",")) if target else None
        for column in on_conflict or ():
            if column not in spec.by_name:
                raise PgError(400, "42703", f'column "{column}" does not exist')
        use_defaults = prefer.get("missing") == "default" or named is None

        def insert(stmt):
            rows = stmt.insert(
                table,
                payloads,
                columns,
                on_conflict=on_conflict,
                resolution=resolution,
                use_defaults=use_defaults,
            )
            return rows, stmt.inserted

        written, inserted = state.run(insert)
        stats.rows_written[endpoint] += len(written)
        status = 200 if resolution == "merge" and not inserted else 201
        if representation:
            shown = _representation(state, table, written, query)
            return _rows_response(request, shown, status)
        return Response(status_code=status)

    if not query.where:  # Supabase's pg-safeupdate
        verb = "UPDATE" if method == "PATCH" else "DELETE"
        raise PgError(400, "21000", f"{verb} requires a WHERE clause")
    targets = matching_rows(state, query)
    if method == "PATCH":
        patch = _json_body(body)
        if not isinstance(patch, dict):
            raise PgError(400, "PGRST102", "Empty or invalid json")
        given = coerce_payload(spec, patch)
        written = state.run(lambda stmt: stmt.update(table, targets, given))
    else:
        written = state.run(lambda stmt: stmt.delete(table, targets))
    out = _representation(state, table, written, query) if representation else None
    stats.rows_written[endpoint] += len(written)
    return _rows_response(request, out, 200) if representation else Response(status_code=204)


def _representation(state: CrmState, table: str, written: list, query) -> list:
    """The rows a mutation returns with ``Prefer: return=representation``: capped at max-rows,
    the stricter of PostgREST's two readings (before v10 ``db-max-rows`` also cut a bulk
    insert's returned rows, PostgREST issue #2155; later versions return them all)."""
    return project(state, table, written[: state.max_rows], query.select)


def _scoped(where: list) -> bool:
    """Does the filter pin the organization (``organization_id`` eq / is null, or an ``or`` that
    scopes every branch)? Reads by document id alone are not scoped."""

    def pins(node) -> bool:
        if isinstance(node, Condition):
            return node.column == "organization_id" and not node.negate
        if node.negate:
            return False
        checks = [pins(c) for c in node.children]
        return all(checks) if node.op == "or" else any(checks)

    return any(pins(node) for node in where if isinstance(node, (Condition, Logic)))


async def _fault_response(rule: FaultRule, nth: int) -> Response | None:
    """The answer that replaces normal processing for a picked fault, or None to go on."""
    if rule.fault in ("rate_limit_429", "opr_code_5"):
        return _too_many("rate limit exceeded (sandbox fault)", rule.retry_after_s)
    if rule.fault == "opr_code_1":
        return _error(PgError(500, "XX000", "internal error (sandbox fault)"))
    if rule.fault == "malformed_body":
        return Response(b'[{"id":"3f2a9c1e-', status_code=200, media_type=JSON_TYPE)
    return await apply_transport_fault(rule, nth)  # HTML 5xx, dropped connection, slow


def _authenticate(request: Request, state: CrmState) -> str:
    """Supabase wants the key twice: ``apikey`` and ``Authorization: Bearer``. Never echo it."""
    key = request.headers.get("apikey")
    auth = request.headers.get("authorization", "")
    bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    if not key:
        raise PgError(
            401,
            "PGRST301",
            "No API key found in request",
            hint="Send the key in the apikey header and as Authorization: Bearer.",
        )
    if key not in state.api_keys or bearer != key:
        raise PgError(
            401,
            "PGRST301",
            "Invalid API key or bearer token",
            hint="apikey and Authorization: Bearer must carry the same valid key.",
        )
    return key


def _fingerprint(key: str) -> str:
    """The limiter and the stats key requests by a hash, so no endpoint can leak a key."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:10]


def _prefer(request: Request) -> dict[str, str]:
    prefs: dict[str, str] = {}
    for header in request.headers.getlist("prefer"):
        for item in header.split(","):
            name, _, value = item.strip().partition("=")
            if name:
                prefs[name.strip().lower()] = value.strip().lower()
    return prefs


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise PgError(400, "PGRST102", "Empty or invalid json") from None


def _rows_response(request: Request, rows: list[dict] | None, status: int) -> Response:
    if rows is not None and SINGLE_OBJECT in request.headers.get("accept", ""):
        if len(rows) != 1:
            raise PgError(
                406,
                "PGRST116",
                "JSON object requested, multiple (or no) rows returned",
                f"The result contains {len(rows)} rows",
            )
        return _json(rows[0], 200 if status == 206 else status)
    return _json(rows, status)


def _json(data: Any, status: int = 200, media_type: str = JSON_TYPE) -> Response:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status_code=status, media_type=media_type)


def _error(exc: PgError) -> Response:
    response = _json(exc.body(), exc.status)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _too_many(reason: str, retry_after_s: float = 1.0) -> Response:
    seconds = f"{retry_after_s:g}"
    response = _json(
        {
            "code": "429",
            "message": "Too Many Requests",
            "details": reason,
            "hint": f"Retry after {seconds} s.",
        },
        429,
    )
    response.headers["Retry-After"] = seconds
    return response
