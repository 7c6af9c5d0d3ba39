"""benchmarks/suite.py (``python -m benchmarks``): the harness does not rot.

Two kinds of run. Canned: every module's ``run`` is replaced by one returning results
built with the module's own data classes, so its real document code (``records``,
``main``'s JSON) feeds the suite's adapters, tables, targets, JSON and chart. Real: the
verification and OIDC benchmarks' smoke settings, in this process, in about a second.
No assertion depends on how fast anything ran.
"""

from __future__ import annotations

import io
import json
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from benchmarks import authz, e2e, login, oidc, suite, verify
from benchmarks.authz import WrkResult

#: Every record carries exactly these keys.
RECORD_KEYS = {
    "group",
    "case",
    "contender",
    "unit",
    "value",
    "p50_ms",
    "p99_ms",
    "cpu_us_per_request",
    "baseline",
    "ratio",
    "rounds",
}
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"


def wrk(rps: float, p50: float = 1.0, p99: float = 3.0) -> WrkResult:
    return WrkResult(rps=rps, p50_ms=p50, p99_ms=p99, requests=int(rps), non_2xx=0, socket_errors=0)


def _noop(token: str) -> object:
    return token


async def _anoop(token: str) -> object:
    return token


def canned_verify(calls: dict[str, Any]) -> Callable[..., verify.Report]:
    def run(
        algorithms: Sequence[str], *, rounds: int, target: float, contenders: Any, **_: Any
    ) -> verify.Report:
        calls["verify"] = (tuple(algorithms), rounds, target, tuple(contenders))
        print(f"\r{'[4/6] HS256 PyJWT jwt.decode':<72}", end="", file=sys.stderr, flush=True)
        ops = {
            ("HS256", "asgi_auth (uncached)"): 50_000.0,  # 5x: met
            ("HS256", "asgi_auth (cached)"): 2_000_000.0,  # 200x: met
            ("HS256", verify.BASELINE): 10_000.0,
            ("RS256", "asgi_auth (uncached)"): 20_000.0,  # 2x: missed (2.5x)
            ("RS256", "asgi_auth (cached)"): 900_000.0,  # 90x: missed (100x)
            ("RS256", verify.BASELINE): 10_000.0,
            ("HS256", verify.FLOOR): 60_000.0,  # 1.2x ours: met (1.5x)
            ("RS256", verify.FLOOR): 40_000.0,  # 2x ours: missed
        }
        entries = [
            verify.Entry(alg, name, _noop, "token", calls=100, samples=[value] * rounds)
            for (alg, name), value in ops.items()
            if alg in algorithms and name in contenders
        ]
        return verify.Report(entries, [], rounds, target)

    return run


def canned_oidc(calls: dict[str, Any]) -> Callable[..., Any]:
    async def run(
        algorithms: Sequence[str], **settings: Any
    ) -> tuple[oidc.SteadyReport, list[oidc.Flood], str]:
        calls["oidc"] = (tuple(algorithms), settings)
        rounds = settings["rounds"]
        entries = []
        for cached, local, remote in ((False, 10_000.0, 9_800.0), (True, 1e6, 0.9e6)):
            for name, ops in ((oidc.LOCAL, local), (oidc.REMOTE, remote)):
                entries.append(
                    oidc.Entry(
                        "RS256",
                        cached,
                        name,
                        "token",
                        verify=_anoop,
                        calls=100,
                        samples=[ops] * rounds,
                        cpu_samples=[ops] * rounds,
                    )
                )
        report = oidc.SteadyReport(entries, [], rounds, 0.1, {"RS256 uncached": 1})
        floods = [
            oidc.Flood(
                clock=clock,
                tokens=settings["flood_count"],
                concurrency=settings["concurrency"],
                refresh_cooldown=30.0,
                span_seconds=span,
                elapsed_seconds=0.2,
                fetches_before=1,
                fetches=fetches,
                failures=0,
                jwks_requests=fetches,
                discovery_requests=fetches,
                outcomes={"UnknownKey": settings["flood_count"]},
                valid_after=True,
            )
            for clock, span, fetches in (("simulated", 150.0, 5), ("real", 0.2, 1))
        ]
        return report, floods, "asyncio.unix_events._UnixSelectorEventLoop"

    return run


def canned_authz(calls: dict[str, Any]) -> Callable[[authz.Settings], authz.Report]:
    def run(settings: authz.Settings, *, seed: int | None = None) -> authz.Report:
        calls["authz"] = settings

        def runs(rps: float, queries_per_request: int) -> list[authz.Run]:
            return [
                authz.Run(
                    wrk(rps),
                    int(rps),
                    int(rps) * queries_per_request,
                    int(rps) * queries_per_request,
                    {"200": int(rps)},
                    1.0,
                )
                for _ in range(settings.rounds)
            ]

        command = [
            "wrk",
            "-t1",
            "-c32",
            "-d1s",
            "--latency",
            "-H",
            f"Authorization: Bearer {TOKEN}",
        ]
        end_to_end = authz.EndToEnd(
            [
                authz.RouteResult("/open", runs(20_000, 0)),
                authz.RouteResult("/cached", runs(18_000, 0)),  # 0.9x: met
                authz.RouteResult("/db", runs(1_000, 1)),
            ],
            [sys.executable, "-m", "uvicorn", "benchmarks.authz_app:app"],
            {route: [*command, f"http://127.0.0.1:1/{route}"] for route in ("/open", "/db")},
            [],
        )
        small, large = settings.users
        lookups = [
            authz.LookupResult(small, [800_000] * 10, [800_000.0] * settings.rounds),
            authz.LookupResult(large, [1_000_000] * 10, [1e6] * settings.rounds),  # 1.25x
        ]
        return authz.Report(
            settings, "SQLite (canned)", end_to_end, lookups, ((0.1,), (0.2,)), 12.0
        )

    return run


def canned_login(calls: dict[str, Any]) -> Callable[[int, int], Any]:
    def run(rounds: int, seconds: int) -> tuple[list[login.Round], dict[str, str]]:
        calls["login"] = (rounds, seconds)
        print(f"[1/{rounds}] raw argon2, logins, /me", file=sys.stderr)
        results = [
            login.Round(10.0, wrk(9.5, 400.0, 900.0), wrk(5_000.0, 0.4, 2.0), wrk(3_000, 0.6, 12.0))
            for _ in range(rounds)
        ]
        commands = {
            "logins": "wrk -t1 -c8 -d1s --latency -s login.lua http://127.0.0.1:0/token",
            "me": f"wrk -t1 -c2 -d1s --latency -H Authorization: Bearer {TOKEN} "
            "http://127.0.0.1:0/me",
        }
        return results, commands

    return run


def canned_e2e(calls: dict[str, Any]) -> Callable[..., e2e.Measurement]:
    def measure_all(
        settings: e2e.Settings,
        progress: Callable[[str], None],
        *,
        contenders: Sequence[e2e.Contender] = e2e.CONTENDERS,
        seed: int | None = None,
    ) -> e2e.Measurement:
        calls["e2e"] = (settings, [c.name for c in contenders])
        progress(f"[1/{settings.rounds * len(contenders)}] bare")
        rps = {
            "bare": 10_000.0,
            "asgi_auth repeated": 9_500.0,  # 0.95x bare: met
            "asgi_auth fresh": 6_000.0,  # 0.6x bare: missed
            "asgi_auth guard on FastAPI": 7_000.0,  # 2.33x HTTPBearer: met
            "FastAPI HTTPBearer + PyJWT": 3_000.0,
        }
        results = []
        for contender in contenders:
            value = rps[contender.name]
            fresh = contender.tokens == "fresh"
            runs = [
                e2e.Run(
                    n,
                    wrk(value, 1.5, 4.0),
                    value * 80e-6,  # 80 µs of server CPU per request
                    1,
                    e2e.FreshReport((int(value),), (0,), settings.pool) if fresh else None,
                )
                for n in range(settings.rounds)
            ]
            results.append(e2e.Result(contender, runs, {"valid token": 200}))
        header = ["-H", f"Authorization: Bearer {TOKEN}"]
        commands = {
            "server": [sys.executable, "-m", "uvicorn", e2e.APP, "--factory"],
            "repeated": ["wrk", "-t1", "-c32", "-d1s", *header, "http://127.0.0.1:1/me"],
            "fresh": ["wrk", "-t1", "-c32", "-d1s", "-s", "fresh_tokens.lua", "URL"],
        }
        return e2e.Measurement(
            settings, results, commands, [], ((0.1,), (0.2,)), 20.0, settings.pool
        )

    return measure_all


def e2e_interface_only(calls: dict[str, Any]) -> types.ModuleType:
    """A stand-in for benchmarks.e2e with only its documented interface, ``run``."""

    def run(
        quick: bool, rounds: int | None = None, progress: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        calls["e2e"] = (quick, rounds)
        if progress is not None:
            progress("[2/2] bare")
        values = {
            "bare": 10_000.0,
            "asgi_auth (repeated token)": 9_500.0,
            "asgi_auth (fresh tokens)": 6_000.0,
            "FastAPI HTTPBearer + PyJWT": 3_000.0,
            "asgi_auth guard on FastAPI": 7_000.0,
        }
        records = [
            {
                "group": "e2e",
                "case": "GET /me",
                "contender": name,
                "unit": "req/s",
                "value": value,
                "p50_ms": 1.5,
                "p99_ms": 4.0,
                "cpu_us_per_request": 80.0,
                "baseline": "bare",
                "ratio": value / 10_000,
                "rounds": 1,
            }
            for name, value in values.items()
        ]
        targets = [
            {"name": "repeated token vs bare", "ratio": 0.95, "target": 0.9, "met": True},
            {"name": "fresh tokens vs bare", "ratio": 0.6, "target": 0.7, "met": False},
            {"name": "FastAPI guard vs HTTPBearer + PyJWT", "ratio": 2.33, "target": 2.0,
             "met": True},
        ]  # fmt: skip
        environment = {
            "python": "3.11",
            "load_generator": f"wrk -t1 -c32 -d2s -H 'Authorization: Bearer {TOKEN}' URL",
        }
        return {"benchmark": "e2e", "environment": environment, "records": records,
                "targets": targets}  # fmt: skip

    module = types.ModuleType("benchmarks.e2e")
    module.run = run  # type: ignore[attr-defined]
    return module


@pytest.fixture
def canned(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Every module's runner replaced by a canned one; what each was asked to run."""
    calls: dict[str, Any] = {}
    monkeypatch.setattr(verify, "run", canned_verify(calls))
    monkeypatch.setattr(oidc, "run", canned_oidc(calls))
    monkeypatch.setattr(authz, "run", canned_authz(calls))
    monkeypatch.setattr(login, "run", canned_login(calls))
    monkeypatch.setattr(e2e, "measure_all", canned_e2e(calls))
    monkeypatch.setattr(suite, "missing_tools", lambda benchmark: [])
    return calls


def run_canned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str, Any]:
    path = tmp_path / "suite.json"
    assert suite.main(["--quick", "--json", str(path)]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err, json.loads(path.read_text(encoding="utf-8"))


def test_canned_run_normalises_every_module_into_tables_targets_and_json(
    tmp_path: Path, canned: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    out, err, document = run_canned(tmp_path, capsys)

    # Each module was asked for the quick run --help describes.
    assert canned["verify"] == (("HS256", "RS256"), 5, 0.1, suite.VERIFY_QUICK_CONTENDERS)
    algorithms, settings = canned["oidc"]
    assert algorithms == ("RS256",)
    assert settings["rounds"] == 3
    assert settings["flood_count"] == 2_000
    assert canned["authz"].users == (1_000, 100_000)
    assert (canned["authz"].rounds, canned["authz"].duration) == (2, 1)
    assert canned["login"] == (1, 2)
    settings, timed = canned["e2e"]
    assert settings == replace(
        e2e.PRESETS["quick"], rounds=suite.E2E_QUICK_ROUNDS, timed=settings.timed
    )
    assert (
        set(settings.timed)
        == set(timed)
        == {
            "bare",
            "asgi_auth repeated",
            "asgi_auth fresh",
            "asgi_auth guard on FastAPI",
            "FastAPI HTTPBearer + PyJWT",
        }
    )

    # The progress bar saw the modules' own messages (not a terminal: one line per step).
    assert "verify: starting" in err
    assert "verify: [4/6] HS256 PyJWT jwt.decode" in err  # from the module's stderr
    assert "e2e: done in" in err
    assert "\r" not in err

    # Tables, one per group, in the suite's order.
    headings = [line for line in out.splitlines() if line.startswith("## ")]
    assert [h.split(":")[0] for h in headings] == [
        "## verify",
        "## e2e",
        "## authz",
        "## authz lookup",
        "## login",
        "## oidc",
        "## oidc flood",
        "## Targets",
    ]
    assert "| HS256 | asgi_auth (uncached) | 50,000 ops/s | 5.00x | PyJWT jwt.decode | 5 |" in out
    assert (
        "| GET /me | asgi_auth fresh | 6,000 req/s | 1.50 | 4.00 | 80.0 | 0.60x | bare | 1 |" in out
    )
    assert "| 100,000 users | 1,000 µs/lookup | 1.00 | 1.00 | 1.25x | 1,000 users |" in out
    # Targets: each module's, with the verdict it implies.
    rows = {
        line.split(" | ")[0][2:]: line.split(" | ")[1:]
        for line in out.split("## Targets")[1].splitlines()
        if line.startswith("| ") and not line.startswith("| Target")
    }
    assert rows["HS256: asgi_auth uncached vs jwt.decode"] == ["≥ 4.00x", "5.00x", "yes |"]
    assert rows["RS256: asgi_auth uncached vs jwt.decode"] == ["≥ 2.50x", "2.00x", "**no** |"]
    assert rows["RS256: asgi_auth cached vs jwt.decode"][1:] == ["90.0x", "**no** |"]
    distance = "asgi_auth uncached, distance to the pure-Python floor (floor ops/s over ours)"
    assert rows[f"HS256: {distance}"] == ["≤ 1.50x", "1.20x", "yes |"]
    assert rows[f"RS256: {distance}"] == ["≤ 1.50x", "2.00x", "**no** |"]
    assert rows["asgi_auth fresh >= 0.7x bare"] == [
        "≥ 0.70x",
        "0.60x (by server CPU time: 1.00x, met)",
        "**no** |",
    ]
    guard_vs_bearer = rows["asgi_auth guard on FastAPI >= 2x FastAPI HTTPBearer + PyJWT"]
    assert (guard_vs_bearer[1].split()[0], guard_vs_bearer[2]) == ("2.33x", "yes |")
    assert rows["/cached (guard, rights cached) vs /open (no guard)"][1:] == ["0.90x", "yes |"]
    assert rows["role lookup, 100,000 vs 1,000 users (median)"][2] == "yes |"
    assert "1,000,000 users" in rows["role lookup, 100,000 vs 1,000 users (median)"][1]
    assert rows["logins through POST /token vs raw argon2 verifications"][1:] == [
        "0.95x",
        "yes |",
    ]
    assert rows["GET /me p99 while logins saturate the token endpoint"] == [
        "< 10.00 ms",
        "12.00 ms",
        "**no** |",
    ]
    assert rows["RS256 uncached: remote-key OIDCVerifier vs local JWTVerifier"][2] == "yes |"
    assert rows["RS256 cached: remote-key OIDCVerifier vs local JWTVerifier"][2] == "**no** |"
    assert rows["random-kid flood (simulated clock): fetches per cooldown window, every "
                "token refused"][2] == "yes |"  # fmt: skip

    # The JSON document: one shape for every record.
    assert document["mode"] == "quick"
    env = document["environment"]
    assert env["cpu_count"] >= 1
    assert env["implementation"]
    assert env["packages"]["PyJWT"]
    assert set(env["load_generator"]) == {"e2e", "authz", "login"}
    commands = [c for group in env["load_generator"].values() for c in group]
    assert all(TOKEN not in c for c in commands)
    assert any("Bearer $TOKEN" in c for c in commands)
    assert set(document["modules"]) == {"verify", "e2e", "authz", "login", "oidc"}
    assert all(m["error"] is None for m in document["modules"].values())
    records = document["records"]
    assert all(set(r) == RECORD_KEYS for r in records)
    by = {(r["group"], r["case"], r["contender"]): r for r in records}
    assert len(by) == len(records) == 8 + 5 + 3 + 2 + 4 + 4 + 2
    uncached = by["verify", "HS256", "asgi_auth (uncached)"]
    assert (uncached["ratio"], uncached["rounds"], uncached["unit"]) == (5.0, 5, "ops/s")
    assert uncached["p50_ms"] is None
    cached_route = next(r for r in records if r["contender"].startswith("/cached"))
    assert cached_route["baseline"].startswith("/open")
    assert (cached_route["ratio"], cached_route["p99_ms"]) == (0.9, 3.0)
    assert cached_route["cpu_us_per_request"] > 0
    endpoint = by["login", "POST /token", "asgi_auth TokenEndpoint"]
    assert endpoint["ratio"] == pytest.approx(0.95)
    assert endpoint["baseline"] == "argon2-cffi verify, raw (same threads)"
    loaded = by["login", "GET /me", "while logins saturate /token"]
    assert (loaded["p99_ms"], loaded["ratio"]) == (12.0, pytest.approx(0.6))
    remote = by["oidc", "RS256 uncached", oidc.REMOTE]
    assert (remote["ratio"], remote["baseline"]) == (0.98, oidc.LOCAL)
    assert by["oidc flood", "2,000 unknown kids, simulated clock", "OIDCVerifier"]["value"] == 1
    targets = document["targets"]
    assert {t["group"] for t in targets} == {
        "verify",
        "e2e",
        "authz",
        "authz lookup",
        "login",
        "oidc",
        "oidc flood",
    }
    floors = [t for t in targets if "floor" in t["name"]]
    assert [(t["measured"], t["met"], t["contender"]) for t in floors] == [
        (1.2, True, None),
        (2.0, False, None),
    ]
    # Missed: RS256 uncached, cached and floor, fresh tokens, /me p99, oidc cached.
    assert sum(t["met"] is False for t in targets) == 6
    # A target is marked on a bar only when it judges that bar's ratio (same baseline).
    e2e_targets = {t["name"]: t for t in targets if t["group"] == "e2e"}
    assert e2e_targets["asgi_auth fresh >= 0.7x bare"]["contender"] == "asgi_auth fresh"
    guard = e2e_targets["asgi_auth guard on FastAPI >= 2x FastAPI HTTPBearer + PyJWT"]
    assert guard["contender"] is None


def test_e2e_through_its_documented_interface_only(
    tmp_path: Path,
    canned: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``run(quick, rounds, progress)`` is enough (every contender, one round)."""
    monkeypatch.setitem(sys.modules, "benchmarks.e2e", e2e_interface_only(canned))
    path = tmp_path / "suite.json"

    assert suite.main(["--quick", "--only", "e2e", "--json", str(path)]) == 0

    assert canned["e2e"] == (True, 1)
    assert "e2e: [2/2] bare" in capsys.readouterr().err  # from its progress callback
    document = json.loads(path.read_text(encoding="utf-8"))
    assert len(document["records"]) == 5
    assert all(set(r) == RECORD_KEYS for r in document["records"])
    assert [t["met"] for t in document["targets"]] == [True, False, True]
    assert document["environment"]["load_generator"]["e2e"] == [
        "wrk -t1 -c32 -d2s -H 'Authorization: Bearer $TOKEN' URL"
    ]


def test_a_failing_module_is_reported_and_the_others_still_run(
    tmp_path: Path,
    canned: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> verify.Report:
        raise RuntimeError("the verifier exploded")

    monkeypatch.setattr(verify, "run", broken)
    path = tmp_path / "suite.json"

    assert suite.main(["--quick", "--only", "login,verify", "--json", str(path)]) == 1

    out = capsys.readouterr().out
    assert "| verify: every target | — | not measured: RuntimeError: the verifier exploded" in out
    assert "## login" in out
    document = json.loads(path.read_text(encoding="utf-8"))
    assert list(document["modules"]) == ["verify", "login"]  # the suite's order
    assert document["modules"]["verify"]["error"] == "RuntimeError: the verifier exploded"
    assert {r["group"] for r in document["records"]} == {"login"}


def test_canned_run_draws_the_chart(
    tmp_path: Path, canned: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (the bench extra)")
    chart = tmp_path / "suite.png"

    assert suite.main(["--quick", "--plot", str(chart)]) == 0

    data = chart.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000


def test_real_smoke_run_of_the_in_process_benchmarks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "suite.json"

    assert suite.main(["--smoke", "--only", "verify,oidc", "--json", str(path)]) == 0

    out = capsys.readouterr().out
    assert "## verify" in out
    assert "## oidc flood" in out
    document = json.loads(path.read_text(encoding="utf-8"))
    records = document["records"]
    assert all(set(r) == RECORD_KEYS for r in records)
    checked = [r for r in records if r["group"] == "verify"]
    assert {r["contender"] for r in checked} == set(suite.VERIFY_QUICK_CONTENDERS)
    assert {r["case"] for r in checked} == {"HS256"}
    for r in checked:
        assert r["value"] > 0
        assert r["ratio"] > 0
        assert r["rounds"] == 1
    baseline = next(r for r in checked if r["contender"] == verify.BASELINE)
    assert baseline["ratio"] == 1.0
    assert {r["case"] for r in records if r["group"] == "oidc"} == {
        "ES256 uncached",
        "ES256 cached",
    }
    targets = {t["name"]: t for t in document["targets"]}
    for name in (
        "HS256: asgi_auth uncached vs jwt.decode",
        "HS256: asgi_auth cached vs jwt.decode",
    ):
        assert targets[name]["measured"] > 0
        assert isinstance(targets[name]["met"], bool)
    floor = targets[
        "HS256: asgi_auth uncached, distance to the pure-Python floor (floor ops/s over ours)"
    ]
    assert floor["measured"] > 0
    assert isinstance(floor["met"], bool)
    assert suite.FLOOR == verify.FLOOR
    floods = [t for t in document["targets"] if t["group"] == "oidc flood"]
    assert len(floods) == 2
    assert all(t["met"] is True for t in floods)


def test_without_a_floor_contender_the_floor_target_is_not_measured() -> None:
    def row(contender: str, ops: float) -> dict[str, Any]:
        return {"algorithm": "HS256", "contender": contender, "ops_per_sec": ops,
                "ratio": ops / 10_000, "rounds": 1}  # fmt: skip

    document = {
        "environment": {"packages": {}},
        "results": [row(verify.BASELINE, 10_000.0), row("asgi_auth (uncached)", 40_000.0)],
    }

    targets = suite.adapt_verify(document).targets

    floor = next(t for t in targets if "floor" in t["name"])
    assert (floor["measured"], floor["met"]) == (None, None)
    assert floor["note"].startswith("not measured")
    assert [t["met"] for t in targets if t is not floor] == [True, None]  # cached: absent


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_redraws_on_a_terminal_and_prints_steps_otherwise() -> None:
    log = io.StringIO()
    bar = suite.ProgressBar(log, ["verify", "authz"], [1.0, 3.0], width=8, quiet=3600)
    stream = suite.ProgressStream(bar.update)
    bar.start(0)
    stream.write("\rchecking HS256")  # no fraction, and the bar has not moved: no line
    stream.write("\r[3/4] HS256 round 2\r[4/4] HS256")
    bar.done("done in 1.0 s")
    bar.start(1)
    bar.done("done in 3.0 s")
    lines = log.getvalue().splitlines()
    assert lines[0] == "[........] 1/2    0s verify: starting"
    assert lines[1].startswith("[#.......] 1/2")
    assert lines[1].endswith("verify: [3/4] HS256 round 2")
    assert "checking HS256" not in log.getvalue()
    assert lines[-1].startswith("[########] 2/2")
    assert lines[-1].endswith("authz: done in 3.0 s")

    screen = Terminal()
    bar = suite.ProgressBar(screen, ["verify"], [1.0], width=4)
    bar.start(0)
    bar.update("a long message about checking")
    bar.update("[2/2] short")
    bar.done("done")
    drawn = screen.getvalue()
    assert drawn.count("\r") == 4
    assert drawn.endswith("\n")
    assert drawn.rstrip().endswith("verify: done")
    # A shorter line blanks out what is left of the longer one before it.
    longer, shorter = drawn.split("\r")[2:4]
    assert len(shorter) >= len(longer.rstrip())


@pytest.mark.parametrize(
    "argv", [["--only", "verify,nope"], ["--rounds", "0"], ["--quick", "--smoke"]]
)
def test_bad_arguments_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        suite.main(argv)
    assert exc.value.code == 2


def test_help_says_what_quick_runs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        suite.main(["--help"])
    out = capsys.readouterr().out
    for benchmark in suite.BENCHMARKS.values():
        assert f"--quick: {benchmark.quick}" in " ".join(out.split())
