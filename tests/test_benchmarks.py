"""benchmarks/verify.py: a tiny run gives the table and JSON; unsound contenders are left out."""

from __future__ import annotations

import base64
import json
import re
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

import jwt
import pytest

from asgi_auth import InvalidToken, JWTVerifier, Key
from benchmarks import verify as bench

#: Contenders from optional libraries, by the module each needs.
OPTIONAL = {
    "joserfc": "joserfc",
    "authlib.jose": "authlib",
    "python-jose": "jose",
    "jwcrypto": "jwcrypto",
}
EXPECTED = {"asgi_auth (uncached)", "asgi_auth (cached)", bench.BASELINE, bench.FLOOR} | {
    name for name, module in OPTIONAL.items() if find_spec(module) is not None
}
ROW = re.compile(r"^\| (\S+) \| ([^|]+) \| ([\d,]+) \| ([\d.]+) \| ([\d.]+)x \|$")


def unsigned(key: Key, alg: str) -> bench.Verify:
    """A contender that checks every claim but never the signature."""

    def verify(token: str) -> object:
        return jwt.decode(
            token,
            issuer=bench.ISSUER,
            audience=bench.AUDIENCE,
            options={
                "verify_signature": False,
                "verify_exp": True,
                "verify_iss": True,
                "verify_aud": True,
            },
        )

    return verify


def refuses_everything(key: Key, alg: str) -> bench.Verify:
    def verify(token: str) -> object:
        raise ValueError("no")

    return verify


def test_smoke_run_prints_a_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "results.json"

    assert bench.main(["--smoke", "--json", str(path)]) == 0

    out = capsys.readouterr().out
    assert f"PyJWT {metadata.version('PyJWT')}" in out
    assert "CPUs" in out
    rows = [m.groups() for line in out.splitlines() if (m := ROW.match(line))]
    assert {row[1] for row in rows} == EXPECTED
    assert len(rows) == len(EXPECTED)
    for alg, name, ops, micros, ratio in rows:
        assert alg == "HS256"
        assert int(ops.replace(",", "")) > 0
        assert float(micros) > 0
        assert float(ratio) > 0
        if name == bench.BASELINE:
            assert ratio == "1.00"

    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["environment"]["packages"]["PyJWT"] == metadata.version("PyJWT")
    assert document["environment"]["cpu_count"] >= 1
    results = document["results"]
    assert {r["contender"] for r in results} == EXPECTED
    for record in results:
        assert record["algorithm"] == "HS256"
        assert record["ops_per_sec"] > 0
        assert record["ratio"] > 0
        assert record["rounds"] == 1
    baseline = next(r for r in results if r["contender"] == bench.BASELINE)
    assert baseline["ratio"] == 1.0
    # Only contenders that are not installed may be skipped; none may fail the checks.
    assert {s["contender"] for s in document["skipped"]}.isdisjoint(EXPECTED)


def test_tamper_flips_one_payload_character_and_keeps_the_signature() -> None:
    key = Key.generate("HS256")
    valid = bench.make_tokens(key).valid
    forged = bench.tamper(valid)

    def payload(token: str) -> bytes:
        segment = token.split(".")[1]
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))

    before, after = payload(valid), payload(forged)
    assert len(before) == len(after)
    assert sum(a != b for a, b in zip(before, after, strict=True)) == 1
    assert json.loads(after)["sub"] == "user-2"
    assert forged.split(".")[::2] == valid.split(".")[::2]
    verifier = JWTVerifier(key, issuer=bench.ISSUER, audience=bench.AUDIENCE)
    verifier.verify_sync(valid)
    with pytest.raises(InvalidToken, match="signature"):
        verifier.verify_sync(forged)


def test_check_catches_a_contender_that_skips_the_signature() -> None:
    key = Key.generate("HS256")
    tokens = bench.make_tokens(key)

    assert bench.check(unsigned(key, "HS256"), tokens) == "accepted a tampered token"
    assert bench.check(refuses_everything(key, "HS256"), tokens) == (
        "refused the valid token (ValueError: no)"
    )
    assert bench.check(bench.pyjwt(key, "HS256"), tokens) is None


def test_run_leaves_out_contenders_that_fail_the_check(capsys: pytest.CaptureFixture[str]) -> None:
    contenders = {
        bench.BASELINE: bench.pyjwt,
        "unsigned": unsigned,
        "refuses everything": refuses_everything,
    }

    report = bench.run(["HS256"], rounds=1, target=0.001, contenders=contenders)

    assert [entry.contender for entry in report.entries] == [bench.BASELINE]
    assert ("HS256", "unsigned", "excluded: accepted a tampered token") in report.skipped
    assert [s[1] for s in report.skipped] == ["unsigned", "refuses everything"]
    assert [r["contender"] for r in bench.records(report)] == [bench.BASELINE]
    table = bench.render(report, bench.environment())
    assert "| HS256 | unsigned |" not in table
    assert "- HS256 / unsigned: excluded: accepted a tampered token" in table


# joserfc warns on every "EdDSA" token (RFC 9864 prefers "Ed25519"); the benchmark ignores it too.
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
@pytest.mark.parametrize("alg", bench.ALGORITHMS)
def test_every_contender_tells_valid_from_invalid_tokens(alg: str) -> None:
    key = Key.generate(alg)
    tokens = bench.make_tokens(key)
    measured = set()
    for name, factory in bench.CONTENDERS.items():
        if name in OPTIONAL and find_spec(OPTIONAL[name]) is None:
            continue
        try:
            verify = factory(key, alg)
        except bench.Unavailable:
            assert (name, alg) in {("python-jose", "PS256"), ("python-jose", "EdDSA")}
            continue
        assert bench.check(verify, tokens) is None, name
        measured.add(name)
    assert {"asgi_auth (uncached)", "asgi_auth (cached)", bench.BASELINE} <= measured


def test_rounds_must_be_positive() -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(["--rounds", "0"])
    assert exc.value.code == 2
