"""Token attacks on every route: each one is a 401 problem+json, and nothing changes.

The functions run with the production auth configuration: an ES256/RS256 JWKS (served here by
a local http.server), a configured issuer and, in one variant, no legacy HS256 secret at all.
A genuine ES256 token of the same user passes every route (the control), so each 401 below is
the attack being refused, not a broken setup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from tests.api.helpers import fixture_sop, transform
from tests.hardening.conftest import settings_override
from tests.httpserver import send_json

ISSUER = "https://aef-project.supabase.co/auth/v1"
EC_KID, RSA_KID = "ec-signing-1", "rsa-signing-1"


# --------------------------------------------------------------------------------------------
# Keys, JWKS server, token builders
# --------------------------------------------------------------------------------------------


@dataclass
class Keys:
    ec: EllipticCurvePrivateKey
    rsa: RSAPrivateKey
    stranger: EllipticCurvePrivateKey  # not in the JWKS

    def public_pem(self, which: str) -> bytes:
        key = self.ec if which == "ec" else self.rsa
        return key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class JwksServer:
    url: str
    document: dict[str, Any]
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _public_jwk(private: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.ECAlgorithm if alg == "ES256" else jwt.algorithms.RSAAlgorithm
    jwk = algorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(ec=ec.generate_private_key(ec.SECP256R1()),
                rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
                stranger=ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="module")
def jwks_server(keys: Keys) -> Iterator[JwksServer]:
    """Supabase's /auth/v1/.well-known/jwks.json on a free local port."""
    document = {"keys": [_public_jwk(keys.ec, EC_KID, "ES256"),
                         _public_jwk(keys.rsa, RSA_KID, "RS256")]}
    state = JwksServer(url="", document=document)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.requests += 1
            send_json(self, state.document)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/auth/v1/.well-known/jwks.json"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def jwks_auth(jwks_server: JwksServer) -> Iterator[JwksServer]:
    """Asymmetric keys + issuer for the duration of a test; settings and cache restored after."""
    from aef.auth import default_jwks

    default_jwks.clear()
    try:
        with settings_override(jwks_url=jwks_server.url, jwt_issuer=ISSUER):
            yield jwks_server
    finally:
        default_jwks.clear()


def claims_for(user_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": user_id, "role": "authenticated", "aud": "authenticated", "iss": ISSUER,
        "email": f"{user_id[:8]}@example.com", "iat": now, "exp": now + 600,
        "session_id": str(uuid.uuid4()),
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def es256(keys: Keys, payload: dict[str, Any], kid: str = EC_KID,
          key: Any = None) -> str:
    return jwt.encode(payload, key or keys.ec, algorithm="ES256", headers={"kid": kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], hmac_key: bytes | None) -> str:
    """A JWT built by hand: PyJWT refuses to HMAC-sign with a public key (that is the attack)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = b"" if hmac_key is None else hmac.new(
        hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def rs256_labelled(keys: Keys, header: dict[str, Any], payload: dict[str, Any]) -> str:
    """An RS256 signature under whatever header the attacker claims (alg/key mismatch)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = keys.rsa.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def tamper(token: str, **changes: Any) -> str:
    """Rewrite claims of a signed token and keep its original signature."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


# --------------------------------------------------------------------------------------------
# The seven routes, with the caller's own ids
# --------------------------------------------------------------------------------------------


@dataclass
class Victim:
    user: Any
    document_id: str
    execution_id: str
    checkpoint_id: str


@pytest.fixture(scope="module")
def victim(api: Any, db: Any) -> Victim:
    """A user with a document, an execution and a pending checkpoint: what an attacker wants."""
    from tests.api.conftest import ApiUser, make_token
    from tests.integration.factories import create_checkpoint, create_execution, create_user

    created_user = create_user(db)
    user = ApiUser(created_user.id, make_token(created_user.id), created_user.claims)
    created = transform(api, user)
    waiting = create_execution(db, created_user, document_id=created["aefDocumentId"],
                               status="waiting_checkpoint")
    checkpoint = create_checkpoint(db, waiting["id"], "enter_email")
    return Victim(user, created["aefDocumentId"], created["executionId"], str(checkpoint["id"]))


Route = tuple[str, str, Any]


def routes(v: Victim) -> list[Route]:
    """(method, path, body) of every route, each aimed at the victim's own resources."""
    return [
        ("POST", "/api/aef/transform", {"sop": fixture_sop()}),
        ("POST", "/api/aef/execute", {"aefDocumentId": v.document_id}),
        ("POST", f"/api/aef/action/{v.execution_id}", {"action": "pause"}),
        ("POST", f"/api/aef/checkpoint/{v.checkpoint_id}", {"response": "approve"}),
        ("DELETE", f"/api/aef/stop/{v.execution_id}", None),
        ("GET", f"/api/aef/logs/{v.execution_id}", None),
        ("GET", f"/api/aef/live/{v.execution_id}", None),
    ]


def state_of(db: Any, user_id: str) -> dict[str, Any]:
    """Everything an attack could have changed for the user."""
    from tests.integration.factories import admin_connection

    with admin_connection(db) as conn:
        return {
            table: conn.execute(f"select * from {table} where user_id = %s order by 1",
                                (user_id,)).fetchall()
            for table in ("aef_documents", "aef_executions", "aef_checkpoints", "aef_commands",
                          "aef_logs", "aef_rate_limits")
        }


def call(api: Any, route: Route, authorization: str | None) -> Any:
    method, path, body = route
    headers = {} if authorization is None else {"Authorization": authorization}
    return api.call(method, path, None, body, headers=headers)


def assert_refused(reply: Any, route: Route, codes: set[str]) -> None:
    method, path, _ = route
    where = f"{method} {path}: {reply.status} {reply.body}"
    assert reply.status == 401, where
    assert reply.headers["content-type"].startswith("application/problem+json"), where
    assert reply.body["status"] == 401 and reply.body["code"] in codes, where
    assert reply.body["type"] == f"urn:aef:problem:{reply.body['code']}", where
    assert reply.headers.get("www-authenticate", "").startswith("Bearer"), where
    assert "Traceback" not in json.dumps(reply.body), where


# --------------------------------------------------------------------------------------------
# Attacks
# --------------------------------------------------------------------------------------------

Attack = Callable[[Keys, str], str | None]  # (keys, victim user id) -> Authorization header

ATTACKS: dict[str, tuple[Attack, set[str]]] = {
    "alg_none": (lambda k, u: "Bearer " + forge(
        {"alg": "none", "typ": "JWT", "kid": EC_KID}, claims_for(u), None), {"invalid_token"}),
    "alg_none_mixed_case": (lambda k, u: "Bearer " + forge(
        {"alg": "nOnE", "typ": "JWT"}, claims_for(u), None), {"invalid_token"}),
    "hs256_signed_with_ec_public_pem": (lambda k, u: "Bearer " + forge(
        {"alg": "HS256", "typ": "JWT", "kid": EC_KID}, claims_for(u), k.public_pem("ec")),
        {"invalid_token"}),
    "hs256_signed_with_rsa_public_pem": (lambda k, u: "Bearer " + forge(
        {"alg": "HS256", "typ": "JWT", "kid": RSA_KID}, claims_for(u), k.public_pem("rsa")),
        {"invalid_token"}),
    "es256_header_on_rsa_key": (lambda k, u: "Bearer " + rs256_labelled(
        k, {"alg": "ES256", "typ": "JWT", "kid": RSA_KID}, claims_for(u)), {"invalid_token"}),
    "expired": (lambda k, u: "Bearer " + es256(
        k, claims_for(u, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)),
        {"token_expired"}),
    "not_yet_valid_nbf": (lambda k, u: "Bearer " + es256(
        k, claims_for(u, nbf=int(time.time()) + 3600, exp=int(time.time()) + 7200)),
        {"invalid_token"}),
    "issued_in_the_future": (lambda k, u: "Bearer " + es256(
        k, claims_for(u, iat=int(time.time()) + 3600, exp=int(time.time()) + 7200)),
        {"invalid_token"}),
    "wrong_audience": (lambda k, u: "Bearer " + es256(k, claims_for(u, aud="anon")),
                       {"invalid_token"}),
    "wrong_issuer": (lambda k, u: "Bearer " + es256(
        k, claims_for(u, iss="https://attacker.example/auth/v1")), {"invalid_token"}),
    "no_issuer": (lambda k, u: "Bearer " + es256(k, {
        key: value for key, value in claims_for(u).items() if key != "iss"}),
        {"invalid_token"}),
    "missing_sub": (lambda k, u: "Bearer " + es256(k, claims_for(u, sub=None)),
                    {"invalid_token"}),
    "sub_not_a_user_id": (lambda k, u: "Bearer " + es256(k, claims_for(u, sub="admin")),
                          {"invalid_token"}),
    "service_role": (lambda k, u: "Bearer " + es256(k, claims_for(u, role="service_role")),
                     {"invalid_token"}),
    "unknown_kid": (lambda k, u: "Bearer " + es256(
        k, claims_for(u), kid="attacker-kid", key=k.stranger), {"invalid_token"}),
    "known_kid_wrong_key": (lambda k, u: "Bearer " + es256(
        k, claims_for(u), kid=EC_KID, key=k.stranger), {"invalid_token"}),
    "tampered_sub": (lambda k, u: "Bearer " + tamper(
        es256(k, claims_for(str(uuid.uuid4()))), sub=u), {"invalid_token"}),
    "tampered_exp": (lambda k, u: "Bearer " + tamper(
        es256(k, claims_for(u, exp=int(time.time()) - 3600)), exp=int(time.time()) + 3600),
        {"invalid_token"}),
    "garbage": (lambda k, u: "Bearer garbage", {"invalid_token"}),
    "three_garbage_segments": (lambda k, u: "Bearer a.b.c", {"invalid_token"}),
    "oversized_token": (lambda k, u: "Bearer " + "A" * 20_000, {"invalid_token"}),
    "empty_authorization": (lambda k, u: "", {"missing_token"}),
    "bearer_without_token": (lambda k, u: "Bearer", {"invalid_token", "missing_token"}),
    "basic_scheme": (lambda k, u: "Basic " + base64.b64encode(b"admin:admin").decode(),
                     {"invalid_token"}),
    "token_without_scheme": (lambda k, u: es256(k, claims_for(u)), {"invalid_token"}),
    "no_authorization_header": (lambda k, u: None, {"missing_token"}),
}


def test_a_genuine_token_passes_every_route(api: Any, keys: Keys, victim: Victim,
                                            jwks_auth: JwksServer) -> None:
    """The control: an ES256 token from the JWKS with the right issuer reaches every handler."""
    token = es256(keys, claims_for(victim.user.id))
    rsa_token = jwt.encode(claims_for(victim.user.id), keys.rsa, algorithm="RS256",
                           headers={"kid": RSA_KID})
    for route in routes(victim):
        for bearer in (token, rsa_token):
            reply = call(api, route, f"Bearer {bearer}")
            assert reply.status not in (401, 403) and reply.status < 500, (route, reply.body)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_refused_on_every_route(name: str, api: Any, db: Any, keys: Keys,
                                          victim: Victim, jwks_auth: JwksServer) -> None:
    make, codes = ATTACKS[name]
    before = state_of(db, victim.user.id)
    for route in routes(victim):
        assert_refused(call(api, route, make(keys, victim.user.id)), route, codes)
    assert state_of(db, victim.user.id) == before


@pytest.mark.parametrize("public_key", ["ec", "rsa"])
def test_algorithm_confusion_without_a_legacy_secret(public_key: str, api: Any, keys: Keys,
                                                     victim: Victim,
                                                     jwks_auth: JwksServer) -> None:
    """JWKS-only projects: an HS256 token keyed with the published public key is refused."""
    kid = EC_KID if public_key == "ec" else RSA_KID
    forged = forge({"alg": "HS256", "typ": "JWT", "kid": kid}, claims_for(victim.user.id),
                   keys.public_pem(public_key))
    with settings_override(jwt_secret=None):
        for route in routes(victim):
            assert_refused(call(api, route, f"Bearer {forged}"), route, {"invalid_token"})


def test_unknown_kid_flood_fetches_the_jwks_at_most_once_more(
        api: Any, keys: Keys, victim: Victim, jwks_auth: JwksServer) -> None:
    """Forged kids on every route cost one JWKS refetch per window, not one per request."""
    from aef.auth import default_jwks

    default_jwks.clear()
    genuine = es256(keys, claims_for(victim.user.id))
    call(api, routes(victim)[-1], f"Bearer {genuine}")  # warm the cache
    fetched = jwks_auth.requests
    for i in range(5):
        for route in routes(victim):
            forged = es256(keys, claims_for(victim.user.id), kid=f"forged-{i}-{route[1]}",
                           key=keys.stranger)
            assert_refused(call(api, route, f"Bearer {forged}"), route, {"invalid_token"})
    assert jwks_auth.requests - fetched <= 1


@pytest.mark.parametrize("deletion", ["row_deleted", "soft_deleted"])
def test_deleted_user_is_refused_on_every_route(deletion: str, api: Any, db: Any, keys: Keys,
                                                victim: Victim, jwks_auth: JwksServer) -> None:
    """A valid signature outlives its user: the API refuses callers whose auth.users row is gone
    (or soft-deleted, as Supabase's admin API does with `should_soft_delete`)."""
    from tests.integration.factories import admin_connection, create_user

    ghost = create_user(db)
    token = es256(keys, claims_for(ghost.id))
    own = routes(victim)  # aimed at someone else's ids too: refused before any lookup
    assert call(api, own[-1], f"Bearer {token}").status == 404  # alive: passes auth
    with admin_connection(db) as conn:
        if deletion == "row_deleted":
            conn.execute("delete from auth.users where id = %s", (ghost.id,))
        else:
            conn.execute("update auth.users set deleted_at = now() where id = %s", (ghost.id,))
    before = state_of(db, victim.user.id)
    for route in own:
        assert_refused(call(api, route, f"Bearer {token}"), route, {"unknown_user"})
    for route in routes(Victim(ghost, str(uuid.uuid4()), str(uuid.uuid4()),
                               str(uuid.uuid4()))):
        assert_refused(call(api, route, f"Bearer {token}"), route, {"unknown_user"})
    assert state_of(db, victim.user.id) == before
