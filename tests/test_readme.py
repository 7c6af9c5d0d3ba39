"""The README's code samples run, and the commands it shows exist."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import httpx
import pytest

import asgi_auth
from asgi_auth import JWTVerifier, Key, KeySet, TokenIssuer
from asgi_auth.cli import build_parser

README = (Path(__file__).parent.parent / "README.md").read_text()
SECRET = "a-readme-secret-that-is-long-enough-32b"


def _block(heading: str, language: str = "python") -> str:
    section = README.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert match is not None, f"no {language} block under {heading!r}"
    return match.group(1)


def _run(code: str) -> dict[str, Any]:
    # A real module, as a user's file would be (frameworks look annotations up in it).
    module = types.ModuleType(f"readme_sample_{len(sys.modules)}")
    sys.modules[module.__name__] = module
    exec(compile(code, "README.md", "exec"), module.__dict__)  # noqa: S102 - our own README
    return module.__dict__


async def test_protect_an_app_sample_serves_principals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGI_AUTH_SECRET", SECRET)
    app = _run(_block("Protect an app"))["app"]
    token = TokenIssuer(Key.from_secret(SECRET)).issue(1, claims={"name": "Ada", "scope": "x"})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://readme") as client:
        known = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
        anonymous = await client.get("/me")
        forged = await client.get("/me", headers={"Authorization": "Bearer a.b.c"})
    assert known.json() == {"user": "Ada", "scopes": ["x", "authenticated"]}
    assert anonymous.json() == {"user": "", "scopes": []}
    assert forged.status_code == 401


def test_verifying_tokens_sample_builds_the_verifier_it_describes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current, previous = Key.generate("ES256"), Key.generate("ES256")
    (tmp_path / "current.pem").write_bytes(current.private_pem())
    (tmp_path / "previous.pem").write_bytes(previous.private_pem())
    monkeypatch.chdir(tmp_path)
    verifier: JWTVerifier = _run(_block("Verifying tokens"))["verifier"]
    assert verifier.typ == "at+jwt"
    assert verifier.leeway == 30
    for key in (current, previous):  # both keys of the rotation verify
        issuer = TokenIssuer(
            key, issuer="https://auth.example.com", audience="my-api", typ="at+jwt"
        )
        token = issuer.issue(5)
        assert verifier.verify_sync(token).subject == "5"


def test_issuing_tokens_sample_publishes_keys_that_verify_its_token() -> None:
    namespace = _run(_block("Issuing tokens"))
    verifier = JWTVerifier(
        KeySet.from_jwks(namespace["jwks"]), issuer="https://auth.example.com", audience="my-api"
    )
    principal = verifier.verify_sync(namespace["token"])
    assert principal.subject == "1"
    assert principal.scopes == {"items:read"}


def _readme_commands() -> list[list[str]]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.DOTALL):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            while words and "=" in words[0]:
                words.pop(0)  # VAR=value prefixes
            if words and words[0] == "asgi-auth":
                commands.append(words[1:])
    return commands


def test_every_asgi_auth_command_in_the_readme_exists() -> None:
    commands = _readme_commands()
    assert len(commands) >= 7
    actions = build_parser()._actions
    subcommands = next(a for a in actions if isinstance(a, argparse._SubParsersAction))
    assert {c[0] for c in commands} <= set(subcommands.choices)


def test_the_command_line_section_runs(tmp_path: Path) -> None:
    env = {"ASGI_AUTH_SECRET": SECRET, "PATH": str(Path(sys.executable).parent)}
    ran = 0
    for words in _readme_commands():
        if words[0] == "demo":
            continue  # a server; tests/test_demo.py starts it for real
        if "TOKEN" in words:
            token = TokenIssuer(Key.from_secret(SECRET)).issue(1)
            words = [token if w == "TOKEN" else w for w in words]
        words = [SECRET if w == "$ASGI_AUTH_SECRET" else w for w in words]
        done = subprocess.run(
            [sys.executable, "-m", "asgi_auth.cli", *words],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (words, done.stderr)
        ran += 1
    assert ran >= 6


def test_the_benchmark_module_the_readme_names_exists() -> None:
    assert "python -m benchmarks.verify" in README
    assert (Path(__file__).parent.parent / "benchmarks" / "verify.py").is_file()


def test_public_api_is_sorted_importable_and_documented() -> None:
    names = asgi_auth.__all__
    assert names == sorted(names)
    for name in names:
        value = getattr(asgi_auth, name)
        if isinstance(value, type) or callable(value):
            assert value.__doc__, f"{name} has no docstring"


async def test_authorization_sample_guards_with_store_claims(
    monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    from asgi_auth.store import Store, StoreAdmin
    from tests.lifespan import lifespan

    async with Store(store_url) as store:
        await store.init_schema()
        admin = StoreAdmin(store)
        await admin.create_claim("can_read")
        reader = await admin.create_user("reader", claims=("can_read",))
        other = await admin.create_user("other")
    monkeypatch.setenv("ASGI_AUTH_SECRET", SECRET)
    monkeypatch.setenv("ASGI_AUTH_DATABASE_URL", store_url)
    app = _run(_block("Authorization: roles, claims, scopes"))["app"]
    issuer = TokenIssuer(Key.from_secret(SECRET))
    async with (
        lifespan(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://readme"
        ) as client,
    ):

        async def status(user: int | None) -> int:
            headers = {} if user is None else {"Authorization": f"Bearer {issuer.issue(user)}"}
            return (await client.get("/records", headers=headers)).status_code

        assert [await status(reader), await status(other), await status(None)] == [200, 403, 401]


async def test_fastapi_sample_answers_like_the_guards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGI_AUTH_SECRET", SECRET)
    app = _run(_block("FastAPI"))["app"]
    issuer = TokenIssuer(Key.from_secret(SECRET))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://readme") as client:
        me = await client.get("/me", headers={"Authorization": f"Bearer {issuer.issue(3)}"})
        anonymous = await client.get("/me")
        scoped = await client.delete(
            "/items/1", headers={"Authorization": f"Bearer {issuer.issue(3)}"}
        )
    assert me.json() == {"sub": "3"}
    assert anonymous.status_code == 401
    assert scoped.status_code == 403
    assert 'scope="items:delete"' in scoped.headers["www-authenticate"]
    security = app.openapi()["paths"]["/items/{item_id}"]["delete"]["security"]
    assert security == [{"bearer": ["items:delete"]}]


async def test_litestar_sample_guards_by_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGI_AUTH_SECRET", SECRET)
    app = _run(_block("Litestar"))["app"]
    issuer = TokenIssuer(Key.from_secret(SECRET))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://readme") as client:
        admin = {"Authorization": f"Bearer {issuer.issue(1, claims={'roles': ['admin']})}"}
        plain = {"Authorization": f"Bearer {issuer.issue(2)}"}
        assert (await client.get("/admin", headers=admin)).status_code == 200
        assert (await client.get("/admin", headers=plain)).status_code == 403
        assert (await client.get("/admin")).status_code == 401


async def test_login_sample_serves_the_password_grant(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    from asgi_auth.authn import PasswordHasher
    from asgi_auth.store import Store, StoreAdmin

    monkeypatch.setenv("ASGI_AUTH_SECRET", SECRET)
    monkeypatch.setenv("ASGI_AUTH_DATABASE_URL", sqlite_url)
    namespace = _run(_block("Logging in: the token endpoint"))
    store: Store = namespace["store"]
    async with store:
        await store.init_schema()
        await StoreAdmin(store).create_user("ada", password_hash=await PasswordHasher().hash("pw"))
        transport = httpx.ASGITransport(app=namespace["app"])
        async with httpx.AsyncClient(transport=transport, base_url="http://readme") as client:
            form = {"grant_type": "password", "username": "ada", "password": "pw"}
            answer = await client.post("/token", data=form)
    assert answer.status_code == 200
    principal = JWTVerifier(Key.from_secret(SECRET)).verify_sync(answer.json()["access_token"])
    assert principal.subject == "1"


def test_identity_provider_sample_builds_a_router_for_local_and_auth0_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "signing-key.pem").write_bytes(Key.generate("ES256").private_pem())
    monkeypatch.chdir(tmp_path)
    sample = _run(_block("Tokens from an identity provider (OIDC)"))
    auth0_tokens = sample["auth0_tokens"]
    assert isinstance(auth0_tokens, asgi_auth.OIDCVerifier)
    assert auth0_tokens.issuer == "https://your-tenant.eu.auth0.com/"
    assert auth0_tokens.discovery_url == (
        "https://your-tenant.eu.auth0.com/.well-known/openid-configuration"
    )
    router = sample["both"].verifier
    assert isinstance(router, asgi_auth.IssuerRouter)
    assert set(router.routes) == {"https://auth.example.com", "https://your-tenant.eu.auth0.com/"}
    assert auth0_tokens.fetches == 0  # building a verifier fetches nothing


async def test_testing_your_app_sample_runs_its_own_tests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from asgi_auth.testing import IdentityProvider, PrincipalOverride, TokenMinter

    sample = _run(_block("Testing your app"))
    await sample["test_admin_needs_the_role"](IdentityProvider())
    await sample["test_admin_without_tokens"](TokenMinter(), PrincipalOverride(monkeypatch))


async def test_audit_trail_sample_writes_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from asgi_auth.authn.login import TokenEndpoint

    class Nobody:
        async def authenticate(self, username: str, password: str) -> None:
            return None

    logger = logging.getLogger("asgi_auth")
    before = (list(logger.handlers), logger.level, logger.propagate)
    try:
        _run(_block("Audit trail"))
        endpoint = TokenEndpoint(TokenIssuer(Key.from_secret(SECRET)), Nobody())
        transport = httpx.ASGITransport(app=endpoint, client=("203.0.113.7", 4711))
        async with httpx.AsyncClient(transport=transport, base_url="http://readme") as client:
            form = {"grant_type": "password", "username": "alice", "password": "wrong"}
            assert (await client.post("/token", data=form)).status_code == 400
    finally:
        for handler in logger.handlers:
            if handler not in before[0]:
                logger.removeHandler(handler)
        logger.setLevel(before[1])
        logger.propagate = before[2]
    line = capsys.readouterr().err.strip().splitlines()[-1]
    shown = _block("Audit trail", "text").strip()
    written, expected = json.loads(line), json.loads(shown.replace("6f0c…", "x"))
    assert list(written) == list(expected)
    for name in ("level", "logger", "message", "event", "client", "method", "path", "status"):
        assert written[name] == expected[name], name
