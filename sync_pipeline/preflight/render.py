"""The preflight's reports as a terminal table, as Markdown (Dagster's UI) and as JSON.

The terminal table is plain text (the project has no table library): one row per finding,
`status  area  check  finding`, the finding wrapped under its column and the fix on its own line
below it, so a long reason stays readable in a 110-column terminal and in a log file.
"""

import textwrap
from datetime import UTC, datetime

from sync_pipeline.preflight.findings import OrganizationReport

COLUMNS = ("status", "area", "check")
TEXT_WIDTH = 110


def report_table(report: OrganizationReport, width: int = TEXT_WIDTH) -> str:
    """One organization: a heading with its verdict, then its findings."""
    heading = f"{report.name} (partition {report.key}, organization {report.organization_id})"
    rows = [(f.status, f.area, f.check) for f in report.findings]
    sizes = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(COLUMNS)]
    indent = sum(sizes) + 2 * len(sizes)
    text_width = max(40, width - indent)
    lines = [heading, f"  {report.summary()}", ""]
    lines.append(_cells(COLUMNS, sizes) + "finding")
    for finding, row in zip(report.findings, rows, strict=True):
        wrapped = textwrap.wrap(finding.detail, text_width) or [""]
        if finding.fix:
            wrapped += textwrap.wrap(f"fix: {finding.fix}", text_width, subsequent_indent="     ")
        lines.append(_cells(row, sizes) + wrapped[0])
        lines += [" " * indent + more for more in wrapped[1:]]
    if report.skipped:
        lines += ["", f"  Not checked: {report.skipped}."]
    return "\n".join(lines)


def report_markdown(report: OrganizationReport) -> str:
    """One organization as a Markdown table (the Dagster UI's metadata)."""
    lines = [
        f"**{report.name}**: {report.summary()}",
        "",
        "| status | area | check | finding | fix |",
        "| --- | --- | --- | --- | --- |",
    ]
    for f in report.findings:
        cells = (f.status, f.area, f.check, f.detail, f.fix)
        lines.append("| " + " | ".join(_markdown_cell(c) for c in cells) + " |")
    if report.skipped:
        lines += ["", f"Not checked: {report.skipped}."]
    return "\n".join(lines)


def reports_json(reports: list[OrganizationReport], *, crm_url: str, metakocka_url: str) -> dict:
    """Every organization's report, machine-readable (`--json FILE`)."""
    return {
        "read_only": True,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "crm_url": crm_url,
        "metakocka_url": metakocka_url,
        "blockers": sum(r.count("blocker") for r in reports),
        "organizations": [r.as_json() for r in reports],
    }


def _cells(values, sizes) -> str:
    return "".join(f"{value:<{size}}  " for value, size in zip(values, sizes, strict=True))


def _markdown_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
