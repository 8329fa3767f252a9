"""Reading the rows that name a list of document ids, for the repositories of links and statuses.

An on-demand run or a status look-up touches a handful of documents, so it reads only their rows.
Id lists are chunked to keep `IN (...)` lists small.
"""

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

CHUNK = 500


def chunks(ids: Iterable[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(i for i in ids if i))
    return [unique[i : i + CHUNK] for i in range(0, len(unique), CHUNK)]


def _either(table: sa.Table, crm_ids: list[str], mk_ids: list[str]):
    conditions = []
    if crm_ids:
        conditions.append(table.c.crm_document_id.in_(crm_ids))
    if mk_ids:
        conditions.append(table.c.metakocka_id.in_(mk_ids))
    return sa.or_(*conditions) if conditions else sa.false()


def rows_naming(
    engine: Engine,
    table: sa.Table,
    columns,
    organization_id: str,
    crm_ids: Iterable[str],
    mk_ids: Iterable[str],
) -> list[tuple]:
    """The rows naming any of the ids, once each (`columns` start with the table's `id`)."""
    crm_chunks, mk_chunks = chunks(crm_ids), chunks(mk_ids)
    rows: dict = {}
    with engine.connect() as conn:
        for crm_chunk, mk_chunk in [(c, []) for c in crm_chunks] + [([], m) for m in mk_chunks]:
            query = sa.select(*columns).where(
                table.c.organization_id == organization_id, _either(table, crm_chunk, mk_chunk)
            )
            # fetchall: iterating a result fetches its rows one call at a time
            for row in conn.execute(query).fetchall():  # tuples: a mapping costs 20x more
                rows[row[0]] = tuple(row)
    return list(rows.values())
