"""The sync report's pieces as the Dagster UI shows them: Markdown tables, rows for a table
entry, sparklines and a PNG plot embedded as a data URI. No Dagster imports here.

What the UI does with them (dagster-webserver 1.13, ui-core `MetadataEntry.tsx`): a Markdown
entry shorter than 1000 characters is drawn in place, a longer one behind "[Show Markdown]" (a
dialog); a table entry (`MetadataValue.table`) is always drawn in place. The value column of the
asset page is about 480 px wide in a 1600 px window, so a table in place has a few short columns.
"""

import base64
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta

import pandas as pd

from sync_pipeline.domain.directions import CRM_TO_METAKOCKA, METAKOCKA_TO_CRM, PUSH_DIRECTIONS
from sync_pipeline.store.status import NO_DIRECTION
from sync_pipeline.store.tables import SYNC_STATUSES
from sync_pipeline.sync.export.outcomes import PushOutcome

STATUS_COLOURS = {
    "synced": "#2e7d32",
    "pending": "#f9a825",
    "failed": "#c62828",
    "conflict": "#6a1b9a",
    "invalid": "#ef6c00",
    "deleted_in_crm": "#546e7a",
    "deleted_in_metakocka": "#90a4ae",
    "no_crm_type": "#8d6e63",
}


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table; cell text is escaped so a message cannot break it."""

    def cell(value) -> str:
        text = "" if value is None else str(value)
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


DIRECTION_HEADERS = {
    CRM_TO_METAKOCKA: "to Metakocka",
    METAKOCKA_TO_CRM: "to CRM",
    NO_DIRECTION: "none",
}
"""Short column headers of the last push direction (`sync_status.last_direction`), so the
status table fits the page."""


def status_direction_table(counts: pd.DataFrame) -> str:
    """Documents by status (rows) and last push direction (columns), with totals."""
    directions = [*PUSH_DIRECTIONS, NO_DIRECTION]
    grid = {(r.status, r.direction): int(r.documents) for r in counts.itertuples(index=False)}
    rows = []
    for status in SYNC_STATUSES:
        values = [grid.get((status, d), 0) for d in directions]
        rows.append([status, *values, sum(values)])
    totals = [sum(row[i + 1] for row in rows) for i in range(len(directions) + 1)]
    rows.append(["**total**", *totals])
    return markdown_table(["status", *(DIRECTION_HEADERS[d] for d in directions), "total"], rows)


def run_outcome_table(outcomes: list[PushOutcome]) -> tuple[str, dict[str, int]]:
    """This run's pushes by direction, action and result; and flat counts for int metadata."""
    counts = Counter((o.direction, o.action, o.result) for o in outcomes)
    rows = [[d, a, r, n] for (d, a, r), n in sorted(counts.items())]
    flat: Counter = Counter()
    for (direction, _action, result), n in counts.items():
        flat[f"{result}_{direction}"] += n
    table = markdown_table(["direction", "action", "result", "documents"], rows)
    return (table if rows else "_nothing was pushed in this run_"), dict(flat)


TOP_ERROR_COLUMNS = ("open", "type", "document", "message", "last seen")


def top_error_rows(errors: pd.DataFrame, width: int = 160) -> list[dict]:
    """The top open errors as rows of a table entry (`TOP_ERROR_COLUMNS`): a table entry is drawn
    in place however many errors there are, where Markdown this long would hide in a dialog.
    Short cells: a message cut at `width`, the last time seen as `dd.mm. HH:MM` (UTC)."""
    return [
        {
            "open": int(r.errors),
            "type": r.error_type,
            "document": _document(r),
            "message": r.message if len(r.message) <= width else r.message[: width - 1] + "…",
            "last seen": pd.Timestamp(r.last_seen).strftime("%d.%m. %H:%M"),
        }
        for r in errors.itertuples(index=False)
    ]


def _document(error) -> str:
    """One document the error is about: its number and ids (`+ n more` when it is about several);
    a run-level error (a failed step, retries) has none."""
    ids = [
        f"{side} {doc_id}"
        for side, doc_id in (("crm", error.crm_document_id), ("metakocka", error.metakocka_id))
        if isinstance(doc_id, str) and doc_id
    ]
    if not ids:
        return "(run)"
    number = error.document_number if isinstance(error.document_number, str) else None
    more = f" + {error.errors - 1} more" if error.errors > 1 else ""
    return f"{number + ': ' if number else ''}{', '.join(ids)}{more}"


def unmapped_statuses_table(counts: pd.DataFrame) -> str:
    """Metakocka statuses the organization's map does not know, and how many documents have
    one (sync/statuses.py): what to add to its `metakocka_statuses`."""
    if counts.empty:
        return "_every Metakocka status maps to a CRM status_"
    rows = [[r.status_code, r.status_desc, r.documents] for r in counts.itertuples(index=False)]
    return markdown_table(["status_code (label)", "status_desc", "documents"], rows)


BARS = "▁▂▃▄▅▆▇█"
NO_SNAPSHOT = "·"


def history_sparklines(history: pd.DataFrame, today: date, days: int = 30) -> str:
    """The last `days` days of status counts as one sparkline per status, oldest day first, with
    today's count: short enough (under 1000 characters) to be drawn on the page, where the plot
    (`history_markdown`) opens in a dialog. Bars are scaled from 0 to the status's highest count
    in the window; `·` is a day without a snapshot. Statuses with no documents in the window are
    left out."""
    if history.empty:
        return "_no history yet_"
    start = today - timedelta(days=days - 1)
    index = pd.Index([start + timedelta(days=i) for i in range(days)], name="snapshot_date")
    frame = history.reindex(index)
    rows = []
    for status in SYNC_STATUSES:
        values = frame[status] if status in frame else pd.Series(dtype=float)
        top = values.max(skipna=True)
        if pd.isna(top) or top == 0:
            continue
        bars = "".join(
            NO_SNAPSHOT if pd.isna(v) else BARS[round(float(v) / top * (len(BARS) - 1))]
            for v in values
        )
        last = values.iloc[-1]
        rows.append([status, f"`{bars}`", "" if pd.isna(last) else int(last)])
    if not rows:
        return f"_no documents in the last {days} days_"
    return markdown_table(["status", f"last {days} days", "today"], rows)


def history_markdown(
    history: pd.DataFrame,
    today: date,
    days: int = 30,
    plotter: "Callable[[], HistoryPlotter] | None" = None,
) -> str:
    """A plot of documents by status per day over the last `days` days, as an embedded PNG
    (`history_png`)."""
    if history.empty:
        return "_no history yet_"
    png = history_png(history, today, days, plotter)
    encoded = base64.b64encode(png).decode("ascii")
    return f"![documents by status, last {days} days](data:image/png;base64,{encoded})"


PLOT_COMMAND = (sys.executable, "-m", "sync_pipeline.sync.history_plot")
PLOT_TIMEOUT_S = 120
"""How long the plot may take (a child process: start-up, the plotting library, one PNG)."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class HistoryPlotter:
    """One history plot's child process (`sync/history_plot.py`), started now so that it has
    imported the plotting library by the time `draw` is called. Draws once, within
    `timeout_s` of being asked."""

    def __init__(self, timeout_s: float = PLOT_TIMEOUT_S):
        self.timeout_s = timeout_s
        self._process = subprocess.Popen(
            PLOT_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def draw(self, spec: dict) -> bytes:
        """The PNG of `spec` (`history_plot`'s input); `RuntimeError` with what the child
        printed when it could not draw it."""
        try:
            out, err = self._process.communicate(json.dumps(spec).encode(), self.timeout_s)
        except subprocess.TimeoutExpired:
            self.close()
            raise RuntimeError(f"the history plot took over {self.timeout_s} s") from None
        if self._process.returncode != 0 or not out.startswith(PNG_SIGNATURE):
            printed = err.decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(
                f"the history plot could not be drawn (exit {self._process.returncode}): "
                f"{' / '.join(printed)}"
            )
        return out

    def close(self) -> None:
        """End the child if it was never given a plot (a run that ended without its report):
        no orphan, no open pipe."""
        if self._process.returncode is None:
            self._process.kill()
            self._process.communicate()


def history_png(
    history: pd.DataFrame,
    today: date,
    days: int = 30,
    plotter: Callable[[], HistoryPlotter] | None = None,
) -> bytes:
    """The plot of documents by status per day. `plotter` gives the child process that draws
    it, asked only when there is a plot to draw (`resources.HistoryPlotResource.plotter` gives
    one started with the run); without it, one is started now. A plot that cannot be drawn
    raises `RuntimeError`."""
    start = today - timedelta(days=days - 1)
    index = pd.Index([start + timedelta(days=i) for i in range(days)], name="snapshot_date")
    frame = history.reindex(index)  # days without a reconciliation stay empty (gaps)
    series = []
    for status in SYNC_STATUSES:
        values = frame[status] if status in frame else None
        if values is None or not values.fillna(0).any():
            continue
        series.append(
            {
                "label": status,
                "colour": STATUS_COLOURS.get(status),
                "values": [None if pd.isna(v) else float(v) for v in values],
            }
        )
    spec = {
        "title": f"Documents by sync status, last {days} days",
        "dates": [day.isoformat() for day in index],
        "series": series,
    }
    return (plotter or HistoryPlotter)().draw(spec)
