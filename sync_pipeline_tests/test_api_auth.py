"""CRM users authenticate as themselves: their Supabase access token is verified (signature with
the project's JWT secret or its published signing keys, expiry, audience, issuer)."""

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sync_pipeline.api.auth import InvalidToken, KeysUnavailable, UserTokenVerifier

from .auth_helpers import SupabaseAuth

USER = "3f0a3c1e-8d5b-4a8e-9b7f-2c1d0e9f8a7b"


@pytest.fixture(name="verifier")
def verifier_fixture(supabase_auth):
    return UserTokenVerifier(
        secret=supabase_auth.secret, jwks_url=supabase_auth.jwks_url, issuer=supabase_auth.issuer
    )


def test_a_supabase_access_token_names_its_user(supabase_auth, verifier):
    for signed_with in ("secret", "key"):
        token = supabase_auth.token(USER.upper(), signed_with=signed_with)
        assert verifier.user_id(token) == USER


def forged_tokens(auth: SupabaseAuth) -> dict[str, tuple[str, str]]:
    """Tokens the API must refuse, and what its answer says."""
    return {
        "expired": (auth.token(USER, expires_in=-60), "expired"),
        "expired (signing key)": (auth.token(USER, signed_with="key", expires_in=-60), "expired"),
        "another project's secret": (
            auth.token(USER, key="another-project-secret-" + "x" * 32),
            "signature",
        ),
        "another signing key": (
            auth.token(USER, signed_with="key", key=ec.generate_private_key(ec.SECP256R1())),
            "signature",
        ),
        "another audience": (auth.token(USER, aud="anon"), "audience"),
        "another issuer": (auth.token(USER, iss="https://evil.example/auth/v1"), "issuer"),
        "no expiry": (auth.token(USER, exp=None), "'exp'"),
        "no audience": (auth.token(USER, aud=None), "'aud'"),
        "no subject (the anon key)": (auth.token(USER, sub=None, role="anon"), "'sub'"),
        "the service-role key": (auth.token(USER, role="service_role"), "role"),
        "a subject that is no user id": (auth.token("admin"), "subject"),
        "alg none": (
            jwt.encode(auth.claims(USER), None, algorithm="none"),
            "algorithm",
        ),
        "the public key as an HMAC secret": (
            _hmac_signed_with(auth.public_key_pem(), auth.claims(USER)),
            "signature",
        ),
        "an unknown signing key id": (
            jwt.encode(
                auth.claims(USER), auth.signing_key, algorithm="ES256", headers={"kid": "nope"}
            ),
            "signing key",
        ),
        "not a JWT": ("a.b.c", "not a JWT"),
    }


def _hmac_signed_with(key: bytes, claims: dict) -> str:
    """HS256 over the claims with `key`, bypassing PyJWT's refusal to use a PEM as a secret
    (the classic algorithm-confusion forgery)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = (
        b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + "."
        + b64(json.dumps(claims).encode())
    )
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_forged_stale_and_foreign_tokens_are_refused(supabase_auth, verifier):
    for name, (token, reason) in forged_tokens(supabase_auth).items():
        with pytest.raises(InvalidToken) as refused:
            verifier.user_id(token)
        assert reason in str(refused.value), (name, str(refused.value))
        assert token not in str(refused.value)


def test_each_key_source_alone(supabase_auth):
    only_secret = UserTokenVerifier(secret=supabase_auth.secret)
    only_keys = UserTokenVerifier(jwks_url=supabase_auth.jwks_url)
    assert only_secret.user_id(supabase_auth.token(USER)) == USER
    assert only_keys.user_id(supabase_auth.token(USER, signed_with="key")) == USER
    with pytest.raises(InvalidToken):
        only_secret.user_id(supabase_auth.token(USER, signed_with="key"))
    with pytest.raises(InvalidToken):
        only_keys.user_id(supabase_auth.token(USER))


def test_unreachable_signing_keys_are_not_a_bad_token(supabase_auth):
    supabase_auth.jwks_down = True
    verifier = UserTokenVerifier(jwks_url=supabase_auth.jwks_url, jwks_timeout_s=2)
    with pytest.raises(KeysUnavailable):
        verifier.user_id(supabase_auth.token(USER, signed_with="key"))
