"""What the first run will cost in API calls, and the least time they take at the latency seen.

Calls:
- reads: the first run extracts both systems whole and asks Metakocka which side changed last
  for undecided pairs, as the preflight has just done through the same code, so it reads at
  least what the preflight read for that (counted by the clients, `CallStats`), and the lines of
  every hundred documents it writes to the CRM (`crm_documents._replace_lines`). More in fact:
  each step of a run reads the CRM's schema and tenancy again;
- Metakocka writes: one ``put_document`` per create and per update (`sync/export/`). A first
  run's creates skip their look-up search: its full read proves them absent
  (`sync/incremental.mark_known_absent`);
- CRM writes: whole documents, mapped as the push maps them (`first_run.crm_writes`), go a
  hundred to a batch (`push.CRM_BATCH`), each batch the requests `crm_documents.write_requests`
  counts (inserts and line upserts per column set, a PATCH per updated document, a DELETE per
  hundred of the lines an update replaces: on a first run all of them); a write of only
  Metakocka's fields is one PATCH; then the CRM's mapping table and error log
  (`sync/crm_mirror.py`), an upsert per 500 rows each.

Time: the least the calls need at the median latency of the preflight's own requests, under the
allowances the clients keep (Metakocka: 2 requests and 1 search in flight per company; the CRM:
`max_concurrent_requests`), with the reads before the writes, the two systems side by side (the
same bound as `benchmarks/items.api_bound_s`). Processing is not counted, so the run takes
longer; and Metakocka's writes are often slower than its reads (metakocka-api.md section 11:
put_document took up to 40 s in its documentation).
"""

import math
from dataclasses import asdict, dataclass

from sync_pipeline.crm.documents import write_requests
from sync_pipeline.crm.mirror import WRITES_PER_REQUEST
from sync_pipeline.preflight.findings import DATA, OK, Finding
from sync_pipeline.preflight.first_run import FirstRun, fields_only
from sync_pipeline.sync.export.outcomes import TO_CRM_ACTIONS, TO_METAKOCKA_ACTIONS
from sync_pipeline.sync.export.to_crm import CRM_BATCH
from sync_pipeline.sync.record import INVALID, NO_CRM_TYPE
from sync_pipeline.sync.statuses import UNMAPPED_STATUS

REPORTED = ("conflict", "deleted_in_crm", "deleted_in_metakocka", INVALID, NO_CRM_TYPE)
"""Plan actions that leave an error row about their document (mirrored to the CRM's log)."""


@dataclass(frozen=True)
class Allowance:
    """Requests each system takes at once from one run (the resources' settings)."""

    metakocka_requests: int = 2
    metakocka_searches: int = 1
    crm_requests: int = 4


@dataclass(frozen=True)
class FirstRunCalls:
    metakocka_reads: int
    metakocka_searches: int
    metakocka_writes: int
    crm_reads: int
    crm_writes: int

    @property
    def total(self) -> int:
        return self.metakocka_reads + self.metakocka_writes + self.crm_reads + self.crm_writes


def first_run_calls(
    run: FirstRun,
    *,
    crm_reads: int,
    metakocka_reads: int,
    metakocka_searches: int,
    max_rows: int,
) -> FirstRunCalls:
    """The calls of the first run `run` plans (module docstring); `*_reads`: what the
    preflight's extraction and planning sent."""
    plan = run.plan
    action = plan["action"]
    writes = int((action.isin(TO_CRM_ACTIONS) & fields_only(plan)).sum())
    read_backs = 0
    for start in range(0, len(run.crm_writes), CRM_BATCH):
        batch = [w for w in run.crm_writes[start : start + CRM_BATCH] if w.write is not None]
        if not batch:
            continue
        writes += write_requests(
            [w.write for w in batch], replaced_lines=sum(w.replaced_lines for w in batch)
        )
        lines = sum(len(w.write.lines) for w in batch)
        read_backs += max(1, math.ceil(lines / max_rows))
    paired = int(action.isin([*TO_CRM_ACTIONS, *TO_METAKOCKA_ACTIONS, "unchanged"]).sum())
    reported = int(action.isin(REPORTED).sum())
    if UNMAPPED_STATUS in plan:
        reported += int(plan[UNMAPPED_STATUS].notna().sum())
    writes += math.ceil(paired / WRITES_PER_REQUEST) + math.ceil(reported / WRITES_PER_REQUEST)
    return FirstRunCalls(
        metakocka_reads=metakocka_reads,
        metakocka_searches=metakocka_searches,
        metakocka_writes=int(action.isin(TO_METAKOCKA_ACTIONS).sum()),
        crm_reads=crm_reads + read_backs,
        crm_writes=writes,
    )


def least_seconds(
    calls: FirstRunCalls,
    *,
    metakocka_latency_s: float,
    crm_latency_s: float,
    allowance: Allowance = Allowance(),
) -> dict[str, float]:
    """The least time of the reads, of the writes, and in all (module docstring)."""
    mk_reads = max(
        calls.metakocka_searches * metakocka_latency_s / allowance.metakocka_searches,
        calls.metakocka_reads * metakocka_latency_s / allowance.metakocka_requests,
    )
    crm_reads = calls.crm_reads * crm_latency_s / allowance.crm_requests
    mk_writes = calls.metakocka_writes * metakocka_latency_s / allowance.metakocka_requests
    crm_writes = calls.crm_writes * crm_latency_s / allowance.crm_requests
    reads, writes = max(mk_reads, crm_reads), max(mk_writes, crm_writes)
    return {"reads_s": reads, "writes_s": writes, "total_s": reads + writes}


def estimate_finding(
    calls: FirstRunCalls,
    *,
    metakocka_latency_s: float,
    crm_latency_s: float,
    allowance: Allowance,
) -> Finding:
    seconds = least_seconds(
        calls,
        metakocka_latency_s=metakocka_latency_s,
        crm_latency_s=crm_latency_s,
        allowance=allowance,
    )
    data = {
        **asdict(calls),
        "total_calls": calls.total,
        "metakocka_latency_ms": round(metakocka_latency_s * 1000, 1),
        "crm_latency_ms": round(crm_latency_s * 1000, 1),
        **{key: round(value, 3) for key, value in seconds.items()},
    }
    return Finding(
        DATA,
        "calls and time",
        OK,
        f"at least {calls.total} calls: Metakocka {calls.metakocka_reads} reads and "
        f"{calls.metakocka_writes} writes (put_document), the CRM {calls.crm_reads} reads or "
        f"more and {calls.crm_writes} writes; at the latency seen here (Metakocka "
        f"{data['metakocka_latency_ms']:g} ms, the CRM {data['crm_latency_ms']:g} ms a call) "
        f"at least {_duration(seconds['total_s'])} (reads {_duration(seconds['reads_s'])}, "
        f"writes {_duration(seconds['writes_s'])}); Metakocka's writes are often slower than "
        "its reads",
        data=data,
    )


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
