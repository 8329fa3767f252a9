"""Reading and writing whole CRM documents (a ``sales_documents`` row and its lines) the way the
real CRM and Supabase allow it.

Reading: pages of documents in key order under each tenancy scope (`crm_tenancy`), then, for
each page, every line of its documents in pages of their own (ids 100 at a time, an exact
count saying when all have come), and the references they make prefetched into the
organization's `CrmDirectory`. An embedded line list is never trusted: ``max-rows`` cuts it
without a sign (PostgREST issue #2776: a 1,005-line document reads as 1,000 lines).

Writing (`write_documents`): a document the pipeline creates (born in Metakocka) is inserted
with ``ON CONFLICT DO NOTHING`` on its derived id, so a retry after a lost answer inserts
nothing twice, and one that exists is updated instead; an update is a PATCH pinned to the row's
id *and* its tenancy (organization, or owner), so a row that left the organization is never
written. Its owner (``user_id``) and organization are written only on create. Lines are
replaced without a moment with none: the new lines are upserted first (ids derived from the
document and the position, so a rewrite updates them in place), then the lines that are not
among them are deleted by id. A failure in between leaves the old lines, or old and new ones,
never none (the CRM's own editor deletes first: one bad line leaves a document empty); the
push's claim on the document makes the next run finish it (`sync/export/to_crm.py`).
"""

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sync_pipeline.adapters.errors import MalformedResponseError, NotFoundError
from sync_pipeline.crm.directory import CrmDirectory
from sync_pipeline.crm.profiles import DOCS, ITEMS, CrmSchema
from sync_pipeline.crm.query import IDS_PER_QUERY, chunks, in_filter, iso
from sync_pipeline.crm.session import CrmSession
from sync_pipeline.crm.tenancy import Tenancy


class CrmDocumentsSession(CrmSession, Protocol):
    """A client as the document helpers use it: its calls, and each organization's look-ups."""

    def directory(self, organization_id: str) -> CrmDirectory: ...


LINES_KEY = ITEMS
"""Key under which a document row read here carries all of its lines."""


@dataclass
class CrmDocumentWrite:
    """One document to write: the columns of its row and all of its lines.

    ``create``: insert it if it does not exist (``header`` then holds ``id``, ``user_id`` and
    ``organization_id``); otherwise it is updated, pinned by ``owner`` (its ``organization_id``
    and ``user_id`` as read), and ``header`` holds only the columns to set."""

    document_id: str
    header: dict
    lines: list[dict] = field(default_factory=list)
    create: bool = False
    owner: dict | None = None


def document_columns(schema: CrmSchema) -> str:
    return ",".join(schema.profile.required[DOCS])


def line_columns(schema: CrmSchema) -> str:
    profile = schema.profile
    return ",".join(c for c in schema.columns[ITEMS] if c in profile.required[ITEMS])


# -- reading ---------------------------------------------------------------------------------


def read_documents(
    client: CrmDocumentsSession,
    organization_id: str,
    *,
    updated_since: datetime | None = None,
    ids: list[str] | None = None,
    page_size: int,
) -> Iterator[dict]:
    schema = client.schema()
    directory = client.directory(organization_id)
    tenancy = directory.tenancy()
    select = ("select", document_columns(schema))
    if ids is not None:
        pages = _pages_by_ids(client, tenancy, select, list(dict.fromkeys(ids)))
    else:
        since = [] if updated_since is None else [("updated_at", f"gte.{iso(updated_since)}")]
        pages = (
            page
            for scope in tenancy.scopes()
            for page in client.keyset(
                DOCS,
                [select, *scope, *since],
                by_change=True,
                include_null_changes=updated_since is None,
                page_size=page_size,
            )
        )
    contact_column = schema.profile.customer["contact"]
    for page in pages:
        page = [row for row in page if tenancy.owns(row)]
        lines = read_lines(client, schema, [row["id"] for row in page])
        for row in page:
            row[LINES_KEY] = lines.get(str(row["id"]), [])
        directory.prefetch_references(
            (row.get(contact_column) for row in page),
            (line.get("product_id") for row in page for line in row[LINES_KEY]),
        )
        yield from page


def document_owners(
    client: CrmDocumentsSession, organization_id: str, ids: list[str]
) -> dict[str, str]:
    """The owner (`user_id`) of each of the organization's documents among `ids` (one that is
    not the organization's, or no longer exists, is left out)."""
    tenancy = client.directory(organization_id).tenancy()
    owners = {}
    for page in _pages_by_ids(client, tenancy, ("select", "id,user_id,organization_id"), ids):
        owners.update({str(row["id"]): str(row["user_id"]) for row in page if tenancy.owns(row)})
    return owners


def _pages_by_ids(client, tenancy: Tenancy, select, ids: list[str]) -> Iterator[list[dict]]:
    """The documents of ``ids`` (100 per request, side by side up to the client's allowance)
    under each tenancy scope, in the order of the ids' chunks."""

    def read(chunk: list[str]) -> list[dict]:
        return [
            row
            for scope in tenancy.scopes()
            for row in client.counted(DOCS, [select, ("id", in_filter(chunk)), *scope])
        ]

    groups = chunks(ids)
    if len(groups) <= 1:
        yield from (read(chunk) for chunk in groups)
        return
    workers = min(len(groups), client.max_concurrent_requests)
    with ThreadPoolExecutor(workers, thread_name_prefix="crm-ids") as pool:
        yield from pool.map(read, groups)


def read_lines(client: CrmDocumentsSession, schema: CrmSchema, document_ids: list[str]) -> dict:
    """Every line of the documents, grouped by document id (100 documents per request, side by
    side up to the client's allowance, each complete by its exact count)."""
    parent = schema.profile.item_parent
    select = ("select", line_columns(schema))

    def read(chunk: list[str]) -> list[dict]:
        return client.counted(ITEMS, [select, (parent, in_filter(chunk))])

    groups = chunks(document_ids)
    if not groups:
        return {}
    if len(groups) == 1:
        results = [read(groups[0])]
    else:
        workers = min(len(groups), client.max_concurrent_requests)
        with ThreadPoolExecutor(workers, thread_name_prefix="crm-lines") as pool:
            results = list(pool.map(read, groups))
    out: dict[str, list[dict]] = {}
    for rows in results:
        for line in rows:
            out.setdefault(str(line[parent]), []).append(line)
    return out


# -- writing ---------------------------------------------------------------------------------


def write_documents(
    client: CrmDocumentsSession, organization_id: str, writes: list[CrmDocumentWrite]
):
    """Write up to a hundred documents of one organization (module docstring): creates, then
    updates, then their lines. Raises on the first failure; the caller writes one by one to
    learn which document is at fault."""
    if len(writes) > 100:
        raise ValueError("at most 100 documents per call")
    if not writes:
        return
    schema = client.schema()
    now = iso(datetime.now(UTC))
    for write in writes:
        schema.check_writable(DOCS, {**write.header, "updated_at": now})
        for line in write.lines:
            schema.check_writable(ITEMS, line)
    creates = [w for w in writes if w.create]
    existing = _insert_new(client, organization_id, creates, now)
    updates = [w for w in writes if not w.create] + [
        CrmDocumentWrite(
            w.document_id,
            _content(w.header),
            w.lines,
            owner={"organization_id": organization_id},
        )
        for w in creates
        if w.document_id in existing
    ]
    tenancy = client.directory(organization_id).tenancy()
    for write in updates:
        _update(client, tenancy, write, now)
    _replace_lines(client, schema, writes)


def write_requests(writes: list[CrmDocumentWrite], replaced_lines: int = 0) -> int:
    """The write requests `write_documents` sends for `writes` when all goes well: an insert
    per column set of the new documents, a PATCH per updated one, an upsert per column set of
    the lines, and a DELETE per hundred of the `replaced_lines` (the updated documents' lines
    that are not among the new ones). What the preflight prices a run's CRM writes with."""
    creates = [w for w in writes if w.create]
    inserts = _by_columns([w.header for w in creates])
    upserts = _by_columns([line for w in writes for line in w.lines])
    deletes = math.ceil(replaced_lines / IDS_PER_QUERY)
    return len(inserts) + len(writes) - len(creates) + len(upserts) + deletes


def _insert_new(client, organization_id: str, creates: list[CrmDocumentWrite], now: str) -> set:
    """Insert the documents to create; the ids that already existed (a retry, or a write an
    earlier run left half done) are returned, to be updated instead."""
    if not creates:
        return set()
    inserted: set[str] = set()
    for rows in _by_columns([{**w.header, "updated_at": now} for w in creates]):
        for row in rows:
            if row.get("organization_id") != organization_id:
                raise ValueError("a document created for an organization must carry its id")
        saved = client.rows(
            "POST",
            DOCS,
            params=[("on_conflict", "id"), ("select", "id")],
            body=rows,
            prefer="resolution=ignore-duplicates,return=representation",
        )
        inserted |= {str(r["id"]) for r in saved}
    return {w.document_id for w in creates} - inserted


def _update(client, tenancy: Tenancy, write: CrmDocumentWrite, now: str) -> None:
    owner = write.owner or _owned_row(client, tenancy.organization_id, write.document_id)
    pin = tenancy.owner_filter(
        {"organization_id": owner.get("organization_id"), "user_id": owner.get("user_id")}
    )
    saved = client.rows(
        "PATCH",
        DOCS,
        params=[("id", f"eq.{write.document_id}"), *pin, ("select", "id")],
        body={**_content(write.header), "updated_at": now},
        prefer="return=representation",
    )
    if not saved:
        raise NotFoundError(
            f"CRM document {write.document_id} is no longer the organization's "
            "(deleted, or moved to another organization or owner): not written",
            details={"call": f"PATCH {DOCS}", "document_id": write.document_id},
        )


def _replace_lines(client, schema: CrmSchema, writes: list[CrmDocumentWrite]) -> None:
    """Upsert every new line, check by reading them back that all were stored, then delete the
    documents' other lines by id.

    The upsert asks for no representation: PostgREST before v10 caps a mutation's returned rows
    at ``max-rows`` too (PostgREST issue #2155), so a count of returned rows proves nothing; the
    read-back is exact (`read_lines` pages by count)."""
    written = [line for w in writes for line in w.lines]
    for rows in _by_columns(written):
        client.execute(
            "POST",
            ITEMS,
            params=[("on_conflict", "id")],
            body=rows,
            prefer="resolution=merge-duplicates,return=minimal",
        )
    keep = {str(line["id"]) for line in written}
    current = read_lines(client, schema, [w.document_id for w in writes])
    stored = {str(line["id"]) for lines in current.values() for line in lines}
    if keep - stored:
        raise MalformedResponseError(
            f"CRM upsert of {len(keep)} lines answered success but {len(keep - stored)} of "
            "them are not there: the documents' old lines were left in place",
            details={"call": f"POST {ITEMS}"},
        )
    stale = sorted(
        str(line["id"])
        for lines in current.values()
        for line in lines
        if str(line["id"]) not in keep
    )
    for chunk in chunks(stale):
        client.rows(
            "DELETE",
            ITEMS,
            params=[("id", in_filter(chunk)), ("select", "id")],
            prefer="return=representation",
        )


def patch_document(
    client, organization_id: str, document_id: str, fields: dict, owner: dict | None = None
) -> dict:
    schema = client.schema()
    row = owner or _owned_row(client, organization_id, document_id)
    now = iso(datetime.now(UTC))
    schema.check_writable(DOCS, {**fields, "updated_at": now})
    pin = client.directory(organization_id).tenancy().owner_filter(row)
    saved = client.rows(
        "PATCH",
        DOCS,
        params=[("id", f"eq.{document_id}"), *pin],
        body={**fields, "updated_at": now},
        prefer="return=representation",
    )
    if not saved:
        raise NotFoundError(
            f"CRM document {document_id} not found",
            details={"call": f"PATCH {DOCS}", "document_id": document_id},
        )
    return saved[0]


def delete_document(client, organization_id: str, document_id: str) -> bool:
    try:
        row = _owned_row(client, organization_id, document_id)
    except NotFoundError:
        return False
    pin = client.directory(organization_id).tenancy().owner_filter(row)
    deleted = client.rows(
        "DELETE",
        DOCS,
        params=[("id", f"eq.{document_id}"), *pin, ("select", "id")],
        prefer="return=representation",
    )
    return bool(deleted)


def _owned_row(client, organization_id: str, document_id: str) -> dict:
    """The document's tenancy columns, read under the organization's scopes."""
    tenancy = client.directory(organization_id).tenancy()
    for scope in tenancy.scopes():
        rows = client.rows(
            "GET",
            DOCS,
            params=[("select", "id,organization_id,user_id"), ("id", f"eq.{document_id}"), *scope],
        )
        if rows:
            return rows[0]
    raise NotFoundError(
        f"CRM document {document_id} not found in the organization",
        details={"call": f"GET {DOCS}", "document_id": document_id},
    )


def _content(header: dict) -> dict:
    """The columns an update sets: never the row's id, owner or organization."""
    return {k: v for k, v in header.items() if k not in ("id", "user_id", "organization_id")}


def _by_columns(rows: list[dict]) -> list[list[dict]]:
    """Rows grouped by their set of keys: PostgREST takes one column list per request."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    return list(groups.values())
