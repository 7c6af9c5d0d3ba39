"""External-provider tokens end to end, over real HTTP: an IdentityProvider served on
127.0.0.1 (plain and TLS) and the demo (provider-only and mixed), the ``asgi-auth demo``
command, the Auth0 example, guards in Starlette and FastAPI, the Keycloak preset and the
pytest fixtures as a user would use them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Final

import httpx
import pytest
from fastapi import Depends, FastAPI, Security
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_auth import (
    AuthMiddleware,
    IssuerRouter,
    JWTVerifier,
    Key,
    Principal,
    TokenIssuer,
    get_principal,
)
from asgi_auth.authz import authenticated, guard, has_claim, has_role, has_scope
from asgi_auth.demo import DemoConfig, build_demo, prepare_store
from asgi_auth.integrations.fastapi import Authorize
from asgi_auth.principal import AnonymousPrincipal
from asgi_auth.store import Store
from asgi_auth.testing import IdentityProvider, PrincipalOverride
from asgi_auth.tokens.presets import keycloak
from asgi_auth.types import ASGIApp
from examples import auth0_app
from tests.lifespan import lifespan

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient and warns (an error here) without
    # it; the TestClient works the same on httpx (as in tests/test_testing_provider.py).
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient, WebSocketDenialResponse

AUDIENCE: Final = "demo-api"
REALM: Final = "asgi-auth demo"
BARE: Final = f'Bearer realm="{REALM}"'
INVALID: Final = f'Bearer realm="{REALM}", error="invalid_token"'
INSUFFICIENT: Final = f'Bearer realm="{REALM}", error="insufficient_scope"'
LOCAL_ISSUER: Final = "https://demo.local"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hs256_with_public_key(provider: IdentityProvider, subject: str = "mallory") -> str:
    """The algorithm-confusion forgery: HS256 keyed with the provider's public key."""
    now = int(time.time())
    header = {"alg": "HS256", "typ": "at+jwt", "kid": provider.current_kid}
    payload = {"iss": provider.issuer, "sub": subject, "aud": AUDIENCE, "iat": now, "exp": now + 60}
    signing_input = ".".join(
        _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)
    )
    secret = provider.key().public_pem()
    signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def unsigned(token: str) -> str:
    return token.rpartition(".")[0] + "."


def sqlite(tmp_path: Path, name: str = "demo.db") -> str:
    return f"sqlite:///{tmp_path / name}"


@contextlib.asynccontextmanager
async def running(app: ASGIApp, base_url: str = "http://demo") -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, behind an httpx client (in-process ASGI).

    When the block raises, tests/lifespan.py never sends the shutdown and waits ``limit``
    seconds for the app: kept short, so that a failing test fails quickly."""
    async with lifespan(app, limit=10):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            yield http


def provider_demo(
    issuer: str, database_url: str, **oidc_options: Any
) -> tuple[DemoConfig, ASGIApp]:
    config = DemoConfig(
        None,
        audience=AUDIENCE,
        oidc_issuer=issuer,
        database_url=database_url,
        oidc_options=oidc_options,
    )
    return config, build_demo(config)


# -- 1. the demo, provider tokens only ------------------------------------------------------


async def test_demo_provider_mode_answers_provider_tokens_over_real_http(tmp_path: Path) -> None:
    provider = IdentityProvider(audience=AUDIENCE)
    impostor = IdentityProvider()  # another key, same issuer claimed below
    with provider.serve() as issuer:
        assert issuer.startswith("http://127.0.0.1:")
        _, app = provider_demo(issuer, sqlite(tmp_path))
        async with running(app) as http:
            # The lifespan fetched discovery and keys once, over HTTP.
            assert (provider.requests["discovery"], provider.requests["jwks"]) == (1, 1)
            index = (await http.get("/")).json()
            assert index["oidc_issuer"] == issuer
            assert index["algorithm"] is None
            assert AUDIENCE in index["get a token"]

            token = provider.token(
                "auth0|ada",
                scopes=["read:me", "openid"],
                roles=["editor"],
                permissions=["can_read"],
            )
            me = await http.get("/me", headers=bearer(token))
            assert me.status_code == 200
            body = me.json()
            assert body["subject"] == "auth0|ada"
            assert body["scopes"] == ["openid", "read:me"]
            assert body["roles"] == ["editor"]
            assert body["permissions"] == ["can_read"]
            assert body["claims"]["iss"] == issuer
            assert body["claims"]["aud"] == AUDIENCE

            nothing = await http.get("/me")
            assert nothing.status_code == 401
            assert nothing.headers["www-authenticate"] == BARE

            refused = {
                "wrong audience": provider.token("ada", audience="another-api"),
                "no audience": provider.token("ada", audience=None),
                "expired": provider.token("ada", expires_in=-120),
                "another issuer": provider.token("ada", issuer="http://127.0.0.1:1"),
                "foreign key, its own kid": impostor.token("ada", audience=AUDIENCE, issuer=issuer),
                "foreign key, the provider's kid": impostor.token(
                    "ada", audience=AUDIENCE, issuer=issuer, headers={"kid": provider.current_kid}
                ),
                "HS256 keyed with the public key": hs256_with_public_key(provider),
                "alg none, no signature": unsigned(provider.token("ada", headers={"alg": "none"})),
            }
            for case, bad in refused.items():
                answer = await http.get("/me", headers=bearer(bad))
                assert answer.status_code == 401, case
                assert answer.headers["www-authenticate"] == INVALID, case
                assert answer.json()["error"] == "invalid_token", case
            # None of them made the verifier go back to the provider (an unknown kid
            # right after a fetch is within the refresh cooldown).
            assert (provider.requests["discovery"], provider.requests["jwks"]) == (1, 1)

            admin = provider.token("ada", roles=["admin"])
            assert (await http.get("/admin", headers=bearer(admin))).json() == {
                "admin": True,
                "subject": "ada",
            }
            plain = await http.get("/admin", headers=bearer(token))
            assert plain.status_code == 403
            assert plain.headers["www-authenticate"] == INSUFFICIENT

            records = await http.get("/records", headers=bearer(token))
            assert records.status_code == 200
            assert records.json() == {"records": []}
            write = await http.post("/records", json={"body": "x"}, headers=bearer(token))
            assert write.status_code == 403  # can_write is not among its permissions
            writer = provider.token("ada", permissions=["can_write"])
            created = await http.post("/records", json={"body": "x"}, headers=bearer(writer))
            assert created.status_code == 201
            assert (await http.get("/records", headers=bearer(admin))).status_code == 403

            # Provider-only: no local tokens, so no token endpoint, logout or JWKS.
            form = {"grant_type": "password", "username": "alice", "password": "x"}
            assert (await http.post("/token", data=form)).status_code == 404
            assert (await http.post("/logout", headers=bearer(token))).status_code == 404
            assert (await http.get("/.well-known/jwks.json")).status_code == 404


async def test_demo_provider_mode_index_names_only_routes_it_serves(tmp_path: Path) -> None:
    """Fails while asgi_auth.demo's index, in provider-only mode, still advertises the
    local routes (POST /token, POST /logout, GET /.well-known/jwks.json): they are not
    served there and answer 404."""
    provider = IdentityProvider(algorithm="ES256", audience=AUDIENCE)
    with provider.serve() as issuer:
        _, app = provider_demo(issuer, sqlite(tmp_path))
        async with running(app) as http:
            routes = (await http.get("/")).json()["routes"]
            answers = {
                route: (await http.request(*route.split(" ", 1))).status_code
                for route in routes
                if not route.startswith("WS ")
            }
    # Checked after the app stopped: a failure inside the lifespan block would leave
    # tests/lifespan.py waiting for a shutdown that is never sent.
    assert "GET /me" in answers
    assert [route for route, status in answers.items() if status == 404] == []


async def test_demo_provider_outage_from_the_start_is_503_then_recovers(tmp_path: Path) -> None:
    provider = IdentityProvider(algorithm="ES256", audience=AUDIENCE)
    provider.outage = True
    retry: Final = 0.5
    with provider.serve() as issuer:
        _, app = provider_demo(issuer, sqlite(tmp_path), retry_interval=retry)
        async with running(app) as http:
            assert provider.requests["discovery"] == 1  # the lifespan tried, and failed
            token = provider.token("ada")
            for _ in range(3):
                down = await http.get("/me", headers=bearer(token))
                assert down.status_code == 503
                assert down.json()["error"] == "temporarily_unavailable"
                assert "www-authenticate" not in down.headers
            # Within retry_interval of the failure: no new attempt, however many requests.
            assert provider.requests["discovery"] == 1
            # A malformed token is refused without even trying.
            assert (await http.get("/me", headers=bearer("junk"))).status_code == 401

            await asyncio.sleep(retry + 0.05)
            assert (await http.get("/me", headers=bearer(token))).status_code == 503
            assert provider.requests["discovery"] == 2  # retried once, still down

            provider.outage = False
            await asyncio.sleep(retry + 0.05)
            up = await http.get("/me", headers=bearer(token))
            assert up.status_code == 200
            assert up.json()["subject"] == "ada"
            assert (provider.requests["discovery"], provider.requests["jwks"]) == (3, 1)


async def test_demo_keeps_its_keys_while_the_provider_is_down(tmp_path: Path) -> None:
    provider = IdentityProvider(algorithm="ES256", audience=AUDIENCE, cache_control="no-store")
    with provider.serve() as issuer:
        # Keys are stale at once (no-store, min_ttl 0): every new token tries a refresh.
        _, app = provider_demo(
            issuer, sqlite(tmp_path), min_ttl=0, refresh_cooldown=0.05, retry_interval=0.05
        )
        async with running(app) as http:
            assert (await http.get("/me", headers=bearer(provider.token("a")))).status_code == 200
            provider.outage = True
            before = provider.requests["discovery"]
            for n in range(5):
                await asyncio.sleep(0.08)
                answer = await http.get("/me", headers=bearer(provider.token(f"user-{n}")))
                assert answer.status_code == 200, answer.text
                assert answer.json()["subject"] == f"user-{n}"
            # The refreshes were attempted (and failed) in the background meanwhile.
            assert provider.requests["discovery"] - before >= 3
            # A key we do not hold cannot be fetched now: that token alone gets a 503.
            provider.rotate()
            await asyncio.sleep(0.08)
            rotated = await http.get("/me", headers=bearer(provider.token("new-key")))
            assert rotated.status_code == 503
            old = provider.token("old-key", kid=provider.published_kids[0])
            assert (await http.get("/me", headers=bearer(old))).status_code == 200


async def test_demo_accepts_a_rotated_key_after_one_refresh(tmp_path: Path) -> None:
    provider = IdentityProvider(algorithm="ES256", audience=AUDIENCE)
    cooldown: Final = 0.5
    with provider.serve() as issuer:
        _, app = provider_demo(issuer, sqlite(tmp_path), refresh_cooldown=cooldown)
        async with running(app) as http:
            first = provider.current_kid

            async def me(kid: str | None, subject: str) -> int:
                answer = await http.get("/me", headers=bearer(provider.token(subject, kid=kid)))
                return answer.status_code

            assert await me(None, "before") == 200
            second = provider.rotate()
            # Within the cooldown of the last fetch, an unknown kid is refused unfetched.
            assert await me(second, "too-early") == 401
            assert provider.requests["jwks"] == 1
            await asyncio.sleep(cooldown + 0.05)
            # Traffic under both keys at once: the new kid causes one shared refresh.
            statuses = await asyncio.gather(
                *(me(second, f"new-{n}") for n in range(8)),
                *(me(first, f"old-{n}") for n in range(8)),
            )
            assert statuses == [200] * 16
            assert provider.requests["jwks"] == 2
            assert [await me(second, f"again-{n}") for n in range(3)] == [200] * 3
            assert provider.requests["jwks"] == 2


def test_demo_websocket_with_a_provider_token(tmp_path: Path) -> None:
    provider = IdentityProvider(algorithm="ES256", audience=AUDIENCE)
    with provider.serve() as issuer:
        _, app = provider_demo(issuer, sqlite(tmp_path), refresh_cooldown=0)
        with TestClient(app) as client:
            token = provider.token("ws-user", roles=["admin"], scopes="chat")
            with client.websocket_connect("/ws", headers=bearer(token)) as websocket:
                principal = websocket.receive_json()
            assert principal["subject"] == "ws-user"
            assert principal["roles"] == ["admin"]
            assert principal["scopes"] == ["chat"]
            assert principal["claims"]["iss"] == issuer
            for headers, status, challenge in (
                ({}, 401, BARE),
                (bearer(provider.token("ws", audience="other")), 401, INVALID),
                (bearer(hs256_with_public_key(provider)), 401, INVALID),
            ):
                with (
                    pytest.raises(WebSocketDenialResponse) as refused,
                    client.websocket_connect("/ws", headers=headers),
                ):
                    pytest.fail("the handshake must be refused")
                assert refused.value.status_code == status
                assert refused.value.headers["www-authenticate"] == challenge
            assert provider.requests["jwks"] == 1
            # A key not held while the provider is down: the handshake gets a 503.
            provider.outage = True
            provider.rotate()
            with (
                pytest.raises(WebSocketDenialResponse) as unavailable,
                client.websocket_connect("/ws", headers=bearer(provider.token("ws"))),
            ):
                pytest.fail("the handshake must be refused")
            assert unavailable.value.status_code == 503
            assert "www-authenticate" not in unavailable.value.headers
            assert provider.requests["discovery"] == 2


# -- 2. the demo, local and provider tokens ----------------------------------------------------


async def test_demo_mixed_mode_routes_by_issuer(store_url: str) -> None:
    async with Store(store_url) as store:
        ids = await prepare_store(store, seed=True)
    alice, bob = str(ids["alice"]), str(ids["bob"])
    provider = IdentityProvider(audience=AUDIENCE)
    with provider.serve() as issuer:
        config = DemoConfig(
            Key.generate("ES256"),
            issuer=LOCAL_ISSUER,
            audience=AUDIENCE,
            database_url=store_url,
            oidc_issuer=issuer,
        )
        local = config.issuer_obj
        async with running(build_demo(config)) as http:

            async def status(path: str, token: str) -> int:
                return (await http.get(path, headers=bearer(token))).status_code

            mine = await http.get("/me", headers=bearer(local.issue(ids["alice"])))
            assert mine.status_code == 200
            assert mine.json()["subject"] == alice
            assert mine.json()["claims"]["iss"] == LOCAL_ISSUER
            theirs = await http.get("/me", headers=bearer(provider.token("auth0|ada")))
            assert theirs.status_code == 200
            assert theirs.json()["claims"]["iss"] == issuer

            # Store roles and claims apply to local tokens.
            assert await status("/admin", local.issue(ids["alice"])) == 200
            assert await status("/admin", local.issue(ids["bob"])) == 403
            assert await status("/records", local.issue(ids["bob"])) == 200
            # ...never to a provider token, even one whose sub is alice's user id.
            namesake = provider.token(alice)
            assert (await http.get("/me", headers=bearer(namesake))).json()["subject"] == alice
            assert await status("/admin", namesake) == 403
            assert await status("/records", namesake) == 403
            assert await status("/records", provider.token(bob)) == 403
            assert await status("/admin", provider.token(alice, roles=["admin"])) == 200
            assert await status("/records", provider.token(bob, permissions=["can_read"])) == 200

            # Issuers on neither list, and provider tokens claiming the local issuer:
            # refused without a single request to the provider.
            fetched = sum(provider.requests.values())
            for case, token in {
                "unknown issuer": provider.token("ada", issuer="https://elsewhere.example"),
                "no issuer": provider.token("ada", claims={"iss": None}),
                "provider key, local issuer": provider.token(alice, issuer=LOCAL_ISSUER),
                "provider key, local issuer, local kid": provider.token(
                    alice, issuer=LOCAL_ISSUER, headers={"kid": local.key.kid}
                ),
            }.items():
                answer = await http.get("/me", headers=bearer(token))
                assert answer.status_code == 401, case
                assert answer.headers["www-authenticate"] == INVALID, case
                assert await status("/admin", token) == 401, case
            assert sum(provider.requests.values()) == fetched
            # A local token claiming the provider's issuer goes to the provider's keys.
            forged = TokenIssuer(local.key, issuer=issuer, audience=AUDIENCE).issue(alice)
            answer = await http.get("/me", headers=bearer(forged))
            assert answer.status_code == 401
            assert answer.headers["www-authenticate"] == INVALID

            # Logging out revokes a provider token too (by its jti, in the store).
            leaving = provider.token("auth0|leaving")
            assert await status("/me", leaving) == 200
            logout = await http.post("/logout", headers=bearer(leaving))
            assert logout.json() == {"revoked": True}
            assert await status("/me", leaving) == 401
            assert await status("/me", provider.token("auth0|leaving")) == 200

            # The local token endpoint is served in mixed mode.
            assert (await http.post("/token", data={"grant_type": "password"})).status_code == 400


# -- 3. the demo as a command --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _lines(stream: Any, into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def test_demo_command_in_provider_mode(tmp_path: Path) -> None:
    provider = IdentityProvider(algorithm="ES256", audience=AUDIENCE)
    with provider.serve() as issuer:
        port = _free_port()
        env = {
            name: value
            for name, value in os.environ.items()
            if name not in ("ASGI_AUTH_SECRET", "ASGI_AUTH_PRIVATE_KEY", "ASGI_AUTH_ISSUER")
        }
        env |= {
            "ASGI_AUTH_OIDC_ISSUER": issuer,
            "ASGI_AUTH_AUDIENCE": AUDIENCE,
            "ASGI_AUTH_DATABASE_URL": sqlite(tmp_path),
        }
        command = [sys.executable, "-m", "asgi_auth.cli", "demo", "--port", str(port)]
        stderr = (tmp_path / "stderr.txt").open("w")
        process = subprocess.Popen(
            [*command, "--log-level", "info"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True)
        reader.start()
        banner: list[str] = []
        try:
            deadline = time.monotonic() + 15
            while len(banner) < 2:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                assert line is not None, f"the demo died: {banner}"
                banner.append(line)
            url = f"http://127.0.0.1:{port}"
            # No local key: no algorithm after the URL.
            assert banner[0].startswith(f"asgi-auth demo on {url}, store sqlite")
            assert banner[1] == (
                f"accepting tokens from {issuer} for the audience {AUDIENCE} "
                "(keys through OIDC discovery)\n"
            )
            while True:
                try:
                    httpx.get(url, timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the demo did not come up"
                    time.sleep(0.05)
            token = provider.token("cli-user", roles=["admin"])
            me = httpx.get(f"{url}/me", headers=bearer(token), timeout=5)
            assert me.status_code == 200
            assert me.json()["subject"] == "cli-user"
            assert httpx.get(f"{url}/admin", headers=bearer(token), timeout=5).status_code == 200
            assert httpx.get(f"{url}/me", timeout=5).status_code == 401
            assert httpx.post(f"{url}/token", timeout=5).status_code == 404
            assert provider.requests["jwks"] == 1  # the subprocess fetched them from us
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=5)
                reader.join(timeout=5)
                assert process.stdout is not None
                process.stdout.close()
                stderr.close()
        rest = []
        while (line := lines.get_nowait()) is not None:
            rest.append(line)
        # Provider-only: no generated secret and no sample local token after the banner.
        assert not any("ASGI_AUTH_SECRET=" in line or "a token for" in line for line in rest)
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it (exit status -15).
        log = (tmp_path / "stderr.txt").read_text()
        assert process.returncode in (0, -signal.SIGTERM), log
        assert "Application shutdown complete." in log, log
        assert "Traceback" not in log, log


# -- 4. the Auth0 example --------------------------------------------------------------------

API: Final = "https://api.example.com"
ROLES_CLAIM: Final = "https://example.com/roles"
AUTH0_INSUFFICIENT: Final = (
    f'Bearer realm="{API}", error="insufficient_scope", scope="read:messages"'
)


class _Hosts(httpx.AsyncBaseTransport):
    """Sends every request to one origin, as a hosts-file entry would: the TLS
    certificate is checked against that origin, the URL keeps the name asked for."""

    def __init__(self, origin: str, **options: Any) -> None:
        url = httpx.URL(origin)
        self._host, self._port = url.host, url.port
        self._inner = httpx.AsyncHTTPTransport(**options)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host=self._host, port=self._port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_auth0_example_with_its_own_client_over_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example as deployed: no injected client; its httpx client trusts the provider's
    CA through SSL_CERT_FILE, and the preset's issuer is ``https://127.0.0.1:PORT/``.

    IdentityProvider cannot have that issuer while served (serve() picks the port, an
    explicit issuer is fixed before), so the served provider's discovery document and
    tokens are given the trailing slash Auth0 writes; its own userinfo and token
    endpoints would refuse that issuer: they are tested in the next test."""
    provider = IdentityProvider(audience=API)
    with provider.serve(tls=True) as origin:
        assert origin.startswith("https://127.0.0.1:")
        issuer = origin + "/"
        provider.discovery_overrides["issuer"] = issuer
        assert provider.ca_file is not None
        monkeypatch.setenv("SSL_CERT_FILE", provider.ca_file)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        domain = origin.removeprefix("https://")
        app = auth0_app.create_app({"AUTH0_DOMAIN": domain, "AUTH0_AUDIENCE": API})
        async with running(app, "http://api") as http:
            assert (provider.requests["discovery"], provider.requests["jwks"]) == (1, 1)
            assert (await http.get("/api/public")).status_code == 200
            assert (await http.get("/api/private")).status_code == 401
            user = provider.token("auth0|ada", issuer=issuer)
            private = await http.get("/api/private", headers=bearer(user))
            assert private.status_code == 200
            assert private.json()["sub"] == "auth0|ada"
            # Without the slash it is not Auth0's issuer.
            unslashed = provider.token("auth0|ada")
            assert (await http.get("/api/private", headers=bearer(unslashed))).status_code == 401
            reader = provider.token("auth0|ada", issuer=issuer, permissions=["read:messages"])
            assert (
                await http.get("/api/private-scoped", headers=bearer(reader))
            ).status_code == 200
            # No AUTH0_ROLES_CLAIM: no roles at all, whatever the token carries.
            for claims in ({ROLES_CLAIM: ["admin"]}, {"roles": ["admin"]}):
                admin = provider.token("auth0|ada", issuer=issuer, claims=claims)
                assert (await http.get("/api/admin", headers=bearer(admin))).status_code == 403

    # The client trusted the CA through SSL_CERT_FILE only: without it, the TLS
    # handshake fails, no request reaches the provider, and there are no keys.
    monkeypatch.delenv("SSL_CERT_FILE")
    provider.reset_counts()
    with provider.serve(tls=True) as origin:
        provider.discovery_overrides["issuer"] = origin + "/"
        domain = origin.removeprefix("https://")
        app = auth0_app.create_app({"AUTH0_DOMAIN": domain, "AUTH0_AUDIENCE": API})
        async with running(app, "http://api") as http:
            user = provider.token("auth0|ada", issuer=origin + "/")
            assert (await http.get("/api/private", headers=bearer(user))).status_code == 503
    assert sum(provider.requests.values()) == 0


async def test_auth0_example_routes_against_a_tls_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """Auth0's issuer shape (``https://{domain}/``) served over real TLS: the example's
    verifier (and the M2M client) reach the tenant's name at the provider's address, as
    a hosts-file entry would, trusting its CA through SSL_CERT_FILE."""
    tenant = "tenant.example.auth0.com"
    provider = IdentityProvider(f"https://{tenant}/", audience=API)
    provider.add_client("m2m-client", "m2m-secret", scopes=["read:messages", "write:messages"])
    provider.add_client("other-client", "other-secret", scopes=["write:messages"])
    provider.set_profile("auth0|ada", name="Ada Lovelace", email="ada@example.com")
    with provider.serve(tls=True) as origin:
        assert origin.startswith("https://127.0.0.1:")
        assert provider.ca_file is not None
        monkeypatch.setenv("SSL_CERT_FILE", provider.ca_file)  # httpx's trust_env reads it
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        env = {"AUTH0_DOMAIN": tenant, "AUTH0_AUDIENCE": API, "AUTH0_ROLES_CLAIM": ROLES_CLAIM}
        async with (
            httpx.AsyncClient(transport=_Hosts(origin)) as fetcher,
            httpx.AsyncClient(transport=_Hosts(origin), base_url=f"https://{tenant}") as m2m,
        ):
            app = auth0_app.create_app(env, http_client=fetcher)
            async with running(app, "http://api") as http:
                assert (provider.requests["discovery"], provider.requests["jwks"]) == (1, 1)

                async def get(path: str, token: str | None = None) -> httpx.Response:
                    return await http.get(path, headers={} if token is None else bearer(token))

                assert (await get("/api/public")).status_code == 200
                assert (await get("/api/private")).status_code == 401
                user = provider.token("auth0|ada", scopes="openid profile")
                assert (await get("/api/private", user)).json()["sub"] == "auth0|ada"

                # The M2M flow: a client-credentials token from the provider's endpoint.
                async def client_token(client_id: str, secret: str, scope: str) -> str:
                    form = {
                        "grant_type": "client_credentials",
                        "client_id": client_id,
                        "client_secret": secret,
                        "audience": API,
                        "scope": scope,
                    }
                    answer = await m2m.post("/oauth/token", data=form)
                    assert answer.status_code == 200, answer.text
                    assert answer.json()["token_type"] == "Bearer"
                    token: str = answer.json()["access_token"]
                    return token

                machine = await client_token("m2m-client", "m2m-secret", "read:messages")
                scoped = await get("/api/private-scoped", machine)
                assert scoped.status_code == 200
                assert "read:messages" in scoped.json()["message"]
                assert (await get("/api/private", machine)).json()["sub"] == "m2m-client"
                other = await client_token("other-client", "other-secret", "write:messages")
                refused = await get("/api/private-scoped", other)
                assert refused.status_code == 403
                assert refused.headers["www-authenticate"] == AUTH0_INSUFFICIENT
                denied = await m2m.post(
                    "/oauth/token",
                    data={"grant_type": "client_credentials", "client_id": "m2m-client"},
                )
                assert denied.status_code == 401

                # The RBAC permission of a user token counts as well as the scope.
                assert (await get("/api/private-scoped", user)).status_code == 403
                reader = provider.token("auth0|ada", permissions=["read:messages"])
                assert (await get("/api/private-scoped", reader)).status_code == 200
                in_scope_only = provider.token("auth0|ada", scopes="openid read:messages")
                assert (await get("/api/private-scoped", in_scope_only)).status_code == 200

                # Roles come from the namespaced claim named by AUTH0_ROLES_CLAIM only.
                admin = provider.token("auth0|ada", claims={ROLES_CLAIM: ["admin"]})
                assert (await get("/api/admin", admin)).json() == {"message": "Hello, admin."}
                not_admin = provider.token("auth0|ada", claims={ROLES_CLAIM: ["viewer"]})
                assert (await get("/api/admin", not_admin)).status_code == 403
                unnamespaced = provider.token("auth0|ada", roles=["admin"])
                assert (await get("/api/admin", unnamespaced)).status_code == 403
                assert (await get("/api/admin")).status_code == 401

                # The profile is the provider's userinfo, fetched once per token.
                profile = await get("/api/profile", user)
                assert profile.status_code == 200
                assert profile.json() == {
                    "sub": "auth0|ada",
                    "name": "Ada Lovelace",
                    "email": "ada@example.com",
                }
                assert provider.requests["userinfo"] == 1
                assert (await get("/api/profile", user)).json() == profile.json()
                assert provider.requests["userinfo"] == 1
                assert (await get("/api/profile", admin)).json()["name"] == "Ada Lovelace"
                assert provider.requests["userinfo"] == 2
                assert (await get("/api/profile")).status_code == 401
                # The whole time, the keys were fetched once.
                assert (provider.requests["discovery"], provider.requests["jwks"]) == (1, 1)

                # Userinfo down: the profile is a 503 like any provider outage, not a 500.
                provider.outage = True
                down = await get("/api/profile", provider.token("auth0|ada", scopes="a"))
                assert down.status_code == 503
                assert down.json()["error"] == "temporarily_unavailable"
                provider.outage = False
                # The provider refuses a token it no longer vouches for (its key retired
                # there, still held here): the profile is a 401 invalid_token.
                old_kid = provider.current_kid
                provider.rotate()
                provider.retire(old_kid)
                stale = provider.token("auth0|ada", kid=old_kid)
                assert (await get("/api/private", stale)).status_code == 200
                refused = await get("/api/profile", stale)
                assert refused.status_code == 401
                assert refused.headers["www-authenticate"] == (
                    f'Bearer realm="{API}", error="invalid_token"'
                )


# -- 5. guards and frameworks ---------------------------------------------------------------


def _starlette_app(verifier: Any) -> ASGIApp:
    @guard(authenticated)
    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"subject": request.user.identity})

    @guard(has_role("admin"))
    async def admin(request: Request) -> JSONResponse:
        return JSONResponse({"admin": request.user.identity})

    @guard(has_scope("items:read") | has_claim("items:read"))
    async def items(request: Request) -> JSONResponse:
        return JSONResponse({"items": [], "for": get_principal(request.scope).subject})

    routes = [Route("/me", me), Route("/admin", admin), Route("/items", items)]
    return AuthMiddleware(Starlette(routes=routes), verifier=verifier)


Caller = Principal | AnonymousPrincipal


def _fastapi_app(verifier: Any) -> ASGIApp:
    app = FastAPI()
    app.add_middleware(AuthMiddleware, verifier=verifier)

    @app.get("/me")
    async def me(principal: Annotated[Caller, Depends(Authorize(authenticated))]) -> Any:
        return {"subject": principal.subject}

    @app.get("/admin")
    async def admin(principal: Annotated[Caller, Depends(Authorize(has_role("admin")))]) -> Any:
        return {"admin": principal.subject}

    @app.get("/items")
    async def items(
        principal: Annotated[Caller, Security(Authorize(authenticated), scopes=["items:read"])],
    ) -> Any:
        return {"items": [], "for": principal.subject}

    return app


async def test_guards_treat_provider_tokens_exactly_like_local_ones() -> None:
    provider = IdentityProvider(algorithm="ES256", audience=AUDIENCE)
    local = TokenIssuer(Key.generate("HS256"), audience=AUDIENCE)
    with provider.serve() as issuer:
        sources: dict[str, Any] = {
            "local": (
                lambda sub, **claims: local.issue(sub, claims=claims),
                lambda: JWTVerifier(local.key, audience=AUDIENCE),
                TokenIssuer(Key.generate("HS256"), audience=AUDIENCE).issue("x"),
            ),
            "provider": (
                lambda sub, **claims: provider.token(sub, claims=claims),
                lambda: provider.verifier(audience=AUDIENCE),
                IdentityProvider(issuer, algorithm="ES256", audience=AUDIENCE).token("x"),
            ),
        }
        results: dict[tuple[str, str], list[tuple[int, str | None, Any]]] = {}
        for source, (mint, verifier, forged) in sources.items():
            for framework, build in (("starlette", _starlette_app), ("fastapi", _fastapi_app)):
                app = build(verifier())
                cases = [
                    ("/me", None),
                    ("/me", forged),
                    ("/me", mint("ada")),
                    ("/admin", mint("ada", roles=["user"])),
                    ("/admin", mint("ada", roles=["admin"])),
                    ("/items", mint("ada", scope="items:write")),
                    ("/items", mint("ada", scope="openid items:read")),
                ]
                if framework == "starlette":
                    cases.append(("/items", mint("ada", permissions=["items:read"])))
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                    answers = []
                    for path, token in cases:
                        headers = {} if token is None else bearer(token)
                        response = await http.get(path, headers=headers)
                        body = response.json() if response.status_code == 200 else None
                        answers.append(
                            (response.status_code, response.headers.get("www-authenticate"), body)
                        )
                results[source, framework] = answers
        for framework in ("starlette", "fastapi"):
            assert results["local", framework] == results["provider", framework], framework
        challenge = 'Bearer realm="api"'
        expected = [
            (401, challenge, None),
            (401, f'{challenge}, error="invalid_token"', None),
            (200, None, {"subject": "ada"}),
            (403, f'{challenge}, error="insufficient_scope"', None),
            (200, None, {"admin": "ada"}),
            (403, f'{challenge}, error="insufficient_scope", scope="items:read"', None),
            (200, None, {"items": [], "for": "ada"}),
        ]
        assert results["provider", "fastapi"] == expected
        # Starlette's /items also admits the permission (any_of): one more 200.
        assert results["provider", "starlette"] == [*expected, expected[-1]]
        assert provider.requests["jwks"] == 2  # one verifier per framework, one fetch each


async def test_keycloak_preset_with_realm_and_client_roles() -> None:
    provider = IdentityProvider("https://sso.example.com/realms/acme", audience="orders-api")
    verifier = keycloak(
        "https://sso.example.com",
        "acme",
        audience="orders-api",
        client_id="orders-api",
        http_client=provider.http_client(),
    )
    assert verifier.issuer == provider.issuer

    @guard(has_role("admin"))
    async def admin(request: Request) -> JSONResponse:
        return JSONResponse(get_principal(request.scope).to_dict())

    @guard(has_role("order-manager"))
    async def orders(request: Request) -> JSONResponse:
        return JSONResponse({"orders": []})

    app = AuthMiddleware(
        Starlette(routes=[Route("/admin", admin), Route("/orders", orders)]), verifier=verifier
    )

    def token(kind: str = "Bearer", **claims: Any) -> str:
        return provider.token(
            "f:1234:ada", typ="JWT", scopes="openid profile", claims={"typ": kind, **claims}
        )

    realm_admin = token(realm_access={"roles": ["admin", "offline_access"]})
    client_role = token(resource_access={"orders-api": {"roles": ["order-manager"]}})
    other_client = token(resource_access={"account": {"roles": ["order-manager", "admin"]}})
    flat_roles = token(roles=["admin"])
    id_token = token("ID", realm_access={"roles": ["admin"]})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://orders"
    ) as http:
        answer = await http.get("/admin", headers=bearer(realm_admin))
        assert answer.status_code == 200
        assert answer.json()["roles"] == ["admin", "offline_access"]
        assert answer.json()["scopes"] == ["openid", "profile"]
        assert (await http.get("/orders", headers=bearer(realm_admin))).status_code == 403
        assert (await http.get("/orders", headers=bearer(client_role))).status_code == 200
        assert (await http.get("/admin", headers=bearer(client_role))).status_code == 403
        for token_ in (other_client, flat_roles):
            assert (await http.get("/admin", headers=bearer(token_))).status_code == 403
            assert (await http.get("/orders", headers=bearer(token_))).status_code == 403
        refused = await http.get("/admin", headers=bearer(id_token))
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="api", error="invalid_token"'
    assert provider.requests["jwks"] == 1
    await verifier.aclose()


# -- 6. the pytest fixtures as a user would use them ----------------------------------------


async def test_fixtures_on_a_guarded_app_with_two_providers(
    identity_provider: IdentityProvider,
    served_identity_provider: IdentityProvider,
    override_principal: PrincipalOverride,
) -> None:
    in_process, served = identity_provider, served_identity_provider
    assert served.issuer.startswith("http://127.0.0.1:")
    router = IssuerRouter(
        [in_process.verifier(audience=AUDIENCE), served.verifier(audience=AUDIENCE)]
    )

    @guard(has_role("admin"))
    async def admin(request: Request) -> JSONResponse:
        principal = get_principal(request.scope)
        assert isinstance(principal, Principal)
        return JSONResponse({"admin": principal.subject, "issuer": principal.issuer})

    app = AuthMiddleware(Starlette(routes=[Route("/admin", admin)]), verifier=router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        for provider in (in_process, served):
            token = provider.token("ada", audience=AUDIENCE, roles=["admin"])
            answer = await http.get("/admin", headers=bearer(token))
            assert answer.json() == {"admin": "ada", "issuer": provider.issuer}
            plain = provider.token("ada", audience=AUDIENCE)
            assert (await http.get("/admin", headers=bearer(plain))).status_code == 403
            assert provider.requests["jwks"] == 1
        assert (await http.get("/admin")).status_code == 401

        override_principal("root", roles=["admin"], issuer="https://ops.example")
        assert (await http.get("/admin")).json() == {
            "admin": "root",
            "issuer": "https://ops.example",
        }
        override_principal("guest")
        assert (await http.get("/admin")).status_code == 403
        override_principal(None)
        assert (await http.get("/admin")).status_code == 401
        assert in_process.requests["jwks"] == served.requests["jwks"] == 1


def test_served_identity_provider_is_reachable_while_the_test_runs(
    served_identity_provider: IdentityProvider,
) -> None:
    document = httpx.get(
        served_identity_provider.issuer + "/.well-known/openid-configuration", timeout=5
    )
    assert document.json()["issuer"] == served_identity_provider.issuer
    keys = httpx.get(document.json()["jwks_uri"], timeout=5).json()["keys"]
    assert [key["kid"] for key in keys] == [served_identity_provider.current_kid]
