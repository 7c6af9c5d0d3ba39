"""benchmarks/soak.py: a short soak of the demo has no errors and sends every kind of request;
wrong answers are counted; memory growth fails the verdict.

The runs need wrk: without it they skip, unless ASGI_AUTH_REQUIRE_SERVICES=1 makes that a
failure.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import soak
from tests.conftest import service_missing


def _need_wrk() -> None:
    if shutil.which("wrk") is None:
        service_missing("wrk is not installed")


def test_a_short_soak_has_no_errors_and_sends_every_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _need_wrk()
    path = tmp_path / "soak.json"
    argv = ["--duration", "5", "--connections", "16", "--ws-clients", "2", "--json", str(path)]
    status = soak.main(argv)
    report = capsys.readouterr().out
    doc = json.loads(path.read_text(encoding="utf-8"))

    assert doc["errors"]["total"] == 0, report
    for name, kind in doc["kinds"].items():
        assert kind["count"] >= 1, f"{name} was never sent:\n{report}"
        # Every answer was the expected one: 200s, 403s, 401s and 400s alike.
        assert kind["statuses"] == {str(kind["expected"]): kind["count"]}, name
    assert set(doc["kinds"]) == set(soak.KINDS)
    # The Lua script saw every answer wrk counted.
    assert doc["requests"]["checked"] == doc["requests"]["total"] > 0
    ws = doc["websocket"]
    assert ws["accepted"] >= 1
    assert ws["refused"] >= 1
    assert ws["failures"] == 0
    assert doc["server"]["alive_at_end"]
    assert doc["server"]["uvloop_loaded"]
    assert doc["server"]["httptools_loaded"]
    memory = doc["memory"]
    assert len(memory["windows"]) == soak.WINDOWS
    assert all(w["samples"] >= 1 for w in memory["windows"])
    assert memory["after_warmup_mib"] > 0
    assert memory["growth_mib"] is not None
    # Five seconds are too short to judge memory: only that may fail the verdict here.
    assert status == doc["verdict"]["exit_status"]
    assert all(r.startswith("memory grew") for r in doc["verdict"]["reasons"]), report
    assert "## Soak: the demo API under mixed load for 5 s" in report
    assert ("**PASS**" in report) == doc["verdict"]["passed"]
    for p in ("p50", "p90", "p99", "max"):
        assert doc["latency_ms"][p] > 0


def test_wrong_answers_are_counted_per_kind_and_fail_the_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _need_wrk()
    # The mix now expects what the demo rightly refuses to give.
    forbidden, invalid = soak.KINDS["admin_forbidden"], soak.KINDS["invalid"]
    monkeypatch.setitem(soak.KINDS, "admin_forbidden", soak.Kind(200, "wrong", forbidden.weight))
    monkeypatch.setitem(soak.KINDS, "invalid", soak.Kind(200, "wrong", invalid.weight))
    settings = soak.Settings(duration=2, connections=4, ws_clients=1)
    with pytest.raises(soak.SoakError, match="checks before the load failed"):
        soak.run(settings, quiet=True)

    doc = soak.run(settings, check=False, quiet=True)
    kinds = doc["kinds"]
    for name in ("admin_forbidden", "invalid"):
        assert kinds[name]["count"] > 0
        assert kinds[name]["unexpected"] == kinds[name]["count"]
    assert kinds["admin_forbidden"]["statuses"] == {"403": kinds["admin_forbidden"]["count"]}
    assert kinds["invalid"]["statuses"] == {"401": kinds["invalid"]["count"]}
    assert kinds["me"]["count"] > 0
    assert kinds["me"]["unexpected"] == 0
    assert doc["errors"]["unexpected_answers"] == sum(k["unexpected"] for k in kinds.values())
    assert doc["errors"]["total"] >= kinds["admin_forbidden"]["count"] + kinds["invalid"]["count"]
    examples = doc["unexpected_examples"]
    assert {"admin_forbidden", "invalid"} & {e["kind"] for e in examples}
    for example in examples:
        if example["kind"] in ("admin_forbidden", "invalid"):
            assert example["expected"] == 200
            assert example["status"] in (401, 403)
    assert not doc["verdict"]["passed"]
    assert doc["verdict"]["exit_status"] == 1
    assert "**FAIL**" in soak.render(doc)


def _samples(rss_mib: list[float], seconds: float) -> list[soak.Sample]:
    step = seconds / len(rss_mib)
    return [soak.Sample(i * step, int(mib * 1024), 20) for i, mib in enumerate(rss_mib)]


def test_memory_growth_after_the_warm_up_fails_and_login_spikes_do_not() -> None:
    flat = [80.0] * 100
    # A login's 64 MiB argon2 buffer now and then: floors ignore it.
    spiky = [144.0 if i % 7 == 3 else 80.0 for i in range(100)]
    # The warm-up may grow as it likes; only what follows counts.
    warming = [40.0 + i for i in range(10)] + [80.0] * 90
    for readings in (flat, spiky, warming):
        report = soak.memory_report(_samples(readings, 100), 100)
        assert report["ok"], report
        assert report["growth_mib"] == 0
        assert report["limit_mib"] == soak.GROWTH_LIMIT_MIB

    leaking = [80.0 + 0.3 * i for i in range(100)]  # +24 MiB after the warm-up
    report = soak.memory_report(_samples(leaking, 100), 100)
    assert not report["ok"]
    assert report["growth_mib"] > soak.GROWTH_LIMIT_MIB
    assert report["slope_mib_per_hour"] > 0

    big = [500.0] * 50 + [540.0] * 50  # +40 MiB on 500: within 10%
    assert soak.memory_report(_samples(big, 100), 100)["ok"]

    assert not soak.memory_report([], 100)["ok"]


def test_lua_literals_escape_what_lua_would_misread() -> None:
    assert soak._lua('a"b\\c\n') == '"a\\"b\\\\c\\010"'
    assert soak._lua("é") == '"\\195\\169"'
    assert soak._lua({"k": [1, "x"], "skipped": None}) == '{["k"] = {1, "x"}}'
    assert soak._lua(True) == "true"
