"""The preflight's CRM checks, made with the pipeline's own CRM client and its own rules.

- **Reachable, the key, the schema**: the read every run starts with (`CrmClient.schema`:
  PostgREST's OpenAPI description, then docs/crm-setup.sql's status function when it is there),
  so a refused key, a wrong URL and a schema that fits no profile are found as the first run
  would find them; a misfit names every missing column of each profile (`crm_profiles`).
- **The updated_at trigger**: what that same read says (`CrmSchema.change_tracking`).
- **max-rows**: Supabase's ``db-max-rows`` cuts every answer without saying so (PostgREST docs,
  "db-max-rows": "limit the maximum number of rows returned by a request"), and nothing in the
  API reports its value. So it is measured: a read that asks for an exact count answers
  ``Content-Range: 0-99/250`` when it was cut at 100. The preflight makes such reads (the
  organization's documents, each tenancy scope, and the lines of its first hundred documents);
  when none is cut, the cap is at least the largest answer and cannot cut this organization's
  reads of that size.
- **The organization's documents** by ``organization_id`` and by member ``user_id`` (the CRM's
  tenancy, `crm_tenancy`), from the same counted reads; documents of owners who belong to other
  organizations too are named, since the pipeline syncs them to none.
- **The integration user** (``crm_integration_user_id``) must be a member: documents created
  from Metakocka are theirs (``sales_documents.user_id`` is NOT NULL).
"""

import math
from dataclasses import dataclass, field

from sync_pipeline.adapters.errors import AuthError, RejectedError, SyncError
from sync_pipeline.crm.client import CrmClient
from sync_pipeline.crm.profiles import DOCS, ITEMS, PROFILES, CrmSchema, CrmSchemaError
from sync_pipeline.crm.query import in_filter
from sync_pipeline.crm.tenancy import Tenancy
from sync_pipeline.preflight.findings import BLOCKER, CRM, OK, WARN, Finding

SUPABASE_DEFAULT_MAX_ROWS = 1000
"""Supabase's default ``max-rows`` (Project Settings > Data API)."""
PROBED_DOCUMENTS = 100
"""Documents whose lines the max-rows probe counts (one request, as a read of lines makes)."""
CONNECTION, SCHEMA, TRIGGER = "connection", "schema profile", "updated_at trigger"
MAX_ROWS, DOCUMENTS, INTEGRATION_USER = "max-rows", "documents", "integration user"


def check_schema(client: CrmClient, base_url: str) -> tuple[list[Finding], CrmSchema | None]:
    """Reachable, the key accepted, the schema profile and the trigger; the schema, or None when
    the CRM cannot be read or written by the pipeline."""
    reach = CONNECTION
    try:
        schema = client.schema()
    except CrmSchemaError as exc:
        missing = exc.details.get("missing", {})
        described = "; ".join(
            f"{profile.name} ({profile.source}) lacks {', '.join(missing.get(profile.name, []))}"
            for profile in PROFILES
        )
        return [
            Finding(CRM, reach, OK, f"PostgREST at {base_url} answered with the service key"),
            Finding(
                CRM,
                SCHEMA,
                BLOCKER,
                f"the CRM's tables fit no supported schema: {described}",
                "Add the missing columns (docs/crm.md lists each profile's tables), or name the "
                "schema this CRM has: the pipeline never writes a column the CRM lacks",
                {"missing": missing},
            ),
        ], None
    except AuthError as exc:
        return [
            Finding(
                CRM,
                reach,
                BLOCKER,
                f"the CRM refused the key: {exc}",
                "CRM_API_KEY must be the project's service-role key (Supabase: Project Settings "
                "> API keys), sent as apikey and Bearer",
            )
        ], None
    except RejectedError as exc:  # 404 and other 4xx: not PostgREST at that address
        return [
            Finding(
                CRM,
                reach,
                BLOCKER,
                f"{base_url} does not serve PostgREST at /rest/v1/: {exc}",
                "CRM_BASE_URL is the Supabase project URL (https://<project-ref>.supabase.co)",
            )
        ], None
    except SyncError as exc:
        return [
            Finding(
                CRM,
                reach,
                BLOCKER,
                f"the CRM cannot be reached at {base_url}: {exc}",
                "Check CRM_BASE_URL and that this machine reaches it",
            )
        ], None
    profile = schema.profile
    return [
        Finding(CRM, reach, OK, f"PostgREST at {base_url} answered with the service key"),
        Finding(
            CRM,
            SCHEMA,
            OK,
            f"{profile.name} ({profile.source}): every column the pipeline reads and writes "
            "is there",
            data={"profile": profile.name},
        ),
        trigger_finding(schema),
    ], schema


def trigger_finding(schema: CrmSchema) -> Finding:
    check = TRIGGER
    if schema.change_tracking:
        return Finding(
            CRM,
            check,
            OK,
            "installed and enabled: incremental runs read only the CRM documents that changed",
            data={"installed": True},
        )
    return Finding(
        CRM,
        check,
        WARN,
        "not installed (or a trigger is disabled): some CRM routes and line edits leave "
        "updated_at alone, so every run reads every CRM document and compares content "
        "(slower, never wrong)",
        "Run docs/crm-setup.sql once in the Supabase SQL editor (idempotent); the next runs "
        "read only what changed",
        {"installed": False},
    )


@dataclass
class CountedReads:
    """What the counted reads showed: documents per tenancy scope and every answer's size."""

    by_organization_id: int = 0
    by_member: int = 0
    by_shared_member: int = 0
    members: int = 0
    answers: list[tuple[str, int, int]] = field(default_factory=list)
    """(what was read, rows sent, rows counted)."""

    @property
    def documents(self) -> int:
        return self.by_organization_id + self.by_member

    def max_rows(self) -> tuple[int | None, int]:
        """(the cap, when an answer was cut; the largest answer that came whole)."""
        cut = [sent for _, sent, total in self.answers if sent < total]
        whole = max((sent for _, sent, total in self.answers if sent >= total), default=0)
        return (max(cut) if cut else None), whole


def count_documents(client: CrmClient, organization_id: str, schema: CrmSchema) -> CountedReads:
    """The organization's documents by scope, and the lines of its first documents, each read
    with an exact count (module docstring)."""
    tenancy: Tenancy = client.directory(organization_id).tenancy()
    reads = CountedReads(members=len(tenancy.members))
    ids: list[str] = []
    for index, scope in enumerate(tenancy.scopes()):
        page, total = client.page_with_count(DOCS, [("select", "id"), *scope, ("order", "id.asc")])
        reads.answers.append(("documents", len(page), total))
        ids += [str(row["id"]) for row in page]
        if index == 0:
            reads.by_organization_id = total
        else:
            reads.by_member += total
    shared = Tenancy(organization_id, tenancy.ambiguous_owners).scopes()[1:]
    for scope in shared:
        counted = [("select", "id"), *scope, ("limit", "1")]  # the count is what is wanted
        reads.by_shared_member += client.page_with_count(DOCS, counted)[1]
    first = ids[:PROBED_DOCUMENTS]
    if first:
        parent = schema.profile.item_parent
        page, total = client.page_with_count(
            ITEMS, [("select", "id"), (parent, in_filter(first)), ("order", "id.asc")]
        )
        reads.answers.append(("lines", len(page), total))
    return reads


def max_rows_finding(reads: CountedReads) -> Finding:
    check = MAX_ROWS
    cap, whole = reads.max_rows()
    if cap is None:
        return Finding(
            CRM,
            check,
            OK,
            f"not reached: no answer was cut (the largest, {whole} rows, came whole), so it is "
            f"at least {whole}; the pipeline pages under any cap",
            data={"max_rows": None, "at_least": whole},
        )
    data = {"max_rows": cap}
    if cap >= SUPABASE_DEFAULT_MAX_ROWS:
        return Finding(CRM, check, OK, f"{cap} (measured: an answer was cut there)", data=data)
    factor = math.ceil(SUPABASE_DEFAULT_MAX_ROWS / cap)
    return Finding(
        CRM,
        check,
        WARN,
        f"{cap} (measured: an answer was cut there; Supabase's default is "
        f"{SUPABASE_DEFAULT_MAX_ROWS}): every read of more rows takes up to {factor} times the "
        "requests, so the runs are slower (never incomplete: the pipeline pages on)",
        f"Raise Max rows to {SUPABASE_DEFAULT_MAX_ROWS} in Supabase (Project Settings > Data "
        "API), unless it was lowered on purpose",
        data,
    )


def documents_finding(reads: CountedReads, organization_id: str) -> Finding:
    check = DOCUMENTS
    data = {
        "by_organization_id": reads.by_organization_id,
        "by_member_user_id": reads.by_member,
        "members": reads.members,
        "owners_in_other_organizations": reads.by_shared_member,
    }
    found = (
        f"{reads.documents} found: {reads.by_organization_id} by organization_id, "
        f"{reads.by_member} with an empty organization_id owned by one of its "
        f"{reads.members} member(s)"
    )
    if reads.documents == 0:
        return Finding(
            CRM,
            check,
            WARN,
            f"none found for organization {organization_id}, by organization_id or by its "
            f"{reads.members} member(s)",
            "Check the organization's id in SYNC_ORGANIZATIONS (the CRM's organizations.id); "
            "a new CRM with no documents yet is fine",
            data,
        )
    if reads.by_shared_member:
        return Finding(
            CRM,
            check,
            WARN,
            f"{found}; {reads.by_shared_member} of those belong to owners who are members of "
            "other organizations too, so the pipeline syncs them to none",
            "Set organization_id on those documents in the CRM",
            data,
        )
    return Finding(CRM, check, OK, found, data=data)


def integration_user_finding(
    integration_user_id: str | None, tenancy: Tenancy, creates_in_crm: int | None
) -> Finding:
    """A blocker when the first run creates CRM documents and nobody can own them;
    `creates_in_crm` None: the plan could not be made (a blocker elsewhere)."""
    check = INTEGRATION_USER
    data = {"user_id": integration_user_id, "creates_in_crm": creates_in_crm}
    if integration_user_id and integration_user_id in tenancy.members:
        return Finding(
            CRM,
            check,
            OK,
            f"{integration_user_id} is a member: documents created from Metakocka are theirs",
            data=data,
        )
    problem = (
        f"{integration_user_id} is not a member of the organization (organization_members)"
        if integration_user_id
        else "no crm_integration_user_id is configured"
    )
    fix = (
        "Set crm_integration_user_id in SYNC_ORGANIZATIONS to a CRM user who is a member of the "
        "organization: documents created from Metakocka are theirs (user_id is NOT NULL)"
    )
    if creates_in_crm is None:
        effect = "every document a run creates in the CRM would be affected"
    elif creates_in_crm:
        effect = f"the first run creates {creates_in_crm} CRM document(s)"
    else:
        effect = "the first run creates no CRM document, but a later one will"
    if not integration_user_id and creates_in_crm:
        return Finding(CRM, check, BLOCKER, f"{problem}: {effect}, and each fails", fix, data)
    return Finding(CRM, check, WARN, f"{problem}: {effect}", fix, data)
