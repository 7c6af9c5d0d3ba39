"""An in-process OpenID Connect provider for tests: discovery, JWKS, userinfo and a token endpoint.

:class:`IdentityProvider` is an ASGI app that behaves like a (small) real identity
provider, so that tests of apps and verifiers run without the network: it mints
access tokens, rotates and retires keys, and can be made to misbehave (outages, forced
statuses, delays, hangs, junk key sets, a lying discovery document) by flipping plain
attributes, even while requests run. Reach it in-process through :meth:`http_client`,
or over real HTTP (and TLS) with :meth:`serve`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import copy
import enum
import hmac
import json
import math
import secrets
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeGuard
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

from asgi_auth._http import read_body
from asgi_auth.errors import InvalidToken
from asgi_auth.tokens.keys import ALGORITHMS, ASYMMETRIC_ALGORITHMS, Key
from asgi_auth.tokens.verifier import read_unverified
from asgi_auth.types import Receive, Scope, Send

if TYPE_CHECKING:
    import httpx

    from asgi_auth.testing._tls import TestCertificates
    from asgi_auth.tokens.oidc import OIDCVerifier

__all__ = ["DEFAULT_ISSUER", "IdentityProvider"]

#: The issuer of a provider used in-process without an issuer of its own.
DEFAULT_ISSUER: Final = "https://idp.test"
#: Request bodies (the token endpoint's form) larger than this are refused.
MAX_BODY: Final = 16_384
#: Longest access token the userinfo endpoint reads.
MAX_TOKEN: Final = 16_384
_ROUTES: Final[Mapping[str, str]] = {
    "/.well-known/openid-configuration": "discovery",
    "/.well-known/jwks.json": "jwks",
    "/userinfo": "userinfo",
    "/oauth/token": "token",
}
_METHODS: Final[Mapping[str, tuple[str, ...]]] = {
    "discovery": ("GET", "HEAD"),
    "jwks": ("GET", "HEAD"),
    "userinfo": ("GET", "POST"),
    "token": ("POST",),
}
_FORM: Final = b"application/x-www-form-urlencoded"
_NO_STORE: Final = ((b"cache-control", b"no-store"), (b"pragma", b"no-cache"))
_HANG_POLL: Final = 0.02
_START_TIMEOUT: Final = 10.0
_STOP_TIMEOUT: Final = 10.0


class _Default(enum.Enum):
    PROVIDER = "the provider's default"


#: An argument left to the provider's default (``audience`` of :meth:`IdentityProvider.token`).
PROVIDER_DEFAULT: Final = _Default.PROVIDER

Audience = str | list[str] | None


@dataclass(frozen=True, slots=True)
class _Client:
    secret: bytes
    scopes: tuple[str, ...]
    permissions: tuple[str, ...]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _names(value: str | Iterable[str], what: str) -> list[str]:
    names = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"{what} must be strings")
    return names


def _check_issuer(issuer: str) -> str:
    if not isinstance(issuer, str):
        raise TypeError("issuer must be a string")
    parts = urlsplit(issuer)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"issuer must be an http(s) URL with a host: {issuer!r}")
    if parts.query or parts.fragment:
        raise ValueError("an issuer has no query or fragment (OIDC Discovery §2)")
    return issuer


class _ProviderApp:
    """The ASGI face of a provider (a class, so that servers detect ASGI 3 by its ``__call__``)."""

    __slots__ = ("provider",)

    def __init__(self, provider: IdentityProvider) -> None:
        self.provider = provider

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.provider._handle(scope, receive, send)


class IdentityProvider:
    """An OpenID Connect provider for tests, served in-process as an ASGI app.

    Under the issuer's path (``https://host/realms/demo`` serves
    ``/realms/demo/.well-known/openid-configuration``…) it answers:

    - ``GET …/.well-known/openid-configuration``: the discovery document;
    - ``GET …/.well-known/jwks.json``: the published public keys;
    - ``GET``/``POST …/userinfo``: ``{"sub", **profile}`` for a valid bearer access
      token signed by one of its published keys (401 ``invalid_token`` otherwise);
    - ``POST …/oauth/token``: the client-credentials grant (RFC 6749 §4.4), with client
      authentication by form (``client_secret_post``) or HTTP Basic.

    Anything else is a 404, a wrong method a 405, and hostile input a 4xx.

    The fault switches are plain attributes, read on every request, so a test may flip
    them while requests run. They apply to the four endpoints above, in this order:
    ``delay``, ``hang``, ``outage``, ``status``.

    Args:
        issuer: the issuer identifier (``iss``). ``None``: set by :meth:`serve` to the
            served URL, and :data:`DEFAULT_ISSUER` in-process.
        algorithm: the signing algorithm of the first key (RS*, PS*, ES*, EdDSA).
        audience: the ``aud`` of minted tokens unless a token names its own.
        cache_control: the ``Cache-Control`` of the discovery and JWKS answers (``None``:
            no such header).
        jwks_alg: publish each JWK's ``alg``; ``False`` leaves it out, as some providers do.

    Attributes:
        audience: the default ``aud`` of minted tokens.
        cache_control: ``Cache-Control`` of the discovery and JWKS answers, or ``None``.
        jwks_alg: whether published JWKs carry ``alg``.
        outage: answer 503 ``temporarily_unavailable``.
        status: answer this status with an empty JSON object (``{}``) as the body.
        delay: seconds to wait (``asyncio.sleep``) before answering.
        hang: do not answer until cleared, the server stops, or ``hang_timeout``
            seconds pass (then 503). In-process, httpx's timeouts do not apply: bound the
            call yourself (``asyncio.wait_for``).
        hang_timeout: the bound on ``hang``, in seconds (60).
        jwks_body: serve these exact bytes as the JWKS body (junk, invalid JSON…).
        discovery_overrides: merged into the discovery document; a key mapped to
            ``None`` is removed from it.
        extra_jwks: raw JWK entries appended to the published keys (junk keys,
            duplicate ``kid`` values, encryption keys…).
        token_lifetime: lifetime in seconds of tokens from the token endpoint (300).
        requests: requests per endpoint (``"discovery"``, ``"jwks"``, ``"userinfo"``,
            ``"token"``), faulty answers included.
        ca_file: while served with TLS, the path of the throwaway CA's PEM certificate.

    Raises:
        ValueError: an HMAC or unknown algorithm, or an issuer that is not an http(s)
            URL with a host and no query or fragment.
    """

    __test__ = False  # not a pytest test class, even when imported into a test module

    def __init__(
        self,
        issuer: str | None = None,
        *,
        algorithm: str = "RS256",
        audience: str | list[str] | None = None,
        cache_control: str | None = "public, max-age=300",
        jwks_alg: bool = True,
    ) -> None:
        self._issuer = None if issuer is None else _check_issuer(issuer)
        self.audience: Audience = list(audience) if isinstance(audience, list) else audience
        self.cache_control = cache_control
        self.jwks_alg = jwks_alg
        self.outage = False
        self.status: int | None = None
        self.delay = 0.0
        self.hang = False
        self.hang_timeout = 60.0
        self.jwks_body: bytes | None = None
        self.discovery_overrides: dict[str, Any] = {}
        self.extra_jwks: list[dict[str, Any]] = []
        self.token_lifetime = 300.0
        self.requests: collections.Counter[str] = collections.Counter()
        self.ca_file: str | None = None
        self._lock = threading.Lock()
        self._kid_prefix = f"idp-{secrets.token_hex(3)}"
        self._serial = 0
        self._keys: dict[str, Key] = {}
        self._published: list[str] = []
        self._current_kid = self._add_key(algorithm)
        self._clients: dict[str, _Client] = {}
        self._profiles: dict[str, dict[str, Any]] = {}
        self._app = _ProviderApp(self)
        self._serving = False
        self._served_origin: str | None = None
        self._stopping = threading.Event()
        self._certificates: TestCertificates | None = None

    def __repr__(self) -> str:
        return f"IdentityProvider(issuer={self.issuer!r}, current_kid={self.current_kid!r})"

    # -- identity -----------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The issuer identifier: the one given, else the served URL while serving, else
        :data:`DEFAULT_ISSUER`."""
        if self._issuer is not None:
            return self._issuer
        return self._served_origin or DEFAULT_ISSUER

    @property
    def base_url(self) -> str:
        """Where the issuer's documents are reached: the issuer, except while an explicitly
        given issuer is served, where it is the served origin followed by the issuer's path."""
        origin = self._served_origin
        if origin is None or self._issuer is None:
            return self.issuer
        return origin + urlsplit(self._issuer).path

    @property
    def app(self) -> _ProviderApp:
        """The ASGI app serving the provider's endpoints."""
        return self._app

    # -- keys ---------------------------------------------------------------------------

    def _add_key(self, algorithm: str) -> str:
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise ValueError(
                f"an identity provider signs with public-key algorithms "
                f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}), not {algorithm!r}"
            )
        with self._lock:
            self._serial += 1
            kid = f"{self._kid_prefix}-{self._serial}"
        key = Key.generate(algorithm, kid=kid)
        with self._lock:
            self._keys[kid] = key
            self._published.append(kid)
        return kid

    @property
    def current_kid(self) -> str:
        """The ``kid`` of the key tokens are signed with by default."""
        return self._current_kid

    @property
    def published_kids(self) -> tuple[str, ...]:
        """The ``kid`` values of the published keys, oldest first."""
        with self._lock:
            return tuple(self._published)

    def key(self, kid: str | None = None) -> Key:
        """The key with this ``kid`` (default: the current one), retired or not.

        Raises:
            KeyError: the provider never held such a key.
        """
        with self._lock:
            key = self._keys.get(self._current_kid if kid is None else kid)
        if key is None:
            raise KeyError(f"this provider holds no key {kid!r}")
        return key

    def rotate(self, algorithm: str | None = None) -> str:
        """Create a key, publish it next to the others and sign with it from now on.

        Args:
            algorithm: the new key's algorithm; default the current key's.

        Returns:
            The new key's ``kid``.

        Raises:
            ValueError: an HMAC or unknown algorithm.
        """
        kid = self._add_key(algorithm or self.key().algorithm)
        self._current_kid = kid
        return kid

    def retire(self, kid: str) -> None:
        """Stop publishing a key. Its private half stays, so ``token(kid=…)`` still mints
        with it (tokens under a retired key); retiring the current key makes the provider
        sign with a key it does not publish.

        Raises:
            KeyError: the provider never held such a key.
        """
        with self._lock:
            if kid not in self._keys:
                raise KeyError(f"this provider holds no key {kid!r}")
            if kid in self._published:
                self._published.remove(kid)

    def publish(self, kid: str) -> None:
        """Publish a retired key again (e.g. a key that signed tokens before it appeared).

        Raises:
            KeyError: the provider never held such a key.
        """
        with self._lock:
            if kid not in self._keys:
                raise KeyError(f"this provider holds no key {kid!r}")
            if kid not in self._published:
                self._published.append(kid)

    def jwks(self) -> dict[str, Any]:
        """The published JWKS document: the published keys, then :attr:`extra_jwks`."""
        with self._lock:
            keys = [self._keys[kid] for kid in self._published]
        entries: list[dict[str, Any]] = []
        for key in keys:
            jwk = key.public_jwk()
            if not self.jwks_alg:
                jwk.pop("alg", None)
            entries.append(jwk)
        entries.extend(copy.deepcopy(entry) for entry in self.extra_jwks)
        return {"keys": entries}

    # -- clients and profiles -----------------------------------------------------------

    def add_client(
        self,
        client_id: str,
        secret: str,
        *,
        scopes: Iterable[str] = (),
        permissions: Iterable[str] = (),
    ) -> None:
        """Register (or replace) a client of the client-credentials grant.

        Args:
            client_id: the client's id; the ``sub``, ``azp`` and ``client_id`` of its tokens.
            secret: its secret.
            scopes: the scopes it may request; all of them when it names none.
            permissions: the ``permissions`` claim of its tokens.

        Raises:
            ValueError: an empty id or secret, or a scope with a space.
        """
        if not isinstance(client_id, str) or not client_id:
            raise ValueError("client_id must be a non-empty string")
        if not isinstance(secret, str) or not secret:
            raise ValueError("secret must be a non-empty string")
        granted = tuple(_names(scopes, "scopes"))
        if any(not scope or " " in scope for scope in granted):
            raise ValueError("scopes must be non-empty and without spaces")
        self._clients[client_id] = _Client(
            secret.encode("utf-8"), granted, tuple(_names(permissions, "permissions"))
        )

    def set_profile(self, subject: str, **claims: Any) -> None:
        """Set the userinfo claims of ``subject`` (replacing earlier ones)."""
        self._profiles[subject] = dict(claims)

    def reset_counts(self) -> None:
        """Forget the request counts."""
        self.requests.clear()

    # -- minting ------------------------------------------------------------------------

    def token(
        self,
        subject: str = "user",
        *,
        audience: Audience | Literal[_Default.PROVIDER] = PROVIDER_DEFAULT,
        scopes: str | Iterable[str] | None = None,
        roles: str | Iterable[str] | None = None,
        permissions: str | Iterable[str] | None = None,
        claims: Mapping[str, Any] | None = None,
        expires_in: float = 300,
        issued_at: float | None = None,
        kid: str | None = None,
        algorithm: str | None = None,
        headers: Mapping[str, Any] | None = None,
        issuer: str | None = None,
        typ: str | None = "at+jwt",
    ) -> str:
        """Mint a signed access token (JWS compact serialization).

        The claims are ``iss``, ``sub``, ``aud`` (left out when ``None``), ``iat``,
        ``exp``, ``jti``, then ``scope`` (space-joined), ``roles`` and ``permissions``
        when given, then ``claims``, which may override any of them. The header is
        ``alg``, ``typ`` (left out when ``None``) and ``kid``, then ``headers``; a header
        mapped to ``None`` is left out (``headers={"kid": None}``: a token without ``kid``).

        Args:
            subject: the ``sub``.
            audience: the ``aud``; default the provider's.
            scopes: the scopes (a string is used as the space-separated ``scope`` itself).
            roles: the ``roles`` claim (a string is one role).
            permissions: the ``permissions`` claim (a string is one permission).
            claims: more claims, merged last.
            expires_in: seconds from ``issued_at`` to ``exp``; negative for an expired token.
            issued_at: the ``iat`` (seconds since the epoch); default now.
            kid: sign with this key, current, older or retired; default the current key.
            algorithm: sign with this algorithm instead of the key's own (it must suit
                the key's type).
            headers: more header fields, merged last (``alg`` there changes only the
                header, not the signature).
            issuer: the ``iss``; default the provider's.
            typ: the ``typ`` header (RFC 9068's ``at+jwt``).

        Raises:
            KeyError: no key with this ``kid``.
            ValueError: an algorithm the key cannot sign with.
        """
        key = self.key(kid)
        alg = key.algorithm if algorithm is None else algorithm
        signer = ALGORITHMS.get(alg)
        if signer is None:
            raise ValueError(f"unsupported algorithm {alg!r}")
        now = time.time() if issued_at is None else issued_at
        payload: dict[str, Any] = {"iss": self.issuer if issuer is None else issuer, "sub": subject}
        aud = self.audience if audience is PROVIDER_DEFAULT else audience
        if aud is not None:
            payload["aud"] = list(aud) if isinstance(aud, list) else aud
        payload["iat"] = math.floor(now)
        payload["exp"] = math.floor(now + expires_in)
        payload["jti"] = secrets.token_urlsafe(16)
        if scopes is not None:
            payload["scope"] = scopes if isinstance(scopes, str) else " ".join(scopes)
        if roles is not None:
            payload["roles"] = _names(roles, "roles")
        if permissions is not None:
            payload["permissions"] = _names(permissions, "permissions")
        payload.update(claims or {})
        header: dict[str, Any] = {"alg": alg, "typ": typ, "kid": key.kid}
        header.update(headers or {})
        header = {name: value for name, value in header.items() if value is not None}
        signing_input = f"{_b64url(_json_bytes(header))}.{_b64url(_json_bytes(payload))}"
        try:
            signature = signer.sign(signing_input.encode("ascii"), key.sign_key)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"key {key.kid!r} cannot sign {alg}: {exc}") from exc
        return f"{signing_input}.{_b64url(signature)}"

    # -- serving ------------------------------------------------------------------------

    @contextlib.contextmanager
    def serve(self, tls: bool = False) -> Iterator[str]:
        """Serve the provider over real HTTP on 127.0.0.1 (uvicorn, in a daemon thread).

        A provider created without an issuer takes ``http://127.0.0.1:PORT`` (or
        ``https://…``) as its issuer for the duration; an explicit issuer is kept (so
        tests can simulate a mismatch between where a provider is and what it says).
        Startup and shutdown are each bounded (10 s); a ``hang`` ends when the server stops.

        Args:
            tls: serve HTTPS with a certificate for 127.0.0.1 and ``localhost`` signed by
                a throwaway CA: trust it with :meth:`ssl_context` or :attr:`ca_file`.

        Yields:
            The URL the issuer's documents are served under (:attr:`base_url`): the
            issuer itself unless one was given explicitly.

        Raises:
            ImportError: uvicorn is not installed (``pip install 'asgi-auth[demo]'``).
            RuntimeError: the provider is served already, or the server did not start.
        """
        try:
            import uvicorn
        except ImportError as exc:
            raise ImportError(
                "IdentityProvider.serve() needs uvicorn: pip install 'asgi-auth[demo]'"
            ) from exc
        with self._lock:
            if self._serving:
                raise RuntimeError("this provider is being served already")
            self._serving = True
        try:
            with contextlib.ExitStack() as stack:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                stack.callback(sock.close)
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
                options: dict[str, Any] = {}
                if tls:
                    options = self._tls_files(stack)
                self._stopping.clear()
                server = uvicorn.Server(
                    uvicorn.Config(
                        self._app,
                        interface="asgi3",
                        lifespan="off",
                        ws="none",
                        log_config=None,
                        log_level="warning",
                        access_log=False,
                        proxy_headers=False,
                        timeout_graceful_shutdown=5,
                        **options,
                    )
                )
                thread = threading.Thread(
                    target=server.run,
                    kwargs={"sockets": [sock]},
                    daemon=True,
                    name=f"asgi_auth IdentityProvider :{port}",
                )
                self._served_origin = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
                stack.callback(setattr, self, "_served_origin", None)
                thread.start()
                stack.callback(self._stop, server, thread)
                deadline = time.monotonic() + _START_TIMEOUT
                while not server.started:
                    if time.monotonic() > deadline or not thread.is_alive():
                        raise RuntimeError("the identity provider's server did not start")
                    time.sleep(0.01)
                yield self.base_url
        finally:
            self._serving = False

    def _tls_files(self, stack: contextlib.ExitStack) -> dict[str, Any]:
        if self._certificates is None:
            from asgi_auth.testing import _tls

            self._certificates = _tls.generate()
        certificates = self._certificates
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="asgi-auth-idp-")))
        ca_file, cert_file, key_file = (
            directory / "ca.pem",
            directory / "server.pem",
            directory / "server-key.pem",
        )
        ca_file.write_bytes(certificates.ca_pem)
        cert_file.write_bytes(certificates.cert_pem)
        key_file.touch(mode=0o600)
        key_file.write_bytes(certificates.key_pem)
        self.ca_file = str(ca_file)
        stack.callback(setattr, self, "ca_file", None)
        return {"ssl_certfile": str(cert_file), "ssl_keyfile": str(key_file)}

    def _stop(self, server: Any, thread: threading.Thread) -> None:
        self._stopping.set()  # ends hanging requests, which would hold up the shutdown
        server.should_exit = True
        thread.join(timeout=_STOP_TIMEOUT)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=2)
        if not thread.is_alive():  # in-process requests may hang again
            self._stopping.clear()

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSL context trusting the throwaway CA of :meth:`serve` with ``tls=True``.

        It stays valid after the server stops (the CA lives as long as the provider).

        Raises:
            RuntimeError: the provider was never served with TLS.
        """
        if self._certificates is None:
            raise RuntimeError("serve(tls=True) first: there is no CA to trust yet")
        return ssl.create_default_context(cadata=self._certificates.ca_pem.decode("ascii"))

    def http_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An httpx client that reaches this provider, with :attr:`base_url` as its base.

        In-process it talks to :attr:`app` through ``httpx.ASGITransport``; while the
        provider is served, to the real server (trusting its CA with TLS). Keyword
        arguments go to ``httpx.AsyncClient`` and win over these defaults.
        """
        import httpx

        kwargs.setdefault("base_url", self.base_url)
        if self._served_origin is None:
            kwargs.setdefault("transport", httpx.ASGITransport(app=self._app))
        elif self._served_origin.startswith("https:"):
            kwargs.setdefault("verify", self.ssl_context())
        return httpx.AsyncClient(**kwargs)

    def verifier(self, **options: Any) -> OIDCVerifier:
        """An :class:`~asgi_auth.tokens.oidc.OIDCVerifier` for this provider's issuer,
        fetching through :meth:`http_client` (``allow_http=True`` for an ``http://`` issuer).

        Args:
            **options: more arguments of ``OIDCVerifier`` (``audience=``…); they win.
        """
        from asgi_auth.tokens.oidc import OIDCVerifier

        issuer = self.issuer
        if urlsplit(issuer).scheme == "http":
            options.setdefault("allow_http", True)
        if options.get("http_client") is None:
            import httpx

            # OIDCVerifier leaves a client it was given open; without kept-alive
            # connections, this one holds no socket between fetches to leak.
            options["http_client"] = self.http_client(
                limits=httpx.Limits(max_keepalive_connections=0)
            )
        return OIDCVerifier(issuer, **options)

    # -- the ASGI app -------------------------------------------------------------------

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind == "websocket":
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008, "reason": ""})
            return
        if kind != "http":
            return
        path = scope.get("path")
        prefix = unquote(urlsplit(self.issuer).path).rstrip("/")
        name = None
        if isinstance(path, str) and path.startswith(prefix):
            name = _ROUTES.get(path[len(prefix) :])
        if name is None:
            await _answer(send, 404, {"error": "not_found"})
            return
        self.requests[name] += 1
        if await self._fault(send):
            return
        method = scope.get("method")
        allowed = _METHODS[name]
        if method not in allowed:
            allow = ", ".join(allowed).encode("ascii")
            await _answer(send, 405, {"error": "method_not_allowed"}, [(b"allow", allow)])
            return
        if name == "discovery":
            await self._discovery(send)
        elif name == "jwks":
            await self._jwks(send)
        elif name == "userinfo":
            await self._userinfo(scope, send)
        else:
            await self._token_endpoint(scope, receive, send)

    async def _fault(self, send: Send) -> bool:
        """Apply the fault switches; True when they answered the request."""
        delay = self.delay
        if delay > 0:
            await asyncio.sleep(delay)
        if self.hang:
            deadline = time.monotonic() + self.hang_timeout
            # Polling: `hang` is a plain attribute a test flips, from any thread.
            while self._hanging(deadline):  # noqa: ASYNC110
                await asyncio.sleep(_HANG_POLL)
            if self.hang:
                await _answer(send, 503, {"error": "temporarily_unavailable"}, list(_NO_STORE))
                return True
        if self.outage:
            await _answer(send, 503, {"error": "temporarily_unavailable"}, list(_NO_STORE))
            return True
        status = self.status
        if status is not None:
            if status in (204, 304):  # answers that carry no body
                await send({"type": "http.response.start", "status": status, "headers": []})
                await send({"type": "http.response.body", "body": b""})
            else:
                await _send(send, status, b"{}")
            return True
        return False

    def _hanging(self, deadline: float) -> bool:
        return self.hang and not self._stopping.is_set() and time.monotonic() < deadline

    def _caching(self) -> list[tuple[bytes, bytes]]:
        value = self.cache_control
        return [] if value is None else [(b"cache-control", value.encode("latin-1"))]

    async def _discovery(self, send: Send) -> None:
        issuer = self.issuer
        base = issuer.rstrip("/")
        with self._lock:
            algorithms = {self._keys[kid].algorithm for kid in self._published}
            algorithms.add(self._keys[self._current_kid].algorithm)
        document: dict[str, Any] = {
            "issuer": issuer,
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "userinfo_endpoint": f"{base}/userinfo",
            "token_endpoint": f"{base}/oauth/token",
            "id_token_signing_alg_values_supported": sorted(algorithms),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        }
        for name, value in dict(self.discovery_overrides).items():
            if value is None:
                document.pop(name, None)
            else:
                document[name] = value
        await _answer(send, 200, document, self._caching())

    async def _jwks(self, send: Send) -> None:
        body = self.jwks_body
        if body is None:
            body = _json_bytes(self.jwks())
        await _send(send, 200, bytes(body), self._caching())

    async def _userinfo(self, scope: Scope, send: Send) -> None:
        values = [value for name, value in scope["headers"] if name.lower() == b"authorization"]
        if not values:
            await _answer(send, 401, {"error": "unauthorized"}, _challenge(None))
            return
        scheme, _, token = values[0].decode("latin-1").partition(" ")
        token = token.strip(" ")
        claims = None
        if len(values) == 1 and scheme.lower() == "bearer" and token:
            claims = self._verify_access_token(token)
        if claims is None:
            await _answer(send, 401, {"error": "invalid_token"}, _challenge("invalid_token"))
            return
        subject = claims["sub"]
        await _answer(send, 200, {"sub": subject, **self._profiles.get(subject, {})}, _NO_STORE)

    def _verify_access_token(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this provider issued and still publishes the key of, not
        expired; None otherwise. The audience is not checked (userinfo serves any)."""
        if len(token) > MAX_TOKEN:
            return None
        try:
            header, claims = read_unverified(token)
        except InvalidToken:
            return None
        alg, kid = header.get("alg"), header.get("kid")
        if type(alg) is not str or alg not in ASYMMETRIC_ALGORITHMS or "crit" in header:
            return None
        with self._lock:
            keys = [self._keys[published] for published in self._published]
        candidates = [k for k in keys if alg in k.algorithms and (kid is None or k.kid == kid)]
        signing_input, _, encoded = token.rpartition(".")
        try:
            signature = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            return None
        verifier = ALGORITHMS[alg]
        if not any(
            _verifies(verifier, signing_input.encode("ascii"), key, signature) for key in candidates
        ):
            return None
        now = time.time()
        exp, nbf, sub = claims.get("exp"), claims.get("nbf"), claims.get("sub")
        if not _is_number(exp) or exp <= now:
            return None
        if nbf is not None and (not _is_number(nbf) or nbf > now):
            return None
        if claims.get("iss") != self.issuer or not isinstance(sub, str) or not sub:
            return None
        return claims

    async def _token_endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _content_type(scope) != _FORM:
            await _oauth_error(send, 400, "invalid_request")
            return
        body = await read_body(receive, MAX_BODY)
        params = None if body is None else _form(body)
        if params is None:
            await _oauth_error(send, 400, "invalid_request")
            return
        grant = params.get("grant_type")
        if not grant:
            await _oauth_error(send, 400, "invalid_request")
            return
        if grant != "client_credentials":
            await _oauth_error(send, 400, "unsupported_grant_type")
            return
        credentials = _client_credentials(scope, params)
        if credentials is None:
            await _oauth_error(send, 400, "invalid_request")
            return
        client_id, secret = credentials
        client = self._clients.get(client_id) if client_id else None
        if (
            client is None
            or not secret
            or not hmac.compare_digest(secret.encode("utf-8"), client.secret)
        ):
            challenge = [(b"www-authenticate", b'Basic realm="token"')]
            await _oauth_error(send, 401, "invalid_client", challenge)
            return
        requested = params.get("scope")
        if requested is None:
            granted = client.scopes
        else:
            granted = tuple(dict.fromkeys(part for part in requested.split(" ") if part))
            if not set(granted) <= set(client.scopes):
                await _oauth_error(send, 400, "invalid_scope")
                return
        audience: Audience | Literal[_Default.PROVIDER] = PROVIDER_DEFAULT
        if "audience" in params:
            audience = params["audience"]
            if not audience:
                await _oauth_error(send, 400, "invalid_request")
                return
        lifetime = self.token_lifetime
        token = self.token(
            client_id,
            audience=audience,
            scopes=granted or None,
            permissions=client.permissions,
            claims={"gty": "client-credentials", "azp": client_id, "client_id": client_id},
            expires_in=lifetime,
        )
        document: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": math.floor(lifetime),
        }
        if granted:
            document["scope"] = " ".join(granted)
        await _answer(send, 200, document, _NO_STORE)


# -- ASGI helpers -------------------------------------------------------------------------


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _send(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    response_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})


async def _answer(
    send: Send,
    status: int,
    document: Mapping[str, Any],
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    await _send(send, status, _json_bytes(document), headers)


async def _oauth_error(
    send: Send, status: int, error: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    # RFC 6749 §5.2; token responses and their errors are never cached (§5.1).
    await _answer(send, status, {"error": error}, [*_NO_STORE, *headers])


def _challenge(error: str | None) -> list[tuple[bytes, bytes]]:
    value = b"Bearer" if error is None else f'Bearer error="{error}"'.encode("ascii")
    return [(b"www-authenticate", value), *_NO_STORE]


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _verifies(verifier: Any, message: bytes, key: Key, signature: bytes) -> bool:
    try:
        return bool(verifier.verify(message, key.verify_key, signature))
    except (ValueError, TypeError):  # a signature of the wrong shape for the key
        return False


def _content_type(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-type":
            return bytes(value.split(b";", 1)[0].strip().lower())
    return None


def _form(body: bytes) -> dict[str, str] | None:
    """Form parameters; None when malformed, not UTF-8, or a parameter repeats (RFC 6749 §3.2)."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            errors="strict",
            max_num_fields=64,
        )
    except ValueError:  # UnicodeDecodeError included
        return None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params or "\x00" in value:
            return None
        params[name] = value
    return params


def _client_credentials(scope: Scope, params: Mapping[str, str]) -> tuple[str, str] | None:
    """``(client_id, secret)`` from HTTP Basic or the form; None when malformed or when both
    are used (RFC 6749 §2.3: one method per request). Empty strings when absent."""
    values = [value for name, value in scope["headers"] if name.lower() == b"authorization"]
    if not values:
        return params.get("client_id", ""), params.get("client_secret", "")
    if len(values) > 1 or "client_secret" in params:
        return None
    scheme, _, encoded = values[0].decode("latin-1").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(":")
    if not colon:
        return None
    # RFC 6749 §2.3.1: both halves are form-urlencoded before Basic encoding.
    client_id, secret = unquote_plus(user), unquote_plus(password)
    if params.get("client_id", client_id) != client_id:
        return None
    return client_id, secret
