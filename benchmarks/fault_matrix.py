"""The fault matrix: every fault kind, a reconciliation of at least 500 documents each way.

For each fault (HTML 5xx, Metakocka opr_code 1 and 5, a CRM 429 with Retry-After, a timeout after
the server committed a write, a dropped connection, a cut-off JSON body, an answer slower than the
client timeout) a fresh sandbox misbehaves on a seeded share of the calls of every run, and the
nightly job runs until the audit says converged (at most three runs). The audit reads the
sandbox's own stores: duplicates are external ids held twice (Metakocka `buyer_order`, CRM
document number); lost documents are valid ones neither synced nor named by an open
sync_error_log row. A first line without faults is the baseline the times are compared to (a
ratio, since absolute times drift on shared machines).

    uv run python benchmarks/fault_matrix.py            # 2000 documents per organization:
                                                        # 700 CRM -> Metakocka creates and 500
                                                        # Metakocka -> CRM creates, plus updates
    uv run python benchmarks/fault_matrix.py --quick    # 120 documents, labs side by side
    uv run python benchmarks/fault_matrix.py --rate 0.15 --faults slow   # one row, harsher

The last line is `duplicates=D lost=L` over the whole matrix.
"""

import argparse
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the harness is in the tests

from sync_pipeline.sandbox.seed import category_counts  # noqa: E402
from sync_pipeline.store.repository import SyncStore  # noqa: E402
from sync_pipeline_tests.faultlab import FaultCase, LabConfig, fault_cases, run_case  # noqa: E402

SLOW_S = 3.0
"""How long the sandbox holds a `slow` answer or a `timeout_after_commit` one: longer than the
client timeout (2 s), shorter than the settle window (5 s), within which Metakocka is assumed to
have stored a create it received (the one assumption the look-up after an unknown outcome rests
on, see `MetakockaClient.create_document_exactly_once`)."""
CONFIG = LabConfig(timeout_s=2.0, create_settle_s=SLOW_S + 2.0, claim_ttl_s=30.0)
BASELINE = FaultCase("(no fault)", {}, "-")


@dataclass
class Row:
    fault: str
    documents: str
    runs: int
    converged: bool
    duplicates: int
    lost: int
    error_rows: Counter
    expected_type: str
    fired: int
    seconds: float


def matrix_row(case: FaultCase, documents: int, workdir: Path) -> Row:
    result = run_case(case, workdir, CONFIG, documents=documents)
    report = result.report
    counts = category_counts(documents)
    return Row(
        case.name,
        f"{counts['crm_only']}+{counts['metakocka_only']}",
        result.runs,
        report.converged and all(result.successes),
        report.duplicates,
        len(report.lost),
        Counter(r["error_type"] for r in result.error_rows if r["error_type"] != "validation"),
        case.error_type,
        sum(n for counts in result.fired.values() for n in counts),
        result.seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="120 documents, labs side by side")
    parser.add_argument("--documents", type=int, help="documents per organization")
    parser.add_argument("--rate", type=float, help="share of matching calls that misbehave")
    parser.add_argument("--parallel", type=int, help="labs at once (default 1; --quick: 9)")
    parser.add_argument(
        "--faults", nargs="+", metavar="FAULT", help="only these rows (besides the baseline)"
    )
    args = parser.parse_args()
    documents = args.documents or (120 if args.quick else 2000)
    rate = args.rate or (0.05 if args.quick else 0.03)
    parallel = args.parallel or (9 if args.quick else 1)
    faults = fault_cases(rate=rate, delay_s=SLOW_S)
    unknown = set(args.faults or ()) - {case.name for case in faults}
    if unknown:
        parser.error(f"unknown faults {sorted(unknown)}; known: {[c.name for c in faults]}")
    cases = [BASELINE, *(c for c in faults if not args.faults or c.name in args.faults)]

    with tempfile.TemporaryDirectory(prefix="fault-matrix-") as scratch:
        workdirs = [Path(scratch) / f"lab{n}" for n in range(len(cases))]
        for workdir in workdirs:  # migrate one by one: alembic's context is process-global
            workdir.mkdir()
            SyncStore(f"sqlite:///{workdir / 'sync.db'}").create_schema()
        with ThreadPoolExecutor(parallel, thread_name_prefix="lab") as pool:
            futures = [
                pool.submit(matrix_row, case, documents, workdir)
                for case, workdir in zip(cases, workdirs, strict=True)
            ]
            rows = [future.result() for future in futures]

    baseline = rows[0].seconds or 1.0
    header = (
        f"{'fault':<22}{'documents':>12}{'fired':>7}{'runs':>6}{'converged':>11}"
        f"{'duplicates':>12}{'lost':>6}  {'error rows (type: count)':<44}"
        f"{'seconds':>9}{'x base':>8}"
    )
    print(
        f"fault matrix: {documents} documents per organization, fault rate {rate:g}, "
        f"documents column = CRM->Metakocka creates + Metakocka->CRM creates"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        types = ", ".join(f"{t}: {n}" for t, n in sorted(row.error_rows.items())) or "-"
        visible = row.expected_type == "-" or row.error_rows.get(row.expected_type, 0) > 0
        print(
            f"{row.fault:<22}{row.documents:>12}{row.fired:>7}{row.runs:>6}"
            f"{'yes' if row.converged else 'NO':>11}{row.duplicates:>12}{row.lost:>6}  "
            f"{types + ('' if visible else '  (expected type MISSING)'):<44}"
            f"{row.seconds:>9.1f}{row.seconds / baseline:>8.2f}"
        )
    print(f"duplicates={sum(r.duplicates for r in rows)} lost={sum(r.lost for r in rows)}")


if __name__ == "__main__":
    main()
