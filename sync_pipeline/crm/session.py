"""What the CRM's table helpers (`crm/directory.py`, `crm/documents.py`) ask of a client: its
requests, pages and settings. `crm/client.py`'s `CrmClient` is the one that answers; naming the
calls here lets the helpers depend on them and the client on the helpers, with no cycle."""

from collections.abc import Iterator
from typing import Protocol

from sync_pipeline.crm.profiles import CrmSchema
from sync_pipeline.crm.tenancy import CrmTenant


class CrmSession(Protocol):
    """The calls to PostgREST a table helper makes (see `CrmClient` for what each does)."""

    max_concurrent_requests: int

    def rows(self, method: str, table: str, **kwargs) -> list[dict]: ...

    def execute(self, method: str, table: str, **kwargs) -> None: ...

    def schema(self) -> CrmSchema: ...

    def tenant(self, organization_id: str) -> CrmTenant: ...

    def keyset(
        self,
        table: str,
        params: list[tuple[str, str]],
        *,
        by_change: bool = False,
        include_null_changes: bool = True,
        page_size: int = ...,
    ) -> Iterator[list[dict]]: ...

    def counted(self, table: str, params: list[tuple[str, str]]) -> list[dict]: ...
