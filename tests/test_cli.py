"""The ``asgi-auth`` command: secret, keys, token, inspect, durations, and demo's refusals."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from asgi_auth.cli import UsageError, main, new_secret, parse_duration
from asgi_auth.errors import InvalidToken
from asgi_auth.tokens import JWTVerifier, Key, KeySet, TokenIssuer
from asgi_auth.tokens.verifier import read_unverified

ASYMMETRIC = ["ES256", "RS256", "PS256", "ES384", "ES512", "EdDSA"]
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k", "oth")
ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
STANDARD_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")

Run = tuple[int, str, str]


def run(capsys: pytest.CaptureFixture[str], argv: list[str], env: dict[str, str]) -> Run:
    """``main(argv, env)`` with its exit status, stdout and stderr."""
    capsys.readouterr()  # drop anything printed before
    status = main(argv, env=env)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def token_of(out: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The one token printed by ``asgi-auth token``, with its header and claims."""
    token = out.strip()
    assert "\n" not in token
    header, claims = read_unverified(token)
    return token, header, claims


def iso(value: float) -> str:
    return datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture(scope="module")
def rsa_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rsa") / "rsa.pem"
    path.write_bytes(Key.generate("RS256").private_pem())
    return path


@pytest.fixture(scope="module")
def ec_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ec") / "ec.pem"
    path.write_bytes(Key.generate("ES256").private_pem())
    return path


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace ``uvicorn.run`` so that a demo that gets too far fails instead of serving."""
    import uvicorn

    calls: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        calls.append((args, kwargs))
        raise AssertionError("the demo started a server")

    monkeypatch.setattr(uvicorn, "run", refuse)
    return calls


# -- parse_duration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("45s", 45),
        ("30m", 1800),
        ("1h", 3600),
        ("7d", 604_800),
        ("2w", 1_209_600),
        (" 1h ", 3600),
        ("1", 1),
    ],
)
def test_parse_duration_reads_seconds_and_units(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["0", "0h", "-1", "-5m", "1y", "abc", "", " ", "1.5h", "h", "1 h", "1H", "1hh", "1h2m"]
)
def test_parse_duration_refuses_what_is_not_a_positive_duration(text: str) -> None:
    with pytest.raises(UsageError, match="not a positive duration"):
        parse_duration(text)


# -- secret ------------------------------------------------------------------------------


def test_secret_prints_standard_base64_of_32_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, ["secret"], {})
    assert status == 0
    assert err == ""
    assert out.endswith("\n")
    text = out.strip()
    assert STANDARD_BASE64.fullmatch(text)
    assert len(base64.b64decode(text, validate=True)) == 32
    # Good enough for HS256 as is.
    assert Key.from_secret(text).algorithm == "HS256"


def test_secret_bytes_48(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, ["secret", "--bytes", "48"], {})
    assert status == 0
    assert STANDARD_BASE64.fullmatch(out.strip())
    assert len(base64.b64decode(out.strip(), validate=True)) == 48


def test_secret_uses_the_standard_base64_alphabet(capsys: pytest.CaptureFixture[str]) -> None:
    # Like `openssl rand -base64`: "+" and "/", not the URL-safe "-" and "_".
    texts = [run(capsys, ["secret", "--bytes", "128"], {})[1].strip() for _ in range(5)]
    assert all(STANDARD_BASE64.fullmatch(t) for t in texts)
    assert any("+" in t or "/" in t for t in texts)


def test_two_secrets_differ(capsys: pytest.CaptureFixture[str]) -> None:
    first = run(capsys, ["secret"], {})[1]
    second = run(capsys, ["secret"], {})[1]
    assert first.strip() != second.strip()


@pytest.mark.parametrize("length", ["8", "31", "129", "abc"])
def test_secret_refuses_a_bad_length(capsys: pytest.CaptureFixture[str], length: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["secret", "--bytes", length], env={})
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--bytes" in captured.err


# -- keys --------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ASYMMETRIC)
def test_keys_writes_a_private_key_and_prints_a_public_jwks_that_verifies_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, alg: str
) -> None:
    path = tmp_path / "signing.pem"
    status, out, err = run(capsys, ["keys", "--alg", alg, "--out", str(path)], {})
    assert status == 0
    assert str(path) in err

    assert path.stat().st_mode & 0o777 == 0o600
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    assert pem.rstrip().endswith(b"-----END PRIVATE KEY-----")
    key = Key.from_file(path, algorithm=alg)
    assert key.can_sign

    jwks = json.loads(out)
    assert list(jwks) == ["keys"]
    assert len(jwks["keys"]) == 1
    jwk = jwks["keys"][0]
    assert not set(PRIVATE_MEMBERS) & set(jwk)
    assert jwk["alg"] == alg
    assert jwk["use"] == "sig"
    assert jwk["kid"] == key.thumbprint()

    verifier = JWTVerifier(KeySet.from_jwks(out), cache_size=0)
    token = TokenIssuer(key).issue("alice", claims={"scope": "read"})
    assert read_unverified(token)[0]["alg"] == alg
    principal = verifier.verify_sync(token)
    assert principal.subject == "alice"
    # The JWKS holds this key, not just any key of the algorithm.
    stranger = TokenIssuer(Key.generate(alg, kid=key.kid)).issue("alice")
    with pytest.raises(InvalidToken):
        verifier.verify_sync(stranger)


def test_keys_default_algorithm_is_es256(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "k.pem"
    assert run(capsys, ["keys", "--out", str(path)], {})[0] == 0
    assert Key.from_file(path).algorithm == "ES256"


def test_keys_kid_names_the_published_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, _ = run(
        capsys, ["keys", "--alg", "EdDSA", "--kid", "2025-01", "--out", str(tmp_path / "k")], {}
    )
    assert status == 0
    assert [k["kid"] for k in json.loads(out)["keys"]] == ["2025-01"]


def test_keys_refuses_to_overwrite_without_force(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(b"keep me")
    status, out, err = run(capsys, ["keys", "--out", str(path)], {})
    assert status == 2
    assert out == ""
    assert "--force" in err
    assert path.read_bytes() == b"keep me"


def test_keys_force_overwrites(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(b"old")
    status, out, _ = run(capsys, ["keys", "--alg", "ES384", "--out", str(path), "--force"], {})
    assert status == 0
    key = Key.from_file(path)
    assert key.algorithm == "ES384"
    assert json.loads(out)["keys"][0]["kid"] == key.thumbprint()


def test_keys_force_leaves_the_private_key_private(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A private key written over a world-readable file must not stay world-readable.
    path = tmp_path / "k.pem"
    path.write_bytes(b"old")
    path.chmod(0o644)
    assert run(capsys, ["keys", "--out", str(path), "--force"], {})[0] == 0
    assert b"PRIVATE KEY" in path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("alg", ["HS256", "HS512"])
def test_keys_points_hmac_at_secret(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    alg: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, ["keys", "--alg", alg], {})
    assert status == 2
    assert out == ""
    assert "asgi-auth secret" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("alg", ["FOO", "none", "RS1"])
def test_keys_refuses_an_unknown_algorithm(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    alg: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, ["keys", "--alg", alg], {})
    assert status == 2
    assert out == ""
    assert alg in err
    assert list(tmp_path.iterdir()) == []


def test_keys_default_file_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(capsys, ["keys"], {})[0] == 0
    assert run(capsys, ["keys", "--alg", "EdDSA"], {})[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "asgi-auth-eddsa.pem",
        "asgi-auth-es256.pem",
    ]
    assert Key.from_file(tmp_path / "asgi-auth-es256.pem").algorithm == "ES256"
    assert Key.from_file(tmp_path / "asgi-auth-eddsa.pem").algorithm == "EdDSA"
    assert (tmp_path / "asgi-auth-es256.pem").stat().st_mode & 0o777 == 0o600
    # The default name is protected like any other.
    before = (tmp_path / "asgi-auth-es256.pem").read_bytes()
    assert run(capsys, ["keys"], {})[0] == 2
    assert (tmp_path / "asgi-auth-es256.pem").read_bytes() == before


def test_keys_into_a_missing_directory_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "no-such-dir" / "k.pem"
    status, out, err = run(capsys, ["keys", "--out", str(path)], {})
    assert status == 2
    assert out == ""
    assert err.startswith("asgi-auth keys: ")


# -- token -------------------------------------------------------------------------------


def test_token_with_secret_flag(capsys: pytest.CaptureFixture[str], secret: str) -> None:
    status, out, err = run(
        capsys, ["token", "--sub", "1", "--expires", "1h", "--secret", secret], {}
    )
    assert status == 0
    assert err == ""
    token, header, claims = token_of(out)
    assert header["alg"] == "HS256"
    assert claims["sub"] == "1"
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 60
    principal = JWTVerifier(Key.from_secret(secret), cache_size=0).verify_sync(token)
    assert principal.subject == "1"


def test_token_with_secret_from_env(capsys: pytest.CaptureFixture[str], secret: str) -> None:
    status, out, _ = run(
        capsys, ["token", "--sub", "1", "--expires", "1h"], {"ASGI_AUTH_SECRET": secret}
    )
    assert status == 0
    token, _, claims = token_of(out)
    assert claims["exp"] - claims["iat"] == 3600
    assert JWTVerifier(Key.from_secret(secret), cache_size=0).verify_sync(token).subject == "1"


def test_token_secret_flag_beats_env(capsys: pytest.CaptureFixture[str], secret: str) -> None:
    other = new_secret()
    status, out, _ = run(
        capsys, ["token", "--sub", "1", "--secret", secret], {"ASGI_AUTH_SECRET": other}
    )
    assert status == 0
    token = out.strip()
    JWTVerifier(Key.from_secret(secret), cache_size=0).verify_sync(token)
    with pytest.raises(InvalidToken):
        JWTVerifier(Key.from_secret(other), cache_size=0).verify_sync(token)


def test_token_with_private_key_file(capsys: pytest.CaptureFixture[str], ec_key_file: Path) -> None:
    status, out, _ = run(
        capsys,
        ["token", "--sub", "1", "--expires", "1h", "--private-key", str(ec_key_file)],
        {},
    )
    assert status == 0
    token, header, claims = token_of(out)
    key = Key.from_file(ec_key_file)
    assert header["alg"] == "ES256"
    assert header["kid"] == key.thumbprint()
    assert claims["exp"] - claims["iat"] == 3600
    public = Key.from_pem(key.public_pem())
    assert JWTVerifier(public, cache_size=0).verify_sync(token).subject == "1"


def test_token_with_env_private_key_and_algorithm(
    capsys: pytest.CaptureFixture[str], rsa_key_file: Path
) -> None:
    env = {"ASGI_AUTH_PRIVATE_KEY": str(rsa_key_file), "ASGI_AUTH_ALGORITHM": "PS256"}
    status, out, _ = run(capsys, ["token", "--sub", "1", "--expires", "1h"], env)
    assert status == 0
    token, header, claims = token_of(out)
    assert header["alg"] == "PS256"
    assert claims["exp"] - claims["iat"] == 3600
    public_pem = Key.from_file(rsa_key_file).public_pem()
    verified = JWTVerifier(Key.from_pem(public_pem, algorithm="PS256"), cache_size=0)
    assert verified.verify_sync(token).subject == "1"
    # Really PS256: an RS256-only verifier refuses it.
    with pytest.raises(InvalidToken):
        JWTVerifier(Key.from_pem(public_pem), cache_size=0).verify_sync(token)


@pytest.mark.parametrize(
    ("expires", "seconds"),
    [("30m", 1800), ("7d", 604_800), ("90", 90), ("45s", 45), ("2w", 1_209_600)],
)
def test_token_expires(
    capsys: pytest.CaptureFixture[str], secret: str, expires: str, seconds: int
) -> None:
    status, out, _ = run(
        capsys, ["token", "--sub", "1", f"--expires={expires}"], {"ASGI_AUTH_SECRET": secret}
    )
    assert status == 0
    _, _, claims = token_of(out)
    assert claims["exp"] - claims["iat"] == seconds


def test_token_expires_defaults_to_one_hour(
    capsys: pytest.CaptureFixture[str], secret: str
) -> None:
    _, out, _ = run(capsys, ["token", "--sub", "1"], {"ASGI_AUTH_SECRET": secret})
    _, _, claims = token_of(out)
    assert claims["exp"] - claims["iat"] == 3600


@pytest.mark.parametrize("expires", ["0", "-1", "1y", "abc", ""])
def test_token_refuses_a_bad_duration(
    capsys: pytest.CaptureFixture[str], secret: str, expires: str
) -> None:
    status, out, err = run(
        capsys, ["token", "--sub", "1", f"--expires={expires}"], {"ASGI_AUTH_SECRET": secret}
    )
    assert status == 2
    assert out == ""
    assert "not a positive duration" in err


def test_token_refuses_a_lifetime_too_long(capsys: pytest.CaptureFixture[str], secret: str) -> None:
    status, out, err = run(
        capsys, ["token", "--sub", "1", "--expires=99999999999"], {"ASGI_AUTH_SECRET": secret}
    )
    assert status == 2
    assert out == ""
    assert "lifetime" in err


def test_token_scope(capsys: pytest.CaptureFixture[str], secret: str) -> None:
    status, out, _ = run(
        capsys, ["token", "--sub", "1", "--scope", "a b"], {"ASGI_AUTH_SECRET": secret}
    )
    assert status == 0
    token, _, claims = token_of(out)
    assert claims["scope"] == "a b"
    principal = JWTVerifier(Key.from_secret(secret), cache_size=0).verify_sync(token)
    assert set(principal.scopes) == {"a", "b"}


def test_token_claims_parse_json_values_and_keep_text(
    capsys: pytest.CaptureFixture[str], secret: str
) -> None:
    argv = [
        "token",
        "--sub",
        "1",
        "--claim",
        "name=Ada",
        "--claim",
        "admin=true",
        "--claim",
        "n=3",
        "--claim",
        'roles=["x", "y"]',
        "--claim",
        "note=3 apples",
        "--claim",
        "eq=a=b",
    ]
    status, out, _ = run(capsys, argv, {"ASGI_AUTH_SECRET": secret})
    assert status == 0
    _, _, claims = token_of(out)
    assert claims["name"] == "Ada"
    assert claims["admin"] is True
    assert claims["n"] == 3
    assert type(claims["n"]) is int
    assert claims["roles"] == ["x", "y"]
    assert claims["note"] == "3 apples"
    assert claims["eq"] == "a=b"


@pytest.mark.parametrize("claim", ["no-equals", "=value"])
def test_token_refuses_a_malformed_claim(
    capsys: pytest.CaptureFixture[str], secret: str, claim: str
) -> None:
    status, out, err = run(
        capsys, ["token", "--sub", "1", "--claim", claim], {"ASGI_AUTH_SECRET": secret}
    )
    assert status == 2
    assert out == ""
    assert "NAME=VALUE" in err


def test_token_claims_are_standard_json(capsys: pytest.CaptureFixture[str], secret: str) -> None:
    # Whatever `token` prints, `inspect` (and every verifier) must be able to read.
    status, out, _ = run(
        capsys, ["token", "--sub", "1", "--claim", "n=NaN"], {"ASGI_AUTH_SECRET": secret}
    )
    if status == 0:
        token = out.strip()
        read_unverified(token)
        JWTVerifier(Key.from_secret(secret), cache_size=0).verify_sync(token)
    else:
        assert status == 2
        assert out == ""


def test_token_issuer_and_audience_flags(capsys: pytest.CaptureFixture[str], secret: str) -> None:
    argv = ["token", "--sub", "1", "--issuer", "https://iss.test", "--audience", "api"]
    status, out, _ = run(capsys, argv, {"ASGI_AUTH_SECRET": secret})
    assert status == 0
    token, _, claims = token_of(out)
    assert claims["iss"] == "https://iss.test"
    assert claims["aud"] == "api"
    verifier = JWTVerifier(
        Key.from_secret(secret), issuer="https://iss.test", audience="api", cache_size=0
    )
    assert verifier.verify_sync(token).subject == "1"


def test_token_issuer_and_audience_from_env(
    capsys: pytest.CaptureFixture[str], secret: str
) -> None:
    env = {
        "ASGI_AUTH_SECRET": secret,
        "ASGI_AUTH_ISSUER": "https://env.test",
        "ASGI_AUTH_AUDIENCE": "env-api",
    }
    status, out, _ = run(capsys, ["token", "--sub", "1"], env)
    assert status == 0
    _, _, claims = token_of(out)
    assert claims["iss"] == "https://env.test"
    assert claims["aud"] == "env-api"


def test_token_without_issuer_or_audience_has_neither(
    capsys: pytest.CaptureFixture[str], secret: str
) -> None:
    _, out, _ = run(capsys, ["token", "--sub", "1"], {"ASGI_AUTH_SECRET": secret})
    _, _, claims = token_of(out)
    assert "iss" not in claims
    assert "aud" not in claims


def test_token_without_any_key(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, ["token", "--sub", "1"], {})
    assert status == 2
    assert out == ""
    assert err.startswith("asgi-auth token: ")
    assert "no key" in err


def test_token_refuses_a_short_secret(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, ["token", "--sub", "1", "--secret", "too-short"], {})
    assert status == 2
    assert out == ""
    assert "32 bytes" in err


def test_token_refuses_a_short_secret_from_env(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, ["token", "--sub", "1"], {"ASGI_AUTH_SECRET": "x" * 31})
    assert status == 2
    assert out == ""


def test_token_refuses_both_secret_and_key(
    capsys: pytest.CaptureFixture[str], secret: str, ec_key_file: Path
) -> None:
    argv = ["token", "--sub", "1", "--secret", secret, "--private-key", str(ec_key_file)]
    status, out, err = run(capsys, argv, {})
    assert status == 2
    assert out == ""
    assert "not both" in err
    # Both from the environment: refused too.
    env = {"ASGI_AUTH_SECRET": secret, "ASGI_AUTH_PRIVATE_KEY": str(ec_key_file)}
    status, out, err = run(capsys, ["token", "--sub", "1"], env)
    assert status == 2
    assert "not both" in err


def test_a_key_flag_replaces_both_key_variables(
    capsys: pytest.CaptureFixture[str], secret: str, ec_key_file: Path
) -> None:
    status, out, _ = run(
        capsys,
        ["token", "--sub", "1", "--secret", secret],
        {"ASGI_AUTH_PRIVATE_KEY": str(ec_key_file)},
    )
    assert status == 0
    assert JWTVerifier(Key.from_secret(secret)).verify_sync(out.strip()).subject == "1"
    status, out, _ = run(
        capsys,
        ["token", "--sub", "2", "--private-key", str(ec_key_file)],
        {"ASGI_AUTH_SECRET": secret},
    )
    assert status == 0
    assert JWTVerifier(Key.from_file(ec_key_file)).verify_sync(out.strip()).subject == "2"


def test_token_refuses_an_unreadable_key_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, _ = run(
        capsys, ["token", "--sub", "1", "--private-key", str(tmp_path / "missing.pem")], {}
    )
    assert status == 2
    assert out == ""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    status, out, _ = run(capsys, ["token", "--sub", "1", "--private-key", str(garbage)], {})
    assert status == 2
    assert out == ""


def test_token_refuses_an_algorithm_the_key_cannot_use(
    capsys: pytest.CaptureFixture[str], ec_key_file: Path
) -> None:
    env = {"ASGI_AUTH_PRIVATE_KEY": str(ec_key_file), "ASGI_AUTH_ALGORITHM": "RS256"}
    status, out, _ = run(capsys, ["token", "--sub", "1"], env)
    assert status == 2
    assert out == ""


@pytest.mark.parametrize("name", ["exp", "iat", "sub", "jti", "iss", "aud", "nbf"])
def test_token_refuses_a_reserved_claim(
    capsys: pytest.CaptureFixture[str], secret: str, name: str
) -> None:
    status, out, err = run(
        capsys, ["token", "--sub", "1", "--claim", f"{name}=1"], {"ASGI_AUTH_SECRET": secret}
    )
    assert status == 2
    assert out == ""
    assert name in err


def test_token_refuses_an_empty_subject(capsys: pytest.CaptureFixture[str], secret: str) -> None:
    status, out, _ = run(capsys, ["token", "--sub", ""], {"ASGI_AUTH_SECRET": secret})
    assert status == 2
    assert out == ""


# -- inspect -----------------------------------------------------------------------------


def issue(secret: str, **claims: Any) -> str:
    return TokenIssuer(Key.from_secret(secret)).issue("42", claims=claims)


def test_inspect_without_a_key_shows_but_does_not_verify(
    capsys: pytest.CaptureFixture[str], secret: str
) -> None:
    token = issue(secret, scope="read")
    status, out, _ = run(capsys, ["inspect", token], {})
    assert status == 0
    report = json.loads(out)
    assert report["verified"] is False
    assert report["note"].startswith("UNVERIFIED")
    assert "refused" not in report
    assert report["header"] == {"alg": "HS256", "typ": "at+jwt"}
    claims = report["claims"]
    assert claims["sub"] == "42"
    assert claims["scope"] == "read"
    assert set(report["times"]) == {"iat", "nbf", "exp"}
    for name, text in report["times"].items():
        assert ISO_UTC.fullmatch(text)
        assert text == iso(claims[name])


def test_inspect_with_the_right_secret(capsys: pytest.CaptureFixture[str], secret: str) -> None:
    status, out, _ = run(capsys, ["inspect", issue(secret), "--secret", secret], {})
    assert status == 0
    report = json.loads(out)
    assert report["verified"] is True
    assert "refused" not in report
    assert "note" not in report
    assert report["claims"]["sub"] == "42"


def test_inspect_with_the_secret_from_env(capsys: pytest.CaptureFixture[str], secret: str) -> None:
    status, out, _ = run(capsys, ["inspect", issue(secret)], {"ASGI_AUTH_SECRET": secret})
    assert status == 0
    assert json.loads(out)["verified"] is True


def test_inspect_with_a_wrong_secret(capsys: pytest.CaptureFixture[str], secret: str) -> None:
    status, out, _ = run(capsys, ["inspect", issue(secret), "--secret", new_secret()], {})
    assert status == 1
    report = json.loads(out)
    assert report["verified"] is False
    assert "signature" in report["refused"]
    assert report["claims"]["sub"] == "42"


def test_inspect_checks_the_configured_audience(
    capsys: pytest.CaptureFixture[str], secret: str
) -> None:
    token = TokenIssuer(Key.from_secret(secret), audience="api").issue("42")
    status, out, _ = run(
        capsys, ["inspect", token, "--audience", "api"], {"ASGI_AUTH_SECRET": secret}
    )
    assert status == 0
    assert json.loads(out)["verified"] is True
    status, out, _ = run(
        capsys, ["inspect", token], {"ASGI_AUTH_SECRET": secret, "ASGI_AUTH_AUDIENCE": "other"}
    )
    assert status == 1
    assert "audience" in json.loads(out)["refused"]


def test_inspect_with_the_jwks_from_keys(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pem = tmp_path / "k.pem"
    status, jwks, _ = run(capsys, ["keys", "--alg", "EdDSA", "--out", str(pem)], {})
    assert status == 0
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(jwks)
    status, out, _ = run(capsys, ["token", "--sub", "7", "--private-key", str(pem)], {})
    assert status == 0
    token = out.strip()

    status, out, _ = run(capsys, ["inspect", token, "--jwks", str(jwks_file)], {})
    assert status == 0
    report = json.loads(out)
    assert report["verified"] is True
    assert report["header"]["alg"] == "EdDSA"
    assert report["header"]["kid"] == json.loads(jwks)["keys"][0]["kid"]

    # Another key pair's JWKS refuses it.
    other = tmp_path / "other.json"
    other.write_text(json.dumps(KeySet([Key.generate("EdDSA")]).public_jwks()))
    status, out, _ = run(capsys, ["inspect", token, "--jwks", str(other)], {})
    assert status == 1
    assert json.loads(out)["verified"] is False


def test_inspect_with_the_private_key(
    capsys: pytest.CaptureFixture[str], rsa_key_file: Path
) -> None:
    token = TokenIssuer(Key.from_file(rsa_key_file)).issue("42")
    status, out, _ = run(capsys, ["inspect", token, "--private-key", str(rsa_key_file)], {})
    assert status == 0
    assert json.loads(out)["verified"] is True


def test_inspect_reads_the_token_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    token = issue(secret)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"  {token}\n"))
    status, out, _ = run(capsys, ["inspect", "-", "--secret", secret], {})
    assert status == 0
    report = json.loads(out)
    assert report["verified"] is True
    assert report["claims"]["sub"] == "42"


@pytest.mark.parametrize("garbage", ["garbage", "a.b", "a.b.c", "e30.e30", "!!.!!.!!", ""])
def test_inspect_refuses_what_is_not_a_jwt(
    capsys: pytest.CaptureFixture[str], garbage: str
) -> None:
    status, out, err = run(capsys, ["inspect", garbage], {})
    assert status == 2
    assert out == ""
    assert err.startswith("asgi-auth inspect: not a JWT")


def test_inspect_an_expired_token(capsys: pytest.CaptureFixture[str], secret: str) -> None:
    past = TokenIssuer(Key.from_secret(secret), clock=lambda: time.time() - 7200)
    token = past.issue("42", lifetime=60)
    status, out, _ = run(capsys, ["inspect", token, "--secret", secret], {})
    assert status == 1
    report = json.loads(out)
    assert report["verified"] is False
    assert "expired" in report["refused"]
    assert report["times"]["exp"] == iso(report["claims"]["exp"])


def test_inspect_an_unreadable_jwks_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, secret: str
) -> None:
    status, out, _ = run(capsys, ["inspect", issue(secret), "--jwks", str(tmp_path / "none")], {})
    assert status == 2
    assert out == ""


def _unsigned(claims: dict[str, Any]) -> str:
    def segment(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{segment({'alg': 'HS256'})}.{segment(claims)}.AAAA"


def test_inspect_skips_non_numeric_times(capsys: pytest.CaptureFixture[str]) -> None:
    token = _unsigned({"sub": "1", "exp": "tomorrow", "iat": True, "nbf": 0})
    status, out, _ = run(capsys, ["inspect", token], {})
    assert status == 0
    assert json.loads(out)["times"] == {"nbf": "1970-01-01T00:00:00Z"}


@pytest.mark.parametrize("exp", [10**20, 1e300])
def test_inspect_shows_a_token_with_an_out_of_range_time(
    capsys: pytest.CaptureFixture[str], exp: float
) -> None:
    # inspect is a display tool for any well-formed token; it must not crash on one.
    token = _unsigned({"sub": "1", "exp": exp})
    status, out, _ = run(capsys, ["inspect", token], {})
    assert status == 0
    report = json.loads(out)
    assert report["claims"]["exp"] == exp
    assert report["verified"] is False


# -- demo (refusals only; the server is covered by tests/test_demo.py) --------------------


def test_demo_with_a_missing_key_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_server: list[Any]
) -> None:
    missing = tmp_path / "missing.pem"
    status, out, err = run(capsys, ["demo", "--private-key", str(missing), "--port", "1"], {})
    assert status == 2
    assert out == ""
    assert err.startswith("asgi-auth demo: ")
    assert "missing.pem" in err
    assert no_server == []


def test_demo_with_an_unusable_key_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_server: list[Any]
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    status, out, err = run(capsys, ["demo", "--port", "1"], {"ASGI_AUTH_PRIVATE_KEY": str(garbage)})
    assert status == 2
    assert out == ""
    assert err.startswith("asgi-auth demo: ")
    assert no_server == []


def test_demo_with_a_short_secret(capsys: pytest.CaptureFixture[str], no_server: list[Any]) -> None:
    status, out, err = run(capsys, ["demo", "--port", "1"], {"ASGI_AUTH_SECRET": "short"})
    assert status == 2
    assert out == ""
    assert err.startswith("asgi-auth demo: ")
    assert "32 bytes" in err
    assert no_server == []


# -- the installed console script ------------------------------------------------------


def _script() -> str:
    found = shutil.which("asgi-auth", path=str(Path(sys.executable).parent)) or shutil.which(
        "asgi-auth"
    )
    assert found is not None, "the asgi-auth console script is not installed"
    return found


def test_console_script_secret() -> None:
    done = subprocess.run(
        [_script(), "secret"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert len(base64.b64decode(done.stdout.strip(), validate=True)) == 32


def test_console_script_token_then_inspect_from_stdin(secret: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASGI_AUTH_")}
    env["ASGI_AUTH_SECRET"] = secret
    issued = subprocess.run(
        [_script(), "token", "--sub", "7", "--expires", "5m", "--scope", "read"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert issued.returncode == 0, issued.stderr
    inspected = subprocess.run(
        [_script(), "inspect", "-"],
        input=issued.stdout,
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert inspected.returncode == 0, inspected.stderr
    report = json.loads(inspected.stdout)
    assert report["verified"] is True
    assert report["claims"]["sub"] == "7"
    assert report["claims"]["exp"] - report["claims"]["iat"] == 300


def test_console_script_usage_error_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [_script(), "keys", "--alg", "HS256"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "asgi-auth secret" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []
