"""Which CRM rows belong to an organization, as the CRM itself decides it.

The CRM's rule (fresh-crm.md section 1.1; the RLS of fixed/10): a document belongs to an
organization by its ``organization_id``, or, where that is NULL (the CRM's own code never
writes it), by its owner (``user_id``) being a member of the organization
(``organization_members``). The pipeline's service key bypasses row-level security, so every
query is scoped here, never by the server:

- ``scopes``: the filters a read runs under, each short enough for the 8 KB request line: the
  organization's id, then its members in chunks, each with ``organization_id IS NULL``;
- ``owns``: whether a row read back is the organization's;
- a document whose ``organization_id`` is NULL and whose owner belongs to several
  organizations is ambiguous: the CRM shows it to each of them, so the pipeline syncs it to
  none (``ambiguous_owners``) and says so, rather than guess a Metakocka company.
"""

from dataclasses import dataclass

MEMBERS_PER_QUERY = 50
"""User ids per ``user_id=in.(...)`` filter: 50 uuids are about 1.9 KB of the request line."""


@dataclass(frozen=True)
class CrmTenant:
    """How one organization lives in the CRM: the settings `SYNC_ORGANIZATIONS` gives it."""

    organization_id: str
    integration_user_id: str | None = None
    """The CRM user who owns the documents created from Metakocka (``user_id`` is NOT NULL)."""
    service_product_code: str | None = None
    """Metakocka product code for a line with neither a product mapping nor a SKU."""


@dataclass(frozen=True)
class Tenancy:
    """One organization's members, and those of them who belong to other organizations too."""

    organization_id: str
    members: frozenset[str]
    ambiguous_owners: frozenset[str] = frozenset()

    def scopes(self) -> list[list[tuple[str, str]]]:
        """Filters that together select exactly the organization's rows, each under the
        request-line budget: by organization_id, then NULL organization_id by member owner."""
        scopes = [[("organization_id", f"eq.{self.organization_id}")]]
        owners = sorted(self.members)
        for start in range(0, len(owners), MEMBERS_PER_QUERY):
            chunk = ",".join(owners[start : start + MEMBERS_PER_QUERY])
            scopes.append([("organization_id", "is.null"), ("user_id", f"in.({chunk})")])
        return scopes

    def owns(self, row: dict) -> bool:
        organization = row.get("organization_id")
        if organization is not None:
            return str(organization) == self.organization_id
        return str(row.get("user_id")) in self.members

    def is_ambiguous(self, row: dict) -> bool:
        return (
            row.get("organization_id") is None and str(row.get("user_id")) in self.ambiguous_owners
        )

    def owner_filter(self, row: dict) -> list[tuple[str, str]]:
        """The filter that pins a write to this row only while it is still the organization's:
        its organization_id, or (NULL) its owner."""
        if row.get("organization_id") is not None:
            return [("organization_id", f"eq.{self.organization_id}")]
        return [("organization_id", "is.null"), ("user_id", f"eq.{row['user_id']}")]
