"""benchmarks/authz.py: a tiny run serves every route, counts its queries, and reports.

The smoke run needs wrk: without it the test skips, unless
ASGI_AUTH_REQUIRE_SERVICES=1 makes that a failure.
"""

from __future__ import annotations

import json
import re
import shutil
from importlib import metadata
from pathlib import Path

import pytest

from benchmarks import authz as bench
from tests.conftest import service_missing

#: A row of table (a): route, description, req/s, p50, p99, ratio, server CPU µs,
#: queries, loader calls.
ROUTE_ROW = re.compile(
    r"^\| `(/\w+)` \| [^|]+ \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x "
    r"\| ([\d.,]+) \| ([\d.]+) \| ([\d.]+) \|$"
)
#: A row of table (b): users, lookups, median µs, p99 µs, ratios.
LOOKUP_ROW = re.compile(
    r"^\| ([\d,]+) \| ([\d,]+) \| ([\d,.]+) \| ([\d,.]+) \| ([\d.]+)x \| ([\d.]+)x \|$"
)

WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:8000/open
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.30ms  512.19us   8.40ms   85.11%
    Req/Sec    14.01k   612.54    14.64k    90.00%
  Latency Distribution
     50%  850.00us
     75%    2.46ms
     90%    2.79ms
     99%    1.02s
  13940 requests in 1.00s, 1.81MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  13869.10
Transfer/sec:      1.80MB
"""


def test_parse_wrk_reads_throughput_latency_and_errors() -> None:
    result = bench.parse_wrk(WRK_OUTPUT)

    assert result.rps == pytest.approx(13869.10)
    assert result.p50_ms == pytest.approx(0.85)
    assert result.p99_ms == pytest.approx(1020.0)
    assert result.requests == 13940
    assert result.non_2xx == 7
    assert result.socket_errors == 3
    with pytest.raises(ValueError, match="requests/sec"):
        bench.parse_wrk("wrk: connection refused")


def test_filled_sqlite_store_holds_each_users_role_and_claims(tmp_path: Path) -> None:
    import sqlite3

    bench.fill_sqlite(tmp_path / "users.db", 10)

    count = "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM user_claims)"
    with sqlite3.connect(tmp_path / "users.db") as connection:
        counts = list(connection.execute(count).fetchone())
    assert counts == [10, 20]
    assert bench.expected_rights(1) == (
        frozenset({"admin"}),
        frozenset({"can_write", "can_delete"}),
    )
    assert bench.expected_rights(2)[0] == frozenset({"user"})


def test_smoke_run_reports_every_route_and_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("wrk") is None:
        service_missing("wrk is not installed (the end-to-end benchmark's load generator)")
    path = tmp_path / "results.json"

    assert bench.main(["--smoke", "--json", str(path)]) == 0

    out = capsys.readouterr().out
    assert f"uvicorn {metadata.version('uvicorn')}" in out
    assert "\n- wrk " in out
    assert "CPUs" in out
    assert "wrk -t1 -c32 -d1s --latency" in out
    routes = {m[1]: m.groups()[1:] for line in out.splitlines() if (m := ROUTE_ROW.match(line))}
    assert set(routes) == {"/open", "/cached", "/db"}
    for rps, p50, p99, ratio, cpu, _queries, _loads in routes.values():
        assert int(rps.replace(",", "")) > 0
        assert min(float(p50), float(p99), float(ratio), float(cpu.replace(",", ""))) > 0
    assert routes["/open"][3] == "1.00"
    assert float(routes["/db"][5]) == pytest.approx(1.0, abs=0.005)
    assert float(routes["/cached"][5]) < 0.05
    lookups = [m.groups() for line in out.splitlines() if (m := LOOKUP_ROW.match(line))]
    assert [row[0] for row in lookups] == ["1,000", "2,000"]
    for row in lookups:
        assert all(float(value.replace(",", "")) > 0 for value in row)
    assert "### Problems" not in out

    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["environment"]["cpu_count"] >= 1
    assert document["environment"]["wrk"].startswith("wrk")
    assert document["settings"]["users"] == [1_000, 2_000]
    assert document["settings"]["wrk_commands"]["/db"].startswith("wrk -t1 -c32 -d1s --latency -H")
    assert document["problems"] == []
    records = {r.get("contender") or r["case"]: r for r in document["results"]}
    assert set(records) == {"/open", "/cached", "/db", "1,000 users", "2,000 users"}
    for route in ("/open", "/cached", "/db"):
        record = records[route]
        assert min(record["rps"], record["p50_ms"], record["p99_ms"], record["ratio"]) > 0
        assert record["server_cpu_us_per_request"] > 0
        assert (record["non_2xx"], record["socket_errors"]) == (0, 0)
        assert record["requests_served"] >= record["requests_wrk"] > 0
    assert records["/db"]["queries_per_request"] == pytest.approx(1.0, abs=0.005)
    assert records["/db"]["loads_per_request"] == pytest.approx(1.0, abs=0.005)
    assert records["/cached"]["queries_per_request"] < 0.05
    assert records["/open"]["queries_per_request"] == 0
    for case in ("1,000 users", "2,000 users"):
        record = records[case]
        assert 0 < record["median_us"] <= record["p99_us"]
        assert (record["lookups"], record["wrong_answers"]) == (100, 0)
        assert record["ratio"] > 0
