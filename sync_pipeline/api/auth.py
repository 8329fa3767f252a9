"""Who is calling the API: a service holding a static organization token, or a CRM user with
their Supabase access token.

- **Service tokens** (`SYNC_API_TOKENS`): one token, one organization, compared in constant
  time. `X-Requested-By` names the person the service acts for (the service vouches for it).
- **User tokens**: the access token Supabase Auth gives a signed-in CRM user, a JWT whose
  `sub` is the user's id, `aud` is `authenticated` and `role` is `authenticated` (Supabase,
  "JWT Claims Reference", https://supabase.com/docs/guides/auth/jwt-fields). Its signature is
  verified with the project's legacy JWT secret (HS256) or with the project's published signing
  keys (`<project>/auth/v1/.well-known/jwks.json`, ES256/RS256; Supabase, "JWT Signing Keys"),
  then its expiry and audience (and issuer, when configured). The user's organizations are the
  configured ones whose `organization_members` include the user, read through the CRM client's
  tenancy (`crm/tenancy.py`), the same read that scopes the documents. The user's id
  is the request's `requested_by`; no header can name a user.

The token's `alg` header only picks which *configured* key to try; each key is used with the
algorithms it was configured for, never with one the token asks for (RFC 8725, section 2.1, as
PyJWT's documentation warns), so a token signed with the public key as an HMAC secret, or with
`alg: none`, is refused.
"""

from collections.abc import Callable
from dataclasses import dataclass

import jwt

from sync_pipeline.domain.sync_request import is_crm_id

HMAC_ALGORITHMS = ("HS256",)
"""Supabase's legacy JWT secret signs with HS256."""
KEY_SET_ALGORITHMS = ("ES256", "RS256", "EdDSA")
"""Supabase's asymmetric signing keys (ES256 by default, RS256; EdDSA is accepted if a key
says so). A key of the set whose own algorithm is not one of these is never used."""
MIN_SECRET_BYTES = 32
"""RFC 7518 section 3.2: an HS256 key of at least 256 bits (Supabase's secrets are longer)."""
USER_ROLE = "authenticated"


class InvalidToken(Exception):
    """The bearer token is not a valid user token; the message says why (never the token)."""


class KeysUnavailable(Exception):
    """The signing keys could not be fetched (the JWKS endpoint is down): try again later."""


@dataclass(frozen=True)
class Caller:
    """Who is calling, the organizations they may act for, and what `requested_by` says."""

    organization_ids: tuple[str, ...]
    requested_by: str
    user_id: str | None = None

    @property
    def is_user(self) -> bool:
        return self.user_id is not None


class UserTokenVerifier:
    """Verifies Supabase access tokens: signature, `exp`, `aud` (and `iss` when configured),
    `sub` a user id, `role` authenticated. `secret` (HS256) and `jwks_url` may both be set
    while a project migrates from the legacy secret to signing keys."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        jwks_url: str | None = None,
        audience: str = USER_ROLE,
        issuer: str | None = None,
        leeway_s: float = 5.0,
        jwks_timeout_s: float = 5.0,
    ):
        if not secret and not jwks_url:
            raise ValueError("a user token verifier needs a JWT secret or a JWKS URL")
        if secret and len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the JWT secret is shorter than {MIN_SECRET_BYTES} bytes: not a Supabase "
                "project's JWT secret (Project Settings > JWT Keys)"
            )
        self._secret = secret or None
        self._keys = (
            jwt.PyJWKClient(jwks_url, lifespan=300, timeout=jwks_timeout_s) if jwks_url else None
        )
        self.audience = audience
        self.issuer = issuer or None
        self.leeway_s = leeway_s

    def __repr__(self) -> str:  # never the secret
        return (
            f"UserTokenVerifier(secret={'set' if self._secret else 'unset'}, "
            f"jwks={'set' if self._keys else 'unset'}, audience={self.audience!r})"
        )

    def user_id(self, token: str) -> str:
        """The verified token's user id (`sub`), lower case; `InvalidToken` otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the bearer token is not a JWT") from None
        key, algorithms = self._key_for(token, header.get("alg"))
        required = ["exp", "sub", "aud", "role"] + (["iss"] if self.issuer else [])
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the access token has expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken(f"the access token is not for audience {self.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("the access token comes from another issuer") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the access token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"the access token has no {exc.claim!r} claim") from None
        except jwt.PyJWTError:
            raise InvalidToken("the access token cannot be verified") from None
        if claims.get("role") != USER_ROLE:
            raise InvalidToken("not a user's access token (role is not 'authenticated')")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not is_crm_id(subject.lower()):
            raise InvalidToken("the access token's subject is not a user id")
        return subject.lower()

    def _key_for(self, token: str, alg) -> tuple[object, list[str]]:
        if alg in HMAC_ALGORITHMS and self._secret:
            return self._secret, list(HMAC_ALGORITHMS)
        if alg in KEY_SET_ALGORITHMS and self._keys is not None:
            try:
                key = self._keys.get_signing_key_from_jwt(token)
            except jwt.PyJWKClientConnectionError:
                raise KeysUnavailable("the signing keys (JWKS) cannot be fetched") from None
            except jwt.PyJWTError:
                raise InvalidToken("the access token's signing key is unknown") from None
            if key.algorithm_name not in KEY_SET_ALGORITHMS:
                raise InvalidToken("the access token's signing key is not usable") from None
            return key, [key.algorithm_name]
        raise InvalidToken("the access token is signed with an algorithm not accepted here")


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def organizations_of(
    user_id: str, organization_ids: list[str], members_of: Callable[[str], frozenset[str]]
) -> tuple[str, ...]:
    """The organizations (of those configured) the user belongs to, in configured order."""
    return tuple(org for org in organization_ids if user_id in members_of(org))
