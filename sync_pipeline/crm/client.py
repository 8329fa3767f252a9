"""Client for Fresh AI CRM's data API (Supabase PostgREST), following docs/crm.md.

Transport and the PostgREST rules every request follows live here; what a *document* is (its
lines, its tenancy, its references) lives in `crm_documents`, `crm_tenancy` and
`crm_directory`, which this client's public methods delegate to.

PostgREST as Supabase runs it (PostgREST's docs and source, issue numbers in the sandbox's
modules):
- ``max-rows`` (1000 by default, possibly lower) cuts every answer silently: a page shorter than
  asked for says nothing about the end. So reads page by key (keyset: ``(updated_at, id)`` or
  ``id``) and end on an empty page, or when ``Prefer: count=exact`` says every row has come;
  they never use offsets (slower with depth, and a row edited meanwhile shifts the others).
- Embedded lists are cut by the same ``max-rows``, without a sign: lines are read in pages of
  their own, never trusted from an embed.
- A request line over about 8 KB is refused by Supabase's gateway: every filter here stays under
  `MAX_REQUEST_LINE` (ids go 100 at a time), and a longer one is a bug, raised before sending.

The pipeline uses a service-role key, which bypasses row-level security: every document query
is scoped to one organization here (`crm_tenancy`), nothing relies on the server for it.
Writes are idempotent (ids the caller derives, filters that pin the row), so every call is
retried by the shared `RetryPolicy`; a timeout on a write is just a `TransientError` here.
"""

import json
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from urllib.parse import urlencode

import requests

from sync_pipeline.adapters.errors import (
    AuthError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    SyncError,
    TransientError,
)
from sync_pipeline.adapters.http_session import RequestSlots, new_session
from sync_pipeline.adapters.redact import redact, redact_details
from sync_pipeline.adapters.retry import (
    DEFAULT_RETRY_POLICY,
    CallStats,
    RetryPolicy,
    build_retrying,
    parse_retry_after,
)
from sync_pipeline.crm.directory import CrmDirectory
from sync_pipeline.crm.documents import (
    delete_document,
    document_owners,
    patch_document,
    read_documents,
    write_documents,
)
from sync_pipeline.crm.profiles import SETUP_FUNCTION, CrmSchema, detect_schema, has_setup_function
from sync_pipeline.crm.query import MAX_REQUEST_LINE, quoted
from sync_pipeline.crm.tenancy import CrmTenant

API_PATH = "/rest/v1/"
PAGE_SIZE = 1000

STATUS_ERRORS: dict[int, type[SyncError]] = {
    401: AuthError,  # bad or missing key
    403: AuthError,  # key without the right role
    404: NotFoundError,  # unknown table / route / function
    429: RateLimitedError,  # throttled; Retry-After says how long
}
"""HTTP status -> error class; other 4xx are `RejectedError`, 5xx `TransientError` (see below)."""


def error_for_response(
    call: str, status_code: int, body: str, *, retry_after: float | None = None, secrets=()
) -> SyncError | None:
    """The typed error an HTTP answer stands for, or None for a 2xx. The one mapping table.

    PostgREST's error body `{code, message, details, hint}` goes into `details`. A 5xx that says
    when to come back (`Retry-After`, e.g. a 503 under load) is a `RateLimitedError`, so the policy
    waits as asked.
    """
    if 200 <= status_code < 300:
        return None
    secrets = tuple(secrets)
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    details = {"call": call, "http_status": status_code}
    if isinstance(payload, dict):
        details.update(
            redact_details(
                {k: payload[k] for k in ("code", "message", "details", "hint") if k in payload},
                secrets,
            )
        )
        text = str(payload.get("message") or payload)
        if payload.get("details"):
            text += f" ({payload['details']})"
    else:
        text = body[:200]
    message = redact(f"CRM {call} failed (HTTP {status_code}): {text}", secrets)
    if status_code in STATUS_ERRORS:
        cls = STATUS_ERRORS[status_code]
    elif status_code >= 500:
        cls = TransientError if retry_after is None else RateLimitedError
    else:  # 400, 409 (conflict), 414, 422, ...
        cls = RejectedError
    if cls is RateLimitedError:
        return RateLimitedError(message, retry_after=retry_after, details=details)
    return cls(message, details=details)


class CrmClient:
    """The CRM's PostgREST API. Thread-safe: share one instance between push workers."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        max_concurrent_requests: int = 4,
        session: requests.Session | None = None,
        tenants: Iterable[CrmTenant] = (),
    ):
        self._api_url = base_url.rstrip("/") + API_PATH
        self._api_key = api_key
        self._timeout = (connect_timeout_s, timeout_s)
        self.retry_policy = retry_policy
        self.max_concurrent_requests = max_concurrent_requests
        self._slots = RequestSlots(max_concurrent_requests)
        self._session = session or new_session(self._api_url, max_concurrent_requests)
        self.stats = CallStats()
        self._tenants = {t.organization_id: t for t in tenants}
        self._lock = threading.Lock()
        self._schema: CrmSchema | None = None
        self._directories: dict[str, CrmDirectory] = {}

    def __repr__(self) -> str:
        return f"CrmClient({self._api_url!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "CrmClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------

    def send(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] = (),
        body=None,
        prefer: str | None = None,
    ) -> requests.Response:
        """One request, no retry; raises the typed error for anything but a 2xx."""
        table = path.split("?")[0] or "/"
        call = f"{method} {table}"
        secrets = (self._api_key,)
        query = urlencode(list(params))
        if len(API_PATH) + len(path) + len(query) + 1 > MAX_REQUEST_LINE:
            raise ValueError(f"CRM {call}: request line over {MAX_REQUEST_LINE} bytes (a bug)")
        self.stats.record_call(f"crm {call}")
        headers = {"apikey": self._api_key, "Authorization": f"Bearer {self._api_key}"}
        if prefer:
            headers["Prefer"] = prefer
        try:
            with self._slots:
                response = self._session.request(
                    method,
                    self._api_url + path + (f"?{query}" if query else ""),
                    json=body,
                    headers=headers,
                    timeout=self._timeout,
                )
        except requests.RequestException as exc:
            message = redact(f"CRM {call}: {type(exc).__name__}: {exc}", secrets)
            raise TransientError(message, details={"call": call}) from None
        error = error_for_response(
            call,
            response.status_code,
            response.text,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            secrets=secrets,
        )
        if error is not None:
            raise error
        return response

    def json(self, method: str, path: str, *, expect: type, **kwargs):
        """A retried request whose answer is JSON of type `expect` (a list of rows, an object)."""
        call = f"{method} {path or '/'}"

        def attempt():
            response = self.send(method, path, **kwargs)
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if not isinstance(answer, expect):
                message = redact(
                    f"CRM {call}: answer is not a JSON {expect.__name__}", (self._api_key,)
                )
                raise MalformedResponseError(
                    message, details={"call": call, "http_status": response.status_code}
                )
            return answer, response

        return build_retrying(self.retry_policy, f"crm {call}", stats=self.stats)(attempt)

    def rows(self, method: str, table: str, **kwargs) -> list[dict]:
        """A retried request whose answer is a JSON array of rows."""
        return self.json(method, table, expect=list, **kwargs)[0]

    def execute(self, method: str, table: str, **kwargs) -> None:
        """A retried request whose answer has nothing to read (``Prefer: return=minimal``)."""
        call = f"crm {method} {table}"
        build_retrying(self.retry_policy, call, stats=self.stats)(
            lambda: self.send(method, table, **kwargs)
        )

    # -- the schema ---------------------------------------------------------------------------

    def schema(self) -> CrmSchema:
        """The CRM's schema profile and change tracking, read once from PostgREST's OpenAPI
        document (and docs/crm-setup.sql's function, when it is there); `CrmSchemaError` when
        the tables fit no supported profile."""
        with self._lock:
            if self._schema is None:
                openapi, _ = self.json("GET", "", expect=dict)
                setup = None
                if has_setup_function(openapi):
                    setup, _ = self.json("POST", f"rpc/{SETUP_FUNCTION}", expect=dict, body={})
                self._schema = detect_schema(openapi, setup)
            return self._schema

    def tenant(self, organization_id: str) -> CrmTenant:
        return self._tenants.get(organization_id) or CrmTenant(organization_id)

    # -- paging -------------------------------------------------------------------------------

    def keyset(
        self,
        table: str,
        params: list[tuple[str, str]],
        *,
        by_change: bool = False,
        include_null_changes: bool = True,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[list[dict]]:
        """Pages of ``table`` in key order, ending on an empty page (never on a short one: the
        server's ``max-rows`` may be below ``page_size``).

        ``by_change``: in ``(updated_at, id)`` order (a change cursor); rows whose updated_at is
        NULL, which that order puts last and no comparison selects, come after, by id (unless
        the filter excludes them anyway: ``include_null_changes=False``). Otherwise by ``id``.
        The select list must include the key columns."""
        if by_change:
            yield from self._keyset_by_change(table, params, page_size)
            if include_null_changes:
                nulls = [*params, ("updated_at", "is.null")]
                yield from self._keyset_by_id(table, nulls, page_size)
        else:
            yield from self._keyset_by_id(table, params, page_size)

    def _keyset_by_change(self, table, params, page_size) -> Iterator[list[dict]]:
        after = None
        while True:
            page_params = [*params, ("order", "updated_at.asc,id.asc"), ("limit", str(page_size))]
            if after is None:
                page_params.append(("updated_at", "not.is.null"))
            else:
                stamp, last_id = (quoted(v) for v in after)
                page_params.append(
                    ("or", f"(updated_at.gt.{stamp},and(updated_at.eq.{stamp},id.gt.{last_id}))")
                )
            page = self.rows("GET", table, params=page_params)
            if not page:
                return
            after = _advanced(table, after, (page[-1]["updated_at"], page[-1]["id"]))
            yield page

    def _keyset_by_id(self, table, params, page_size) -> Iterator[list[dict]]:
        after = None
        while True:
            page_params = [*params, ("order", "id.asc"), ("limit", str(page_size))]
            if after is not None:
                page_params.append(("id", f"gt.{after}"))
            page = self.rows("GET", table, params=page_params)
            if not page:
                return
            after = _advanced(table, after, page[-1]["id"])
            yield page

    def page_with_count(self, table: str, params: list[tuple[str, str]]) -> tuple[list[dict], int]:
        """One request for the rows the filter selects, with ``Prefer: count=exact``: the rows
        the server sent (as many as ``max-rows`` lets through) and how many there are in all
        (``Content-Range: 0-99/250``)."""
        page, response = self.json("GET", table, expect=list, params=params, prefer="count=exact")
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        if not total.isdigit():
            raise MalformedResponseError(
                f"CRM GET {table}: unusable Content-Range "
                f"{response.headers.get('Content-Range')!r}",
                details={"call": f"GET {table}"},
            )
        return page, int(total)

    def counted(self, table: str, params: list[tuple[str, str]]) -> list[dict]:
        """Every row the filter selects, by id, asking for an exact count: done when the rows
        received add up to it (one request when ``max-rows`` allows), never on a guess."""
        out: list[dict] = []
        after = None
        while True:
            page_params = [*params, ("order", "id.asc")]
            if after is not None:
                page_params.append(("id", f"gt.{after}"))
            page, total = self.page_with_count(table, page_params)
            out += page
            if len(page) >= total:
                return out
            if not page:  # rows counted but none sent: the server is not paging as promised
                raise MalformedResponseError(
                    f"CRM GET {table}: {total} rows counted, none returned",
                    details={"call": f"GET {table}"},
                )
            after = page[-1]["id"]

    # -- documents (crm_documents) ------------------------------------------------------------

    def list_documents(
        self,
        organization_id: str,
        *,
        updated_since: datetime | None = None,
        ids: list[str] | None = None,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[dict]:
        """The organization's documents, each with every one of its lines under
        ``sales_document_items`` (read in pages of their own) and its references resolved in
        `directory`: all of them (keyset by ``(updated_at, id)``), those changed since
        ``updated_since``, or those of ``ids``. A document edited during the read may come twice
        (the later copy last)."""
        return read_documents(
            self, organization_id, updated_since=updated_since, ids=ids, page_size=page_size
        )

    def document_owners(self, organization_id: str, ids: list[str]) -> dict[str, str]:
        """Document id -> its owner's `user_id`, for the organization's documents among `ids`."""
        return document_owners(self, organization_id, list(dict.fromkeys(ids)))

    def get_document(self, organization_id: str, document_id: str) -> dict | None:
        """One document of the organization with its lines, or None when it has no such one."""
        rows = list(self.list_documents(organization_id, ids=[document_id]))
        return rows[-1] if rows else None

    def directory(self, organization_id: str) -> CrmDirectory:
        """The organization's tenancy and the CRM rows its documents refer to (cached)."""
        with self._lock:
            found = self._directories.get(organization_id)
            if found is None:
                found = self._directories[organization_id] = CrmDirectory(self, organization_id)
            return found

    def write_documents(self, organization_id: str, writes: list) -> None:
        """Create or update documents and make their lines exactly the ones given
        (`crm_documents.write_documents`)."""
        write_documents(self, organization_id, writes)

    def patch_document(
        self, organization_id: str, document_id: str, fields: dict, owner: dict | None = None
    ) -> dict:
        """Set some columns of one document of the organization (its lines untouched), pinned
        to its tenancy (``owner``: its organization_id and user_id as read; read when None).

        `NotFoundError` when the organization has no such document (deleted, or moved)."""
        return patch_document(self, organization_id, document_id, fields, owner)

    def delete_document(self, organization_id: str, document_id: str) -> bool:
        """Delete one document of the organization; its lines go with it (the foreign key
        cascades). False when it did not exist (e.g. a retry after a lost answer)."""
        return delete_document(self, organization_id, document_id)


def _advanced(table: str, after, last):
    """The keyset page's last key, which must come after the previous page's: a server that
    answers a page again (or goes back) would otherwise keep the read going forever. PostgreSQL
    orders by value, so `(updated_at, id)` compares as a moment and then an id (a uuid orders as
    its lowercase hex text, which is how PostgREST prints it)."""

    def comparable(key):
        return (datetime.fromisoformat(key[0]), key[1]) if isinstance(key, tuple) else key

    try:
        went_on = after is None or comparable(last) > comparable(after)
    except (TypeError, ValueError):  # an unreadable updated_at
        went_on = False
    if not went_on:
        raise MalformedResponseError(
            f"CRM GET {table}: a keyset page did not advance (last key {last!r} after "
            f"{after!r}); the read stops rather than repeat it",
            details={"call": f"GET {table}"},
        )
    return last
