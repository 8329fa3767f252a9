"""The sync report's pieces as the Dagster UI shows them: Markdown tables and a PNG plot embedded
as a data URI (Dagster renders `MetadataValue.md`, images included). No Dagster imports here."""

import base64
import importlib
import io
import threading
from collections import Counter
from datetime import date, timedelta

import pandas as pd

from sync_pipeline.store.reporting import NO_DIRECTION
from sync_pipeline.store.tables import DIRECTIONS, SYNC_STATUSES
from sync_pipeline.sync.push import PushOutcome

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


def status_direction_table(counts: pd.DataFrame) -> str:
    """Documents by status (rows) and last push direction (columns), with totals."""
    directions = [*DIRECTIONS, NO_DIRECTION]
    grid = {(r.status, r.direction): int(r.documents) for r in counts.itertuples(index=False)}
    rows = []
    for status in SYNC_STATUSES:
        values = [grid.get((status, d), 0) for d in directions]
        rows.append([status, *values, sum(values)])
    totals = [sum(row[i + 1] for row in rows) for i in range(len(directions) + 1)]
    rows.append(["**total**", *totals])
    return markdown_table(["status", *directions, "total"], rows)


def run_outcome_table(outcomes: list[PushOutcome]) -> tuple[str, dict[str, int]]:
    """This run's pushes by direction, action and result; and flat counts for int metadata."""
    counts = Counter((o.direction, o.action, o.result) for o in outcomes)
    rows = [[d, a, r, n] for (d, a, r), n in sorted(counts.items())]
    flat: Counter = Counter()
    for (direction, _action, result), n in counts.items():
        flat[f"{result}_{direction}"] += n
    table = markdown_table(["direction", "action", "result", "documents"], rows)
    return (table if rows else "_nothing was pushed in this run_"), dict(flat)


def top_errors_table(errors: pd.DataFrame, width: int = 160) -> str:
    if errors.empty:
        return "_no open errors_"
    rows = [
        [
            r.errors,
            r.error_type,
            _document(r),
            r.message if len(r.message) <= width else r.message[: width - 1] + "…",
            pd.Timestamp(r.last_seen).strftime("%Y-%m-%d %H:%M"),
        ]
        for r in errors.itertuples(index=False)
    ]
    return markdown_table(["open", "type", "document", "message", "last seen (UTC)"], rows)


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


def history_markdown(history: pd.DataFrame, today: date, days: int = 30) -> str:
    """A plot of documents by status per day over the last `days` days, as an embedded PNG."""
    if history.empty:
        return "_no history yet_"
    png = history_png(history, today, days)
    encoded = base64.b64encode(png).decode("ascii")
    return f"![documents by status, last {days} days](data:image/png;base64,{encoded})"


PLOTTING_MODULES = ("matplotlib.figure", "matplotlib.dates")


def import_plotting_in_background() -> None:
    """Start importing the plotting library (`history_png`'s) in a helper thread.

    Why: the import costs about a second of CPU and only the report, the run's last step, needs
    it. The pushes before it spend most of their time waiting on the APIs, so importing while
    they wait takes that second off the run's wall time. The report's own import then finds the
    modules loaded, or waits for the import in progress (Python's import lock). A failed import
    is left for the report's own import to raise.
    """

    def load() -> None:
        for module in PLOTTING_MODULES:
            try:
                importlib.import_module(module)
            except ImportError:
                return

    threading.Thread(target=load, name="import-plotting", daemon=True).start()


def history_png(history: pd.DataFrame, today: date, days: int = 30) -> bytes:
    # heavy imports: only when a report is drawn (see import_plotting_in_background)
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure

    start = today - timedelta(days=days - 1)
    index = pd.Index([start + timedelta(days=i) for i in range(days)], name="snapshot_date")
    frame = history.reindex(index)  # days without a reconciliation stay empty (gaps)
    figure = Figure(figsize=(8, 3), dpi=72)
    figure.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.18)
    axes = figure.subplots()
    for status in SYNC_STATUSES:
        values = frame[status] if status in frame else None
        if values is None or not values.fillna(0).any():
            continue
        axes.plot(
            index,
            values.to_numpy(dtype=float),
            marker="o",
            markersize=3,
            label=status,
            color=STATUS_COLOURS.get(status),
        )
    axes.set_title(f"Documents by sync status, last {days} days")
    axes.set_ylabel("documents")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=7, ncols=4)
    axes.set_ylim(bottom=0)
    axes.set_xlim(index[0], index[-1])
    axes.xaxis.set_major_formatter(DateFormatter("%d.%m."))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
