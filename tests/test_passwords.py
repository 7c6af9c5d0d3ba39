"""Password hashing: argon2id off the event loop, migration from bcrypt and PBKDF2,
unknown users refused with the same work, hostile passwords and hashes refused."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import bcrypt
import pytest

from asgi_auth.authn import PasswordHasher, Verification
from asgi_auth.authn.passwords import MAX_PASSWORD_BYTES

# The smallest OWASP-compliant parameters keep the tests quick; production keeps the
# argon2-cffi defaults (64 MiB, t=3, p=4).
FAST = {"time_cost": 2, "memory_cost": 19_456, "parallelism": 1}


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(**FAST)


async def test_a_hash_verifies_its_password_and_nothing_else(hasher: PasswordHasher) -> None:
    stored = await hasher.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    assert await hasher.verify(stored, "correct horse battery staple") == Verification(True)
    assert await hasher.verify(stored, "correct horse battery stapl") == Verification(False)
    assert await hasher.hash("x y") != await hasher.hash("x y")  # salted


def test_parameters_below_the_owasp_recommendation_are_refused() -> None:
    with pytest.raises(ValueError, match="OWASP"):
        PasswordHasher(time_cost=1, memory_cost=19_456)
    with pytest.raises(ValueError, match="OWASP"):
        PasswordHasher(time_cost=2, memory_cost=8_192)
    PasswordHasher(time_cost=1, memory_cost=47_104, parallelism=1)  # an OWASP point


async def test_a_hash_with_weaker_parameters_asks_for_a_rehash(hasher: PasswordHasher) -> None:
    stronger = PasswordHasher(time_cost=3, memory_cost=19_456, parallelism=1)
    old = await hasher.hash("pw")
    assert await stronger.verify(old, "pw") == Verification(True, needs_rehash=True)
    assert await stronger.verify(await stronger.hash("pw"), "pw") == Verification(True, False)


async def test_bcrypt_hashes_verify_and_ask_for_an_upgrade(hasher: PasswordHasher) -> None:
    stored = bcrypt.hashpw(b"legacy secret", bcrypt.gensalt(rounds=4)).decode()
    assert await hasher.verify(stored, "legacy secret") == Verification(True, needs_rehash=True)
    assert await hasher.verify(stored, "legacy secreT") == Verification(False)


def _django_pbkdf2(password: str, salt: str = "saltsalt", rounds: int = 1000) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), rounds)
    return f"pbkdf2_sha256${rounds}${salt}${base64.b64encode(digest).decode()}"


async def test_pbkdf2_hashes_verify_and_ask_for_an_upgrade(hasher: PasswordHasher) -> None:
    stored = _django_pbkdf2("from django")
    assert await hasher.verify(stored, "from django") == Verification(True, needs_rehash=True)
    assert await hasher.verify(stored, "from djang0") == Verification(False)


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(**FAST)
        self.burned = 0

    def _burn(self, secret: bytes) -> None:
        self.burned += 1
        super()._burn(secret)


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        "plain text",
        "$argon2id$v=19$broken",
        "pbkdf2_sha256$x$y$z",
        "pbkdf2_sha256$99999999999$salt$AAAA",
        "$2b$04$short",
        "$5$rounds=5000$unknown",
    ],
)
async def test_unknown_users_and_unusable_hashes_are_refused(stored: str | None) -> None:
    hasher = CountingHasher()
    assert await hasher.verify(stored, "whatever") == Verification(False)
    if stored is None or not stored.startswith(("$argon2", "pbkdf2", "$2b$")):
        assert hasher.burned == 1  # the dummy verification ran: same work as a wrong password


@pytest.mark.parametrize(
    "password",
    ["", "x" * (MAX_PASSWORD_BYTES + 1), "\ud800surrogate", "é" * (MAX_PASSWORD_BYTES // 2 + 1)],
)
async def test_hostile_passwords_are_refused_after_the_same_work(password: str) -> None:
    hasher = CountingHasher()
    stored = await hasher.hash("a real one")
    assert await hasher.verify(stored, password) == Verification(False)
    assert hasher.burned == 1


@pytest.mark.parametrize("password", ["", "x" * (MAX_PASSWORD_BYTES + 1)])
async def test_unusable_passwords_cannot_be_hashed(hasher: PasswordHasher, password: str) -> None:
    with pytest.raises(ValueError, match="bytes"):
        await hasher.hash(password)


async def test_a_megabyte_password_is_refused_without_hashing_a_megabyte() -> None:
    hasher = CountingHasher()
    assert await hasher.verify(await hasher.hash("pw"), "x" * 1_000_000) == Verification(False)


async def test_hashing_runs_off_the_event_loop() -> None:
    hasher = PasswordHasher()  # the production parameters: about 100-200 ms per hash
    stored = await hasher.hash("pw")
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    assert (await hasher.verify(stored, "pw")).ok
    done.set()
    await task
    # The loop kept running while argon2 worked: the ticker advanced meanwhile.
    assert ticks > before + 1


async def test_concurrent_verifications_are_bounded_and_all_answer() -> None:
    hasher = PasswordHasher(**FAST, max_concurrency=2)
    stored = await hasher.hash("pw")
    results = await asyncio.gather(*(hasher.verify(stored, p) for p in ["pw", "no"] * 8))
    assert [r.ok for r in results] == [True, False] * 8
