"""The login benchmark runs end to end on a tiny budget and reports every figure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import login
from tests.conftest import service_missing


def test_the_login_benchmark_reports_ratios_and_latencies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("wrk") is None:
        service_missing("wrk is not installed (Debian package wrk)")
    output = tmp_path / "login.json"
    assert login.main(["--rounds", "1", "--seconds", "2", "--json", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "logins vs raw argon2" in printed
    summary = json.loads(output.read_text())["summary"]
    assert summary["raw_argon2_per_sec"] > 0
    assert summary["logins_per_sec"] > 0
    assert summary["me_p99_ms_under_logins"] > 0
    assert summary["non_2xx"] == 0
