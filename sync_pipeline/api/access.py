"""Who calls, and for which organization: the API's FastAPI dependencies for authentication.

A service token acts for its one organization. A user acts for the organizations they are a
member of (`organization_members`); the CRM's calls name no organization, so a user in several
organizations acts for the one that has the document named (`Access.first`), or names one with
`?organizationId=` where nothing is named (`Access.only`). Whatever the caller cannot reach is
answered as if it did not exist (404), so ids cannot be probed across organizations.
"""

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Header, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sync_pipeline.api.auth import Caller, InvalidToken, KeysUnavailable, looks_like_jwt
from sync_pipeline.api.auth import organizations_of as member_organizations
from sync_pipeline.api.config import ApiConfig
from sync_pipeline.api.models import UUID_TEXT
from sync_pipeline.settings import Organization

USER_TEXT = r"^[\x20-\x7e]{1,200}$"
T = TypeVar("T")


def unauthorized(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def invalid(loc: list[str], message: str) -> RequestValidationError:
    """A 422 in FastAPI's own shape (the `HTTPValidationError` of the spec)."""
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": message}])


@dataclass(frozen=True)
class Access:
    """The caller and the organizations this call may act for (at least one)."""

    caller: Caller
    organizations: tuple[Organization, ...]

    def only(self) -> Organization:
        """The one organization of a call that names no document."""
        if len(self.organizations) > 1:
            raise invalid(
                ["query", "organizationId"],
                "the user belongs to several organizations: name one with organizationId",
            )
        return self.organizations[0]

    def first(self, check: Callable[[Organization], T]) -> tuple[Organization, T]:
        """The first organization for which `check` does not answer 404, and what it returned;
        the first 404 when none has what the call names."""
        refusal = None
        for organization in self.organizations:
            try:
                return organization, check(organization)
            except HTTPException as exc:
                if exc.status_code != 404:
                    raise
                refusal = refusal or exc
        raise refusal

    def service_only(self, what: str) -> None:
        if self.caller.is_user:
            raise HTTPException(403, f"{what} take a service token, not a user's")


def access_dependency(config: ApiConfig):
    """The FastAPI dependency that authenticates a call and returns its `Access`."""
    bearer = HTTPBearer(
        auto_error=False,
        bearerFormat="JWT",
        description="A CRM user's Supabase access token (a JWT), or a service token of one "
        "organization.",
    )

    def caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        x_requested_by: str | None = Header(
            default=None,
            pattern=USER_TEXT,
            description="With a service token: the person the service acts for (kept in the "
            "request and the error log). Ignored with a user token: the token names the user.",
        ),
    ) -> Caller:
        if credentials is None:
            raise unauthorized("missing or unknown bearer token")
        presented = credentials.credentials
        owner = None
        for token, organization in config.tokens.items():
            if hmac.compare_digest(token.encode(), presented.encode()):
                owner = organization
        if owner is not None:
            return Caller((owner,), f"api:{x_requested_by}" if x_requested_by else "api")
        if config.users is None or not looks_like_jwt(presented):
            raise unauthorized("missing or unknown bearer token")
        try:
            user = config.users.user_id(presented)
        except InvalidToken as exc:
            raise unauthorized(str(exc)) from None
        except KeysUnavailable as exc:
            raise HTTPException(503, str(exc)) from None
        organizations = member_organizations(user, list(config.organizations), config.members_of)
        if not organizations:
            raise HTTPException(403, "the user is not a member of any organization this API syncs")
        return Caller(organizations, requested_by=user, user_id=user)

    def access(
        who: Annotated[Caller, Depends(caller)],
        organizationId: str | None = Query(  # noqa: N803 (camelCase like the other parameters)
            default=None,
            pattern=f"^{UUID_TEXT}$",
            description="The organization to act for. Needed only by a user of several "
            "organizations on a call that names no document; a document names its own.",
        ),
    ) -> Access:
        ids = who.organization_ids
        if organizationId is not None:
            if organizationId.lower() not in ids:
                raise HTTPException(404, "no such organization")
            ids = (organizationId.lower(),)
        return Access(who, tuple(config.organizations[i] for i in ids))

    return access
