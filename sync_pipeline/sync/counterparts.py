"""Metakocka counterparts known by their link, read only when they are about to be replaced.

An incremental run plans a CRM edit against its Metakocka counterpart. When that counterpart did
not change since the cursor and the pair was left `synced`, its content is the one its link
recorded: the plan needs nothing more to say `update_in_metakocka`. The document itself is still
needed, because `put_document` replaces the whole document and the fields only Metakocka holds must
be written back (metakocka/mapping.py). So it is read in the push step, just before its replace:
- the read then overlaps the other writes instead of holding them all back. Metakocka runs one
  search at a time but allows two requests in flight; a full read of the company is one search
  per page, and while the extraction did it the second request slot stood idle;
- the replace is sent only if the document still hashes to its link's content hash. One that
  changed in the meantime, or is gone, is left `pending`: the next run reads both sides and plans
  the pair (a conflict, a deletion for a full sweep), and nothing Metakocka holds is overwritten.

The reads cost what the extraction's reads cost: one `get_document` per counterpart, or one full
read of the company when that takes fewer calls (`full_read_is_cheaper`).
"""

import threading
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass

from sync_pipeline.domain.document import SalesDocument
from sync_pipeline.domain.hashing import DEFAULT_PRECISION, Precision, content_hash
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.metakocka.reads import full_read_takes_fewer_calls, read_every_document
from sync_pipeline.store.links import Links
from sync_pipeline.sync.metakocka_reads import Found, map_metakocka, read_metakocka_document


@dataclass(frozen=True)
class LinkedCounterpart:
    """A Metakocka document that stands in the plan as its link recorded it (not read yet)."""

    metakocka_id: str
    crm_document_id: str
    content_hash: str
    metakocka_doc_type: str | None
    document_type: str | None
    metakocka_count_code: str | None
    precision: Precision = DEFAULT_PRECISION
    """The precision `content_hash` was computed at (the CRM's: `Extraction.precision`)."""


def full_read_is_cheaper(links: Links, organization_id: str, reads: int, concurrency: int) -> bool:
    """Cheaper to read the whole company than `reads` documents by id? Its size is what its
    links count (`metakocka/reads.py`)."""
    documents = links.linked_metakocka_count(organization_id)
    return full_read_takes_fewer_calls(documents, reads, concurrency)


class CounterpartReader:
    """The current Metakocka documents behind `LinkedCounterpart`s, for the push step.

    With many of them, one full read starts at once in a thread of its own (it holds the search
    slot while the pushes use the other request slot); otherwise each is read by id when asked.
    Use it as a context manager: leaving stops a full read nobody waits for any more.
    """

    def __init__(
        self,
        client: MetakockaClient,
        organization_id: str,
        counterparts: Iterable[LinkedCounterpart],
        *,
        links: Links,
    ):
        self._client, self._org = client, organization_id
        self._stop = threading.Event()
        self._full: Future | None = None
        self._wanted = {c.metakocka_id for c in counterparts}
        reads, concurrency = len(self._wanted), client.max_concurrent_requests
        if reads and full_read_is_cheaper(links, organization_id, reads, concurrency):
            self._full = Future()
            threading.Thread(
                target=self._read_everything, name="counterparts-full-read", daemon=True
            ).start()

    def __enter__(self) -> "CounterpartReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()

    def _read_everything(self) -> None:
        try:
            read = read_every_document(self._client, keep=self._wanted, stop=self._stop)
            self._full.set_result(read)
        except BaseException as exc:  # raised to every push that waits on it
            self._full.set_exception(exc)

    def current(self, counterpart: LinkedCounterpart) -> Found:
        """The document as Metakocka holds it now (None: it no longer exists)."""
        mk_id = counterpart.metakocka_id
        if self._full is None:
            return read_metakocka_document(
                self._client, self._org, mk_id, counterpart.metakocka_doc_type
            )
        raw = self._full.result().get(mk_id)
        if raw is None:
            return None
        extraction = map_metakocka([raw], self._org)
        return (extraction.documents or extraction.unmappable or [None])[0]

    def unchanged(self, counterpart: LinkedCounterpart) -> tuple[SalesDocument | None, str]:
        """(the current document, "") when it still has its link's content; else (None, why)."""
        current = self.current(counterpart)
        if current is None:
            return None, "the linked Metakocka document no longer exists (a full sweep judges it)"
        if not isinstance(current, SalesDocument):
            return None, "the linked Metakocka document can no longer be read"
        if content_hash(current, counterpart.precision) != counterpart.content_hash:
            return None, "the Metakocka document changed after this run read its changes"
        return current, ""
