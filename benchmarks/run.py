"""The performance figures of sync_pipeline, each beside a baseline measured in the same run.

    uv run python benchmarks/run.py            # full sizes
    uv run python benchmarks/run.py --quick    # reduced sizes
    uv run python benchmarks/run.py --full     # also item 6, a million per side

How long each takes, what it needs, and the figures of past runs: docs/performance.md.

1. plan: 1,000,000 CRM + 1,000,000 Metakocka documents against 1,000,000 links (CPU time, peak RSS),
   against the same rules written as a per-row Python loop, timed on a 100,000 sample;
2. API-bound efficiency: 2,000 changed documents per side reconciled against the sandbox at 20 ms a
   call, 2 requests / 1 search at a time per Metakocka company (the CRM: 4), wall time against
   the bound those calls allow, against the same run one call at a time, and the same Metakocka
   calls sent bare (what an HTTP call costs beyond its 20 ms caps what any client can reach);
3. nothing changed: 100,000 documents per side, the nightly run's calls and wall time at 0 and
   20 ms, incremental against a full sweep (one full read of both sides), with docs/crm-setup.sql
   installed in the CRM, and the calls without it (every CRM document read and compared);
4. memory: peak RSS of a reconciliation at 100,000 documents per side (the organization's first
   run and a full sweep of it in sync; the heavier counts), against the decoded JSON of both sides
   alone, and the step during which each run's RSS was highest (sampled every 20 ms);
5. overhead: CPU time per document of a full sweep at 100,000 per side, the sandbox running in its
   own process, against reading the same documents with the pipeline's clients and nothing else;
6. (`--full`) a million documents per side: peak RSS of the first run and of a full sweep, and
   the full sweep's wall time per document against item 4's (linear growth).

Quick sizes are too small to judge items 1, 2, 4 and 5 (and 6): their targets are for the full
sizes, and at quick sizes a run's fixed costs (start-up, imports) are most of what is measured.
The table says so in its last column.

Each measurement runs in its own process (`benchmarks/items.py`), so each peak RSS is its own.
The last line is `api_bound_efficiency=E`.
"""

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(item: str, quick: bool) -> dict:
    started = time.perf_counter()
    command = [sys.executable, "-m", "benchmarks.items", item, *(["--quick"] if quick else [])]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-2000:] + done.stderr[-4000:])
        raise SystemExit(f"benchmark item {item!r} failed")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["_seconds"] = time.perf_counter() - started
    print(f"  [{item}: {result['_seconds']:.0f} s]", file=sys.stderr, flush=True)
    return result


QUICK_CANNOT_JUDGE = {
    "1": "the plan at 200,000 per side; the target is for 1,000,000",
    "2": "100 changed per side: a few seconds of calls, not enough to fill the API's allowance",
    "4": "8,000 per side: the memory of a process that imported the pipeline is most of it",
    "5": "8,000 per side: start-up and imports are most of the CPU",
    "6": "30,000 per side: the target is for 1,000,000",
}
"""Items whose target a quick run cannot judge, and why."""


def rows(plan: dict, changed: dict, steady: dict, million: dict | None = None) -> list[tuple]:
    """(item, figure, value, baseline, ratio, target, met) per line of the table."""
    n_plan = plan["documents"]
    sample = plan["loop_sample"]
    pipeline, single = changed["pipeline"], changed["one_at_a_time"]
    bare = pipeline["bare_calls"]
    efficiency = pipeline["efficiency"]
    reads = pipeline["steps"]["extract_sales_documents"]
    pushes = pipeline["steps"]["sync_pushes"]
    full0, incr0 = steady["full_0ms"], steady["incremental_0ms"]
    unset = steady["incremental_no_setup_0ms"]
    full20, incr20 = steady["full_20ms"], steady["incremental_20ms"]
    raw = steady["raw_read"]
    n = steady["documents_per_side"]
    peak = steady["peak_rss_mib"]
    cpu_doc = full0["cpu_us_per_document"]
    return [
        (
            "1",
            f"plan {n_plan:,}+{n_plan:,} docs vs {plan['links']:,} links: CPU time",
            f"{plan['plan_s']:.2f} s",
            f"loop {plan['iterrows_s']:.1f} s on {sample:,}",
            f"{plan['iterrows_ratio_per_row']:.0f}x per row",
            "<= 10 s, >= 20x",
            plan["plan_s"] <= 10 and plan["iterrows_ratio_per_row"] >= 20,
        ),
        (
            "1",
            "  same, against the tuned loop (itertuples + dicts)",
            f"{plan['plan_s']:.2f} s",
            f"loop {plan['itertuples_s']:.2f} s on {sample:,}",
            f"{plan['itertuples_ratio_per_row']:.1f}x per row",
            "(for scale)",
            None,
        ),
        (
            "1",
            "plan: peak RSS of the process (inputs included)",
            f"{plan['peak_rss_mib']:,.0f} MiB",
            f"inputs {plan['inputs_rss_mib']:,.0f} MiB",
            "",
            "<= 3 GB",
            plan["peak_rss_mib"] <= 3 * 1024,
        ),
        (
            "2",
            f"{changed['changed_per_side']:,} changed/side: wall vs API bound",
            f"{pipeline['wall_s']:.1f} s",
            f"bound {pipeline['bound_s']:.1f} s",
            f"E = {efficiency:.2f}",
            ">= 0.8",
            efficiency >= 0.8,
        ),
        (
            "2",
            "  same reconciliation, one call at a time",
            f"{pipeline['wall_s']:.1f} s",
            f"{single['wall_s']:.1f} s",
            f"{changed['speedup']:.1f}x faster",
            "",
            None,
        ),
        (
            "2",
            "  the same Metakocka calls sent bare, nothing else to do",
            f"{pipeline['wall_s']:.1f} s",
            f"{bare['wall_s']:.1f} s",
            f"E = {bare['efficiency']:.2f} bare",
            "(the harness's ceiling)",
            None,
        ),
        (
            "2",
            "  where it goes: reads before any write / pushes / other steps",
            f"{reads:.1f} / {pushes:.1f} / {pipeline['wall_s'] - reads - pushes:.1f} s",
            f"bare {bare['wall_s']:.1f} s",
            f"pushes {pushes / bare['wall_s']:.2f}x bare",
            "",
            None,
        ),
        (
            "2",
            "  calls: CRM / Metakocka (searches)",
            f"{pipeline['calls']['crm_calls']} / {pipeline['calls']['metakocka_calls']}"
            f" ({pipeline['calls']['metakocka_searches']})",
            f"{single['calls']['crm_calls']} / {single['calls']['metakocka_calls']}"
            f" ({single['calls']['metakocka_searches']})",
            "",
            "",
            None,
        ),
        (
            "3",
            f"nothing changed, {n:,}/side: API calls, incremental vs full read",
            f"{incr0['total_calls']:,}",
            f"{full0['total_calls']:,}",
            f"{full0['total_calls'] / max(1, incr0['total_calls']):.0f}x fewer",
            "far fewer; 0 writes",
            incr0["total_calls"] * 10 <= full0["total_calls"]
            and incr0["writes"] == full0["writes"] == 0,
        ),
        (
            "3",
            "  same, CRM without docs/crm-setup.sql (every CRM document compared)",
            f"{unset['total_calls']:,}",
            f"{full0['total_calls']:,}",
            f"{full0['total_calls'] / max(1, unset['total_calls']):.1f}x fewer",
            "0 writes",
            unset["writes"] == 0,
        ),
        (
            "3",
            "  wall at 0 ms, incremental vs full sweep",
            f"{incr0['wall_s']:.1f} s",
            f"{full0['wall_s']:.1f} s",
            f"{full0['wall_s'] / incr0['wall_s']:.0f}x",
            "",
            None,
        ),
        (
            "3",
            "  wall at 20 ms, incremental vs full sweep",
            f"{incr20['wall_s']:.1f} s",
            f"{full20['wall_s']:.1f} s",
            f"{full20['wall_s'] / incr20['wall_s']:.0f}x",
            "",
            None,
        ),
        (
            "4",
            f"reconciliation at {n:,}/side: peak RSS",
            f"{peak:,.0f} MiB",
            f"raw JSON {raw['held_json_mib']:,.0f} MiB",
            f"{peak / max(1, raw['held_json_mib']):.1f}x",
            "<= 300 MiB",
            peak <= 300,
        ),
        (
            "4",
            "  first run (every link and status row written) / full sweep in sync",
            f"{steady['first']['peak_rss_mib']:,.0f} / {full0['peak_rss_mib']:,.0f} MiB",
            f"before any document {full0['rss_before_run_mib']:,.0f} MiB",
            "",
            "",
            None,
        ),
        (
            "4",
            "  where each peaks (step): first run / full sweep",
            f"{_peak_step(steady['first'])} / {_peak_step(full0)}",
            "",
            "",
            "",
            None,
        ),
        (
            "5",
            f"full sweep at {n:,}/side: pipeline CPU per document",
            f"{cpu_doc:,.0f} us",
            f"read only {raw['cpu_us_per_document']:,.0f} us",
            f"{cpu_doc / raw['cpu_us_per_document']:.1f}x",
            "<= 2x",
            cpu_doc <= 2 * raw["cpu_us_per_document"],
        ),
        (
            "5",
            "  full sweep wall at 0 ms / sandbox CPU in that run",
            f"{full0['wall_s']:.1f} s",
            f"sandbox {full0['sandbox_cpu_s']:.1f} s",
            "",
            "",
            None,
        ),
        *(million_rows(million, steady) if million else []),
    ]


def _peak_step(run: dict) -> str:
    """The step during which the run's RSS was highest, and that RSS."""
    by_step = run.get("step_rss_mib") or {}
    if not by_step:
        return "?"
    step = max(by_step, key=by_step.get)
    return f"{step} ({by_step[step]:,.0f} MiB)"


def million_rows(million: dict, steady: dict) -> list[tuple]:
    """Item 6: a million per side, against item 4's run (wall time per document: linear?)."""
    m, n = million["documents_per_side"], steady["documents_per_side"]
    first, full = million["first"], million["full_0ms"]
    peak = max(first["peak_rss_mib"], full["peak_rss_mib"])
    per_doc = full["wall_s"] / m
    baseline = steady["full_0ms"]["wall_s"] / n
    return [
        (
            "6",
            f"reconciliation at {m:,}/side: peak RSS (first run / full sweep)",
            f"{peak:,.0f} MiB",
            f"{first['peak_rss_mib']:,.0f} / {full['peak_rss_mib']:,.0f} MiB",
            "",
            "<= 1.5 GB",
            peak <= 1.5 * 1024,
        ),
        (
            "6",
            f"  full sweep wall per document, {m:,} vs {n:,}/side",
            f"{per_doc * 1e6:,.0f} us",
            f"{baseline * 1e6:,.0f} us",
            f"{per_doc / baseline:.2f}x",
            "linear (<= 1.25x)",
            per_doc <= 1.25 * baseline,
        ),
        (
            "6",
            "  full sweep CPU per document / wall of the first run",
            f"{full['cpu_us_per_document']:,.0f} us",
            f"first run {first['wall_s']:,.0f} s",
            "",
            "",
            None,
        ),
    ]


def table(lines: list[tuple], quick: bool = False) -> str:
    header = ("#", "figure", "measured", "baseline (same run)", "ratio", "target", "met")
    cells = [header] + [(*line[:6], _met(line, quick)) for line in lines]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(header))]
    out = []
    for i, row in enumerate(cells):
        padded = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        out.append("  ".join(padded).rstrip())
        if i == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


def _met(line: tuple, quick: bool) -> str:
    if line[6] is None:
        return ""
    if quick and line[0] in QUICK_CANNOT_JUDGE:
        return "n/a (quick)"
    return "yes" if line[6] else "NO"


def bytecode_state() -> str:
    """Whether the dependencies' bytecode is compiled: without it (and with PYTHONDONTWRITEBYTECODE
    set) every measured run compiles its imports from source, as a run launched by Dagster would."""
    import dagster

    compiled = Path(importlib.util.cache_from_source(dagster.__file__)).exists()
    return "bytecode compiled" if compiled else "NO bytecode (uv sync --compile-bytecode)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes")
    parser.add_argument("--json", type=Path, help="also write every raw figure to this file")
    parser.add_argument(
        "--full", action="store_true", help="also item 6: a million documents per side"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    items = ("plan", "changed", "steady", *(("million",) if args.full else ()))
    results = {item: measure(item, args.quick) for item in items}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    mode = "quick (reduced sizes)" if args.quick else "full sizes"
    elapsed = time.perf_counter() - started
    print(f"sync_pipeline benchmarks, {mode}, {elapsed:.0f} s, {bytecode_state()}")
    lines = rows(results["plan"], results["changed"], results["steady"], results.get("million"))
    print(table(lines, args.quick))
    if args.quick:
        judged = {line[0] for line in lines}
        for item, why in QUICK_CANNOT_JUDGE.items():
            if item in judged:
                print(f"item {item} not judged at quick sizes: {why}")
    print(f"api_bound_efficiency={results['changed']['pipeline']['efficiency']:.2f}")


if __name__ == "__main__":
    main()
