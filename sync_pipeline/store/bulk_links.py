"""`SyncStore.bind` for many pairs at once: the links a run writes without a push.

A first reconciliation against systems the CRM's old integration already linked adopts every such
pair (it needs no write, only its link). Binding them one transaction each cost about half a
millisecond of database time per pair (a minute for 100,000 documents); here a chunk of pairs is
one transaction: one select, one executemany update, one executemany insert. The result is the
same as calling `bind` for each pair in turn.
"""

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from itertools import islice

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipeline.store.tables import LINK_LINKED, document_links

CHUNK = 500
OPTIONAL = ("document_type", "metakocka_doc_type", "crm_document_number", "metakocka_count_code")


def bind_many(
    engine: Engine,
    organization_id: str,
    pairs: Iterable[dict],
    *,
    bind_one: Callable[..., None],
) -> int:
    """Link each pair (`crm_document_id`, `metakocka_id`, `content_hash` and the `OPTIONAL`
    fields, which never overwrite a known value with None). A pair whose two ids are on two
    different existing links is handed to `bind_one` (`SyncStore.bind`), which says what is
    wrong with it. `pairs` may be a generator: it is read a chunk at a time."""
    pairs, bound = iter(pairs), 0
    while chunk := list(islice(pairs, CHUNK)):
        for pair in _bind_chunk(engine, organization_id, chunk):
            bind_one(organization_id, **pair)
        bound += len(chunk)
    return bound


def _bind_chunk(engine: Engine, organization_id: str, pairs: list[dict]) -> list[dict]:
    now = datetime.now(UTC)
    links = document_links.c
    existing = sa.select(links.id, links.crm_document_id, links.metakocka_id).where(
        links.organization_id == organization_id,
        sa.or_(
            links.crm_document_id.in_([p["crm_document_id"] for p in pairs]),
            links.metakocka_id.in_([p["metakocka_id"] for p in pairs]),
        ),
    )
    updates, inserts, tangled = [], [], []
    with engine.begin() as conn:
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
