"""Password hashing: argon2id off the event loop, with migration from bcrypt and PBKDF2.

Hashing and verifying run in the hasher's own worker threads, at most
``max_concurrency`` at once so that a burst of logins cannot take 64 MiB each without
bound, and at a lower CPU priority than the event loop (Linux ``nice``), so that
logins saturating the cores do not stall the other requests. An unknown user, a
disabled one or a missing hash costs the same work as a wrong password (a dummy
argon2 verification) and gets the same ``False``. Hashes of other schemes verify too,
and report ``needs_rehash`` so that the login upgrades them to argon2id; so do argon2
hashes made with weaker parameters than the current ones.

The only module that imports ``argon2`` (and ``bcrypt``, when installed).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["OWASP_MINIMUMS", "PasswordHasher", "Verification"]

#: OWASP Password Storage Cheat Sheet, argon2id: equivalent (memory KiB, iterations)
#: pairs at parallelism 1. Configured parameters must reach one of them.
OWASP_MINIMUMS: Final = ((47_104, 1), (19_456, 2), (12_288, 3), (9_216, 4), (7_168, 5))
#: Longest password accepted, in bytes of UTF-8: a megabyte of password is a denial of
#: service, not a secret. Longer ones are refused (after the same dummy work).
MAX_PASSWORD_BYTES: Final = 4096
_PBKDF2_PREFIX: Final = "pbkdf2_sha256$"
_BCRYPT_PREFIXES: Final = ("$2a$", "$2b$", "$2y$")


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of checking a password.

    Attributes:
        ok: the password matches the stored hash.
        needs_rehash: matched, but the hash is of another scheme or weaker
            parameters: store :meth:`PasswordHasher.hash` of the password now.
    """

    ok: bool
    needs_rehash: bool = False


_REFUSED: Final = Verification(False)


class PasswordHasher:
    """argon2id hashing with the OWASP-compliant defaults of argon2-cffi (RFC 9106's
    low-memory profile: 64 MiB, 3 iterations, 4 lanes).

    Args:
        time_cost: iterations.
        memory_cost: memory in KiB.
        parallelism: lanes.
        max_concurrency: hashing operations allowed to run at once (threads); by
            default one per CPU core.

    Raises:
        ValueError: parameters below the OWASP recommendation, or a bad concurrency.
    """

    def __init__(
        self,
        *,
        time_cost: int = 3,
        memory_cost: int = 65_536,
        parallelism: int = 4,
        max_concurrency: int | None = None,
    ) -> None:
        if not any(memory_cost >= m and time_cost >= t for m, t in OWASP_MINIMUMS):
            raise ValueError(
                "argon2id parameters below the OWASP recommendation "
                "(e.g. memory_cost >= 19456 KiB with time_cost >= 2)"
            )
        if max_concurrency is None:
            # One hash per core: more only thrashes memory (64 MiB each) and caches.
            max_concurrency = os.cpu_count() or 1
        if parallelism < 1 or max_concurrency < 1:
            raise ValueError("parallelism and max_concurrency must be at least 1")
        self._argon2 = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism
        )
        # Threads of our own: they run at a lower CPU priority than the event loop (see
        # _yield_to_the_event_loop), which must not leak into a shared thread pool.
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="asgi_auth-argon2")
        self._dummy: str | None = None

    # -- public, async ---------------------------------------------------------------------

    async def hash(self, password: str) -> str:
        """The argon2id hash of ``password`` (computed in a worker thread).

        Raises:
            ValueError: an empty password, or one over 4096 bytes.
        """
        if not password or len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
            raise ValueError(f"a password is 1 to {MAX_PASSWORD_BYTES} bytes")
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._hash_sync, password
        )

    async def verify(self, stored: str | None, password: str) -> Verification:
        """Check ``password`` against ``stored`` (``None`` for an unknown or disabled
        user: the same work is done and the answer is the same refusal).

        Never raises for a bad hash or password: anything unverifiable is a refusal.
        """
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._verify_sync, stored, password
        )

    # -- the work, in a worker thread ----------------------------------------------------------

    def _hash_sync(self, password: str) -> str:
        _yield_to_the_event_loop()
        return self._argon2.hash(password)

    def _verify_sync(self, stored: str | None, password: str) -> Verification:
        _yield_to_the_event_loop()
        try:
            secret = password.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: no stored password looks like this
            secret = b""
        if not secret or len(secret) > MAX_PASSWORD_BYTES or not isinstance(stored, str):
            self._burn(secret[:MAX_PASSWORD_BYTES] or b"-")
            return _REFUSED
        if stored.startswith("$argon2"):
            return self._verify_argon2(stored, secret)
        if stored.startswith(_PBKDF2_PREFIX):
            return Verification(True, True) if _pbkdf2_ok(stored, secret) else _REFUSED
        if stored.startswith(_BCRYPT_PREFIXES):
            return Verification(True, True) if _bcrypt_ok(stored, secret) else _REFUSED
        self._burn(secret)  # an unknown scheme: refuse, at the usual cost
        return _REFUSED

    def _verify_argon2(self, stored: str, secret: bytes) -> Verification:
        try:
            self._argon2.verify(stored, secret)
        except (VerificationError, InvalidHashError):
            return _REFUSED
        return Verification(True, self._argon2.check_needs_rehash(stored))

    def _burn(self, secret: bytes) -> None:
        # Unknown users cost what a wrong password costs: verify against a dummy hash.
        if self._dummy is None:
            self._dummy = self._argon2.hash(secrets.token_urlsafe(16))
        with contextlib.suppress(VerificationError):
            self._argon2.verify(self._dummy, secret)


_niced = threading.local()
#: How much lower than the event loop's thread hashing threads run (Linux "nice").
HASHING_NICENESS: Final = 19


def _yield_to_the_event_loop() -> None:
    """Lower this worker thread's CPU priority, once.

    argon2 keeps every core busy (its lanes are threads of their own, which inherit
    this priority); at equal priority the event loop would wait its turn behind them
    and every other request would stall while logins run. Where the OS does not
    allow it, nothing changes.
    """
    if getattr(_niced, "done", False):
        return
    _niced.done = True
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not permitted
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + HASHING_NICENESS))


def _pbkdf2_ok(stored: str, secret: bytes) -> bool:
    """Django's ``pbkdf2_sha256$<iterations>$<salt>$<base64 hash>``."""
    try:
        _, iterations, salt, expected = stored.split("$")
        rounds = int(iterations)
        digest = base64.b64decode(expected, validate=True)
    except ValueError:
        return False
    if not 1 <= rounds <= 10_000_000 or not digest:
        return False
    computed = hashlib.pbkdf2_hmac("sha256", secret, salt.encode(), rounds, len(digest))
    return hmac.compare_digest(computed, digest)


def _bcrypt_ok(stored: str, secret: bytes) -> bool:
    try:
        import bcrypt
    except ImportError:  # migrating bcrypt hashes needs `pip install asgi-auth[bcrypt]`
        return False
    try:
        # bcrypt reads at most 72 bytes; bcrypt>=5 refuses longer input outright.
        return bool(bcrypt.checkpw(secret[:72], stored.encode("ascii")))
    except (ValueError, UnicodeEncodeError):
        return False
