"""The demo API in all four algorithm families, in-process and as the real command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from asgi_auth import JWTVerifier, Key, KeySet, TokenIssuer
from asgi_auth.demo import DemoConfig, build_demo
from tests.live import serve

FAMILIES = ["HS256", "RS256", "PS256", "ES256", "EdDSA"]


@pytest.fixture(params=FAMILIES)
def config(request: pytest.FixtureRequest) -> DemoConfig:
    return DemoConfig(Key.generate(request.param), issuer="https://demo.test", audience="demo")


@pytest.fixture
async def client(config: DemoConfig) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_demo(config))
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as http:
        yield http


async def test_me_answers_the_principal_for_a_valid_token(
    client: httpx.AsyncClient, config: DemoConfig
) -> None:
    token = config.issuer_obj.issue(1, claims={"scope": "read"})
    answer = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["subject"] == "1"
    assert body["scopes"] == ["read"]
    assert body["claims"]["iss"] == "https://demo.test"


async def test_me_is_401_with_a_bare_challenge_without_a_token(client: httpx.AsyncClient) -> None:
    answer = await client.get("/me")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="asgi-auth demo"'


async def test_me_is_401_invalid_token_for_another_keys_token(
    client: httpx.AsyncClient, config: DemoConfig
) -> None:
    other = TokenIssuer(Key.generate(config.issuer_obj.algorithm), issuer="https://demo.test")
    answer = await client.get("/me", headers={"Authorization": f"Bearer {other.issue(1)}"})
    assert answer.status_code == 401
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]


async def test_jwks_publishes_public_keys_that_verify_the_demo_tokens(
    client: httpx.AsyncClient, config: DemoConfig
) -> None:
    answer = await client.get("/.well-known/jwks.json")
    if config.issuer_obj.key.is_symmetric:
        assert answer.status_code == 404
        assert "k" not in answer.text
        return
    assert answer.status_code == 200
    keys = KeySet.from_jwks(answer.json())
    verifier = JWTVerifier(keys, issuer="https://demo.test", audience="demo")
    assert verifier.verify_sync(config.issuer_obj.issue("x")).subject == "x"
    assert all("d" not in jwk for jwk in answer.json()["keys"])


async def test_index_names_the_routes(client: httpx.AsyncClient) -> None:
    assert "GET /me" in (await client.get("/")).json()["routes"]


async def test_websocket_sends_the_principal_and_refuses_anonymous() -> None:
    config = DemoConfig(Key.generate("ES256"))
    token = config.issuer_obj.issue("ws-user")
    with serve(build_demo(config)) as url:
        ws_url = url.replace("http", "ws", 1) + "/ws"
        async with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            assert json.loads(await ws.recv())["subject"] == "ws-user"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url):
                pass
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as bad:
            async with connect(ws_url, additional_headers={"Authorization": "Bearer x.y.z"}):
                pass
        assert bad.value.response.status_code == 401


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_demo(
    env: dict[str, str], port: int, *extra: str
) -> tuple[subprocess.Popen[str], list[str]]:
    assert "ASGI_AUTH_DATABASE_URL" in env, "keep the demo's database out of the work tree"
    command = [sys.executable, "-m", "asgi_auth.cli", "demo", "--port", str(port), *extra]
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    while len(lines) < 10:  # the banner ends with the "try:" line; EOF if the demo died
        line = process.stdout.readline()
        lines.append(line)
        if not line or line.startswith("try:"):
            break
    return process, lines


def _db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'demo.db'}"


def _token(lines: list[str]) -> str:
    return lines[lines.index("a token for subject 'demo', valid 1 hour:\n") + 1].strip()


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


def _wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


@pytest.mark.parametrize("family", ["HS256", "RS256", "ES256", "EdDSA"])
def test_demo_command_serves_with_generated_or_configured_keys(family: str, tmp_path: Path) -> None:
    env = {"ASGI_AUTH_ISSUER": "https://demo.test", "ASGI_AUTH_DATABASE_URL": _db(tmp_path)}
    if family == "HS256":
        env["ASGI_AUTH_SECRET"] = ""  # none configured: the demo generates and prints one
    else:
        pem = tmp_path / "key.pem"
        pem.write_bytes(Key.generate(family).private_pem())
        env["ASGI_AUTH_PRIVATE_KEY"] = str(pem)
    port = _free_port()
    process, lines = _start_demo(env, port)
    try:
        banner = "".join(lines)
        assert f"({family})" in banner
        assert ("generated one: ASGI_AUTH_SECRET=" in banner) == (family == "HS256")
        token = _token(lines)
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(url)
        me = httpx.get(f"{url}/me", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert me.status_code == 200
        assert me.json()["subject"] == "demo"
        assert httpx.get(f"{url}/me", timeout=5).status_code == 401
    finally:
        _stop(process)


def test_demo_command_follows_asgi_auth_algorithm_for_an_rsa_key(tmp_path: Path) -> None:
    pem = tmp_path / "rsa.pem"
    pem.write_bytes(Key.generate("RS256").private_pem())
    port = _free_port()
    env = {
        "ASGI_AUTH_PRIVATE_KEY": str(pem),
        "ASGI_AUTH_ALGORITHM": "PS256",
        "ASGI_AUTH_DATABASE_URL": _db(tmp_path),
    }
    process, lines = _start_demo(env, port)
    try:
        assert "(PS256)" in lines[0]
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(url)
        jwks = httpx.get(f"{url}/.well-known/jwks.json", timeout=5).json()
        assert jwks["keys"][0]["alg"] == "PS256"
    finally:
        _stop(process)


async def test_demo_store_routes_follow_roles_and_claims(store_url: str) -> None:
    from asgi_auth.demo import prepare_store
    from asgi_auth.store import Store
    from tests.lifespan import lifespan

    async with Store(store_url) as store:
        ids = await prepare_store(store, seed=True)
        assert await prepare_store(store, seed=True) == ids  # seeding is idempotent
    config = DemoConfig(Key.generate("HS256"), database_url=store_url)
    app = build_demo(config)

    def bearer(user: str | None) -> dict[str, str]:
        if user is None:
            return {}
        return {"Authorization": f"Bearer {config.issuer_obj.issue(ids[user])}"}

    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as http:
            alice, bob, nobody = bearer("alice"), bearer("bob"), bearer(None)
            created = await http.post("/records", json={"body": "hello"}, headers=alice)
            assert created.status_code == 201
            record = created.json()["id"]
            answers = {
                (who, what): (await http.request(method, path, headers=h, json=body)).status_code
                for who, h in (("alice", alice), ("bob", bob), ("anonymous", nobody))
                for what, method, path, body in (
                    ("admin", "GET", "/admin", None),
                    ("read", "GET", "/records", None),
                    ("write", "POST", "/records", {"body": "more"}),
                )
            }
            assert answers == {
                ("alice", "admin"): 200,
                ("alice", "read"): 200,
                ("alice", "write"): 201,
                ("bob", "admin"): 403,
                ("bob", "read"): 200,
                ("bob", "write"): 403,
                ("anonymous", "admin"): 401,
                ("anonymous", "read"): 401,
                ("anonymous", "write"): 401,
            }
            assert (await http.delete(f"/records/{record}", headers=bob)).status_code == 403
            assert (await http.delete(f"/records/{record}", headers=alice)).status_code == 204
            assert (await http.delete(f"/records/{record}", headers=alice)).status_code == 404
            huge = "/records/99999999999999999999999"
            assert (await http.delete(huge, headers=alice)).status_code == 404
            listed = (await http.get("/records", headers=bob)).json()["records"]
            assert [r["body"] for r in listed] == ["more"]
            for bad in (b"not json", b'{"body": ""}', b'{"body": 5}', b"[]"):
                refused = await http.post("/records", content=bad, headers=alice)
                assert refused.status_code == 422
            too_long = await http.post("/records", json={"body": "x" * 1001}, headers=alice)
            assert too_long.status_code == 422


def test_demo_command_seed_prints_tokens_for_alice_and_bob(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        "ASGI_AUTH_SECRET": "a-demo-secret-that-is-at-least-32-bytes",
        "ASGI_AUTH_DATABASE_URL": _db(tmp_path),
    }
    process, lines = _start_demo(env, port, "--seed")
    try:
        alice = lines[lines.index("alice (sub 1), valid 1 hour:\n") + 1].strip()
        bob = lines[lines.index("bob (sub 2), valid 1 hour:\n") + 1].strip()
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(url)
        assert (
            httpx.get(f"{url}/admin", headers={"Authorization": f"Bearer {alice}"}).status_code
            == 200
        )
        assert (
            httpx.get(f"{url}/admin", headers={"Authorization": f"Bearer {bob}"}).status_code == 403
        )
        shown = next(line for line in lines if line.startswith("created alice with the password "))
        password = shown.split()[5]
        form = {"grant_type": "password", "username": "alice", "password": password}
        login = httpx.post(f"{url}/token", data=form, timeout=10)
        assert login.status_code == 200
        token = login.json()["access_token"]
        me = httpx.get(f"{url}/me", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert me.json()["subject"] == "1"
        wrong = httpx.post(f"{url}/token", data={**form, "password": "nope"}, timeout=10)
        assert wrong.json()["error"] == "invalid_grant"
        refresh = {"grant_type": "refresh_token", "refresh_token": login.json()["refresh_token"]}
        refreshed = httpx.post(f"{url}/token", data=refresh, timeout=10)
        assert refreshed.status_code == 200
        assert refreshed.json()["refresh_token"] != refresh["refresh_token"]
        replayed = httpx.post(f"{url}/token", data=refresh, timeout=10)
        assert replayed.json()["error"] == "invalid_grant"
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{url}/logout", headers=bearer, timeout=10).json() == {"revoked": True}
        assert httpx.get(f"{url}/me", headers=bearer, timeout=5).status_code == 401
    finally:
        _stop(process)
