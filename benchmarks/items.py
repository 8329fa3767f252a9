"""The measurements behind `benchmarks/run.py`, one per process (so each peak RSS is its own).

    uv run python -m benchmarks.items plan|changed|steady|million [--quick]

Each prints its figures as one JSON object on the last line of stdout.
"""

import argparse
import gc
import json
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psutil

SIZES = {
    # item: (full, quick)
    "plan_documents": (1_000_000, 200_000),
    "plan_loop_sample": (100_000, 20_000),
    "changed_base": (10_000, 1_000),
    "changed_per_side": (2_000, 100),
    "steady_per_side": (100_000, 8_000),
    "million_per_side": (1_000_000, 30_000),
}
LATENCY_MS = 20
METAKOCKA_CAP = {"max_concurrent": 2, "max_concurrent_searches": 1}
"""Metakocka's allowance per company (metakocka-api.md §11): 2 requests in flight, 1 search."""
CRM_CAP = {"max_concurrent": 4}
"""The CRM is another API with its own allowance: the CRM client's default concurrency."""


def size(name: str, quick: bool) -> int:
    return SIZES[name][1 if quick else 0]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


# -- 1. the plan ------------------------------------------------------------------------------


def measure_plan(quick: bool) -> dict:
    from benchmarks.plan_loop import loop_plan_counts
    from benchmarks.plan_scaling import ORG, frames
    from sync_pipeline.domain.plan import build_sync_plan

    build_sync_plan(*frames(1000, linked=True), ORG)  # warm-up: imports, numpy/pandas caches
    sample = size("plan_loop_sample", quick)
    crm, mk, links = frames(sample, linked=True)
    # CPU time, not wall time: all of it is single-threaded, and CPU time does not count the
    # moments a busy machine gives to other processes.
    loops = {}
    for walk in ("iterrows", "itertuples"):
        started = time.process_time()
        counts = loop_plan_counts(crm, mk, links, ORG, walk=walk)
        loops[walk] = (time.process_time() - started, counts)
    started = time.process_time()
    sample_plan = build_sync_plan(crm, mk, links, ORG)
    sample_s = time.process_time() - started
    vectorised_counts = sample_plan["action"].value_counts().to_dict()
    same = all(dict(counts) == vectorised_counts for _, counts in loops.values())
    del crm, mk, links, sample_plan
    gc.collect()

    n = size("plan_documents", quick)
    crm, mk, links = frames(n, linked=True)
    before = rss_mib()
    started, wall = time.process_time(), time.perf_counter()
    plan = build_sync_plan(crm, mk, links, ORG)
    plan_s, wall = time.process_time() - started, time.perf_counter() - wall
    return {
        "documents": n,
        "links": len(links),
        "plan_rows": len(plan),
        "plan_s": plan_s,
        "plan_wall_s": wall,
        "peak_rss_mib": peak_rss_mib(),
        "inputs_rss_mib": before,
        "loop_sample": sample,
        "vectorised_sample_s": sample_s,
        "loop_counts_match": same,
        **{
            f"{walk}_{name}": value
            for walk, (loop_s, _) in loops.items()
            for name, value in (
                ("s", loop_s),
                ("ratio_per_row", (loop_s / sample) / (plan_s / n)),
                ("ratio_same_sample", loop_s / sample_s),
            )
        },
    }


# -- 2. API-bound efficiency --------------------------------------------------------------------


def api_bound_s(calls: dict, latency_ms: float) -> dict:
    """The least wall time the calls made need at `latency_ms` under the allowances above."""
    seconds = latency_ms / 1000
    crm = calls["crm_calls"] * seconds / CRM_CAP["max_concurrent"]
    mk_all = calls["metakocka_calls"] * seconds / METAKOCKA_CAP["max_concurrent"]
    mk_search = calls["metakocka_searches"] * seconds / METAKOCKA_CAP["max_concurrent_searches"]
    mk = max(mk_all, mk_search)
    return {"crm_s": crm, "metakocka_s": mk, "bound_s": max(crm, mk)}


def _faults(latency_ms: float, capped: bool) -> dict[str, dict]:
    base = {"latency_ms": latency_ms, "rules": []}
    if not capped:
        return {"crm": base, "metakocka": {**base, "max_concurrent_searches": 1}}
    return {"crm": {**base, **CRM_CAP}, "metakocka": {**base, **METAKOCKA_CAP}}


def configure(sandbox, latency_ms: float, capped: bool) -> None:
    for system, spec in _faults(latency_ms, capped).items():
        sandbox.configure_faults(system, spec)


def _changed_run(quick: bool, one_at_a_time: bool) -> dict:
    from benchmarks.reconcile import Reconciler
    from benchmarks.remote_sandbox import RemoteSandbox

    base, changed = size("changed_base", quick), size("changed_per_side", quick)
    with RemoteSandbox(base, in_sync=True) as sandbox:
        sandbox.install_crm_setup()  # a CRM set up as docs/crm.md asks: changes by updated_at
        reconciler = Reconciler(sandbox, one_at_a_time=one_at_a_time, fresh_process=not quick)
        try:
            reconciler.run()  # the previous night: everything linked
            edits, new = changed // 2, changed - changed // 2
            sandbox.change_documents(
                crm_edits=edits, crm_new=new, metakocka_edits=edits, metakocka_new=new
            )
            configure(sandbox, LATENCY_MS, capped=True)
            figures = reconciler.run()
            bare = None
            if not one_at_a_time:
                calls = figures.calls
                bare = _bare_calls(sandbox, calls["metakocka_searches"], calls["metakocka_writes"])
        finally:
            reconciler.close()
    bound = api_bound_s(figures.calls, LATENCY_MS)
    return {
        "bare_calls": bare,
        "wall_s": figures.wall_s,
        "cpu_s": figures.cpu_s,
        "calls": figures.calls,
        "actions": figures.actions,
        "steps": figures.steps,
        **bound,
        "efficiency": bound["bound_s"] / figures.wall_s,
    }


SAMPLE_ORDER = {
    "doc_type": "sales_order",
    "doc_date": "2026-05-02+02:00",
    "partner": {"customer": "Bare call d.o.o.", "country": "SI"},
    "product_list": [
        {
            "code": f"ART-{n}",
            "name": f"Article {n}",
            "unit": "kos",
            "amount": "2",
            "price": "9.5",
            "tax": "220",
        }
        for n in range(3)
    ],
}


def _bare_calls(sandbox, searches: int, writes: int) -> dict:
    """The ceiling of item 2 in this harness: the same number of Metakocka searches (full pages,
    one at a time) and writes (three-line sales orders, through the client's two slots) sent
    with nothing else to do, all at once. What it loses against the bound is the cost of an HTTP
    call itself (client, server, loopback), which the pipeline's own figure also pays."""
    from benchmarks.remote_sandbox import api_calls
    from sync_pipeline.metakocka.client import MetakockaClient

    org = sandbox.organizations[0]
    mk = MetakockaClient(sandbox.metakocka_url, org.metakocka_company_id, org.metakocka_secret_key)

    def search_pages() -> None:
        """`searches` search calls: the company's sales orders, page by page, again and again."""
        while mk.stats.snapshot()["calls"].get("metakocka search", 0) < searches:
            for _ in mk.search("sales_order"):
                if mk.stats.snapshot()["calls"].get("metakocka search", 0) >= searches:
                    return

    def write(n: int) -> None:
        mk.create_document({**SAMPLE_ORDER, "buyer_order": f"BARE-{n}"})

    sandbox.reset_stats()
    started = time.perf_counter()
    with ThreadPoolExecutor(5, thread_name_prefix="bare") as pool:
        reading = pool.submit(search_pages)
        list(pool.map(write, range(writes)))
        reading.result()
    wall = time.perf_counter() - started
    calls = api_calls(sandbox.stats())
    calls["crm_calls"] = 0
    bound = api_bound_s(calls, LATENCY_MS)
    return {"wall_s": wall, "calls": calls, **bound, "efficiency": bound["bound_s"] / wall}


def measure_changed(quick: bool) -> dict:
    pipeline = _changed_run(quick, one_at_a_time=False)
    baseline = _changed_run(quick, one_at_a_time=True)
    return {
        "base_documents": size("changed_base", quick),
        "changed_per_side": size("changed_per_side", quick),
        "pipeline": pipeline,
        "one_at_a_time": baseline,
        "speedup": baseline["wall_s"] / pipeline["wall_s"],
    }


# -- 3, 4, 5. nothing changed, memory, overhead ---------------------------------------------------


def measure_steady(quick: bool) -> dict:
    from benchmarks.reconcile import Reconciler
    from benchmarks.remote_sandbox import RemoteSandbox

    n = size("steady_per_side", quick)
    out: dict = {"documents_per_side": n, "rss_before_mib": rss_mib()}
    with RemoteSandbox(n, in_sync=True) as sandbox:
        out["sandbox_seed_s"] = sandbox.seed_seconds
        reconciler = Reconciler(sandbox, fresh_process=not quick)
        try:
            first = reconciler.run(_sweep(True))
            out["first"] = _figures(first, n)
            full = reconciler.run(_sweep(True))
            out["full_0ms"] = _figures(full, n)
            # The CRM as published (no trigger on updated_at): every CRM document is compared.
            out["incremental_no_setup_0ms"] = _figures(reconciler.run(_sweep(False)), n)
            sandbox.install_crm_setup()  # what docs/crm.md asks the CRM's owner to run
            out["incremental_0ms"] = _figures(reconciler.run(_sweep(False)), n)
            configure(sandbox, LATENCY_MS, capped=True)
            out["full_20ms"] = _figures(reconciler.run(_sweep(True)), n)
            out["incremental_20ms"] = _figures(reconciler.run(_sweep(False)), n)
            # Each run had a process of its own; the heaviest of the full sweeps counts.
            out["peak_rss_mib"] = max(out[k]["peak_rss_mib"] for k in ("first", "full_0ms"))
            configure(sandbox, 0, capped=False)
            out["raw_read"] = _raw_read(sandbox, n)
        finally:
            reconciler.close()
    return out


def _sweep(full: bool) -> dict:
    from sync_pipeline.sync.incremental import sweep_run_config

    return sweep_run_config(full)


def _figures(figures, n: int) -> dict:
    return {
        "wall_s": figures.wall_s,
        "cpu_s": figures.cpu_s,
        "cpu_us_per_document": figures.cpu_s / (2 * n) * 1e6,
        "sandbox_cpu_s": figures.sandbox_cpu_s,
        "peak_rss_mib": figures.peak_rss_mib,
        "rss_before_run_mib": figures.rss_before_run_mib,
        "calls": figures.calls,
        "writes": figures.writes,
        "total_calls": figures.total_calls,
        "steps": figures.steps,
        "step_rss_mib": figures.step_rss_mib,
        "actions": figures.actions,
    }


def _raw_read(sandbox, n: int) -> dict:
    """The floor: read every document of both sides with the pipeline's clients, and keep the
    decoded JSON, without mapping, validating or planning anything. Timed once, then read again
    under tracemalloc for the size of what is held (tracemalloc slows the reading down)."""
    import tracemalloc

    from sync_pipeline.demo import sandbox_crm_client
    from sync_pipeline.metakocka.client import MetakockaClient
    from sync_pipeline.metakocka.reads import METAKOCKA_SALES_DOC_TYPES

    org = sandbox.organizations[0]
    crm = sandbox_crm_client(sandbox, org.crm_api_key)
    mk = MetakockaClient(sandbox.metakocka_url, org.metakocka_company_id, org.metakocka_secret_key)

    def read_all() -> list[dict]:
        rows = list(crm.list_documents(org.id))
        for doc_type in METAKOCKA_SALES_DOC_TYPES:
            rows += list(mk.search(doc_type))
        return rows

    gc.collect()
    cpu, started = time.process_time(), time.perf_counter()
    rows = read_all()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - started
    documents = len(rows)
    del rows
    gc.collect()
    tracemalloc.start()
    rows = read_all()
    held = tracemalloc.get_traced_memory()[0] / 2**20  # while `rows` is alive
    tracemalloc.stop()
    del rows
    return {
        "documents": documents,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_us_per_document": cpu / documents * 1e6,
        "held_json_mib": held,
    }


# -- 6. a million per side ----------------------------------------------------------------------


def measure_million(quick: bool) -> dict:
    """A full sweep at 1,000,000 documents per side (`run.py --full`): the organization's first
    run (every pair adopted: its links and status rows written), then a full sweep of it in
    sync, each in a process of its own; peak RSS, and wall and CPU time per document (item 4's
    at 100,000 per side is the baseline: linear growth)."""
    from benchmarks.reconcile import Reconciler
    from benchmarks.remote_sandbox import RemoteSandbox

    n = size("million_per_side", quick)
    out: dict = {"documents_per_side": n}
    with RemoteSandbox(n, in_sync=True) as sandbox:
        out["sandbox_seed_s"] = sandbox.seed_seconds
        reconciler = Reconciler(sandbox, fresh_process=True)
        try:
            out["first"] = _figures(reconciler.run(_sweep(True)), n)
            out["full_0ms"] = _figures(reconciler.run(_sweep(True)), n)
        finally:
            reconciler.close()
    return out


ITEMS = {
    "plan": measure_plan,
    "changed": measure_changed,
    "steady": measure_steady,
    "million": measure_million,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("item", choices=sorted(ITEMS))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    result = ITEMS[args.item](args.quick)
    sys.stdout.write("\n" + json.dumps(result, default=str) + "\n")


if __name__ == "__main__":
    main()
