"""benchmarks/oidc.py: a tiny run gives both tables and the JSON; the flood stays bounded.

Structure only: no assertion here depends on how fast anything ran.
"""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

import pytest

from asgi_auth import InvalidToken, JWTVerifier, Key, UnknownKey
from benchmarks import oidc as bench
from benchmarks.verify import AUDIENCE, ISSUER

STEADY_ROW = re.compile(
    r"^\| (\S+) \| (cached|uncached) \| ([^|]+?) \| ([\d,]+) \| ([\d.]+) \| ([\d.]+)x "
    r"\| ([\d.]+)x \| (—|≥ 0\.95x) \| (—|yes|\*\*no\*\*) \|$"
)
FLOOD_ROW = re.compile(
    r"^\| (simulated|real) \| ([\d,]+) \| (\d+) \| ([\d.]+) \| (\d+) \| (\d+) \| (\d+) "
    r"\| ([\d.]+) \| ([\d,]+) \| (\d+) \| (\d+) \| ([\d,]+) \| [^|]+ \| (yes|\*\*no\*\*) \|$"
)


def test_smoke_run_prints_both_tables_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "oidc.json"

    assert bench.main(["--smoke", "--json", str(path)]) == 0

    out = capsys.readouterr().out
    assert f"httpx {metadata.version('httpx')}" in out
    assert f"PyJWT {metadata.version('PyJWT')}" in out
    assert "CPUs" in out
    steady = [m.groups() for line in out.splitlines() if (m := STEADY_ROW.match(line))]
    assert {(row[0], row[1], row[2]) for row in steady} == {
        ("ES256", cache, name) for cache in ("cached", "uncached") for name in bench.CONTENDERS
    }
    assert len(steady) == 2 * len(bench.CONTENDERS)
    for _alg, _cache, name, ops, micros, ratio, cpu, target, met in steady:
        assert int(ops.replace(",", "")) > 0
        assert float(micros) > 0
        assert float(ratio) > 0
        assert float(cpu) > 0
        if name == bench.LOCAL:
            assert (ratio, cpu) == ("1.00", "1.00")
        if name == bench.REMOTE:
            assert target == "≥ 0.95x"
            assert met in {"yes", "**no**"}  # a verdict, whichever it is
        else:
            assert (target, met) == ("—", "—")
    assert "Not in the table" not in out  # every contender passed the checks

    floods = [m.groups() for line in out.splitlines() if (m := FLOOD_ROW.match(line))]
    assert [row[0] for row in floods] == ["simulated", "real"]
    for row in floods:
        tokens, refused, accepted, others = (int(row[i].replace(",", "")) for i in (1, 8, 9, 10))
        assert refused == tokens > 0
        assert accepted == others == 0
        assert float(row[7]) <= 1
        assert row[12] == "yes"
    assert floods[0][4] == "5"  # the simulated flood spans five cooldown windows

    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["environment"]["packages"]["httpx"] == metadata.version("httpx")
    assert document["environment"]["cpu_count"] >= 1
    assert document["environment"]["event_loop"]
    assert document["settings"]["rounds"] == 1
    assert document["skipped"] == []
    results = document["results"]
    assert len(results) == 2 * len(bench.CONTENDERS)
    for record in results:
        assert record["algorithm"] == "ES256"
        assert isinstance(record["cached"], bool)
        assert record["contender"] in bench.CONTENDERS
        assert record["awaited"] is (record["contender"] != bench.REFERENCE)
        assert record["ops_per_sec"] > 0
        assert record["ratio"] > 0
        assert record["ratio_of_medians"] > 0
        assert record["ratio_cpu"] > 0
        assert record["cpu_ops_per_sec"] > 0
        assert record["baseline"] == bench.LOCAL
        assert record["rounds"] == 1
        if record["contender"] == bench.REMOTE:
            assert record["target_ratio"] == bench.TARGET_RATIO
            assert record["met"] is (record["ratio"] >= bench.TARGET_RATIO)
        else:
            assert record["target_ratio"] is None
            assert record["met"] is None
    for record in results:
        if record["contender"] == bench.LOCAL:
            assert record["ratio"] == record["ratio_cpu"] == record["ratio_of_medians"] == 1.0
    # The remote verifiers fetched once (start()) and never again while timed.
    assert document["fetches_while_timing"] == {"ES256 uncached": 1, "ES256 cached": 1}

    simulated, real = document["flood"]
    for flood in (simulated, real):
        assert flood["fetches_per_window"] <= 1
        assert flood["all_refused_unknown_key"] is True
        assert flood["outcomes"] == {"UnknownKey": flood["tokens"]}
        assert flood["valid_after"] is True
        assert flood["met"] is True
        assert flood["fetches_before"] == 1
        assert flood["jwks_requests"] == flood["fetches"]
        assert flood["discovery_requests"] == flood["fetches"]
        assert flood["failures"] == 0
    assert (simulated["clock"], real["clock"]) == ("simulated", "real")
    assert simulated["windows"] == 5
    assert simulated["span_seconds"] == 5 * simulated["refresh_cooldown"]
    assert 1 <= simulated["fetches"] <= simulated["windows"]
    assert real["fetches"] <= 1


async def test_the_check_leaves_out_a_verifier_that_cannot_tell_tokens_apart() -> None:
    key = Key.generate("ES256", kid="k1")
    tokens = bench.make_tokens(key)
    local = JWTVerifier(Key.from_jwk(key.public_jwk()), issuer=ISSUER, audience=AUDIENCE)

    async def accepts_everything(token: str) -> object:
        return token

    async def refuses_everything(token: str) -> object:
        raise InvalidToken("no")

    async def breaks_on_bad_tokens(token: str) -> object:
        if token != tokens.valid:
            raise RuntimeError("boom")
        return token

    assert await bench.check_async(local.verify, tokens) is None
    assert await bench.check_async(accepts_everything, tokens) == "accepted a tampered token"
    assert await bench.check_async(refuses_everything, tokens) == (
        "refused the valid token (InvalidToken: no)"
    )
    assert await bench.check_async(breaks_on_bad_tokens, tokens) == (
        "refused a tampered token with RuntimeError, not InvalidToken"
    )
    assert set(tokens.refused) == {
        "a tampered token",
        "a token signed by another key under the same kid",
        "an expired token",
        "a token for another audience",
    }


async def test_flood_tokens_name_distinct_unknown_kids() -> None:
    key = Key.generate("ES256", kid="provider-key")
    tokens = bench.flood_tokens(key, 50)
    local = JWTVerifier(key, issuer=ISSUER, audience=AUDIENCE)

    headers = [token.split(".")[0] for token in tokens]
    assert len(set(headers)) == len(tokens) == 50
    for token in tokens:
        with pytest.raises(UnknownKey):
            local.verify_sync(token)


def test_a_flood_breaking_the_bound_or_accepting_a_token_is_not_met() -> None:
    def flood(fetches: int, outcomes: dict[str, int]) -> bench.Flood:
        return bench.Flood(
            clock="simulated",
            tokens=100,
            concurrency=10,
            refresh_cooldown=30.0,
            span_seconds=150.0,
            elapsed_seconds=0.1,
            fetches_before=1,
            fetches=fetches,
            failures=0,
            jwks_requests=fetches,
            discovery_requests=fetches,
            outcomes=outcomes,
            valid_after=True,
        )

    assert flood(5, {"UnknownKey": 100}).met
    assert flood(5, {"UnknownKey": 100}).windows == 5
    assert not flood(6, {"UnknownKey": 100}).met
    assert flood(6, {"UnknownKey": 100}).fetches_per_window == pytest.approx(1.2)
    assert not flood(1, {"UnknownKey": 99, "accepted": 1}).met
    assert not flood(1, {"UnknownKey": 99, "ProviderUnavailable": 1}).met


def test_rounds_must_be_positive() -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(["--rounds", "0"])
    assert exc.value.code == 2
