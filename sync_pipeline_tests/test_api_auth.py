"""CRM users authenticate as themselves: their Supabase access token is verified (signature with
the project's JWT secret or its published signing keys, expiry, audience, issuer), their
organizations come from the CRM's `organization_members`, and they act only on documents of
those organizations, as themselves. Service tokens keep working beside them."""

import base64
import hashlib
import hmac
import json
import os
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sync_pipeline.api.app import create_app
from sync_pipeline.api.auth import InvalidToken, KeysUnavailable, UserTokenVerifier
from sync_pipeline.api.config import TOKENS_ENV, ApiConfig
from sync_pipeline.sandbox.serve import serve_in_thread

from .auth_helpers import SupabaseAuth, a_member, add_member, remove_member
from .helpers import CrmHttp
from .on_demand_helpers import (  # noqa: F401 (fixtures)
    Api,
    api_fixture,
    api_tokens_fixture,
    new_crm_order,
    running_api,
)

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


def test_configuration_refuses_a_weak_secret_without_showing_it(tmp_path):
    weak = "short-secret"
    with pytest.raises(ValueError) as refused:
        ApiConfig.from_env(
            {
                "SYNC_DATA_DIR": str(tmp_path),
                "SUPABASE_JWT_SECRET": weak,
                "CRM_BASE_URL": "http://127.0.0.1:9",
                "METAKOCKA_BASE_URL": "http://127.0.0.1:9",
            }
        )
    assert "32 bytes" in str(refused.value) and weak not in str(refused.value)
    strong = "s" * 40
    assert strong not in repr(UserTokenVerifier(secret=strong))


# --------------------------------------------------------------------------- over HTTP


def test_users_act_only_for_their_organizations_as_themselves(sandbox, api, supabase_auth):
    org, other = sandbox.organizations[0], sandbox.organizations[1]
    document = CrmHttp(sandbox).insert_document(*new_crm_order(org, "SO-AUTH-1"))["id"]
    user, outsider = a_member(sandbox, org), a_member(sandbox, other)
    token = supabase_auth.token(user, signed_with="key")

    accepted = api.call(
        "POST",
        "/sync",
        None,
        token=token,
        json={"documentId": document},
        headers={"X-Requested-By": "someone-else"},  # a header cannot name the user
    )
    assert accepted.status_code == 202, accepted.text
    request = api.call("GET", f"/requests/{accepted.json()['requestId']}", None, token=token)
    assert request.json()["requestedBy"] == user

    # Another organization's user: the document does not exist for them.
    foreign = supabase_auth.token(outsider)
    assert (
        api.call("POST", "/sync", None, token=foreign, json={"documentId": document}).status_code
        == 404
    )
    assert (
        api.call("GET", "/sync", None, token=foreign, params={"documentId": document}).status_code
        == 404
    )
    assert (
        api.call(
            "GET",
            "/sync",
            None,
            token=foreign,
            params={"organizationId": org.id, "documentId": document},
        ).status_code
        == 404
    )

    # A user of no organization synced here; a user token on a webhook.
    nobody = supabase_auth.token(str(uuid.uuid4()))
    assert api.call("GET", "/sync-from-metakocka", None, token=nobody).status_code == 403
    hook = api.call("POST", "/webhooks/crm", None, token=token, json={"documentIds": [document]})
    assert hook.status_code == 403

    # Forged or stale tokens: 401, saying why, with the bearer challenge.
    for name, (bad, reason) in forged_tokens(supabase_auth).items():
        refused = api.call("POST", "/sync", None, token=bad, json={"documentId": document})
        assert refused.status_code == 401, (name, refused.text)
        assert reason in refused.json()["detail"], (name, refused.text)
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")

    # The service token still acts for its organization, and names its user by header.
    another = CrmHttp(sandbox).insert_document(*new_crm_order(org, "SO-AUTH-2"))["id"]
    service = api.call(
        "POST",
        "/sync-bulk",
        org.id,
        json={"documentIds": [another]},
        headers={"X-Requested-By": "crm-backend"},
    )
    assert service.status_code == 202
    state = api.call("GET", f"/requests/{service.json()['requestId']}", org.id).json()
    assert state["requestedBy"] == "api:crm-backend"


@pytest.fixture(name="fresh_api")
def fresh_api_fixture(pipeline_env, api_tokens, supabase_auth):
    """The API re-reading organization membership on every call."""
    with running_api(api_tokens, supabase_auth, SYNC_API_MEMBERSHIP_SECONDS="0") as api:
        yield api


def test_a_user_of_two_organizations_and_a_membership_that_ends(sandbox, fresh_api, supabase_auth):
    org, other = sandbox.organizations[0], sandbox.organizations[1]
    crm = CrmHttp(sandbox)
    here = crm.insert_document(*new_crm_order(org, "SO-TWO-1"))["id"]
    there = crm.insert_document(*new_crm_order(other, "SO-TWO-2"))["id"]
    user = a_member(sandbox, org)
    token = supabase_auth.token(user)
    api = fresh_api

    def post(document):
        return api.call("POST", "/sync", None, token=token, json={"documentId": document})

    assert post(there).status_code == 404
    add_member(sandbox, other.id, user)
    # Each document names its organization; the request lands in that organization's queue.
    for document, owner in ((here, org), (there, other)):
        accepted = post(document)
        assert accepted.status_code == 202, accepted.text
        request_id = accepted.json()["requestId"]
        assert api.call("GET", f"/requests/{request_id}", owner.id).status_code == 200
    # A call that names no document needs the organization named.
    unnamed = api.call("GET", "/sync-from-metakocka", None, token=token)
    assert unnamed.status_code == 422 and "organizationId" in unnamed.text
    named = api.call(
        "GET", "/sync-from-metakocka", None, token=token, params={"organizationId": other.id}
    )
    assert named.status_code == 200, named.text

    remove_member(sandbox, other.id, user)
    assert post(there).status_code == 404
    assert post(here).status_code == 202


def test_the_crms_pages_may_call_from_the_browser(pipeline_env, api_tokens, supabase_auth, sandbox):
    """With `SYNC_API_CORS_ORIGINS` the CRM's origin may call the API from its pages (the
    browser's preflight passes, with the Authorization header); no other origin may. A failure
    carries its text as `error` too, where the CRM's client reads it."""
    crm_origin = "https://crm.example.com"
    config = ApiConfig.from_env(
        {
            **os.environ,
            TOKENS_ENV: json.dumps(api_tokens),
            **supabase_auth.env(),
            "SYNC_API_CORS_ORIGINS": f"{crm_origin}/, http://localhost:3000",
        }
    )
    server = serve_in_thread(create_app(config))
    api = Api(server.url, api_tokens)
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    try:
        allowed = api.call("OPTIONS", "/sync", None, headers={"Origin": crm_origin, **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["Access-Control-Allow-Origin"] == crm_origin
        assert "authorization" in allowed.headers["Access-Control-Allow-Headers"].lower()
        other = api.call(
            "OPTIONS", "/sync", None, headers={"Origin": "https://evil.example", **preflight}
        )
        assert "Access-Control-Allow-Origin" not in other.headers
        token = supabase_auth.token(a_member(sandbox, sandbox.organizations[0]))
        missing = api.call(
            "GET",
            "/sync",
            None,
            token=token,
            params={"documentId": str(uuid.uuid4())},
            headers={"Origin": crm_origin},
        )
        assert missing.status_code == 404
        assert missing.headers["Access-Control-Allow-Origin"] == crm_origin
        assert missing.json()["error"] == missing.json()["detail"]
    finally:
        server.stop()
        config.store.dispose()
