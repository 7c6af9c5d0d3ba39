"""benchmarks/e2e.py: every contender's app answers right; a tiny run reports every one.

The smoke run needs wrk: without it the test skips, unless
ASGI_AUTH_REQUIRE_SERVICES=1 makes that a failure. The apps are also checked
in-process, without a server.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from asgi_auth import JWTVerifier, Key, TokenIssuer
from benchmarks import e2e as bench
from benchmarks import e2e_apps
from benchmarks.verify import SUBJECT, tamper
from tests.conftest import service_missing
from tests.lifespan import lifespan

SECRET = "an HS256 secret of more than thirty-two bytes, for tests"
#: A row of the main table: contender, description, req/s, p50, p99, vs bare, vs
#: FastAPI bare, CPU µs, vs bare by CPU, CPU busy.
ROW = re.compile(
    r"^\| ([^|]+?) \| [^|]+ \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \| (—|[\d.]+x) "
    r"\| ([\d,.]+) \| ([\d.]+)x \| ([\d.]+) \|$"
)
RECORD_KEYS = {
    "group": str,
    "case": str,
    "contender": str,
    "unit": str,
    "value": float,
    "p50_ms": float,
    "p99_ms": float,
    "baseline": str,
    "ratio": float,
    "rounds": int,
}


async def _get(client: httpx.AsyncClient, token: str | None) -> tuple[int, Any]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    response = await client.get(e2e_apps.PATH, headers=headers)
    return response.status_code, response.json() if response.status_code == 200 else None


@pytest.mark.parametrize("name", sorted(e2e_apps.APPS))
async def test_every_app_admits_a_valid_token_and_refuses_a_bad_one(name: str) -> None:
    issuer = TokenIssuer(Key.from_secret(SECRET))
    valid = issuer.issue(SUBJECT)
    expired = TokenIssuer(Key.from_secret(SECRET), clock=lambda: time.time() - 7200).issue(SUBJECT)

    app = e2e_apps.APPS[name](SECRET)
    transport = httpx.ASGITransport(app)
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        if name in ("bare", "empty_middleware", "fastapi_bare"):
            assert await _get(client, valid) == (200, {"sub": e2e_apps.ANONYMOUS})
            assert await _get(client, None) == (200, {"sub": e2e_apps.ANONYMOUS})
            return
        assert await _get(client, valid) == (200, {"sub": SUBJECT})
        assert (await _get(client, None))[0] == 401
        assert (await _get(client, tamper(valid)))[0] == 401
        assert (await _get(client, expired))[0] == 401


def test_the_token_pool_holds_distinct_valid_tokens(tmp_path: Path) -> None:
    tokens = bench.make_tokens(tmp_path, 300)

    lines = tokens.pool.read_text(encoding="ascii").splitlines()
    assert len(lines) == len(set(lines)) == 300
    verifier = JWTVerifier(Key.from_secret(tokens.secret), algorithms=["HS256"])
    for n, token in enumerate(lines):
        assert verifier.verify_sync(token).subject == f"fresh-{n}"
        claims = jwt.decode(
            token, tokens.secret, algorithms=["HS256"], options={"require": ["exp"]}
        )
        assert claims["exp"] - claims["iat"] == bench.TOKEN_LIFETIME
    # The same header as TokenIssuer's tokens; claims in PyJWT's compact JSON.
    assert lines[0].split(".")[0] == tokens.valid.split(".")[0]
    assert [subject for _, subject in tokens.samples] == ["fresh-0", "fresh-150", "fresh-299"]
    assert tokens.warm == tuple(lines[-bench.WARMUP_REQUESTS :])
    assert len(tokens.warm) == bench.WARMUP_REQUESTS < 300


def test_the_fresh_wrk_command_runs_the_script_instead_of_a_header() -> None:
    url = "http://127.0.0.1:8000/me"
    repeated = bench.wrk_command(url, 5, "TOKEN")
    fresh = bench.wrk_command(url, 5, "TOKEN", pool=Path("/tmp/pool.txt"), start=7)

    assert repeated == [
        "wrk", "-t1", "-c32", "-d5s", "--latency", "-H", "Authorization: Bearer TOKEN", url
    ]  # fmt: skip
    assert fresh == [
        "wrk", "-t1", "-c32", "-d5s", "--latency", "-s", "benchmarks/fresh_tokens.lua",
        url, "/tmp/pool.txt", "7", "1",
    ]  # fmt: skip
    assert bench._shown(repeated).endswith("'Authorization: Bearer <token>' " + url)
    assert "TOKEN" not in bench._shown(repeated)


def test_the_scripts_report_is_parsed() -> None:
    text = (
        "Requests/sec:  100.0\n"
        "fresh_tokens: thread 0 sent 120 requests from token 0 of 500\n"
        "fresh_tokens: thread 1 sent 118 requests from token 250 of 500\n"
    )

    report = bench.parse_fresh(text)

    assert report == bench.FreshReport(sent=(120, 118), first=(0, 250), pool=500)
    assert bench.parse_fresh("Requests/sec:  100.0\n") is None


def test_the_server_command_is_the_house_one_with_the_factory() -> None:
    command = bench.server_command(8123)

    assert command[command.index("--factory") + 1] == "benchmarks.e2e_apps:from_environment"
    assert "benchmarks.authz_app:app" not in command
    for flag, value in (("--loop", "uvloop"), ("--http", "httptools"), ("--workers", "1")):
        assert command[command.index(flag) + 1] == value


def test_smoke_run_checks_every_contender_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("wrk") is None:
        service_missing("wrk is not installed (the end-to-end benchmark's load generator)")
    path = tmp_path / "results.json"

    assert bench.main(["--smoke", "--json", str(path)]) == 0

    out = capsys.readouterr().out
    document = json.loads(path.read_text(encoding="utf-8"))
    timed = set(bench.PRESETS["smoke"].timed or ())
    every = {c.name for c in bench.CONTENDERS}
    assert {bench.BASELINE, "asgi_auth fresh"} <= timed < every

    # Every contender was served and answered every probe as it should.
    checks = document["checks"]
    assert set(checks) == every
    assert document["excluded"] == []
    assert document["problems"] == []
    for name, checked in checks.items():
        assert checked["passed"], (name, checked)
        assert checked["timed"] == (name in timed)
        assert checked["answers"]["valid token"] == 200
    assert checks["Litestar JWTAuth"]["answers"]["no token"] == 401
    assert checks["FastAPI HTTPBearer + PyJWT"]["answers"]["no token"] in (401, 403)
    assert checks["asgi_auth fresh"]["answers"]["pool token 3"] == 200
    assert checks["asgi_auth repeated"]["answers"]["unexpected aud"] == 401

    # The JSON: the schema's fields, one record per timed contender.
    assert document["benchmark"] == "e2e"
    env = document["environment"]
    assert env["cpu_count"] >= 1
    assert env["wrk"].startswith("wrk")
    assert env["packages"]["uvicorn"] == metadata.version("uvicorn")
    assert env["load_generator"].startswith("wrk -t1 -c32 -d1s --latency -H ")
    assert "Bearer <token>" in env["load_generator"]
    assert "-s benchmarks/fresh_tokens.lua" in env["load_generator_fresh"]
    assert "--factory benchmarks.e2e_apps:from_environment" in env["server"]
    records = {r["contender"]: r for r in document["records"]}
    assert set(records) == timed
    for record in records.values():
        for key, kind in RECORD_KEYS.items():
            assert isinstance(record[key], kind), (record["contender"], key)
        assert (record["group"], record["case"], record["unit"]) == ("e2e", "GET /me", "req/s")
        assert record["baseline"] == bench.BASELINE
        assert min(record["value"], record["p50_ms"], record["p99_ms"], record["ratio"]) > 0
        assert record["cpu_us_per_request"] > 0
        assert (record["non_2xx"], record["socket_errors"], record["rounds"]) == (0, 0, 1)
    assert records[bench.BASELINE]["ratio"] == 1.0
    assert [t["name"] for t in document["targets"]] == [t.name for t in bench.TARGETS]
    for target in document["targets"]:
        assert set(target) >= {"name", "ratio", "target", "met"}
        assert target["ratio"] > 0
        assert target["met"] == (target["ratio"] >= target["target"])

    # The Markdown: versions, the exact commands, one row per timed contender, verdicts.
    assert f"uvicorn {metadata.version('uvicorn')}" in out
    assert f"litestar {metadata.version('litestar')}" in out
    assert "\n- wrk " in out
    assert " CPUs" in out
    assert "`wrk -t1 -c32 -d1s --latency -H 'Authorization: Bearer <token>'" in out
    rows = {m[1]: m.groups()[1:] for line in out.splitlines() if (m := ROW.match(line))}
    assert set(rows) == timed
    assert rows[bench.BASELINE][3] == "1.00"
    verdicts = re.findall(r"^- `.+` ≥ [\d.]+x `.+` \(req/s\): (met|\*\*not met\*\*) ", out, re.M)
    assert len(verdicts) == len(bench.TARGETS)
    assert "### Left out" not in out
    assert "### Problems" not in out
