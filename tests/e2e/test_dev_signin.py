"""Password sign-in on `aef dev` as supabase-js calls it (GoTrue's routes and shapes), for the
dev users, with tokens the functions accept. The browser side is tests/e2e/test_console.py."""

from __future__ import annotations

import httpx

from local.auth import DEV_PASSWORD
from tests.e2e.conftest import RunningStack

GOTRUE_HEADERS = {"X-Supabase-Api-Version": "2024-01-01", "Content-Type": "application/json"}


def sign_in(stack: RunningStack, email: str, password: str = DEV_PASSWORD) -> httpx.Response:
    return httpx.post(f"{stack.url}/auth/v1/token?grant_type=password", timeout=10,
                      headers={**GOTRUE_HEADERS, "apikey": stack.info.anon_key},
                      json={"email": email, "password": password,
                            "gotrue_meta_security": {}})


def test_password_grant_gives_a_session_the_functions_accept(stack: RunningStack) -> None:
    reply = sign_in(stack, "Demo@AEF.local")
    assert reply.status_code == 200, reply.text
    session = reply.json()
    assert session["token_type"] == "bearer" and session["expires_in"] > 0
    assert session["expires_at"] > 0 and session["refresh_token"]
    assert session["user"]["id"] == stack.info.users["demo@aef.local"]
    bearer = {"Authorization": f"Bearer {session['access_token']}"}
    assert httpx.get(f"{stack.url}/api/aef/documents", headers=bearer,
                     timeout=10).status_code == 200
    user = httpx.get(f"{stack.url}/auth/v1/user", headers=bearer, timeout=10)
    assert user.json()["email"] == "demo@aef.local"

    refreshed = httpx.post(f"{stack.url}/auth/v1/token?grant_type=refresh_token", timeout=10,
                           json={"refresh_token": session["refresh_token"]})
    assert refreshed.status_code == 200 and refreshed.json()["access_token"]
    again = httpx.post(f"{stack.url}/auth/v1/token?grant_type=refresh_token", timeout=10,
                       json={"refresh_token": session["refresh_token"]})
    assert again.status_code == 400  # a refresh token is used once
    assert again.json()["code"] == "refresh_token_not_found"

    new_bearer = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert httpx.post(f"{stack.url}/auth/v1/logout?scope=global", headers=new_bearer,
                      timeout=10).status_code == 204
    after = httpx.post(f"{stack.url}/auth/v1/token?grant_type=refresh_token", timeout=10,
                       json={"refresh_token": refreshed.json()["refresh_token"]})
    assert after.status_code == 400  # signed out everywhere


def test_wrong_password_unknown_user_and_bad_tokens_are_refused(stack: RunningStack) -> None:
    for email, password in (("demo@aef.local", "wrong"), ("nobody@aef.local", DEV_PASSWORD)):
        reply = sign_in(stack, email, password)
        assert reply.status_code == 400
        assert reply.json()["code"] == "invalid_credentials"  # the same for both: no probing
    assert httpx.get(f"{stack.url}/auth/v1/user", timeout=10,
                     headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    assert httpx.post(f"{stack.url}/auth/v1/token?grant_type=id_token", json={},
                      timeout=10).status_code == 400


def test_dev_prints_and_serves_the_console(stack: RunningStack) -> None:
    assert f"Console         {stack.url}/console/" in stack.log_file.read_text()
    page = httpx.get(f"{stack.url}/console/", timeout=10)
    assert page.status_code == 200 and "AEF console" in page.text
    config = httpx.get(f"{stack.url}/console/config.json", timeout=10).json()
    assert config == {"supabaseUrl": stack.url, "anonKey": stack.info.anon_key,
                      "apiBase": stack.url}
    bundle = httpx.get(f"{stack.url}/console/vendor/supabase.js", timeout=10)
    assert bundle.status_code == 200 and "signInWithPassword" in bundle.text
