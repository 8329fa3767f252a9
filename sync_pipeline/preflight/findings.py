"""What the preflight says about one organization: findings of `ok`, `warn` or `blocker`.

A `blocker` stops the first run or makes it fail (credentials refused, a schema the pipeline
cannot write); a `warn` is something the first run survives but an operator should decide on
(quarantined documents, unmapped statuses, a CRM without the change trigger); `ok` says what was
checked and found right. Every finding that is not `ok` carries its fix.
"""

from dataclasses import dataclass, field

OK, WARN, BLOCKER = "ok", "warn", "blocker"
STATUSES = (OK, WARN, BLOCKER)
CRM, METAKOCKA, DATA = "CRM", "Metakocka", "First run"


@dataclass(frozen=True)
class Finding:
    area: str
    """`CRM`, `Metakocka` or `First run`."""
    check: str
    status: str
    detail: str
    fix: str = ""
    data: dict = field(default_factory=dict)
    """The figures behind the detail, for `--json` and the Dagster metadata."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")
        if self.status != OK and not self.fix:
            raise ValueError(f"a {self.status} finding needs its fix: {self.check}")

    def as_json(self) -> dict:
        return {
            "area": self.area,
            "check": self.check,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
            "data": self.data,
        }


@dataclass
class OrganizationReport:
    """One organization's findings, in the order they were checked."""

    organization_id: str
    name: str
    key: str
    findings: list[Finding] = field(default_factory=list)
    skipped: str | None = None
    """Why the first run's checks were not made (a blocker stops the reads they need)."""

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.findings)

    @property
    def status(self) -> str:
        """The worst finding's status."""
        worst = {f.status for f in self.findings}
        return next((s for s in (BLOCKER, WARN) if s in worst), OK)

    def summary(self) -> str:
        blockers, warnings = self.count(BLOCKER), self.count(WARN)
        verdict = {
            BLOCKER: "the first run must not start",
            WARN: "the first run can start; read the warnings",
            OK: "ready for the first run",
        }[self.status]
        return f"{blockers} blocker(s), {warnings} warning(s): {verdict}"

    def as_json(self) -> dict:
        return {
            "organization_id": self.organization_id,
            "name": self.name,
            "key": self.key,
            "status": self.status,
            "blockers": self.count(BLOCKER),
            "warnings": self.count(WARN),
            "skipped": self.skipped,
            "findings": [f.as_json() for f in self.findings],
        }
