"""Policies: small immutable rules over a caller's roles, claims and scopes.

A policy is evaluated against :class:`Facts`. Facts from the token are always known;
facts from the store may not be loaded yet, so evaluation is three-valued (Kleene
logic): ``True``, ``False`` or ``None`` for "cannot tell without the store". A guard
first evaluates without the store and loads roles and claims only when the answer
is ``None``, so a route whose policy the token already settles costs no query.

Policies compose with ``&``, ``|`` and ``~`` (or :func:`all_of`, :func:`any_of`,
:func:`not_`), print as readable expressions for logs, and say which requirement
failed (:meth:`Policy.failures`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, NamedTuple

__all__ = [
    "AllOf",
    "AnyOf",
    "ByMethod",
    "Facts",
    "HasClaim",
    "HasRole",
    "HasScope",
    "IsAuthenticated",
    "Not",
    "Policy",
    "all_of",
    "any_of",
    "authenticated",
    "by_method",
    "has_claim",
    "has_role",
    "has_scope",
    "not_",
]

_NONE: Final[frozenset[str]] = frozenset()


class Facts(NamedTuple):
    """What a policy may look at for one request (a tuple: built on every guarded request).

    Attributes:
        authenticated: whether the caller presented a valid token.
        scopes: the token's scopes.
        roles: roles known so far (from the token, and from the store once loaded).
        claims: claims known so far (token permissions, and store claims once loaded).
        store_loaded: True once the store's roles and claims are in, or when the
            store is not consulted at all: then a missing role or claim is definite.
        method: the HTTP method (``"GET"``…), or ``"WEBSOCKET"``.
    """

    authenticated: bool
    scopes: frozenset[str] = _NONE
    roles: frozenset[str] = _NONE
    claims: frozenset[str] = _NONE
    store_loaded: bool = True
    method: str = "GET"


class Policy(ABC):
    """A rule a request must satisfy. Subclasses are frozen dataclasses."""

    __slots__ = ()

    @abstractmethod
    def evaluate(self, facts: Facts) -> bool | None:
        """True (allowed), False (refused) or None (needs the store's roles and claims)."""

    @abstractmethod
    def failures(self, facts: Facts) -> tuple[Policy, ...]:
        """The requirements that are not met (empty when the policy holds)."""

    @property
    def needs_store(self) -> bool:
        """Whether roles or claims appear anywhere in this policy."""
        return False

    def scopes(self) -> tuple[str, ...]:
        """Scopes this policy names (for the ``scope`` attribute of a 403 challenge)."""
        return ()

    def __and__(self, other: Policy) -> Policy:
        return all_of(self, other)

    def __or__(self, other: Policy) -> Policy:
        return any_of(self, other)

    def __invert__(self) -> Policy:
        return Not(self)


class _Leaf(Policy):
    __slots__ = ()

    def failures(self, facts: Facts) -> tuple[Policy, ...]:
        return () if self.evaluate(facts) else (self,)


@dataclass(frozen=True, slots=True, repr=False)
class IsAuthenticated(_Leaf):
    """Any caller with a valid token."""

    def evaluate(self, facts: Facts) -> bool:
        return facts.authenticated

    def __repr__(self) -> str:
        return "authenticated"


def _held(found: bool, facts: Facts) -> bool | None:
    """A role or claim: held if known so; missing only once the store has answered (or
    is not consulted, or the caller is anonymous and has no store rights at all)."""
    if found:
        return True
    return False if facts.store_loaded or not facts.authenticated else None


def _name(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{what} must be a non-empty string")
    return value


@dataclass(frozen=True, slots=True, repr=False)
class HasRole(_Leaf):
    """The caller has this role (from the token or the store)."""

    role: str

    def __post_init__(self) -> None:
        _name(self.role, "role")

    def evaluate(self, facts: Facts) -> bool | None:
        return _held(self.role in facts.roles, facts)

    @property
    def needs_store(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"has_role({self.role!r})"


@dataclass(frozen=True, slots=True, repr=False)
class HasClaim(_Leaf):
    """The caller holds this claim (a store claim, or a token permission)."""

    claim: str

    def __post_init__(self) -> None:
        _name(self.claim, "claim")

    def evaluate(self, facts: Facts) -> bool | None:
        return _held(self.claim in facts.claims, facts)

    @property
    def needs_store(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"has_claim({self.claim!r})"


@dataclass(frozen=True, slots=True, repr=False)
class HasScope(_Leaf):
    """The token grants this OAuth scope (scopes never come from the store)."""

    scope: str

    def __post_init__(self) -> None:
        _name(self.scope, "scope")

    def evaluate(self, facts: Facts) -> bool:
        return self.scope in facts.scopes

    def scopes(self) -> tuple[str, ...]:
        return (self.scope,)

    def __repr__(self) -> str:
        return f"has_scope({self.scope!r})"


def _policies(items: Iterable[Policy]) -> tuple[Policy, ...]:
    found = tuple(items)
    if not found or not all(isinstance(p, Policy) for p in found):
        raise TypeError("expected one or more policies")
    return found


@dataclass(frozen=True, slots=True, repr=False)
class AllOf(Policy):
    """Every policy holds."""

    policies: tuple[Policy, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "policies", _policies(self.policies))

    def evaluate(self, facts: Facts) -> bool | None:
        unknown = False
        for policy in self.policies:
            result = policy.evaluate(facts)
            if result is False:
                return False
            unknown = unknown or result is None
        return None if unknown else True

    def failures(self, facts: Facts) -> tuple[Policy, ...]:
        return tuple(f for p in self.policies for f in p.failures(facts))

    @property
    def needs_store(self) -> bool:
        return any(p.needs_store for p in self.policies)

    def scopes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for p in self.policies for s in p.scopes()))

    def __repr__(self) -> str:
        return "all_of(" + ", ".join(map(repr, self.policies)) + ")"


@dataclass(frozen=True, slots=True, repr=False)
class AnyOf(Policy):
    """At least one policy holds."""

    policies: tuple[Policy, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "policies", _policies(self.policies))

    def evaluate(self, facts: Facts) -> bool | None:
        unknown = False
        for policy in self.policies:
            result = policy.evaluate(facts)
            if result is True:
                return True
            unknown = unknown or result is None
        return None if unknown else False

    def failures(self, facts: Facts) -> tuple[Policy, ...]:
        return () if self.evaluate(facts) else (self,)

    @property
    def needs_store(self) -> bool:
        return any(p.needs_store for p in self.policies)

    def scopes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for p in self.policies for s in p.scopes()))

    def __repr__(self) -> str:
        return "any_of(" + ", ".join(map(repr, self.policies)) + ")"


@dataclass(frozen=True, slots=True, repr=False)
class Not(Policy):
    """The policy does not hold."""

    policy: Policy

    def __post_init__(self) -> None:
        if not isinstance(self.policy, Policy):
            raise TypeError("Not() takes a policy")

    def evaluate(self, facts: Facts) -> bool | None:
        result = self.policy.evaluate(facts)
        return None if result is None else not result

    def failures(self, facts: Facts) -> tuple[Policy, ...]:
        return () if self.evaluate(facts) else (self,)

    @property
    def needs_store(self) -> bool:
        return self.policy.needs_store

    def __repr__(self) -> str:
        return f"not_({self.policy!r})"


@dataclass(frozen=True, slots=True, repr=False)
class ByMethod(Policy):
    """A policy per HTTP method (``GET`` may read, ``DELETE`` needs more).

    Methods are upper-cased. ``HEAD`` follows ``GET`` unless given its own rule. A
    method with no rule and no ``otherwise`` is refused.
    """

    rules: Mapping[str, Policy]
    otherwise: Policy | None = field(default=None)

    def __post_init__(self) -> None:
        rules = {str(m).upper(): p for m, p in self.rules.items()}
        if not rules or not all(isinstance(p, Policy) for p in rules.values()):
            raise TypeError("ByMethod needs a mapping of methods to policies")
        if "GET" in rules and "HEAD" not in rules:
            rules["HEAD"] = rules["GET"]
        if self.otherwise is not None and not isinstance(self.otherwise, Policy):
            raise TypeError("otherwise must be a policy")
        object.__setattr__(self, "rules", MappingProxyType(rules))

    def _rule(self, facts: Facts) -> Policy | None:
        return self.rules.get(facts.method, self.otherwise)

    def evaluate(self, facts: Facts) -> bool | None:
        rule = self._rule(facts)
        return False if rule is None else rule.evaluate(facts)

    def failures(self, facts: Facts) -> tuple[Policy, ...]:
        rule = self._rule(facts)
        return (self,) if rule is None else rule.failures(facts)

    @property
    def needs_store(self) -> bool:
        rules = [*self.rules.values(), *([self.otherwise] if self.otherwise else [])]
        return any(p.needs_store for p in rules)

    def scopes(self) -> tuple[str, ...]:
        return ()  # depends on the method; see failures()

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.rules.items(), key=lambda kv: kv[0])), self.otherwise))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ByMethod):
            return NotImplemented
        return dict(self.rules) == dict(other.rules) and self.otherwise == other.otherwise

    def __repr__(self) -> str:
        parts = [f"{m}={p!r}" for m, p in sorted(self.rules.items())]
        if self.otherwise is not None:
            parts.append(f"otherwise={self.otherwise!r}")
        return "by_method(" + ", ".join(parts) + ")"


authenticated: Final[Policy] = IsAuthenticated()


def has_role(role: str) -> Policy:
    """The caller has ``role``."""
    return HasRole(role)


def has_claim(claim: str) -> Policy:
    """The caller holds ``claim``."""
    return HasClaim(claim)


def has_scope(scope: str) -> Policy:
    """The token grants ``scope``."""
    return HasScope(scope)


def all_of(*policies: Policy) -> Policy:
    """Every policy holds (nested ``all_of`` are flattened)."""
    flat: list[Policy] = []
    for policy in _policies(policies):
        flat.extend(policy.policies if isinstance(policy, AllOf) else (policy,))
    return flat[0] if len(flat) == 1 else AllOf(tuple(flat))


def any_of(*policies: Policy) -> Policy:
    """At least one policy holds (nested ``any_of`` are flattened)."""
    flat: list[Policy] = []
    for policy in _policies(policies):
        flat.extend(policy.policies if isinstance(policy, AnyOf) else (policy,))
    return flat[0] if len(flat) == 1 else AnyOf(tuple(flat))


def not_(policy: Policy) -> Policy:
    """``policy`` does not hold."""
    return Not(policy)


def by_method(otherwise: Policy | None = None, **rules: Policy) -> Policy:
    """``by_method(GET=has_claim("can_read"), DELETE=has_claim("can_delete"))``."""
    return ByMethod(rules, otherwise)
