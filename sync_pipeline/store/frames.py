"""Whole tables of an organization read into frames, with one object per repeated text.

A full sweep reads every link and every sync_status row of an organization (100,000 and more).
Read naively, each value is an object of its own: the state `linked` or the status `synced` a
hundred thousand times, 50-60 bytes each, the same few words. Here the rows are read in slices
straight into columns (no list of row objects in between), and the columns of such words share one
`str` per distinct value; nothing else changes (the frame's columns, types and values are those
`DataFrame.from_records` makes of the rows).
"""

from collections.abc import Collection, Mapping

import pandas as pd
import sqlalchemy as sa

SLICE = 5_000
"""Rows fetched at once: the database driver's rows are dropped slice by slice."""

REPEATED_TEXTS = frozenset(
    {
        "organization_id",
        "state",
        "document_type",
        "metakocka_doc_type",
        "status",
        "last_direction",
        "last_error",
        "metakocka_status",
    }
)
"""Columns of links and sync_status rows that hold a few words over many rows."""


def read_frame(
    engine: sa.Engine,
    query: sa.Select,
    columns: list[str],
    repeated: Collection[str] = (),
    held: Mapping[str, Mapping[str, str]] | None = None,
) -> pd.DataFrame:
    """The rows of `query` as a frame of `columns`; the values of the `repeated` columns (a few
    distinct words) are shared. `held`: {column: {text: the object}} of texts the caller already
    holds (a full sweep's ids and hashes, as read from the APIs): a value equal to one is that
    object, not a copy of it."""
    values: list[list] = [[] for _ in columns]
    held = held or {}
    shared = [{} if name in repeated else held.get(name) for name in columns]
    with engine.connect() as conn:
        result = conn.execute(query)
        for rows in result.partitions(SLICE):
            by_column = zip(*rows, strict=True)
            for name, column, words, row_values in zip(
                columns, values, shared, by_column, strict=True
            ):
                if words is None:
                    column.extend(row_values)
                elif name in repeated:
                    column.extend(v if v is None else words.setdefault(v, v) for v in row_values)
                else:
                    column.extend(words.get(v, v) for v in row_values)
    if not values[0]:
        return pd.DataFrame.from_records([], columns=columns)
    return pd.DataFrame(dict(zip(columns, values, strict=True)))
