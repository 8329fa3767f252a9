"""Client for the Metakocka JSON API (sales documents), following shared/metakocka-api.md.

Every call is a POST of a JSON body that carries `secret_key` and `company_id`; failures come back
as an `opr_code` envelope, mapped to the typed errors of `errors.py` by `parse_answer` (the one
mapping table). Reads, replaces and field updates are retried by the shared `RetryPolicy`. A create
is never retried blindly: Metakocka has no idempotency key, so `create_document_exactly_once` looks
the document up by its external id (`buyer_order`) before every attempt.

Concurrency is bounded on the client: at most `max_concurrent_requests` requests in flight and
`max_concurrent_searches` searches (Metakocka serialises searches per company anyway, so extra
parallel searches would only queue on the server while holding a connection and a timeout).
"""

import json
import logging
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from zoneinfo import ZoneInfo

import requests
import urllib3.exceptions

from sync_pipeline.adapters.errors import (
    AmbiguousWriteError,
    AuthError,
    DuplicateExternalIdError,
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
    is_retryable,
    parse_retry_after,
)

logger = logging.getLogger(__name__)

API_PATH = "/rest/eshop/v1/"
MAX_PAGE_SIZE = 100
"""Metakocka returns at most 100 records per search call."""
LJUBLJANA = ZoneInfo("Europe/Ljubljana")
DOCUMENT_DETAIL = {"show_payment_detail": "true", "show_product_detail": "true"}
"""Opt-in parts of a document read in full (metakocka-api.md section 5): its payments
(`mark_paid`), which a replace must send back, and each line's `type`, which says whether it is
a service product's (metakocka/amounts.py, metakocka/mapping.py)."""

OPR_CODE_ERRORS: dict[str, type[SyncError]] = {
    "1": TransientError,  # unknown internal error: nothing was done, resending is what MK advises
    "2": RejectedError,  # missing or invalid parameter, unknown product or doc_type
    "3": AuthError,  # invalid secret_key / company_id
    "4": AuthError,  # caller's IP address not allowed for the company
    "5": RateLimitedError,  # "Quote exceeds": too many requests in a period
    "6": RejectedError,  # application error (opr_code_app / opr_desc_app); refined below
}
"""opr_code -> error class. opr_code 6 is refined into a duplicate, and 2 or 6 with a "cannot find"
text about the document into not found, in `parse_answer`."""

DUPLICATE_BUYER_ORDER_APP_CODE = "7"
_NOT_FOUND_TEXT = re.compile(r"cannot find|can't find|not found|does not exist|no such", re.I)
_NOT_THE_DOCUMENT = re.compile(r"\b(product|partner|row|warehouse|register)\b", re.I)
"""A "not found" about something the request refers to (a product code, a partner): the write
is refused, the document itself is not missing."""
NOT_FOUND_CODES = ("2", "6")
"""Metakocka does not document its answer for a missing document (metakocka-api.md section 6:
opr_code != 0, "likely 2 or 6"); both occur, with a "Cannot find ..." text."""


def as_list(value) -> list:
    """Metakocka sends a one-element list as a bare object and may leave an empty one out."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def mk_timestamp(moment: datetime) -> str:
    """Metakocka's timestamp form, in Ljubljana time: `2024-09-12T12:13:15+02:00`."""
    if moment.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required (a naive one is ambiguous)")
    return moment.astimezone(LJUBLJANA).isoformat(timespec="seconds")


def _describe(answer: dict) -> str:
    """opr_desc_app and/or opr_desc: newer endpoints fill only one of them."""
    texts = [str(answer[key]) for key in ("opr_desc_app", "opr_desc") if answer.get(key)]
    return " / ".join(dict.fromkeys(texts)) or "no description"


def parse_answer(
    call: str,
    status_code: int,
    body: str,
    *,
    creates: bool = False,
    retry_after: float | None = None,
    secrets: Iterable[str] = (),
) -> dict:
    """Return the JSON answer of a successful call, or raise the typed error it stands for.

    The whole response-side error mapping lives here. `creates` marks a put_document without
    `mk_id`: when such a request reached the server but the answer does not say what happened
    (HTTP 5xx, a body that is not Metakocka's JSON), the document may or may not exist, which is
    an `AmbiguousWriteError` rather than something to retry. An `opr_code` answer is always
    definite, and so is a 4xx from a gateway (429: rate limited; others: a wrong URL).
    `retry_after` is the parsed `Retry-After` header: a 429 or 5xx that carries one becomes a
    `RateLimitedError`, so the policy waits as long as the server asked.
    """
    secrets = tuple(secrets)
    details = {"call": call, "http_status": status_code}

    def unknown_outcome(cls: type[SyncError], what: str) -> SyncError:
        message = redact(f"Metakocka {call}: {what}", secrets)
        if creates:
            return AmbiguousWriteError(
                f"{message}; the document may have been created", details=details
            )
        return cls(message, details=details)

    if status_code == 429:
        message = f"Metakocka {call}: HTTP 429 Too Many Requests"
        raise RateLimitedError(message, retry_after=retry_after, details=details)
    if status_code >= 500:
        if retry_after is not None and not creates:
            message = f"Metakocka {call}: HTTP {status_code}, retry after {retry_after:g}s"
            raise RateLimitedError(message, retry_after=retry_after, details=details)
        raise unknown_outcome(TransientError, f"HTTP {status_code}")
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or "opr_code" not in answer:
        details["body_start"] = redact(body[:200], secrets)
        if 400 <= status_code < 500:  # a proxy's or web server's refusal, e.g. a wrong path
            message = f"Metakocka {call}: HTTP {status_code} (wrong base URL or path?)"
            raise RejectedError(message, details=details)
        raise unknown_outcome(
            MalformedResponseError, f"HTTP {status_code} without a Metakocka JSON answer"
        )

    code = str(answer["opr_code"])
    if code == "0":
        return answer
    description = _describe(answer)
    details.update(
        redact_details(
            {
                key: answer[key]
                for key in ("opr_code", "opr_desc", "opr_code_app", "opr_desc_app")
                if key in answer
            },
            secrets,
        )
    )
    message = redact(f"Metakocka {call} failed (opr_code {code}): {description}", secrets)
    if code == "6" and str(answer.get("opr_code_app")) == DUPLICATE_BUYER_ORDER_APP_CODE:
        duplicates = as_list(answer.get("duplicate_doc_list"))
        existing_ids = [str(doc["mk_id"]) for doc in duplicates if doc.get("mk_id")]
        details.update(redact_details({"duplicate_doc_list": duplicates}, secrets))
        raise DuplicateExternalIdError(message, existing_ids=existing_ids, details=details)
    if (
        code in NOT_FOUND_CODES
        and _NOT_FOUND_TEXT.search(description)
        and not _NOT_THE_DOCUMENT.search(description)
    ):
        raise NotFoundError(message, details=details)
    raise OPR_CODE_ERRORS.get(code, RejectedError)(message, details=details)


def _failed_before_sending(exc: requests.RequestException) -> bool:
    """True when the request surely never reached the server (no connection was made)."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(
        reason, urllib3.exceptions.NewConnectionError
    )


def transport_error(
    call: str, exc: requests.RequestException, *, creates: bool = False, secrets=()
) -> SyncError:
    """Map a failure below HTTP (refused, reset, timeout) to a typed error.

    Before sending, nothing happened: always a plain `TransientError`. After sending (read timeout,
    connection dropped), a create's outcome is unknown: `AmbiguousWriteError`.
    """
    message = redact(f"Metakocka {call}: {type(exc).__name__}: {exc}", secrets)
    details = {"call": call, "exception": type(exc).__name__}
    if creates and not _failed_before_sending(exc):
        return AmbiguousWriteError(
            f"{message}; the document may have been created", details=details
        )
    return TransientError(message, details=details)


class MetakockaClient:
    """One company's Metakocka API. Thread-safe: share one instance between push workers."""

    def __init__(
        self,
        base_url: str,
        company_id: str,
        secret_key: str,
        *,
        read_timeout_s: float = 30.0,
        write_timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        max_concurrent_requests: int = 2,
        max_concurrent_searches: int = 1,
        session: requests.Session | None = None,
        create_settle_s: float | None = None,
        credentials_origin: str | None = None,
    ):
        """`create_settle_s`: how long after a create was sent Metakocka may still store it
        (default: `write_timeout_s`). A create whose outcome is unknown is looked up again only
        after that, so a slow create still being processed cannot be sent a second time.
        `credentials_origin`: where the company id and secret come from (METAKOCKA_SECRET_KEYS,
        a CRM row); a refusal of them names it, so the error says what to correct."""
        self._api_url = base_url.rstrip("/") + API_PATH
        self.company_id = str(company_id)
        self._secret_key = secret_key
        self._read_timeout = (connect_timeout_s, read_timeout_s)
        self._write_timeout = (connect_timeout_s, write_timeout_s)
        self.retry_policy = retry_policy
        self.create_settle_s = write_timeout_s if create_settle_s is None else create_settle_s
        self.max_concurrent_requests = max_concurrent_requests
        self._request_slots = RequestSlots(max_concurrent_requests)
        self._search_slots = RequestSlots(max_concurrent_searches)
        self._session = session or new_session(self._api_url, max_concurrent_requests)
        self.stats = CallStats()
        self.credentials_origin = credentials_origin

    def __repr__(self) -> str:
        return f"MetakockaClient({self._api_url!r}, company_id={self.company_id!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "MetakockaClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------

    @contextmanager
    def _slot(self, call: str):
        """Hold a search slot (searches only) and then a request slot for one HTTP exchange."""
        search_slot = self._search_slots if call == "search" else nullcontext()
        with search_slot, self._request_slots:
            yield

    def _send(self, call: str, body: dict, *, timeout, creates: bool = False) -> dict:
        """One POST, no retry. Credentials are added here and nowhere else."""
        secrets = (self._secret_key,)
        self.stats.record_call(f"metakocka {call}")
        request = {**body, "secret_key": self._secret_key, "company_id": self.company_id}
        try:
            with self._slot(call):
                response = self._session.post(self._api_url + call, json=request, timeout=timeout)
        except requests.RequestException as exc:
            raise transport_error(call, exc, creates=creates, secrets=secrets) from None
        try:
            return parse_answer(
                call,
                response.status_code,
                response.text,
                creates=creates,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                secrets=secrets,
            )
        except AuthError as exc:
            if not self.credentials_origin:
                raise
            raise AuthError(
                f"{exc.message} (company {self.company_id}: its id and secret come from "
                f"{self.credentials_origin})",
                details={**exc.details, "credentials": self.credentials_origin},
            ) from None

    def _call(self, call: str, body: dict, *, timeout=None) -> dict:
        """A call that is safe to repeat (a read, a replace, a field update), with the policy."""
        retrying = build_retrying(self.retry_policy, f"metakocka {call}", stats=self.stats)
        return retrying(self._send, call, body, timeout=timeout or self._read_timeout)

    # -- reads -------------------------------------------------------------------------------

    def search(
        self,
        doc_type: str,
        *,
        query_advance: list[dict] | None = None,
        result_type: str | None = "doc",
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[dict]:
        """Yield every match of one doc_type, page by page (each page retried on its own).

        Paging stops on a short page or once `offset` reaches `result_all_records`; the echoed
        `limit` is ignored because Metakocka's examples show it disagreeing with the request.
        `result_type=None` yields `{mk_id, count_code}` stubs instead of full documents.
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        body: dict = {"doc_type": doc_type, "limit": str(page_size), "order_direction": "asc"}
        if result_type:
            body["result_type"] = result_type
            body.update(DOCUMENT_DETAIL)
        if query_advance:
            body["query_advance"] = query_advance
        offset = 0
        while True:
            answer = self._call("search", {**body, "offset": str(offset)})
            rows = as_list(answer.get("result"))
            yield from rows
            offset += len(rows)
            total = answer.get("result_all_records")
            if len(rows) < page_size or (total is not None and offset >= int(total)):
                return

    def search_changed(self, doc_type: str, since: datetime | None) -> Iterator[dict]:
        """Full documents changed at or after `since` (every document when `since` is None)."""
        query = [{"type": "last_change_from", "value": mk_timestamp(since)}] if since else None
        return self.search(doc_type, query_advance=query)

    def changed_since(
        self, doc_type: str, mk_id: str, since: datetime, *, buyer_order: str | None = None
    ) -> bool:
        """Did Metakocka change document `mk_id` at or after `since` (by its own clock)?

        A document carries no change time (metakocka-api.md section 5), so this asks the search
        filter `last_change_from`, narrowed to the document's `customer_order` where it has a
        buyer order, and looks for the id among the hits (ids only: a small answer).
        """
        query = [{"type": "last_change_from", "value": mk_timestamp(since)}]
        if buyer_order:
            query.append({"type": "customer_order", "value": buyer_order})
        return any(
            str(hit.get("mk_id")) == str(mk_id)
            for hit in self.search(doc_type, query_advance=query, result_type=None)
        )

    def get_document(self, doc_type: str, doc_id: str) -> dict:
        """One document by `mk_id`; `NotFoundError` when Metakocka cannot find it."""
        body = {"doc_type": doc_type, "doc_id": str(doc_id), **DOCUMENT_DETAIL}
        return self._call("get_document", body)

    def find_by_external_ref(self, doc_type: str, buyer_order: str) -> list[dict]:
        """Documents whose `buyer_order` equals `buyer_order` exactly, oldest (lowest mk_id) first.

        The `customer_order` filter may match substrings, so the comparison is redone here.
        """
        query = [{"type": "customer_order", "value": buyer_order}]
        matches = [
            doc
            for doc in self.search(doc_type, query_advance=query, result_type="doc")
            if doc.get("buyer_order") == buyer_order
        ]
        return sorted(matches, key=lambda doc: int(doc["mk_id"]))

    # -- writes ------------------------------------------------------------------------------

    def create_document(self, payload: dict) -> dict:
        """put_document without `mk_id`, sent exactly once. Returns `{mk_id, count_code, ...}`.

        Raises `AmbiguousWriteError` when the request may have been stored (read timeout, dropped
        connection, 5xx, unreadable answer); a retryable error only when Metakocka surely did not
        store it (no connection, opr_code 1 or 5). Use `create_document_exactly_once` to retry.
        """
        if "mk_id" in payload:
            raise ValueError("create_document takes no mk_id; use replace_document")
        return self._send("put_document", payload, timeout=self._write_timeout, creates=True)

    def create_document_exactly_once(
        self, payload: dict, *, external_ref: str, known_absent: bool = False
    ) -> tuple[dict, bool]:
        """Create the document unless one with `buyer_order == external_ref` exists.

        Returns `(document, created)`; `document` carries `mk_id` and `count_code`. Why this
        cannot create a duplicate (short of a concurrent writer with the same reference): every
        attempt first searches for the reference and returns what it finds, and sends at most one
        put_document, only after that search found nothing. An attempt whose create fails in any
        way that may have stored the document (`AmbiguousWriteError`), or surely did not (a
        retryable error), is followed, after the policy's backoff, by a new attempt, whose search
        finds the document if the first create did store it. Metakocka's own duplicate check
        (opr_code 6 / app 7) is answered with the existing document. At most
        `retry_policy.max_attempts` creates are sent; then the last error is raised, and a later
        run starts again with the lookup, which is just as safe. A lookup that still fails after
        its own retries ends its attempt before any create, and is retried the same way.

        A create still being processed by Metakocka when the next attempt's lookup runs (our read
        timeout fired, or the connection dropped, before the server committed) would be invisible
        to that lookup. So after an unknown outcome the next attempt waits until
        `create_settle_s` have passed since that create was sent before it looks (on top of the
        policy's backoff, and not capped by it). Residual risk: a server slower than that; enable
        Metakocka's unique buyer-order check where possible, which closes the gap on the server.

        `known_absent`: the caller has just read every Metakocka document that could carry this
        reference (a reconciliation's extraction) and none does, and no earlier attempt to create
        it was ever recorded. The first attempt then sends the create without its look-up (one
        search less per create, and searches run one at a time per company); every attempt after
        a failure looks up first, as above.
        """
        if payload.get("buyer_order", external_ref) != external_ref:
            raise ValueError("payload buyer_order differs from external_ref")
        payload = {**payload, "buyer_order": external_ref}
        doc_type = payload["doc_type"]

        unsettled_since: list[float] = []  # when a create with an unknown outcome was sent
        trust_caller = [known_absent]  # for the first attempt only

        def find_or_create_once() -> tuple[dict, bool]:
            if unsettled_since:
                time.sleep(max(0.0, unsettled_since[-1] + self.create_settle_s - time.monotonic()))
            first_and_known_absent = trust_caller.pop() if trust_caller else False
            existing = (
                [] if first_and_known_absent else self.find_by_external_ref(doc_type, external_ref)
            )
            if existing:
                if len(existing) > 1:
                    logger.warning(
                        "%d Metakocka %s documents share buyer_order %s; using the oldest",
                        len(existing),
                        doc_type,
                        external_ref,
                    )
                return existing[0], False
            sent_at = time.monotonic()
            try:
                return self.create_document(payload), True
            except AmbiguousWriteError:
                unsettled_since.append(sent_at)
                raise
            except DuplicateExternalIdError as exc:
                if not exc.existing_ids:
                    raise
                return self.get_document(doc_type, min(exc.existing_ids, key=int)), False

        retrying = build_retrying(
            self.retry_policy,
            "metakocka put_document (exactly once)",
            stats=self.stats,
            retry_on=lambda exc: isinstance(exc, AmbiguousWriteError) or is_retryable(exc),
        )
        return retrying(find_or_create_once)

    def replace_document(self, mk_id: str, payload: dict) -> dict:
        """put_document with `mk_id`: rewrites the whole document. Idempotent, hence retried."""
        return self._call(
            "put_document", {**payload, "mk_id": str(mk_id)}, timeout=self._write_timeout
        )

    def update_document(self, payload: dict) -> dict:
        """update_document: set fields of a document identified by `mk_id` or `buyer_order`.

        Setting fields is idempotent ("values change only when they differ"), so it is retried;
        `product_add` would add lines again on a retry and is therefore refused here.
        """
        if "product_add" in payload:
            raise ValueError("product_add is not idempotent; use replace_document")
        return self._call("update_document", payload, timeout=self._write_timeout)

    def delete_document(self, doc_type: str, mk_id: str) -> bool:
        """Delete a document. Returns False when it did not exist (e.g. a retry after success)."""
        try:
            self._call(
                "delete_document",
                {"doc_type": doc_type, "mk_id": str(mk_id)},
                timeout=self._write_timeout,
            )
        except NotFoundError:
            return False
        return True
