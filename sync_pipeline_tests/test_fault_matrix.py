"""The fault matrix at test size: every fault kind, both directions, a reconciliation converges.

For each fault the sandbox misbehaves during every run (a seeded share of calls, capped so the
suite stays fast); the nightly job runs until the audit says converged, at most three times. The
audit reads the sandbox's own stores: no external id twice on either side, every valid document
paired and `synced`, nothing unaccounted for. The fault must be visible in sync_error_log with
its error_type although the retries absorbed it (a resolved per-run summary row, or an open row
for a document that still failed). The full-size matrix is `benchmarks/fault_matrix.py`.

The eight labs (each its own sandbox, database and Dagster instance) run side by side in threads:
most of their time is spent waiting on injected timeouts, which then overlap. Their instances are
ephemeral ones: an instance with settings (`instance_for_test`) calls `logging.config.dictConfig`
for every run, which deadlocks Python's logging when runs start in several threads at once.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest

from sync_pipeline.store.repository import SyncStore

from .faultlab import CaseResult, LabConfig, fault_cases, run_case

# The sandbox holds a slow answer 1.5 s: longer than the client timeout (1 s), well inside the
# settle window (3 s) within which Metakocka is assumed to store a create it received.
LAB = LabConfig(timeout_s=1.0, create_settle_s=3.0, claim_ttl_s=8.0)
CASES = {case.name: case for case in fault_cases(rate=0.1, cap=5, delay_s=1.5)}


@pytest.fixture(scope="module")
def labs(tmp_path_factory) -> dict[str, CaseResult]:
    workdirs = {name: tmp_path_factory.mktemp(name) for name in CASES}
    for workdir in workdirs.values():  # alembic's context is process-global: migrate one by one
        SyncStore(f"sqlite:///{workdir / 'sync.db'}").create_schema()
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="fault-lab") as pool:
        futures = {
            name: pool.submit(run_case, case, workdirs[name], LAB, documents=50)
            for name, case in CASES.items()
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_reconciliation_converges_under_fault(labs, name):
    lab, case = labs[name], CASES[name]
    report = lab.report
    assert all(lab.successes), lab.successes
    assert report.duplicates == 0, (report.metakocka_duplicates, report.crm_duplicates)
    assert report.lost == []
    assert report.converged, (report.unpaired[:5], report.not_synced[:5])
    assert lab.runs <= 3
    assert all(n > 0 for counts in lab.fired.values() for n in counts), lab.fired
    logged_types = {row["error_type"] for row in lab.error_rows}
    assert case.error_type in logged_types, logged_types
