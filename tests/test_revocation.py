"""Access-token revocation: the store-backed deny-list, the verifier (cache included),
instances sharing a store, and POST /logout — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from asgi_auth import AuthMiddleware, JWTVerifier, Key, RevokedToken, TokenIssuer
from asgi_auth.authn.logout import LogoutEndpoint
from asgi_auth.store import RefreshTokens, RevocationList, Store

KEY = Key.from_secret("revocation-tests-secret-of-32-bytes-or-more")
ISSUER = TokenIssuer(KEY)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with Store(store_url) as connected:
        await connected.init_schema()
        yield connected


async def test_a_revoked_token_is_refused_even_from_the_cache(store: Store) -> None:
    revocations = RevocationList(store)
    verifier = JWTVerifier(KEY, revocations=revocations)
    token = ISSUER.issue(1)
    principal = verifier.verify_sync(token)  # now cached
    assert principal.token_id is not None
    await revocations.revoke(principal.token_id, principal.claims["exp"])
    with pytest.raises(RevokedToken):
        verifier.verify_sync(token)
    other = ISSUER.issue(1)  # another token of the same user still works
    assert verifier.verify_sync(other).subject == "1"


async def test_other_instances_see_a_revocation_after_their_sync(store_url: str) -> None:
    async with Store(store_url) as first, Store(store_url) as second:
        await first.init_schema()
        here, there = RevocationList(first), RevocationList(second, sync_interval=0.1)
        await there.start()
        try:
            verifier = JWTVerifier(KEY, revocations=there)
            token = ISSUER.issue(2)
            principal = verifier.verify_sync(token)
            assert principal.token_id is not None
            await here.revoke(principal.token_id, principal.claims["exp"])
            deadline = time.monotonic() + 5
            while not there.is_revoked(principal.token_id) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            with pytest.raises(RevokedToken):
                verifier.verify_sync(token)
        finally:
            await there.stop()


async def test_expired_revocations_leave_the_table(store: Store) -> None:
    now = [1_800_000_000.0]
    revocations = RevocationList(store, clock=lambda: now[0])
    await revocations.revoke("old", now[0] + 10)
    await revocations.revoke("new", now[0] + 1000)
    now[0] += 100
    await revocations.sync()
    assert not revocations.is_revoked("old")
    assert revocations.is_revoked("new")
    rows = await store.database.fetch_all("SELECT jti FROM revoked_tokens")
    assert [r["jti"] for r in rows] == ["new"]


@pytest.mark.parametrize("jti", ["", "x" * 256])
async def test_impossible_jtis_are_refused(store: Store, jti: str) -> None:
    with pytest.raises(ValueError, match="jti"):
        await RevocationList(store).revoke(jti, time.time() + 60)


async def _me(request: object) -> object:
    from starlette.responses import JSONResponse

    return JSONResponse({"ok": True})


@pytest.fixture
async def app(store: Store) -> AsyncIterator[tuple[httpx.AsyncClient, RefreshTokens]]:
    revocations = RevocationList(store)
    verifier = JWTVerifier(KEY, revocations=revocations)
    refresh = RefreshTokens(store)
    routes = [
        Route("/logout", LogoutEndpoint(verifier, revocations, refresh=refresh)),
        Route("/me", _me),
    ]
    wrapped = AuthMiddleware(Starlette(routes=routes), verifier=verifier)
    transport = httpx.ASGITransport(app=wrapped)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client, refresh


async def test_logout_revokes_the_token_and_its_refresh_family(
    app: tuple[httpx.AsyncClient, RefreshTokens],
) -> None:
    client, refresh = app
    token = ISSUER.issue(3)
    refresh_token = await refresh.issue("3")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/me", headers=headers)).status_code == 200
    out = await client.post("/logout", headers=headers, data={"refresh_token": refresh_token})
    assert out.status_code == 200
    assert out.json() == {"revoked": True}
    after = await client.get("/me", headers=headers)
    assert after.status_code == 401
    assert 'error="invalid_token"' in after.headers["www-authenticate"]
    with pytest.raises(Exception, match="revoked"):
        await refresh.rotate(refresh_token)


async def test_logout_refusals(app: tuple[httpx.AsyncClient, RefreshTokens]) -> None:
    client, _ = app
    anonymous = await client.post("/logout")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="api"'
    bad = await client.post("/logout", headers={"Authorization": "Bearer not.a.token"})
    assert bad.status_code == 401
    assert (await client.get("/logout")).status_code == 405
    headers = {"Authorization": f"Bearer {ISSUER.issue(4)}", "content-type": "application/json"}
    assert (await client.post("/logout", headers=headers, content=b"{nope")).status_code == 400
    # A token without a jti (not one of ours) cannot be revoked: a clear 400.
    no_jti = jwt.encode({"sub": "5", "exp": int(time.time()) + 60}, KEY.sign_key, "HS256")
    answer = await client.post("/logout", headers={"Authorization": f"Bearer {no_jti}"})
    assert answer.status_code == 400


async def test_logout_with_the_store_down_is_503(
    app: tuple[httpx.AsyncClient, RefreshTokens], store: Store
) -> None:
    client, _ = app
    await store.disconnect()
    try:
        answer = await client.post(
            "/logout", headers={"Authorization": f"Bearer {ISSUER.issue(6)}"}
        )
        assert answer.status_code == 503
    finally:
        await store.connect()


async def test_logout_with_the_access_token_alone_ends_its_login_session(store: Store) -> None:
    from asgi_auth.authn import PasswordHasher
    from asgi_auth.authn.login import StoreAuthenticator, TokenEndpoint
    from asgi_auth.store import StoreAdmin

    hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
    await StoreAdmin(store).create_user("eve", password_hash=await hasher.hash("pw"))
    revocations = RevocationList(store)
    verifier = JWTVerifier(KEY, revocations=revocations)
    refresh = RefreshTokens(store)
    routes = [
        Route("/token", TokenEndpoint(ISSUER, StoreAuthenticator(store, hasher), refresh=refresh)),
        Route("/logout", LogoutEndpoint(verifier, revocations, refresh=refresh)),
    ]
    transport = httpx.ASGITransport(app=Starlette(routes=routes))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        login = await client.post(
            "/token", data={"grant_type": "password", "username": "eve", "password": "pw"}
        )
        tokens = login.json()
        assert verifier.verify_sync(tokens["access_token"]).claims["sid"]
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert (await client.post("/logout", headers=bearer)).status_code == 200
        again = await client.post(
            "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        )
        assert again.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[" * 50_000, "application/json"),
        (b"refresh_token=" + b"x" * 100_000, "application/x-www-form-urlencoded"),
        (b"\xff\xfe\x00", "application/x-www-form-urlencoded"),
        (b'{"refresh_token": 5}', "application/json"),
    ],
)
async def test_logout_answers_hostile_bodies_without_a_500(
    app: tuple[httpx.AsyncClient, RefreshTokens], body: bytes, content_type: str
) -> None:
    client, _ = app
    headers = {"Authorization": f"Bearer {ISSUER.issue(7)}", "content-type": content_type}
    answer = await client.post("/logout", headers=headers, content=body)
    assert answer.status_code in (200, 400)
    assert "error" in answer.json() or answer.json() == {"revoked": True}
