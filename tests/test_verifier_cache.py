"""The verified-token cache: identity, expiry, bound, opt-out, clearing, and its memory cost."""

from __future__ import annotations

import gc
import secrets
import tracemalloc

import jwt
import pytest

from asgi_auth.errors import ExpiredToken, InvalidToken
from asgi_auth.tokens import JWTVerifier, Key
from asgi_auth.tokens.verifier import DEFAULT_CACHE_SIZE

SECRET = b"0123456789abcdef" * 4
NOW = 1_700_000_000
KEY = Key.from_secret(SECRET)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now


def token_for(sub: str, *, exp: float = NOW + 600, **extra: object) -> str:
    return jwt.encode({"sub": sub, "iat": NOW, "exp": exp, **extra}, SECRET, algorithm="HS256")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_second_verify_returns_the_identical_principal(clock: Clock) -> None:
    v = JWTVerifier(KEY, clock=clock)
    token = token_for("alice")
    first = v.verify_sync(token)
    assert v.verify_sync(token) is first
    assert len(v._cache) == 1


async def test_async_verify_uses_the_cache_too(clock: Clock) -> None:
    v = JWTVerifier(KEY, clock=clock)
    token = token_for("alice")
    assert await v.verify(token) is await v.verify(token)


def test_cached_token_is_refused_once_the_clock_reaches_exp(clock: Clock) -> None:
    v = JWTVerifier(KEY, clock=clock)
    token = token_for("alice", exp=NOW + 60)
    first = v.verify_sync(token)
    clock.now = NOW + 59.999
    assert v.verify_sync(token) is first
    clock.now = NOW + 60
    with pytest.raises(ExpiredToken):
        v.verify_sync(token)
    assert token not in v._cache


def test_cached_token_honours_leeway(clock: Clock) -> None:
    v = JWTVerifier(KEY, clock=clock, leeway=30)
    token = token_for("alice", exp=NOW + 60)
    first = v.verify_sync(token)
    clock.now = NOW + 89
    assert v.verify_sync(token) is first
    clock.now = NOW + 90
    with pytest.raises(ExpiredToken):
        v.verify_sync(token)


def test_cache_never_exceeds_its_size(clock: Clock) -> None:
    v = JWTVerifier(KEY, clock=clock, cache_size=50)
    tokens = [token_for(f"user-{i}") for i in range(500)]
    for token in tokens:
        v.verify_sync(token)
        assert len(v._cache) <= 50
    assert len(v._cache) == 50
    assert list(v._cache) == tokens[-50:]


def test_cache_evicts_the_least_recently_used_token(clock: Clock) -> None:
    v = JWTVerifier(KEY, clock=clock, cache_size=3)
    a, b, c, d = (token_for(name) for name in "abcd")
    principal_a = v.verify_sync(a)
    v.verify_sync(b)
    v.verify_sync(c)
    assert v.verify_sync(a) is principal_a  # a is now the most recent
    v.verify_sync(d)  # evicts b, the least recently used
    assert list(v._cache) == [c, a, d]
    assert v.verify_sync(a) is principal_a


def test_evicted_token_is_verified_again_into_an_equal_principal(clock: Clock) -> None:
    v = JWTVerifier(KEY, clock=clock, cache_size=1)
    a, b = token_for("a"), token_for("b")
    first = v.verify_sync(a)
    v.verify_sync(b)
    again = v.verify_sync(a)
    assert again is not first
    assert again == first


def test_cache_size_zero_disables_the_cache(clock: Clock) -> None:
    v = JWTVerifier(KEY, clock=clock, cache_size=0)
    token = token_for("alice")
    first = v.verify_sync(token)
    second = v.verify_sync(token)
    assert second is not first
    assert second == first
    assert len(v._cache) == 0


def test_clear_cache_forgets_every_token(clock: Clock) -> None:
    v = JWTVerifier(KEY, clock=clock)
    tokens = [token_for(f"user-{i}") for i in range(10)]
    principals = [v.verify_sync(token) for token in tokens]
    assert len(v._cache) == 10
    v.clear_cache()
    assert len(v._cache) == 0
    again = v.verify_sync(tokens[0])
    assert again is not principals[0]
    assert again == principals[0]


def test_token_without_exp_is_never_cached(clock: Clock) -> None:
    v = JWTVerifier(KEY, clock=clock, require=())
    token = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")
    first = v.verify_sync(token)
    assert v.verify_sync(token) is not first
    assert len(v._cache) == 0


def test_refused_tokens_are_not_cached(clock: Clock) -> None:
    v = JWTVerifier(KEY, clock=clock)
    bad = [
        token_for("alice", exp=NOW - 1),
        jwt.encode({"sub": "a", "exp": NOW + 60}, b"x" * 64, algorithm="HS256"),
        token_for("", exp=NOW + 60),
    ]
    for token in bad:
        with pytest.raises(InvalidToken):
            v.verify_sync(token)
    assert len(v._cache) == 0


def test_cache_is_per_verifier(clock: Clock) -> None:
    # A token cached by a lenient verifier must not slip through a strict one.
    lenient = JWTVerifier(KEY, clock=clock)
    strict = JWTVerifier(KEY, clock=clock, issuer="https://issuer")
    token = token_for("alice")
    lenient.verify_sync(token)
    with pytest.raises(InvalidToken, match="issuer"):
        strict.verify_sync(token)


# -- memory --------------------------------------------------------------------------------


def _typical_token(i: int) -> str:
    """A ~400-byte access token: sub, iss, aud, exp, iat, nbf, jti, three scopes, name."""
    payload = {
        "sub": f"user-{i:06d}",
        "iss": "https://auth.example.com/",
        "aud": "https://api.example.com",
        "exp": NOW + 3600,
        "iat": NOW,
        "nbf": NOW,
        "jti": secrets.token_urlsafe(16),
        "scope": "read:items write:items delete:items",
        "name": f"Example User {i:06d}",
    }
    return jwt.encode(payload, SECRET, algorithm="HS256", headers={"kid": "main-2025"})


def test_full_default_cache_memory_stays_bounded() -> None:
    # Measured (tracemalloc, CPython 3.11.7 x86_64, PyJWT 2.15) with 10_000 distinct
    # 431-byte tokens: 28_862_613 bytes for a full default cache (27.5 MiB), that is
    # 2_886 bytes (2.8 KiB) per entry, token strings included; not the "about 2 KiB
    # per entry, near 20 MiB" the DEFAULT_CACHE_SIZE docstring states. Per entry:
    # ~1_000 B decoded claim keys and values, 648 B for three frozensets (two of them
    # empty), 480 B token string, 312 B claims dict copy, 180 B split scopes, ~270 B
    # principal, proxy, cache slot and expiry. Run with -s to see this run's figures.
    count = DEFAULT_CACHE_SIZE
    assert count == 10_000
    # Tokens are kept as bytes so that the str the cache keeps (as a request's
    # token would be) is allocated, and counted, while the cache fills.
    encoded = [_typical_token(i).encode("ascii") for i in range(count)]
    sizes = {len(token) for token in encoded}
    assert 380 <= min(sizes) <= max(sizes) <= 450
    key = Key.from_secret(SECRET, kid="main-2025")
    v = JWTVerifier(key, clock=lambda: float(NOW), audience="https://api.example.com")
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for token in encoded:
            v.verify_sync(token.decode("ascii"))
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(v._cache) == count
    total = after - before
    per_entry = total / count
    print(
        f"\ncache memory: {count} entries of {min(sizes)}-{max(sizes)}-byte tokens: "
        f"{total} bytes total ({total / 2**20:.1f} MiB), {per_entry:.0f} bytes per entry "
        f"({per_entry / 1024:.2f} KiB); peak {peak - before} bytes"
    )
    assert 1_000 < per_entry < 8 * 1024
    assert total < 64 * 2**20
