"""Verifying tokens from an external identity provider: OIDC discovery and JWKS.

An :class:`OIDCVerifier` holds the provider's public keys in memory and verifies
tokens exactly as :class:`~asgi_auth.JWTVerifier` does (it builds one per key set).
Keys are fetched with httpx, asynchronously and never per request:

- at first use (or :meth:`OIDCVerifier.start`), through the discovery document
  (whose ``issuer`` must equal the configured one before any key is trusted) or an
  explicit ``jwks_uri``;
- again when they grow stale (``Cache-Control: max-age`` within configured bounds),
  in the background while requests keep using the keys held;
- when a token names an unknown ``kid`` (a rotation), at most once per cooldown
  window, so a flood of tokens with invented ``kid`` values cannot make us hammer
  the provider.

One fetch is in flight at a time and every waiting request shares it; no request
waits longer than ``max_wait``. When the provider is down, the keys already held
keep working and the failure is logged; only a request that needs a key we do not
hold gets a 503. Only asymmetric algorithms are accepted.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import ssl
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from asgi_auth.errors import InvalidToken, ProviderUnavailable, UnknownKey
from asgi_auth.principal import DEFAULT_MAPPING, ClaimMapping, Principal, freeze
from asgi_auth.tokens.keys import ASYMMETRIC_ALGORITHMS, Key, KeySet
from asgi_auth.tokens.verifier import (
    _TO_STANDARD,
    DEFAULT_CACHE_SIZE,
    DEFAULT_MAX_TOKEN_BYTES,
    JWTVerifier,
    RevocationCheck,
    TokenVerifier,
    _b64decode,
    _json_object,
    _reject_constant,
    _short,
    _split_checked,
)

__all__ = ["IssuerRouter", "OIDCVerifier", "unverified_issuer"]

logger: Final = logging.getLogger("asgi_auth.oidc")

_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})
_MAX_AGE: Final = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d{1,10})\"?", re.IGNORECASE)
_NO_CACHE: Final = re.compile(r"(?:^|[,\s])(?:no-store|no-cache)(?:$|[,\s=])", re.IGNORECASE)
_DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
_USERINFO_CACHE_SIZE: Final = 1_000


def _check_url(url: object, *, allow_http: bool, what: str) -> str:
    """The URL if it is an absolute https URL (http only on loopback or when allowed)."""
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise ValueError(f"{what} must be a URL")
    parts = urlsplit(url)
    if parts.scheme == "http":
        if not (allow_http or parts.hostname in _LOOPBACK):
            raise ValueError(f"{what} must use https: {url!r}")
    elif parts.scheme != "https":
        raise ValueError(f"{what} must be an https URL: {url!r}")
    if not parts.hostname or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{what} is not an acceptable URL: {url!r}")
    return url


def unverified_issuer(token: str, max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES) -> str | None:
    """The ``iss`` a token claims, parsed strictly but NOT verified: for routing only.

    Raises:
        InvalidToken: the token is too long or not a well-formed compact JWS.
    """
    if type(token) is not str or len(token) > max_token_bytes:
        raise InvalidToken("token is too long or not a string")
    raw, first, last = _split_checked(token)
    payload = _json_object(_b64decode(raw[first + 1 : last].translate(_TO_STANDARD)), "payload")
    iss = payload.get("iss")
    return iss if type(iss) is str else None


class _FetchError(Exception):
    """A fetch from the provider failed; the reason is for logs."""


class OIDCVerifier:
    """Verifies tokens signed by an external OpenID Connect provider's published keys.

    Plugs into :class:`~asgi_auth.AuthMiddleware` like :class:`~asgi_auth.JWTVerifier`
    and raises the same errors (so the same 401s follow), plus
    :class:`~asgi_auth.ProviderUnavailable` (503) when a key is needed that we do not
    hold and the provider cannot be reached in time.

    Args:
        issuer: the provider's issuer identifier, exactly as its tokens' ``iss``
            (Auth0: ``https://{domain}/``, with the slash).
        audience: accepted ``aud`` value(s) (Auth0's API identifier, Entra's
            application ID URI or client id...). When unset, a token naming an
            audience is refused (RFC 7519 §4.1.3).
        jwks_uri: fetch keys from here instead of through discovery.
        algorithms: the allow-list; default every asymmetric algorithm, each key
            limited to its own type (a JWK without ``alg``: an RSA key serves RS* and
            PS*). HMAC algorithms are refused: a provider's published keys are public.
        extra_issuers: more ``iss`` values accepted for the same keys (Entra's v1
            issuer next to its v2 one).
        leeway, require, typ, expect, mapping, revocations, cache_size,
            max_token_bytes, clock: as for :class:`~asgi_auth.JWTVerifier`.
        http_client: the httpx client to fetch with (for proxies, custom CAs or tests);
            by default the verifier makes (and :meth:`aclose` closes) its own.
        timeout: bound on one whole fetch (discovery and JWKS), in seconds.
        max_wait: longest a request waits for a fetch before it is answered (503 when
            no held key can decide). Never more than ``timeout``.
        min_ttl, max_ttl: bounds on how long fetched keys count as fresh, applied
            to the provider's ``Cache-Control: max-age``.
        default_ttl: freshness when the provider sends no ``max-age``.
        refresh_cooldown: least time from one fetch to a fetch caused by an unknown
            ``kid`` (a token of a key published within this time after our last fetch
            is refused as unknown until it has passed).
        retry_interval: least time between two fetches after a failed one.
        max_document_bytes: larger discovery documents, JWKS or userinfo answers are
            refused.
        allow_http: accept ``http://`` URLs on hosts other than loopback (never do
            this in production: keys fetched over plain HTTP can be replaced).
        monotonic: the clock for freshness and cooldowns; injectable for tests.

    Raises:
        ValueError: an invalid URL or unsafe configuration (e.g. an HMAC algorithm).
    """

    def __init__(
        self,
        issuer: str,
        *,
        audience: str | Iterable[str] | None = None,
        jwks_uri: str | None = None,
        algorithms: Iterable[str] | None = None,
        extra_issuers: Iterable[str] = (),
        leeway: float | timedelta = 0,
        require: Iterable[str] = ("exp",),
        typ: str | None = None,
        expect: Mapping[str, str | Iterable[str]] | None = None,
        mapping: ClaimMapping = DEFAULT_MAPPING,
        revocations: RevocationCheck | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 5.0,
        max_wait: float = 2.0,
        min_ttl: float = 60.0,
        max_ttl: float = 86_400.0,
        default_ttl: float = 600.0,
        refresh_cooldown: float = 30.0,
        retry_interval: float = 5.0,
        max_document_bytes: int = 512 * 1024,
        allow_http: bool = False,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer: Final = _check_url(issuer, allow_http=allow_http, what="issuer")
        if urlsplit(issuer).query:
            raise ValueError("an issuer identifier has no query component (OIDC Discovery §2)")
        self.allow_http: Final = allow_http
        self.jwks_uri: str | None = (
            None
            if jwks_uri is None
            else _check_url(jwks_uri, allow_http=allow_http, what="jwks_uri")
        )
        self.discovery_url: Final = (
            None if jwks_uri is not None else issuer.rstrip("/") + _DISCOVERY_PATH
        )
        if isinstance(algorithms, str):
            raise TypeError("algorithms must be a list of names, not a string")
        allowed = ASYMMETRIC_ALGORITHMS if algorithms is None else frozenset(algorithms)
        if not allowed or not allowed <= ASYMMETRIC_ALGORITHMS:
            raise ValueError(
                f"algorithms must be asymmetric ones of {sorted(ASYMMETRIC_ALGORITHMS)}: "
                "a provider's keys are public, so an HMAC token could be forged with them"
            )
        if isinstance(require, str):
            raise TypeError("require must be a list of claim names, not a string")
        if isinstance(extra_issuers, str):
            raise TypeError("extra_issuers must be a list of issuers, not a string")
        for number, value in (
            ("timeout", timeout),
            ("max_wait", max_wait),
            ("min_ttl", min_ttl),
            ("max_ttl", max_ttl),
            ("default_ttl", default_ttl),
            ("refresh_cooldown", refresh_cooldown),
            ("retry_interval", retry_interval),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{number} must be a non-negative number of seconds")
        if timeout <= 0 or not min_ttl <= default_ttl <= max_ttl:
            raise ValueError("need timeout > 0 and min_ttl <= default_ttl <= max_ttl")
        if not isinstance(max_document_bytes, int) or max_document_bytes < 1024:
            raise ValueError("max_document_bytes must be an int of at least 1024")
        self.algorithms: Final = allowed
        self.issuers: Final = frozenset({issuer, *extra_issuers})
        self.timeout: Final[float] = timeout
        self.max_wait: Final[float] = min(max_wait, timeout)
        self.min_ttl: Final[float] = min_ttl
        self.max_ttl: Final[float] = max_ttl
        self.default_ttl: Final[float] = default_ttl
        self.refresh_cooldown: Final[float] = refresh_cooldown
        self.retry_interval: Final[float] = retry_interval
        self.max_document_bytes: Final = max_document_bytes
        self.max_token_bytes: Final = max_token_bytes
        self.mapping: Final = mapping
        self._options: dict[str, Any] = {
            "issuer": self.issuers,
            "audience": audience,
            "leeway": leeway,
            "require": tuple(require),
            "typ": typ,
            "expect": expect,
            "mapping": mapping,
            "revocations": revocations,
            "cache_size": cache_size,
            "max_token_bytes": max_token_bytes,
            "clock": clock,
        }
        # Check the claim options now, with a throwaway key, rather than at first fetch.
        JWTVerifier(Key.generate("ES256"), **self._options)
        self._clock = clock
        self._monotonic = monotonic
        self._http = http_client
        self._own_http: httpx.AsyncClient | None = None
        self._own_http_loop: asyncio.AbstractEventLoop | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._verifier: _ProviderKeys | None = None
        self._fingerprint: frozenset[tuple[str | None, str, frozenset[str]]] = frozenset()
        self.userinfo_endpoint: str | None = None
        self.metadata: Mapping[str, Any] | None = None
        self._fresh_until = 0.0  # monotonic time after which the keys are stale
        self._not_before = 0.0  # no fetch starts before this (cooldown, retry)
        self._check_at = 0.0  # max(_fresh_until, _not_before): the hot path's one comparison
        self._task: asyncio.Task[None] | None = None
        self._last_error: str | None = None
        self._userinfo: OrderedDict[str, tuple[float, Mapping[str, Any]]] = OrderedDict()
        self._userinfo_tasks: dict[str, asyncio.Task[Mapping[str, Any]]] = {}
        #: Fetch attempts of the key set (discovery and JWKS count as one), for
        #: monitoring and tests.
        self.fetches = 0
        #: Failed fetch attempts.
        self.failures = 0

    def __repr__(self) -> str:
        return f"OIDCVerifier({self.issuer!r})"

    # -- the request path -----------------------------------------------------------

    @property
    def keys(self) -> KeySet | None:
        """The keys held now (None before the first successful fetch)."""
        return None if self._verifier is None else self._verifier.keys

    async def verify(self, token: str) -> Principal:
        """Return the principal of a valid token.

        Raises:
            InvalidToken: as :meth:`JWTVerifier.verify_sync` (``UnknownKey`` when the
                ``kid`` is not among the provider's keys even after a refresh, or a
                refresh is not allowed yet).
            ProviderUnavailable: no held key can decide and the provider did not give
                us one within ``max_wait``.
        """
        verifier = self._verifier
        if verifier is not None:
            # Freshness is checked on cache misses only (see _ProviderKeys): a cache hit
            # is a dict lookup, and a clock read would add a quarter to its cost.
            try:
                if type(token) is str:
                    known = verifier.cached(token)
                    if known is not None:
                        return known
                return verifier.verify_sync(token)
            except UnknownKey as exc:
                return await self._verify_unknown_kid(token, exc, self._deadline())
        # No keys yet: refuse what is not even a token before fetching anything.
        if type(token) is not str or len(token) > self.max_token_bytes:
            raise InvalidToken("token is too long or not a string")
        _split_checked(token)  # raises InvalidToken
        deadline = self._deadline()
        task = self._start_fetch()
        if task is not None:
            await self._await_fetch(task, deadline)
        verifier = self._verifier
        if verifier is None:
            raise ProviderUnavailable(
                f"no keys from {self.issuer}: {self._last_error or 'not fetched in time'}"
            )
        try:
            return verifier.verify_sync(token)
        except UnknownKey as exc:
            return await self._verify_unknown_kid(token, exc, deadline)

    async def _verify_unknown_kid(self, token: str, exc: UnknownKey, deadline: float) -> Principal:
        task = self._current_task()
        if task is None:
            if self._monotonic() < self._not_before:
                if self._last_error is not None:
                    raise ProviderUnavailable(
                        f"{exc.reason}, and the last fetch failed: {self._last_error}"
                    ) from exc
                raise exc  # asked within the cooldown: the kid is not the provider's
            task = self._start_fetch()
            if task is None:  # no keys and in the retry interval
                raise ProviderUnavailable(f"{exc.reason}: {self._last_error}") from exc
        await self._await_fetch(task, deadline)
        if not task.done():
            raise ProviderUnavailable(f"{exc.reason}; keys not fetched in time") from exc
        verifier = self._verifier
        if self._last_error is not None or verifier is None:
            raise ProviderUnavailable(
                f"{exc.reason}, and the provider could not be asked: {self._last_error}"
            ) from exc
        return verifier.verify_sync(token)  # UnknownKey again: not among the fresh keys

    def _deadline(self) -> float:
        # Waiting is bounded in the event loop's own time, whatever clock `monotonic` is.
        return asyncio.get_running_loop().time() + self.max_wait

    async def _await_fetch(self, task: asyncio.Task[None], deadline: float) -> None:
        # asyncio.wait neither raises nor cancels the shared fetch when we stop waiting.
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining > 0:
            await asyncio.wait((task,), timeout=remaining)

    # -- fetching ---------------------------------------------------------------------

    def _current_task(self) -> asyncio.Task[None] | None:
        task = self._task
        if task is None or task.done():
            return None
        if task.get_loop() is not asyncio.get_running_loop():
            return None  # started in a loop that has gone (e.g. another test client)
        return task

    def _start_fetch(self) -> asyncio.Task[None] | None:
        """The fetch in flight, else a new one; None when cold and a fetch failed within
        ``retry_interval`` (a provider that is down is not hammered)."""
        task = self._current_task()
        if task is not None:
            return task
        now = self._monotonic()
        if self._verifier is None and self._last_error is not None and now < self._not_before:
            return None
        return self._new_fetch(now)

    def _new_fetch(self, now: float) -> asyncio.Task[None]:
        self._not_before = now + self.refresh_cooldown
        self._update_check_at()
        task = asyncio.get_running_loop().create_task(self._fetch())
        self._task = task
        return task

    def _refresh_soon(self) -> None:
        """Start a background refresh when the keys are stale and none is running."""
        now = self._monotonic()
        if now < self._fresh_until or now < self._not_before or self._current_task() is not None:
            self._update_check_at()
            return
        self._start_fetch()

    def _update_check_at(self) -> None:
        self._check_at = max(self._fresh_until, self._not_before)

    async def start(self) -> None:
        """Fetch the keys now (e.g. from the app's lifespan), so the first request
        does not wait.

        Raises:
            ProviderUnavailable: the provider could not be reached or its answer was
                unusable (the verifier will keep trying on demand).
        """
        await self.refresh()

    async def refresh(self) -> None:
        """Fetch discovery and keys now, regardless of freshness and cooldowns.

        Raises:
            ProviderUnavailable: the fetch failed; the keys held (if any) are kept.
        """
        task = self._current_task() or self._new_fetch(self._monotonic())
        await asyncio.shield(task)
        if self._last_error is not None:
            raise ProviderUnavailable(f"cannot fetch keys from {self.issuer}: {self._last_error}")

    async def aclose(self) -> None:
        """Stop a running fetch and close the HTTP client the verifier made."""
        task = self._task
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            await asyncio.wait((task,))
        for pending in list(self._userinfo_tasks.values()):
            pending.cancel()
        client, self._own_http = self._own_http, None
        if client is not None and self._own_http_loop is asyncio.get_running_loop():
            await client.aclose()

    async def __aenter__(self) -> OIDCVerifier:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _client(self) -> httpx.AsyncClient:
        if self._http is not None:
            return self._http
        loop = asyncio.get_running_loop()
        if self._own_http is None or self._own_http_loop is not loop:
            from asgi_auth import __version__

            if self._ssl_context is None:
                # Loading the CA bundle takes a few hundred ms: not on the event loop.
                # (httpx's own, so SSL_CERT_FILE and SSL_CERT_DIR are honoured.)
                self._ssl_context = await asyncio.to_thread(httpx.create_ssl_context)
            # A client per event loop (connections cannot move between loops), keeping
            # no idle connection: fetches are rare, and a client left behind by a loop
            # that ended then holds no socket.
            self._own_http = httpx.AsyncClient(
                verify=self._ssl_context,
                timeout=httpx.Timeout(self.timeout),
                limits=httpx.Limits(max_keepalive_connections=0),
                follow_redirects=False,
                headers={"User-Agent": f"asgi-auth/{__version__}", "Accept": "application/json"},
            )
            self._own_http_loop = loop
        return self._own_http

    async def _fetch(self) -> None:
        """One fetch of discovery (when used) and keys; never raises."""
        self.fetches += 1
        started = self._monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                ttl = await self._fetch_keys()
        except asyncio.CancelledError:
            # Cut short (aclose, or the event loop ended): nothing failed, so the next
            # request may fetch at once.
            self._not_before = 0.0
            self._update_check_at()
            raise
        except (_FetchError, TimeoutError) as exc:
            reason = str(exc) or f"no answer within {self.timeout:g} s"
        except Exception as exc:  # an outage must never escape into a request
            reason = f"{type(exc).__name__}: {exc}"
            logger.exception("unexpected error fetching keys from %s", self.issuer)
        else:
            self._last_error = None
            self._fresh_until = started + ttl
            self._not_before = started + self.refresh_cooldown
            self._update_check_at()
            return
        self.failures += 1
        self._last_error = reason
        self._not_before = self._monotonic() + self.retry_interval
        self._update_check_at()
        if self._verifier is None:
            logger.error("cannot fetch keys from %s: %s", self.issuer, reason)
        else:
            logger.warning(
                "cannot refresh keys from %s (keeping %d held): %s",
                self.issuer,
                len(self._verifier.keys),
                reason,
            )

    async def _fetch_keys(self) -> float:
        if self.discovery_url is not None:
            metadata, _ = await self._get_json(self.discovery_url, "discovery document")
            self._check_metadata(metadata)
        assert self.jwks_uri is not None
        jwks, ttl = await self._get_json(self.jwks_uri, "JWKS")
        keys = self._usable_keys(jwks)
        fingerprint = frozenset((k.kid, k.thumbprint(), k.algorithms) for k in keys)
        if self._verifier is None or fingerprint != self._fingerprint:
            # The whole allow-list, not just the algorithms of the keys held: a token
            # for a new key type is then an unknown kid, which triggers a refresh.
            verifier = _ProviderKeys(self, keys, algorithms=self.algorithms, **self._options)
            if self._verifier is not None:
                logger.info("keys of %s changed: now %s", self.issuer, [k.kid for k in keys])
            self._verifier, self._fingerprint = verifier, fingerprint
        # Unchanged keys keep the verifier, and with it the cache of verified tokens.
        return ttl

    def _check_metadata(self, metadata: dict[str, Any]) -> None:
        # OIDC Discovery §4.3: the issuer in the document must be exactly ours, or
        # nothing it says (least of all where the keys are) can be trusted.
        if metadata.get("issuer") != self.issuer:
            raise _FetchError(
                f"discovery document names issuer {_short(metadata.get('issuer'))}, "
                f"not {self.issuer!r}"
            )
        try:
            jwks_uri = _check_url(
                metadata.get("jwks_uri"), allow_http=self.allow_http, what="jwks_uri"
            )
        except ValueError as exc:
            raise _FetchError(f"discovery document: {exc}") from exc
        userinfo = metadata.get("userinfo_endpoint")
        try:
            userinfo = (
                None
                if userinfo is None
                else _check_url(userinfo, allow_http=self.allow_http, what="userinfo_endpoint")
            )
        except ValueError as exc:
            logger.warning("ignoring the userinfo endpoint of %s: %s", self.issuer, exc)
            userinfo = None
        try:
            frozen = freeze(metadata)
        except ValueError as exc:
            raise _FetchError(f"discovery document: {exc}") from exc
        self.jwks_uri, self.userinfo_endpoint = jwks_uri, userinfo
        self.metadata = frozen

    def _usable_keys(self, jwks: dict[str, Any]) -> KeySet:
        entries = jwks.get("keys")
        if not isinstance(entries, list):
            raise _FetchError("JWKS has no 'keys' list")
        keys: list[Key] = []
        skipped: list[str] = []
        for entry in entries[:1000]:
            if not isinstance(entry, dict):
                skipped.append("a non-object entry")
                continue
            label = _short(entry.get("kid"))
            if entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
                continue  # encryption keys and secrets are not for us
            try:
                key = Key.from_jwk(entry)
            except (ValueError, TypeError) as exc:
                skipped.append(f"{label} ({exc})")
                continue
            if not key.algorithms & self.algorithms:
                skipped.append(f"{label} (admits none of the allowed algorithms)")
                continue
            keys.append(key)
        # The same key listed twice is one key; two different keys under one kid are
        # ambiguous, and neither is used.
        distinct = {(k.kid, k.thumbprint(), k.algorithms): k for k in keys}
        keys = list(distinct.values())
        counts = Counter(k.kid for k in keys)
        duplicated = {kid for kid, n in counts.items() if n > 1}
        if duplicated:
            # Two keys under one kid: we cannot know which the provider meant.
            skipped.extend(
                f"{_short(kid)} (kid used twice)" for kid in sorted(map(str, duplicated))
            )
            keys = [k for k in keys if k.kid not in duplicated]
        if skipped:
            logger.warning("ignoring keys from %s: %s", self.issuer, "; ".join(skipped[:20]))
        if not keys:
            raise _FetchError("JWKS has no usable signing key")
        return KeySet(keys)

    async def _get_object(
        self, url: str, what: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, Any] | None, str | None]:
        """One GET: the status, and for a 200 the JSON object (at most
        ``max_document_bytes``) and the ``Cache-Control`` header.

        Raises:
            _FetchError: unreachable, too large, not JSON, or not a JSON object.
        """
        try:
            client = await self._client()
            async with client.stream(
                "GET", url, headers=headers, follow_redirects=False
            ) as response:
                if response.status_code != 200:
                    return response.status_code, None, None
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self.max_document_bytes:
                        raise _FetchError(
                            f"{what} is too large: larger than {self.max_document_bytes} bytes"
                        )
                cache_control = response.headers.get("cache-control")
        except httpx.HTTPError as exc:
            raise _FetchError(f"{what} unreachable: {type(exc).__name__}: {exc}") from exc
        try:
            document = json.loads(bytes(body), parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise _FetchError(f"{what} is not JSON") from exc
        if not isinstance(document, dict):
            raise _FetchError(f"{what} is not a JSON object")
        return 200, document, cache_control

    async def _get_json(self, url: str, what: str) -> tuple[dict[str, Any], float]:
        status, document, cache_control = await self._get_object(url, what)
        if document is None:
            raise _FetchError(f"{what} answered HTTP {status}")
        return document, self._ttl(cache_control)

    def _ttl(self, cache_control: str | None) -> float:
        if not cache_control:
            return self.default_ttl
        if _NO_CACHE.search(cache_control):
            return self.min_ttl
        found = _MAX_AGE.search(cache_control)
        if found is None:
            return self.default_ttl
        return float(min(max(int(found.group(1)), self.min_ttl), self.max_ttl))

    # -- userinfo ---------------------------------------------------------------------

    async def userinfo(
        self, token: str, *, principal: Principal | None = None, ttl: float = 300.0
    ) -> Mapping[str, Any]:
        """The provider's profile of the token's user (OIDC Core §5.3), cached.

        Never called on the request path by asgi_auth itself: call it from the
        endpoints that need the profile. Answers are cached per token for ``ttl``
        seconds (never past the token's ``exp``) and concurrent calls share one
        request.

        Args:
            token: the caller's access token (see
                :meth:`~asgi_auth.credentials.BearerExtractor.extract`).
            principal: the token's principal when already verified (skips a verify).
            ttl: how long to reuse an answer, in seconds.

        Raises:
            InvalidToken: the token is not valid here, or the provider refused it.
            ProviderUnavailable: no userinfo endpoint is known, or the provider could
                not be reached, answered badly or named another subject.
        """
        if principal is None:
            principal = await self.verify(token)
        now = self._monotonic()
        cached = self._userinfo.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        task = self._userinfo_tasks.get(token)
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.get_running_loop().create_task(self._fetch_userinfo(token, principal))
            self._userinfo_tasks[token] = task
            task.add_done_callback(lambda done: self._userinfo_done(token, done))
        done, _ = await asyncio.wait((task,), timeout=self.timeout)
        if not done:
            raise ProviderUnavailable("userinfo did not answer in time")
        info = task.result()
        until = now + ttl
        exp = principal.claims.get("exp")
        if isinstance(exp, int | float):
            until = min(until, now + (exp - self._clock()))
        if until > now:
            if len(self._userinfo) >= _USERINFO_CACHE_SIZE:
                self._userinfo.popitem(last=False)
            self._userinfo[token] = (until, info)
        return info

    def _userinfo_done(self, token: str, task: asyncio.Task[Mapping[str, Any]]) -> None:
        if self._userinfo_tasks.get(token) is task:
            del self._userinfo_tasks[token]
        if not task.cancelled():
            task.exception()  # retrieved here, so a caller who stopped waiting logs nothing

    async def _fetch_userinfo(self, token: str, principal: Principal) -> Mapping[str, Any]:
        if self.userinfo_endpoint is None:
            raise ProviderUnavailable(f"{self.issuer} publishes no userinfo endpoint")
        try:
            async with asyncio.timeout(self.timeout):
                status, info, _ = await self._get_object(
                    self.userinfo_endpoint, "userinfo", {"Authorization": f"Bearer {token}"}
                )
        except TimeoutError as exc:
            raise ProviderUnavailable("userinfo did not answer in time") from exc
        except _FetchError as exc:
            raise ProviderUnavailable(str(exc)) from exc
        if status in (401, 403):
            raise InvalidToken(f"userinfo refused the token ({status})")
        if info is None:
            raise ProviderUnavailable(f"userinfo answered HTTP {status}")
        # OIDC Core §5.3.4: the sub must match the token's, or the answer is unusable.
        if info.get("sub") != principal.subject:
            raise ProviderUnavailable("userinfo answered for another subject")
        try:
            frozen: Mapping[str, Any] = freeze(info)
        except ValueError as exc:
            raise ProviderUnavailable(f"userinfo: {exc}") from exc
        return frozen


class _ProviderKeys(JWTVerifier):
    """The verifier of one key set of a provider: on each cache miss (a token about to
    be parsed and checked), it lets its :class:`OIDCVerifier` start a background
    refresh when the keys are stale. Cache hits skip that clock read; a token stays
    cached only until its ``exp`` anyway, and any new token notices staleness."""

    def __init__(self, owner: OIDCVerifier, keys: KeySet, **options: Any) -> None:
        super().__init__(keys, **options)
        object.__setattr__(self, "_owner", owner)  # JWTVerifier is sealed after __init__

    def _verify(self, token: str) -> tuple[Principal, float | None]:
        owner: OIDCVerifier = self._owner  # type: ignore[attr-defined]
        if owner._monotonic() >= owner._check_at:
            owner._refresh_soon()
        return super()._verify(token)


class IssuerRouter:
    """Sends each token to the verifier of the issuer it names, from an allow-list.

    Local tokens and provider tokens in one app: ``IssuerRouter([local, auth0])``.
    The ``iss`` is read (strictly, unverified) only to choose; the chosen verifier
    then checks everything, ``iss`` included. A token naming an issuer not on the
    list is refused without any fetch.

    Args:
        verifiers: verifiers with an ``issuers`` attribute (``JWTVerifier`` built
            with ``issuer=``, ``OIDCVerifier``), or a mapping of issuer to verifier.
        max_token_bytes: longer tokens are refused unparsed.

    Raises:
        ValueError: a verifier names no issuer, or two name the same one.
    """

    def __init__(
        self,
        verifiers: Iterable[JWTVerifier | OIDCVerifier] | Mapping[str, TokenVerifier],
        *,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
    ) -> None:
        routes: dict[str, TokenVerifier] = {}
        if isinstance(verifiers, Mapping):
            pairs: list[tuple[str, TokenVerifier]] = list(verifiers.items())
        else:
            pairs = []
            for candidate in verifiers:
                if not candidate.issuers:
                    raise ValueError(f"{candidate!r} accepts any issuer: give it issuer=")
                pairs.extend((issuer, candidate) for issuer in candidate.issuers)
        for issuer, verifier in pairs:
            if not isinstance(issuer, str) or not issuer:
                raise ValueError("issuers must be non-empty strings")
            if issuer in routes:
                raise ValueError(f"two verifiers for issuer {issuer!r}")
            if not inspect.iscoroutinefunction(getattr(verifier, "verify", None)):
                raise TypeError(f"the verifier for {issuer!r} has no async verify(token)")
            routes[issuer] = verifier
        if not routes:
            raise ValueError("an IssuerRouter needs at least one verifier")
        self.routes: Final[Mapping[str, TokenVerifier]] = routes
        self.max_token_bytes: Final = max_token_bytes
        self._seen: dict[str, TokenVerifier] = {}

    async def verify(self, token: str) -> Principal:
        """Return the principal of a valid token, verified by its issuer's verifier.

        Raises:
            InvalidToken: the token is malformed, names no accepted issuer, or its
                verifier refuses it.
            ProviderUnavailable: its verifier cannot reach the provider.
        """
        verifier: TokenVerifier | None = self._seen.get(token) if type(token) is str else None
        if verifier is None:
            iss = unverified_issuer(token, self.max_token_bytes)
            verifier = self.routes.get(iss) if iss is not None else None
            if verifier is None:
                raise InvalidToken(f"issuer {_short(iss)} is not accepted")
            principal = await verifier.verify(token)
            if len(self._seen) >= DEFAULT_CACHE_SIZE:
                self._seen.clear()
            self._seen[token] = verifier
            return principal
        return await verifier.verify(token)
