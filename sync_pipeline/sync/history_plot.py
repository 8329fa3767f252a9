"""The report's history plot, drawn in a process of its own (`python -m` this module).

Why a child process: the plotting library costs the process that imports it about 25 MiB for
good (matplotlib and its font cache), and the report is the last step of a run that peaks near
its memory target (docs/performance.md). Drawn here, the run's own process never imports it.

Input on stdin, JSON: `{"title", "dates": [ISO dates], "series": [{"label", "colour",
"values": [number or null]}]}`; output on stdout: the PNG. Only matplotlib is imported here,
not the pipeline (its package `__init__`s import nothing).

The child warms up before it reads its input: it draws a throwaway plot, which imports matplotlib
and loads its fonts (about a second of a small machine's CPU). So a child started when the run
starts (`resources.HistoryPlotResource`) is ready when the report asks, and the report does not
wait for it. An input that ends before any JSON (the run ended without a report) ends the child
with nothing written.
"""

import io
import json
import sys
from datetime import date


def draw(spec: dict) -> bytes:
    """The PNG of `spec` (the module docstring's input)."""
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure

    index = [date.fromisoformat(day) for day in spec["dates"]]
    figure = Figure(figsize=(8, 3), dpi=72)
    figure.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.18)
    axes = figure.subplots()
    for series in spec["series"]:
        values = [float("nan") if v is None else float(v) for v in series["values"]]
        axes.plot(
            index, values, marker="o", markersize=3, label=series["label"], color=series["colour"]
        )
    axes.set_title(spec["title"])
    axes.set_ylabel("documents")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=7, ncols=4)
    axes.set_ylim(bottom=0)
    axes.set_xlim(index[0], index[-1])
    axes.xaxis.set_major_formatter(DateFormatter("%d.%m."))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


WARM_UP = {
    "title": "warm-up",
    "dates": ["2026-01-01", "2026-01-02"],
    "series": [{"label": "warm-up", "colour": None, "values": [0, 1]}],
}


def main() -> None:
    draw(WARM_UP)
    text = sys.stdin.read()
    if text.strip():
        sys.stdout.buffer.write(draw(json.loads(text)))


if __name__ == "__main__":
    main()
