"""The binder: every read and write of `document_links`, where a CRM id meets a Metakocka id.

Every write that learns an outcome is its own short transaction, committed before the next
remote call (the OCA connector's lesson: bind the remote id the moment the remote write succeeds).
"""

from collections.abc import Iterable, Mapping
from itertools import islice

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from sync_pipeline.store.clock import utcnow
from sync_pipeline.store.frames import REPEATED_TEXTS, read_frame
from sync_pipeline.store.id_lists import chunks, rows_naming
from sync_pipeline.store.tables import LINK_LINKED, document_links, sync_status

LINK_COLUMNS = [
    "crm_document_id",
    "metakocka_id",
    "content_hash",
    "state",
    "document_type",
    "metakocka_doc_type",
    "crm_document_number",
    "metakocka_count_code",
    "last_synced_at",
]

BIND_CHUNK = 500
"""Pairs `bind_many` links in one transaction."""

OPTIONAL = ("document_type", "metakocka_doc_type", "crm_document_number", "metakocka_count_code")
"""Link fields a bind sets only when it knows them (None never overwrites a known value)."""


def link_id_conditions(crm_document_id: str | None, metakocka_id: str | None) -> list:
    """One condition per id given, on `document_links`: the caller joins them (either id finds
    a link; both ids name one pair)."""
    conditions = []
    if crm_document_id:
        conditions.append(document_links.c.crm_document_id == crm_document_id)
    if metakocka_id:
        conditions.append(document_links.c.metakocka_id == metakocka_id)
    return conditions


class Links:
    """The organization's links between CRM and Metakocka documents (`document_links`)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    # ----------------------------------------------------------------- reads
    def frame(
        self,
        organization_id: str,
        columns: list[str] = LINK_COLUMNS,
        held: Mapping[str, Mapping[str, str]] | None = None,
    ) -> pd.DataFrame:
        """The organization's links (`columns` of them: the plan reads four); `held`: texts
        the caller holds, shared rather than copied (`frames.read_frame`)."""
        query = sa.select(*[document_links.c[name] for name in columns]).where(
            document_links.c.organization_id == organization_id
        )
        return read_frame(self.engine, query, columns, repeated=REPEATED_TEXTS, held=held)

    def in_sync(self, organization_id: str, crm_ids: Iterable[str] | None = None) -> dict[str, str]:
        """{CRM id: content hash at its last sync} of the pairs the last run that judged them
        left `synced` (a confirmed link, both ids, a hash), of the organization or of `crm_ids`
        only: what an incremental run leaves out as an echo (`sync/incremental.py`)."""
        query = (
            sa.select(document_links.c.crm_document_id, document_links.c.content_hash)
            .join(
                sync_status,
                (sync_status.c.organization_id == document_links.c.organization_id)
                & (sync_status.c.crm_document_id == document_links.c.crm_document_id),
            )
            .where(
                document_links.c.organization_id == organization_id,
                document_links.c.state == LINK_LINKED,
                document_links.c.metakocka_id.is_not(None),
                document_links.c.content_hash.is_not(None),
                sync_status.c.status == "synced",
            )
        )
        queries = (
            [query]
            if crm_ids is None
            else [query.where(document_links.c.crm_document_id.in_(c)) for c in chunks(crm_ids)]
        )
        with self.engine.connect() as conn:
            return {crm_id: digest for q in queries for crm_id, digest in conn.execute(q)}

    def for_ids(
        self, organization_id: str, crm_ids: Iterable[str], mk_ids: Iterable[str]
    ) -> pd.DataFrame:
        """The link rows that name any of the ids (the columns of `frame`): an on-demand run
        reads only its documents' links."""
        columns = [document_links.c.id, *[document_links.c[name] for name in LINK_COLUMNS]]
        rows = rows_naming(self.engine, document_links, columns, organization_id, crm_ids, mk_ids)
        return pd.DataFrame.from_records(rows, columns=["id", *LINK_COLUMNS]).drop(columns="id")

    def find(
        self,
        organization_id: str,
        *,
        crm_document_id: str | None = None,
        metakocka_id: str | None = None,
    ) -> dict | None:
        conditions = link_id_conditions(crm_document_id, metakocka_id)
        if not conditions:
            return None
        query = sa.select(document_links).where(
            document_links.c.organization_id == organization_id, sa.or_(*conditions)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row else None

    def linked_metakocka_count(self, organization_id: str) -> int:
        """How many of the organization's links name a Metakocka document."""
        query = sa.select(sa.func.count()).where(
            document_links.c.organization_id == organization_id,
            document_links.c.metakocka_id.is_not(None),
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def duplicate_count(self, organization_id: str) -> int:
        """CRM or Metakocka ids linked more than once in the organization (each one a duplicate
        pairing; exactly-once says there are none)."""
        duplicates = 0
        with self.engine.connect() as conn:
            for column in (document_links.c.crm_document_id, document_links.c.metakocka_id):
                query = (
                    sa.select(column)
                    .where(document_links.c.organization_id == organization_id, column.is_not(None))
                    .group_by(column)
                    .having(sa.func.count() > 1)
                )
                duplicates += len(conn.execute(query).all())
        return duplicates

    # ----------------------------------------------------------------- writes
    def record_intent(
        self,
        organization_id: str,
        *,
        state: str,
        crm_document_id: str,
        metakocka_id: str | None = None,
        document_type: str | None = None,
    ) -> None:
        """Write down, before a create is sent, that it is about to be sent.

        If a link for this document already exists (an earlier unfinished intent, or a concurrent
        run's), it is left as it is: the caller resolves by lookup either way.
        """
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    document_links.insert().values(
                        organization_id=organization_id,
                        crm_document_id=crm_document_id,
                        metakocka_id=metakocka_id,
                        document_type=document_type,
                        state=state,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            pass

    def bind(
        self,
        organization_id: str,
        *,
        crm_document_id: str,
        metakocka_id: str,
        content_hash: str | None,
        document_type: str | None = None,
        metakocka_doc_type: str | None = None,
        crm_document_number: str | None = None,
        metakocka_count_code: str | None = None,
    ) -> None:
        """Link the two ids (or refresh the link's hash): the document is in sync as of now."""
        now = utcnow()
        values = {
            "crm_document_id": crm_document_id,
            "metakocka_id": metakocka_id,
            "content_hash": content_hash,
            "state": LINK_LINKED,
            "updated_at": now,
            "last_synced_at": now,
        }
        optional = {
            "document_type": document_type,
            "metakocka_doc_type": metakocka_doc_type,
            "crm_document_number": crm_document_number,
            "metakocka_count_code": metakocka_count_code,
        }
        values.update({key: value for key, value in optional.items() if value is not None})
        match = sa.and_(
            document_links.c.organization_id == organization_id,
            sa.or_(
                document_links.c.crm_document_id == crm_document_id,
                document_links.c.metakocka_id == metakocka_id,
            ),
        )
        # Update, else insert; a concurrent binder of the same pair may insert first, and then the
        # unique constraint refuses ours and the second pass updates its row.
        for attempt in (1, 2):
            try:
                with self.engine.begin() as conn:
                    update = document_links.update().where(match).values(**values)
                    if not conn.execute(update).rowcount:
                        conn.execute(
                            document_links.insert().values(
                                organization_id=organization_id, created_at=now, **values
                            )
                        )
                return
            except IntegrityError:
                if attempt == 2:
                    raise

    def bind_many(self, organization_id: str, pairs: Iterable[dict]) -> int:
        """`bind` for many pairs at once: the links a run writes without a push.

        A first reconciliation against systems the CRM's old integration already linked adopts
        every such pair (it needs no write, only its link). Binding them one transaction each cost
        about half a millisecond of database time per pair (a minute for 100,000 documents); here
        a chunk of pairs is one transaction: one select, one executemany update, one executemany
        insert. The result is the same as calling `bind` for each pair in turn.

        Each pair has `crm_document_id`, `metakocka_id`, `content_hash` and the `OPTIONAL` fields,
        which never overwrite a known value with None. A pair whose two ids are on two different
        existing links is handed to `bind`, which says what is wrong with it. `pairs` may be a
        generator: it is read a chunk at a time."""
        pairs, bound = iter(pairs), 0
        while chunk := list(islice(pairs, BIND_CHUNK)):
            for pair in self._bind_chunk(organization_id, chunk):
                self.bind(organization_id, **pair)
            bound += len(chunk)
        return bound

    def _bind_chunk(self, organization_id: str, pairs: list[dict]) -> list[dict]:
        now = utcnow()
        links = document_links.c
        existing = sa.select(links.id, links.crm_document_id, links.metakocka_id).where(
            links.organization_id == organization_id,
            sa.or_(
                links.crm_document_id.in_([p["crm_document_id"] for p in pairs]),
                links.metakocka_id.in_([p["metakocka_id"] for p in pairs]),
            ),
        )
        updates, inserts, tangled = [], [], []
        with self.engine.begin() as conn:
            by_crm, by_mk = {}, {}
            for row_id, crm_id, mk_id in conn.execute(existing):
                if crm_id:
                    by_crm[crm_id] = row_id
                if mk_id:
                    by_mk[mk_id] = row_id
            for pair in pairs:
                values = {
                    "crm_document_id": pair["crm_document_id"],
                    "metakocka_id": pair["metakocka_id"],
                    "content_hash": pair.get("content_hash"),
                    **{name: pair.get(name) for name in OPTIONAL},
                }
                found = {by_crm.get(pair["crm_document_id"]), by_mk.get(pair["metakocka_id"])}
                found.discard(None)
                if len(found) > 1:
                    tangled.append(pair)
                elif found:
                    # (bind parameters may not share a name with the columns they set)
                    updates.append(
                        {"row_id": found.pop(), **{f"new_{k}": v for k, v in values.items()}}
                    )
                else:
                    inserts.append(values)
            if updates:
                conn.execute(
                    document_links.update()
                    .where(links.id == sa.bindparam("row_id"))
                    .values(
                        crm_document_id=sa.bindparam("new_crm_document_id"),
                        metakocka_id=sa.bindparam("new_metakocka_id"),
                        content_hash=sa.bindparam("new_content_hash"),
                        state=LINK_LINKED,
                        updated_at=now,
                        last_synced_at=now,
                        **{
                            name: sa.func.coalesce(sa.bindparam(f"new_{name}"), links[name])
                            for name in OPTIONAL
                        },
                    ),
                    updates,
                )
            if inserts:
                conn.execute(
                    document_links.insert(),
                    [
                        {
                            **values,
                            "organization_id": organization_id,
                            "state": LINK_LINKED,
                            "created_at": now,
                            "updated_at": now,
                            "last_synced_at": now,
                        }
                        for values in inserts
                    ],
                )
        return tangled

    def delete(
        self, organization_id: str, *, crm_document_id: str | None, metakocka_id: str | None
    ) -> int:
        """Delete the organization's link naming these ids (nothing when neither is given)."""
        conditions = link_id_conditions(crm_document_id, metakocka_id)
        if not conditions:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(
                document_links.delete().where(
                    document_links.c.organization_id == organization_id, *conditions
                )
            ).rowcount
