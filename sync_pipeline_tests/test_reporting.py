"""The sync report (metadata of a real nightly run), the 26-hour freshness check and the
run-failure sensor."""

import base64
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pandas as pd
import psutil
import pytest
import sqlalchemy as sa

from sync_pipeline.assets.reporting import FRESHNESS_JOB_NAME, freshness_result
from sync_pipeline.definitions import build_definitions
from sync_pipeline.resources import (
    CrmResource,
    HistoryPlotResource,
    MetakockaResource,
    SyncStoreResource,
)
from sync_pipeline.sensors.run_failures import sync_run_failure_sensor
from sync_pipeline.settings import Organization
from sync_pipeline.store.repository import SyncStore
from sync_pipeline.store.tables import SYNC_STATUSES
from sync_pipeline.sync import reporting
from sync_pipeline.sync.reporting import history_sparklines

from .edits import report_metadata, run
from .helpers import status_rows


def test_the_report_shows_status_direction_errors_and_history(
    sandbox, pipeline_env, dagster_instance
):
    org, other = sandbox.organizations[:2]
    url = pipeline_env.database_url
    result = run(pipeline_env, dagster_instance, org.id)
    metadata = report_metadata(result)

    rows = status_rows(url, org.id)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("synced", "invalid", "conflict")}
    assert metadata["documents"] == len(rows)
    assert metadata["status_synced"] == counts["synced"] > 0
    assert metadata["status_invalid"] == counts["invalid"] > 0
    assert metadata["status_conflict"] == counts["conflict"]
    table = metadata["by_status_and_direction"]
    synced_line = next(line for line in table.splitlines() if line.startswith("| synced |"))
    assert synced_line.endswith(f"| {counts['synced']} |")
    assert "to Metakocka" in table.splitlines()[0]
    assert metadata["ok_crm_to_metakocka"] + metadata["ok_metakocka_to_crm"] > 0
    assert "| crm_to_metakocka | create_in_metakocka | ok |" in metadata["this_run"]
    # the top errors are a table entry (the UI draws it in place, however long)
    top_errors = [record.data for record in metadata["top_errors"].records]
    assert any(error["type"] == "validation" for error in top_errors)
    # each error names a document it is about, by number and id
    invalid = [r for r in rows if r["status"] == "invalid" and r["crm_document_id"]]
    documents = [error["document"] for error in top_errors]
    assert any(
        f"{r['crm_document_number']}: crm {r['crm_document_id']}" in documents for r in invalid
    ), documents
    # the last 30 days on the page: Markdown short enough to be drawn in place (under 1000
    # characters), one sparkline per status that has documents, ending with today's count
    history = metadata["last_30_days"]
    assert len(history) < 1000
    synced_bars = next(line for line in history.splitlines() if line.startswith("| synced |"))
    assert synced_bars.endswith(f"█` | {counts['synced']} |")  # today is the highest bar
    image = re.fullmatch(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)",
                         metadata["status_history"])  # fmt: skip
    assert image and base64.b64decode(image.group(1)).startswith(b"\x89PNG")

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        history = dict(
            conn.execute(
                sa.text(
                    "select status, documents from sync_status_history where organization_id = :o"
                ),
                {"o": org.id},
            ).all()
        )
        runs = conn.execute(sa.text("select run_id from reconciliation_runs")).scalars().all()
    engine.dispose()
    assert history["synced"] == counts["synced"] and history["invalid"] == counts["invalid"]
    assert runs == [result.run_id]

    # the freshness check, on its own schedule's job: the other organization never reconciled
    check_run = (
        build_definitions(pipeline_env)
        .resolve_job_def(FRESHNESS_JOB_NAME)
        .execute_in_process(instance=dagster_instance)
    )
    (evaluation,) = check_run.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.metadata["stale_organizations"].value == 1
    assert evaluation.description == (
        f"1 organization(s) not reconciled within 26 h: {other.name} (never)"
    )
    # inside the organization's own run the check judged that organization only, and passed
    (own,) = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "reconciled_within_26_hours"
    ]
    assert own.passed and own.description == f"reconciled within 26 h: {org.name}"


def test_the_last_30_days_are_sparklines_short_enough_for_the_page():
    today = date(2026, 12, 4)
    days = [today - timedelta(days=29), today - timedelta(days=1), today]
    history = pd.DataFrame(
        {status: [0, 0, 0] for status in SYNC_STATUSES}
        | {"synced": [10, 20, 40], "invalid": [4, 0, 2]},
        index=pd.Index(days, name="snapshot_date"),
    )
    lines = history_sparklines(history, today).splitlines()
    # bars from 0 to the status's highest count; `·` is a day without a snapshot; statuses
    # without documents are left out
    assert lines[2:] == [
        f"| synced | `▃{'·' * 27}▅█` | 40 |",
        f"| invalid | `█{'·' * 27}▁▅` | 2 |",
    ]
    busiest = pd.DataFrame(
        {status: [100_000] * 30 for status in SYNC_STATUSES},
        index=pd.Index([today - timedelta(days=i) for i in range(29, -1, -1)]),
    )
    assert len(history_sparklines(busiest, today)) < 1000  # drawn in place, not in a dialog


def test_freshness_fails_after_26_hours():
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    orgs = [Organization("a", "A", "1"), Organization("b", "B", "2")]
    fresh = freshness_result({"a": now - timedelta(hours=25), "b": now}, orgs, now=now)
    assert fresh.passed
    late = freshness_result({"a": now - timedelta(hours=26, minutes=1), "b": now}, orgs, now=now)
    assert not late.passed
    assert late.metadata["stale_organizations"].value == 1
    assert "| A | a |" in late.metadata["organizations"].value
    assert late.description == "1 organization(s) not reconciled within 26 h: A (26 h ago)"


@dg.op
def breaks():
    raise RuntimeError("Metakocka refused secret_key=mk-secret-123")


@dg.job
def failing_job():
    breaks()


def test_a_failed_run_is_recorded_once_in_the_error_log(sqlite_url, dagster_instance, tmp_path):
    resources = {
        "crm": CrmResource(base_url="http://crm.invalid", api_key="crm-key"),
        "metakocka": MetakockaResource(
            base_url="http://mk.invalid", secret_keys='{"16": "mk-secret-123"}'
        ),
    }
    cursor = None

    def tick(database_url: str):
        nonlocal cursor
        context = dg.build_sensor_context(
            instance=dagster_instance,
            cursor=cursor,
            resources={**resources, "sync_store": SyncStoreResource(database_url=database_url)},
        )
        cursor = sync_run_failure_sensor(context).cursor

    tick(sqlite_url)  # the first tick starts the watch
    result = failing_job.execute_in_process(
        instance=dagster_instance, raise_on_error=False, tags={"dagster/partition": "org-1"}
    )
    assert not result.success

    # The sync database cannot be opened for one tick: the tick fails, and the failure is not
    # skipped (Dagster's run_failure_sensor moves its cursor on anyway), so the next tick records
    # it; a third evaluation adds nothing.
    (tmp_path / "not-a-folder").write_text("a file where the database's folder should be")
    with pytest.raises(Exception, match="not-a-folder"):
        tick(f"sqlite:///{tmp_path / 'not-a-folder' / 'sync.db'}")
    tick(sqlite_url)
    tick(sqlite_url)

    store = SyncStore(sqlite_url)
    errors = store.errors.open_frame("org-1")
    assert len(errors) == 1
    (row,) = errors.to_dict("records")
    assert (row["error_type"], row["run_id"]) == ("internal", result.run_id)
    assert "failing_job" in row["message"] and "breaks" in row["message"]
    assert "mk-secret-123" not in row["message"] + (row["stack_trace"] or "")
    assert "RuntimeError" in row["stack_trace"]
    assert store.errors.resolve_run_failures("org-1", note="later run succeeded") == 1
    store.dispose()


def test_the_history_plot_is_drawn_outside_the_run_process():
    """The plotting library (about 25 MiB for good) is imported by a child process only."""
    script = (
        "import struct, sys\n"
        "from datetime import date\n"
        "import pandas as pd\n"
        "from sync_pipeline.sync.reporting import history_png\n"
        "days = pd.Index([date(2026, 12, 3), date(2026, 12, 4)], name='snapshot_date')\n"
        "png = history_png(pd.DataFrame({'synced': [5, 7]}, index=days), date(2026, 12, 4))\n"
        "print(struct.unpack('>II', png[16:24]), 'matplotlib' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "(576, 216) False"  # 8 x 3 inches at 72 dpi


def _plot_children() -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process().children()
        if "sync_pipeline.sync.history_plot" in " ".join(child.cmdline())
    ]


def test_the_plot_child_starts_with_the_run_and_ends_with_it():
    """The child that draws the plot is started when a run's resources are set up, so it has
    imported the plotting library before the report asks; one the report never used (no history
    yet, a failed run) is ended with the run's resources."""
    days = pd.Index([date(2026, 12, 3), date(2026, 12, 4)], name="snapshot_date")
    history = pd.DataFrame({"synced": [5, 7]}, index=days)
    with dg.build_resources({"history_plot": HistoryPlotResource()}) as resources:
        assert len(_plot_children()) == 1
        markdown = reporting.history_markdown(
            history, date(2026, 12, 4), 2, resources.history_plot.plotter
        )
        assert markdown.startswith("![documents by status, last 2 days](data:image/png;base64,")
        assert _plot_children() == []  # it drew its one plot and ended
    with dg.build_resources({"history_plot": HistoryPlotResource()}) as resources:
        assert reporting.history_markdown(history.iloc[:0], date(2026, 12, 4), 2) == (
            "_no history yet_"
        )
        assert len(_plot_children()) == 1
    assert _plot_children() == []


def test_a_plot_child_that_cannot_start_does_not_stop_the_run(monkeypatch):
    """Started ahead, a plot child that cannot start is a warning: the run goes on, and only the
    report, asking for its plot, fails on it (as it did when it started the child itself)."""
    monkeypatch.setattr(reporting, "PLOT_COMMAND", ("/nonexistent/python",))
    with dg.build_resources({"history_plot": HistoryPlotResource()}) as resources:
        with pytest.raises(FileNotFoundError):
            resources.history_plot.plotter()


def test_a_plot_that_cannot_be_drawn_says_why(monkeypatch):
    monkeypatch.setattr(
        reporting, "PLOT_COMMAND", (sys.executable, "-m", "sync_pipeline.sync.no_such_plot")
    )
    days = pd.Index([date(2026, 12, 4)], name="snapshot_date")
    with pytest.raises(RuntimeError, match="No module named sync_pipeline.sync.no_such_plot"):
        reporting.history_png(pd.DataFrame({"synced": [5]}, index=days), date(2026, 12, 4))
