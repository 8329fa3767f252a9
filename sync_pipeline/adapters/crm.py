"""Client for Fresh AI CRM's data API (Supabase PostgREST), following shared/fresh-crm.md.

The pipeline uses a service-role key, which bypasses row-level security: the database would hand
out every tenant's rows. So every method takes the `organization_id` and every read is filtered by
it here; nothing relies on the server to scope a query.

All writes are idempotent (upserts keyed by ids the caller chooses, and a delete by filter), so
every call, read or write, is retried by the shared `RetryPolicy`; a timeout on a write is just a
`TransientError` here, unlike a Metakocka create.
"""

import json
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import requests

from .errors import (
    AuthError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    SyncError,
    TransientError,
)
from .http_session import RequestSlots, new_session
from .redact import redact, redact_details
from .retry import (
    DEFAULT_RETRY_POLICY,
    CallStats,
    RetryPolicy,
    build_retrying,
    parse_retry_after,
)

API_PATH = "/rest/v1/"
DOCUMENTS = "sales_documents"
ITEMS = "sales_document_items"
IDS_PER_QUERY = 100
"""Ids per `id=in.(...)` filter: 100 uuids keep the URL near 4 KB, well under proxy limits."""

STATUS_ERRORS: dict[int, type[SyncError]] = {
    401: AuthError,  # bad or missing key
    403: AuthError,  # key without the right role
    404: NotFoundError,  # unknown table / route
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
    else:
        text = body[:200]
    message = redact(f"CRM {call} failed (HTTP {status_code}): {text}", secrets)
    if status_code in STATUS_ERRORS:
        cls = STATUS_ERRORS[status_code]
    elif status_code >= 500:
        cls = TransientError if retry_after is None else RateLimitedError
    else:  # 400, 409 (conflict), 422, ...
        cls = RejectedError
    if cls is RateLimitedError:
        return RateLimitedError(message, retry_after=retry_after, details=details)
    return cls(message, details=details)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required (a naive one is ambiguous)")
    return moment.isoformat()


def _in_filter(values: Iterable[str]) -> str:
    """PostgREST `in.(...)`; values are uuids, so they need no quoting."""
    return "in.(" + ",".join(values) + ")"


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
    ):
        self._api_url = base_url.rstrip("/") + API_PATH
        self._api_key = api_key
        self._timeout = (connect_timeout_s, timeout_s)
        self.retry_policy = retry_policy
        self.max_concurrent_requests = max_concurrent_requests
        self._slots = RequestSlots(max_concurrent_requests)
        self._session = session or new_session(self._api_url, max_concurrent_requests)
        self.stats = CallStats()

    def __repr__(self) -> str:
        return f"CrmClient({self._api_url!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "CrmClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        table: str,
        *,
        params: list[tuple[str, str]],
        body=None,
        prefer: str | None = None,
    ) -> requests.Response:
        """One request, no retry; raises the typed error for anything but a 2xx."""
        call = f"{method} {table}"
        secrets = (self._api_key,)
        self.stats.record_call(f"crm {call}")
        headers = {"apikey": self._api_key, "Authorization": f"Bearer {self._api_key}"}
        if prefer:
            headers["Prefer"] = prefer
        try:
            with self._slots:
                response = self._session.request(
                    method,
                    self._api_url + table,
                    params=params,
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

    def _rows(self, method: str, table: str, **kwargs) -> list[dict]:
        """A retried request whose answer is a JSON array of rows."""
        call = f"{method} {table}"

        def attempt() -> list[dict]:
            response = self._send(method, table, **kwargs)
            try:
                rows = response.json()
            except ValueError:
                rows = None
            if not isinstance(rows, list):
                message = redact(f"CRM {call}: answer is not a JSON array", (self._api_key,))
                raise MalformedResponseError(
                    message, details={"call": call, "http_status": response.status_code}
                )
            return rows

        return build_retrying(self.retry_policy, f"crm {call}", stats=self.stats)(attempt)

    # -- reads -------------------------------------------------------------------------------

    def list_documents(
        self,
        organization_id: str,
        *,
        updated_since: datetime | None = None,
        ids: list[str] | None = None,
        page_size: int = 1000,
    ) -> Iterator[dict]:
        """Yield the organization's documents with their lines embedded, oldest change first.

        Pages by limit/offset in `(updated_at, id)` order and stops on a short page; each page is
        retried on its own. A row edited during the sweep moves to the end of that order and may
        be seen twice or (if an earlier row moves) cause one to be skipped: the change cursor of
        the next run picks it up. `ids` restricts to those documents, queried in chunks that are
        sent side by side (the client's allowance) and yielded in order.
        """
        if page_size < 1:
            raise ValueError("page_size must be positive")
        base = [
            ("select", f"*,{ITEMS}(*)"),
            ("organization_id", f"eq.{organization_id}"),
            ("order", "updated_at.asc,id.asc"),
        ]
        if updated_since is not None:
            base.append(("updated_at", f"gte.{_iso(updated_since)}"))
        if ids is None:
            yield from self._pages(base, page_size)
            return
        unique_ids = list(dict.fromkeys(ids))
        chunks = [
            unique_ids[start : start + IDS_PER_QUERY]
            for start in range(0, len(unique_ids), IDS_PER_QUERY)
        ]

        def read(chunk: list[str]) -> list[dict]:
            return list(self._pages([*base, ("id", _in_filter(chunk))], page_size))

        if len(chunks) <= 1:
            yield from (row for chunk in chunks for row in read(chunk))
            return
        workers = min(len(chunks), self.max_concurrent_requests)
        with ThreadPoolExecutor(workers, thread_name_prefix="crm-ids") as pool:
            for rows in pool.map(read, chunks):
                yield from rows

    def _pages(self, params: list[tuple[str, str]], page_size: int) -> Iterator[dict]:
        offset = 0
        while True:
            page = [("limit", str(page_size)), ("offset", str(offset))]
            rows = self._rows("GET", DOCUMENTS, params=[*params, *page])
            yield from rows
            if len(rows) < page_size:
                return
            offset += len(rows)

    def count_documents(self, organization_id: str) -> int:
        """The organization's document count, from `Content-Range` with `Prefer: count=exact`."""
        params = [("select", "id"), ("organization_id", f"eq.{organization_id}"), ("limit", "1")]

        def attempt() -> int:
            response = self._send("GET", DOCUMENTS, params=params, prefer="count=exact")
            total = response.headers.get("Content-Range", "").rpartition("/")[2]
            if not total.isdigit():
                raise MalformedResponseError(
                    f"CRM count: unusable Content-Range {response.headers.get('Content-Range')!r}",
                    details={"call": f"GET {DOCUMENTS}"},
                )
            return int(total)

        retrying = build_retrying(self.retry_policy, f"crm GET {DOCUMENTS}", stats=self.stats)
        return retrying(attempt)

    def get_document(self, organization_id: str, document_id: str) -> dict | None:
        """One document of the organization with its lines, or None when it has no such document."""
        rows = self._rows(
            "GET",
            DOCUMENTS,
            params=[
                ("select", f"*,{ITEMS}(*)"),
                ("id", f"eq.{document_id}"),
                ("organization_id", f"eq.{organization_id}"),
            ],
        )
        return rows[0] if rows else None

    # -- writes ------------------------------------------------------------------------------

    def upsert_document(self, row: dict, items: list[dict]) -> dict:
        """Insert or update one document (by `id`) and make its lines exactly `items`.

        Idempotent steps, each retried: refuse an id that belongs to another organization, upsert
        the document, delete its lines, upsert the new lines. A retry after an unknown outcome
        repeats a step with the same result, and a failure between steps leaves a state that the
        next call (or run) overwrites. Lines without an `id` get one derived from the document id
        and their position, so a repeated POST merges instead of adding lines. Returns the
        document with `sales_document_items`.

        The ownership check costs one read but matters: with a service key an upsert by id would
        silently move another tenant's document (and delete its lines) if an id ever collided.
        """
        document_id, organization_id = row.get("id"), row.get("organization_id")
        if not document_id or not organization_id:
            raise ValueError("the document row needs its id and organization_id")
        lines = [_line_for(document_id, position, item) for position, item in enumerate(items)]
        foreign = self._rows(
            "GET",
            DOCUMENTS,
            params=[
                ("select", "id"),
                ("id", f"eq.{document_id}"),
                ("organization_id", f"neq.{organization_id}"),
            ],
        )
        if foreign:
            raise RejectedError(
                f"CRM document {document_id} belongs to another organization",
                details={"call": f"POST {DOCUMENTS}", "document_id": document_id},
            )

        upsert = "resolution=merge-duplicates,return=representation"
        saved = self._rows(
            "POST", DOCUMENTS, params=[("on_conflict", "id")], body=row, prefer=upsert
        )
        if len(saved) != 1:
            raise MalformedResponseError(
                f"CRM upsert of document {document_id} returned {len(saved)} rows",
                details={"call": f"POST {DOCUMENTS}", "document_id": document_id},
            )
        self._rows(
            "DELETE",
            ITEMS,
            params=[("document_id", f"eq.{document_id}")],
            prefer="return=representation",
        )
        saved_lines = (
            self._rows("POST", ITEMS, params=[("on_conflict", "id")], body=lines, prefer=upsert)
            if lines
            else []
        )
        return {**saved[0], ITEMS: saved_lines}

    def upsert_documents(self, organization_id: str, documents: list[tuple[dict, list[dict]]]):
        """`upsert_document` for many documents of one organization, in a handful of requests.

        The same idempotent steps, each for up to `IDS_PER_QUERY` documents at once: refuse ids
        that belong to another organization (the whole call, before anything is written), upsert
        the documents (one request per set of columns: PostgREST takes one column list per
        request), delete their lines, upsert the new lines. Four requests per hundred documents
        instead of four per document. A failure between steps leaves documents that the next call
        (or run) overwrites; a caller that needs to know which document is at fault writes them
        one by one.
        """
        if len(documents) > IDS_PER_QUERY:
            raise ValueError(f"at most {IDS_PER_QUERY} documents per call")
        ids = []
        for row, _ in documents:
            if not row.get("id") or row.get("organization_id") != organization_id:
                raise ValueError("every row needs its id and this organization_id")
            ids.append(row["id"])
        if not ids:
            return
        foreign = self._rows(
            "GET",
            DOCUMENTS,
            params=[
                ("select", "id"),
                ("id", _in_filter(ids)),
                ("organization_id", f"neq.{organization_id}"),
            ],
        )
        if foreign:
            raise RejectedError(
                f"CRM documents {sorted(r['id'] for r in foreign)} belong to another organization",
                details={"call": f"POST {DOCUMENTS}", "document_ids": [r["id"] for r in foreign]},
            )
        by_columns: dict[tuple, list[dict]] = {}
        for row, _ in documents:
            by_columns.setdefault(tuple(sorted(row)), []).append(row)
        for rows in by_columns.values():
            self._write_all("POST", DOCUMENTS, rows)
        self._rows(
            "DELETE",
            ITEMS,
            params=[("document_id", _in_filter(ids)), ("select", "id")],
            prefer="return=representation",
        )
        lines = [
            _line_for(row["id"], position, item)
            for row, items in documents
            for position, item in enumerate(items)
        ]
        by_line_columns: dict[tuple, list[dict]] = {}
        for line in lines:
            by_line_columns.setdefault(tuple(sorted(line)), []).append(line)
        for group in by_line_columns.values():
            self._write_all("POST", ITEMS, group)

    def _write_all(self, method: str, table: str, rows: list[dict]) -> None:
        """Upsert `rows` in one request, and check that the answer accounts for every one (an
        answer cut short is not taken for a success)."""
        saved = self._rows(
            method,
            table,
            params=[("on_conflict", "id"), ("select", "id")],
            body=rows,
            prefer="resolution=merge-duplicates,return=representation",
        )
        if len(saved) != len(rows):
            raise MalformedResponseError(
                f"CRM upsert of {len(rows)} rows into {table} returned {len(saved)}",
                details={"call": f"{method} {table}"},
            )

    def patch_document(self, organization_id: str, document_id: str, fields: dict) -> dict:
        """Set some columns of one document (its lines untouched). Idempotent, hence retried.

        `NotFoundError` when the organization has no such document.
        """
        rows = self._rows(
            "PATCH",
            DOCUMENTS,
            params=[("id", f"eq.{document_id}"), ("organization_id", f"eq.{organization_id}")],
            body=fields,
            prefer="return=representation",
        )
        if not rows:
            raise NotFoundError(
                f"CRM document {document_id} not found",
                details={"call": f"PATCH {DOCUMENTS}", "document_id": document_id},
            )
        return rows[0]

    def delete_document(self, organization_id: str, document_id: str) -> bool:
        """Delete one document of the organization; its lines go with it (the foreign key cascades).

        False when it did not exist (e.g. a retry after a success whose answer was lost).
        """
        deleted = self._rows(
            "DELETE",
            DOCUMENTS,
            params=[("id", f"eq.{document_id}"), ("organization_id", f"eq.{organization_id}")],
            prefer="return=representation",
        )
        return bool(deleted)


def _line_for(document_id: str, position: int, item: dict) -> dict:
    """The line as stored: bound to its document, with a stable id when the caller gave none."""
    if item.get("document_id", document_id) != document_id:
        raise ValueError(f"line {position} belongs to document {item['document_id']}")
    line_id = item.get("id") or str(uuid.uuid5(uuid.UUID(document_id), f"line:{position}"))
    return {**item, "id": line_id, "document_id": document_id}
