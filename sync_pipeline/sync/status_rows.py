"""sync_status rows held as tuples until they are written and mirrored: `StatusRows`.

A full sweep keeps the rows that differ from the documents' current ones (`sync/status_sweep.py`)
until the one transaction that writes them, and the CRM's mapping table is then written from
them (`sync/crm_mirror.py`). On an organization's first run that is every document's row
(100,000 and more): as dicts of 15 keys they held about 50 MB beside the run's documents (a dict
of 15 keys is about 470 bytes, a tuple of 15 values 176). Here each row is a tuple in the order of
`columns`, and a row is a dict again only while it is used (`rows[i]`, a slice, iteration).
"""

from collections.abc import Iterable, Iterator, Sequence


class StatusRows(Sequence):
    """Status rows (dicts with the keys of `columns`) stored as tuples; reads give dicts."""

    def __init__(self, columns: Sequence[str], rows: Iterable[dict] = ()):
        self.columns = tuple(columns)
        self._at = {name: i for i, name in enumerate(self.columns)}
        self._rows: list[tuple] = []
        self.extend(rows)

    def extend(self, rows: Iterable[dict]) -> None:
        """Add rows; a row with other keys than `columns` is refused (ValueError), never cut."""
        for row in rows:
            if row.keys() != self._at.keys():
                raise ValueError(f"a status row with keys {sorted(row)}, not {self.columns}")
            self._rows.append(tuple(row[name] for name in self.columns))

    def __add__(self, rows: Iterable[dict]) -> "StatusRows":
        """These rows and `rows`, as new rows (these are shared, not copied or changed)."""
        more = StatusRows(self.columns, rows)
        more._rows = self._rows + more._rows
        return more

    @classmethod
    def of(cls, columns: Sequence[str], rows: Sequence[dict]) -> "StatusRows":
        """`rows` as status rows: the same object if they already are."""
        return rows if isinstance(rows, StatusRows) else cls(columns, rows)

    def column(self, name: str) -> list:
        """One column's values, in row order (no dict made)."""
        at = self._at[name]
        return [row[at] for row in self._rows]

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [dict(zip(self.columns, row, strict=True)) for row in self._rows[index]]
        return dict(zip(self.columns, self._rows[index], strict=True))

    def __iter__(self) -> Iterator[dict]:
        for row in self._rows:
            yield dict(zip(self.columns, row, strict=True))
