"""Time `build_sync_plan` on a million documents per side and a million links.

Two scenarios:
- steady: nearly every document linked, ~3% changed on either side, 1% unfinished creates whose
  result is in Metakocka, 1% deleted in Metakocka, 1% new on each side;
- first sync: no links at all, every Metakocka document carries its CRM reference (the worst case
  for matching: every Metakocka document is unlinked and gets its derived CRM id computed).
Absolute times drift on shared machines, so each is also printed as a ratio to one plain pandas
outer merge of the two sides on the CRM id (less work than the plan, which also joins the links).

    uv run python benchmarks/plan_scaling.py [--size 1000000]
"""

import argparse
import resource
import time

import numpy as np
import pandas as pd

from sync_pipeline.domain.plan import build_sync_plan

ORG = "0b7f6a36-7b43-4d8b-9a43-1f2a3c4d5e6f"


def frames(n: int, *, linked: bool) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(1)
    crm_ids = np.array([f"00000000-0000-4000-8000-{i:012d}" for i in range(n)], dtype=object)
    mk_ids = np.array([str(400_000_000_000 + i) for i in range(n)], dtype=object)
    hashes = np.array([f"{i:032x}" for i in range(n)], dtype=object)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    crm_times = start + pd.to_timedelta(rng.integers(0, 10**7, n), "s")
    mk_times = start + pd.to_timedelta(rng.integers(0, 10**7, n), "s")
    crm_hash, mk_hash = hashes.copy(), hashes.copy()
    crm_hash[rng.random(n) < 0.03] = "changed in the CRM"
    mk_hash[rng.random(n) < 0.03] = "changed in Metakocka"

    # Each side read its ids on its own: equal strings, but not the same objects (as in a real run).
    claims = _fresh(crm_ids)  # the CRM id each Metakocka document's buyer_order decodes to
    link_mk = _fresh(mk_ids)
    intents, gone, new = int(n * 0.97), int(n * 0.98), int(n * 0.99)
    link_mk[intents:gone] = None  # unfinished creates: Metakocka has the result, the link does not
    if linked:
        # Deleted in Metakocka (their links remain), and as many new there (no CRM reference).
        mk_ids[gone:new] = np.array([f"9{i}" for i in range(gone, new)], dtype=object)
        claims[gone:] = None
    crm = pd.DataFrame(
        {
            "crm_document_id": crm_ids,
            "content_hash": crm_hash,
            "updated_at": crm_times,
            "document": None,
        }
    )
    mk = pd.DataFrame(
        {
            "metakocka_id": mk_ids,
            "crm_document_id": claims,
            "content_hash": mk_hash,
            "updated_at": mk_times,
            "document": None,
        }
    ).sample(frac=1.0, random_state=1, ignore_index=True)  # Metakocka's order is not the CRM's
    links = pd.DataFrame(
        {
            "crm_document_id": _fresh(crm_ids[:new]),
            "metakocka_id": link_mk[:new],
            "content_hash": hashes[:new],
        }
    )
    return crm, mk, links if linked else links.iloc[:0]


def _fresh(ids: np.ndarray) -> np.ndarray:
    return ids.astype(str).astype(object)


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    size = parser.parse_args().size
    for name, linked in (("steady", True), ("first sync", False)):
        crm, mk, links = frames(size, linked=linked)
        timed(crm.merge, mk, on="crm_document_id", how="outer")  # warm-up
        baseline, _ = timed(crm.merge, mk, on="crm_document_id", how="outer")
        seconds, plan = timed(build_sync_plan, crm, mk, links, ORG)
        print(
            f"{name}: {size:,} CRM / {size:,} Metakocka / {len(links):,} links -> "
            f"{len(plan):,} plan rows in {seconds:.2f} s "
            f"({seconds / baseline:.1f}x one pandas outer merge of the sides: {baseline:.2f} s)"
        )
        print(f"  actions: {plan['action'].value_counts().to_dict()}")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"peak RSS of the process: {peak_mib:,.0f} MiB")


if __name__ == "__main__":
    main()
