"""Supabase Auth as the tests need it: access tokens of CRM users, signed like a Supabase project
signs them, and the project's published signing keys served over real HTTP.

A Supabase access token is a JWT with `sub` = the user's id, `aud` = `authenticated`, `role` =
`authenticated`, `exp`, `iat` and `iss` = `<project>/auth/v1` (https://supabase.com/docs/guides/
auth/jwt-fields), signed with the project's legacy JWT secret (HS256) or with its asymmetric
signing key (ES256 by default), whose public half is published as a JWKS at
`<project>/auth/v1/.well-known/jwks.json` (https://supabase.com/docs/guides/auth/signing-keys).
"""

import json
import secrets
import time
import uuid

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI

from sync_pipeline.sandbox.serve import serve_in_thread

JWKS_PATH = "/auth/v1/.well-known/jwks.json"


class SupabaseAuth:
    """Mints user access tokens and serves the project's JWKS on a loopback port."""

    def __init__(self):
        self.secret = "sb-jwt-secret-" + secrets.token_hex(24)
        self.signing_key = ec.generate_private_key(ec.SECP256R1())
        self.kid = f"key-{uuid.uuid4().hex[:8]}"
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.signing_key.public_key()))
        self.jwks = {"keys": [{**public, "kid": self.kid, "alg": "ES256", "use": "sig"}]}
        self.jwks_down = False
        app = FastAPI()

        @app.get(JWKS_PATH)
        def published_keys():
            if self.jwks_down:
                raise RuntimeError("JWKS endpoint down")  # a 500, as an outage would answer
            return self.jwks

        self._server = serve_in_thread(app)
        self.url = self._server.url
        self.issuer = f"{self.url}/auth/v1"

    @property
    def jwks_url(self) -> str:
        return self.url + JWKS_PATH

    def env(self, *, secret: bool = True, jwks: bool = True) -> dict[str, str]:
        """The API's environment for this project's tokens."""
        env = {"SUPABASE_JWT_ISSUER": self.issuer}
        if secret:
            env["SUPABASE_JWT_SECRET"] = self.secret
        if jwks:
            env["SUPABASE_JWKS_URL"] = self.jwks_url
        return env

    def claims(self, user_id: str, *, expires_in: float = 3600, **overrides) -> dict:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user_id,
            "aud": "authenticated",
            "role": "authenticated",
            "iat": now,
            "exp": now + int(expires_in),
            "session_id": str(uuid.uuid4()),
            "aal": "aal1",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self, user_id: str, *, signed_with: str = "secret", key=None, **claim_overrides
    ) -> str:
        """A user's access token: `signed_with` "secret" (HS256, the legacy JWT secret) or
        "key" (ES256, the project's signing key); `key` signs with another key instead (a
        forgery); claim overrides of None drop the claim."""
        claims = self.claims(user_id, **claim_overrides)
        if signed_with == "secret":
            return jwt.encode(claims, key or self.secret, algorithm="HS256")
        return jwt.encode(
            claims, key or self.signing_key, algorithm="ES256", headers={"kid": self.kid}
        )

    def public_key_pem(self) -> bytes:
        return self.signing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def stop(self) -> None:
        self._server.stop()


def add_member(sandbox, organization_id: str, user_id: str) -> None:
    """The CRM's admin adds a user to an organization (a row of `organization_members`)."""
    key = sandbox.organizations[0].crm_api_key
    response = requests.post(
        f"{sandbox.crm_url}/rest/v1/organization_members",
        json={"organization_id": organization_id, "user_id": user_id, "role": "member"},
        headers={"apikey": key, "Authorization": f"Bearer {key}"},
        timeout=10,
    )
    response.raise_for_status()


def remove_member(sandbox, organization_id: str, user_id: str) -> None:
    key = sandbox.organizations[0].crm_api_key
    response = requests.delete(
        f"{sandbox.crm_url}/rest/v1/organization_members",
        params={"organization_id": f"eq.{organization_id}", "user_id": f"eq.{user_id}"},
        headers={"apikey": key, "Authorization": f"Bearer {key}"},
        timeout=10,
    )
    response.raise_for_status()


def a_member(sandbox, organization) -> str:
    """A user of the organization other than its integration user (a person clicking)."""
    members = sorted(sandbox.crm_state.members(organization.id))
    return next(m for m in members if m != organization.integration_user_id)
