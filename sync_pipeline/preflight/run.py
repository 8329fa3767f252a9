"""One organization's preflight: the CRM, then Metakocka, then the first run, read-only.

The clients are the code location's own (`CrmResource` / `MetakockaResource`: the same
timeouts, retry budget and allowances as the nightly run), each sending through a
`ReadOnlySession`. A check that finds a blocker leaves out what depends on it (no schema: no
counted reads; either system unreadable: no plan), and the report says what was left out.
"""

from dataclasses import dataclass, field

from sync_pipeline.adapters.errors import SyncError
from sync_pipeline.crm.client import CrmClient
from sync_pipeline.crm.credentials import CredentialsError
from sync_pipeline.crm.tenancy import Tenancy
from sync_pipeline.metakocka.client import MetakockaClient
from sync_pipeline.preflight import crm_checks, estimate, first_run, metakocka_checks
from sync_pipeline.preflight.findings import (
    BLOCKER,
    CRM,
    DATA,
    METAKOCKA,
    Finding,
    OrganizationReport,
)
from sync_pipeline.preflight.read_only import CRM_READS, METAKOCKA_READS, read_only_session
from sync_pipeline.resources import CrmResource, MetakockaResource
from sync_pipeline.settings import Organization

READ_ONLY_NOTICE = (
    "Preflight (read-only): nothing is written to the CRM or Metakocka. Every request is a read; "
    "any other is refused before it is sent."
)


@dataclass
class CrmFacts:
    """What the CRM checks found, for the checks after them."""

    findings: list[Finding] = field(default_factory=list)
    tenancy: Tenancy | None = None
    max_rows: int | None = None

    @property
    def readable(self) -> bool:
        return self.tenancy is not None


def _credentials_problem(org: Organization, exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"METAKOCKA_SECRET_KEYS has no key for company {org.metakocka_company_id}"
    return str(exc)


def preflight_organization(
    org: Organization, crm_resource: CrmResource, metakocka_resource: MetakockaResource
) -> OrganizationReport:
    """Every check of one organization (the package docstring lists them)."""
    report = OrganizationReport(org.id, org.name, org.key)
    crm_session = read_only_session(
        crm_resource.base_url, CRM_READS, crm_resource.max_concurrent_requests
    )
    mk_session = read_only_session(
        metakocka_resource.base_url, METAKOCKA_READS, metakocka_resource.max_concurrent_requests
    )
    with crm_resource.client(session=crm_session) as crm:
        facts = check_crm(crm, crm_resource.base_url, org)
        report.findings += facts.findings
        try:
            mk = metakocka_resource.client_for(org, crm, session=mk_session)
        except (KeyError, CredentialsError) as exc:
            mk_session.close()
            report.add(
                Finding(
                    METAKOCKA,
                    metakocka_checks.CONNECTION,
                    BLOCKER,
                    _credentials_problem(org, exc),
                    "Add the company's id and secret key to METAKOCKA_SECRET_KEYS"
                    if isinstance(exc, KeyError)
                    else "Give the organization one active row in the CRM's metakocka_credentials",
                )
            )
            return _unplanned(report, org, facts, "Metakocka cannot be asked")
        with mk:
            credentials = metakocka_checks.check_credentials(mk, metakocka_resource.base_url)
            report.add(credentials)
            if not facts.readable or credentials.status == BLOCKER:
                return _unplanned(report, org, facts, "a blocker above stops the reads it needs")
            before = _calls(crm, mk)
            try:
                run = first_run.plan_first_run(crm, mk, org)
            except SyncError as exc:
                report.add(
                    Finding(
                        DATA,
                        "reads",
                        BLOCKER,
                        f"the first run's reads fail: {exc}",
                        "The error names the system and the call: fix that, then run the "
                        "preflight again",
                    )
                )
                return _unplanned(report, org, facts, "its reads failed")
            reads = {key: value - before[key] for key, value in _calls(crm, mk).items()}
            calls = estimate.first_run_calls(
                run,
                crm_reads=reads["crm"],
                metakocka_reads=reads["metakocka"],
                metakocka_searches=reads["searches"],
                max_rows=facts.max_rows or crm_checks.SUPABASE_DEFAULT_MAX_ROWS,
            )
            allowance = estimate.Allowance(
                metakocka_requests=metakocka_resource.max_concurrent_requests,
                metakocka_searches=metakocka_resource.max_concurrent_searches,
                crm_requests=crm_resource.max_concurrent_requests,
            )
    report.findings.insert(
        len(facts.findings),
        crm_checks.integration_user_finding(
            org.crm_integration_user_id, facts.tenancy, run.count("create_in_crm")
        ),
    )
    report.findings += [
        metakocka_checks.status_finding(run.metakocka, run.plan, org.metakocka_statuses),
        metakocka_checks.duplicate_check_finding(run.metakocka),
        first_run.product_code_finding(run),
        first_run.quarantine_finding(run),
        first_run.adoption_finding(run),
        first_run.plan_finding(run),
        estimate.estimate_finding(
            calls,
            metakocka_latency_s=mk_session.median_latency_s() or 0.0,
            crm_latency_s=crm_session.median_latency_s() or 0.0,
            allowance=allowance,
        ),
    ]
    return report


def check_crm(crm: CrmClient, base_url: str, org: Organization) -> CrmFacts:
    """The CRM's findings but the integration user's (which needs the plan)."""
    findings, schema = crm_checks.check_schema(crm, base_url)
    facts = CrmFacts(findings)
    if schema is None:
        return facts
    try:
        reads = crm_checks.count_documents(crm, org.id, schema)
    except SyncError as exc:
        facts.findings.append(
            Finding(
                CRM,
                crm_checks.DOCUMENTS,
                BLOCKER,
                f"the organization's documents cannot be counted: {exc}",
                "The error names the call; the key must be the service-role key (it reads "
                "every table)",
            )
        )
        return facts
    facts.findings += [
        crm_checks.max_rows_finding(reads),
        crm_checks.documents_finding(reads, org.id),
    ]
    facts.max_rows = reads.max_rows()[0]
    facts.tenancy = crm.directory(org.id).tenancy()
    return facts


def _unplanned(
    report: OrganizationReport, org: Organization, facts: CrmFacts, why: str
) -> OrganizationReport:
    """The report of an organization whose first run could not be planned: the integration user
    (when the tenancy was read), and why the rest is missing."""
    if facts.tenancy is not None:
        report.findings.insert(
            len(facts.findings),
            crm_checks.integration_user_finding(org.crm_integration_user_id, facts.tenancy, None),
        )
    report.skipped = f"the first run was not planned: {why}"
    return report


def _calls(crm: CrmClient, mk: MetakockaClient) -> dict[str, int]:
    """Requests each client has sent so far (its `CallStats`)."""
    mk_calls = mk.stats.snapshot()["calls"]
    return {
        "crm": crm.stats.snapshot()["total_calls"],
        "metakocka": sum(mk_calls.values()),
        "searches": mk_calls.get("metakocka search", 0),
    }
