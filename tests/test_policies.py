"""Policies as pure logic over Facts: leaves, Kleene composition, repr, failures, ByMethod."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any, Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_auth.authz.policies import (
    AllOf,
    AnyOf,
    ByMethod,
    Facts,
    HasClaim,
    HasRole,
    HasScope,
    IsAuthenticated,
    Not,
    Policy,
    all_of,
    any_of,
    authenticated,
    by_method,
    has_claim,
    has_role,
    has_scope,
    not_,
)

# --- facts used throughout -----------------------------------------------------------

ANON: Final = Facts(authenticated=False)
ANON_UNLOADED: Final = Facts(authenticated=False, store_loaded=False)
USER: Final = Facts(authenticated=True)
USER_UNLOADED: Final = Facts(authenticated=True, store_loaded=False)


def facts(
    *,
    authenticated: bool = True,
    scopes: tuple[str, ...] = (),
    roles: tuple[str, ...] = (),
    claims: tuple[str, ...] = (),
    store_loaded: bool = True,
    method: str = "GET",
) -> Facts:
    return Facts(
        authenticated=authenticated,
        scopes=frozenset(scopes),
        roles=frozenset(roles),
        claims=frozenset(claims),
        store_loaded=store_loaded,
        method=method,
    )


# --- leaves --------------------------------------------------------------------------


def test_authenticated_is_the_token_alone_and_never_unknown() -> None:
    assert authenticated.evaluate(USER) is True
    assert authenticated.evaluate(USER_UNLOADED) is True
    assert authenticated.evaluate(ANON) is False
    assert authenticated.evaluate(ANON_UNLOADED) is False
    assert isinstance(authenticated, IsAuthenticated)


@pytest.mark.parametrize(
    ("make", "field"),
    [(has_role, "roles"), (has_claim, "claims")],
    ids=["has_role", "has_claim"],
)
def test_role_and_claim_leaves_are_three_valued(make: Callable[[str], Policy], field: str) -> None:
    policy = make("admin")

    def holding(*names: str, store_loaded: bool = True) -> Facts:
        held = tuple(names)
        if field == "roles":
            return facts(roles=held, store_loaded=store_loaded)
        return facts(claims=held, store_loaded=store_loaded)

    # Present: true whether or not the store was consulted.
    assert policy.evaluate(holding("admin", "other")) is True
    assert policy.evaluate(holding("admin", store_loaded=False)) is True
    # Absent after the store answered: definitely false.
    assert policy.evaluate(holding("other")) is False
    assert policy.evaluate(holding()) is False
    # Absent, authenticated, store not yet loaded: unknown.
    assert policy.evaluate(holding("other", store_loaded=False)) is None
    assert policy.evaluate(USER_UNLOADED) is None
    # An anonymous caller has no store rights: never unknown.
    assert policy.evaluate(ANON_UNLOADED) is False
    assert policy.evaluate(ANON) is False


def test_role_and_claim_are_different_namespaces() -> None:
    assert has_role("x").evaluate(facts(claims=("x",))) is False
    assert has_claim("x").evaluate(facts(roles=("x",))) is False
    assert has_scope("x").evaluate(facts(roles=("x",), claims=("x",))) is False


def test_has_scope_is_from_the_token_and_never_unknown() -> None:
    policy = has_scope("items:write")
    assert policy.evaluate(facts(scopes=("items:read", "items:write"))) is True
    assert policy.evaluate(facts(scopes=("items:write",), store_loaded=False)) is True
    assert policy.evaluate(facts(scopes=("items:read",))) is False
    # The store never supplies scopes, so an unloaded store does not make it unknown.
    assert policy.evaluate(facts(scopes=("items:read",), store_loaded=False)) is False
    assert policy.evaluate(ANON_UNLOADED) is False
    # Scope matching is exact: no prefixes, no case folding.
    assert policy.evaluate(facts(scopes=("items",))) is False
    assert policy.evaluate(facts(scopes=("ITEMS:WRITE",))) is False


# --- Kleene logic --------------------------------------------------------------------

# Children whose value under KLEENE_FACTS is True, False and None respectively.
KLEENE_FACTS: Final = facts(scopes=("yes",), store_loaded=False)
CHILD: Final[dict[bool | None, Policy]] = {
    True: has_scope("yes"),
    False: has_scope("no"),
    None: has_role("unknown"),
}
VALUES: Final[list[bool | None]] = [True, False, None]


def kleene_and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def kleene_or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def test_children_have_the_intended_values() -> None:
    for value, child in CHILD.items():
        assert child.evaluate(KLEENE_FACTS) is value


@pytest.mark.parametrize(("a", "b"), list(itertools.product(VALUES, VALUES)))
def test_all_of_truth_table(a: bool | None, b: bool | None) -> None:
    expected = kleene_and(a, b)
    assert AllOf((CHILD[a], CHILD[b])).evaluate(KLEENE_FACTS) is expected
    assert (CHILD[a] & CHILD[b]).evaluate(KLEENE_FACTS) is expected


@pytest.mark.parametrize(("a", "b"), list(itertools.product(VALUES, VALUES)))
def test_any_of_truth_table(a: bool | None, b: bool | None) -> None:
    expected = kleene_or(a, b)
    assert AnyOf((CHILD[a], CHILD[b])).evaluate(KLEENE_FACTS) is expected
    assert (CHILD[a] | CHILD[b]).evaluate(KLEENE_FACTS) is expected


@pytest.mark.parametrize(
    ("a", "expected"), [(True, False), (False, True), (None, None)], ids=["T", "F", "N"]
)
def test_not_truth_table(a: bool | None, expected: bool | None) -> None:
    assert Not(CHILD[a]).evaluate(KLEENE_FACTS) is expected
    assert (~CHILD[a]).evaluate(KLEENE_FACTS) is expected


@pytest.mark.parametrize(("a", "b", "c"), list(itertools.product(VALUES, repeat=3)))
def test_three_children_in_every_order(a: bool | None, b: bool | None, c: bool | None) -> None:
    for x, y, z in itertools.permutations((a, b, c)):
        children = (CHILD[x], CHILD[y], CHILD[z])
        assert AllOf(children).evaluate(KLEENE_FACTS) is kleene_and(kleene_and(x, y), z)
        assert AnyOf(children).evaluate(KLEENE_FACTS) is kleene_or(kleene_or(x, y), z)


def test_a_definite_answer_does_not_wait_for_the_store() -> None:
    unknown = has_role("admin")
    assert (has_scope("no") & unknown).evaluate(KLEENE_FACTS) is False
    assert (unknown & has_scope("no")).evaluate(KLEENE_FACTS) is False
    assert (has_scope("yes") | unknown).evaluate(KLEENE_FACTS) is True
    assert (unknown | has_scope("yes")).evaluate(KLEENE_FACTS) is True
    # ...but an undecided one does (the guard loads the store then).
    assert (has_scope("yes") & unknown).evaluate(KLEENE_FACTS) is None
    assert (has_scope("no") | unknown).evaluate(KLEENE_FACTS) is None


# --- operators, flattening, equality, hashing ----------------------------------------

A: Final = has_role("admin")
B: Final = has_claim("can_read")
C: Final = has_scope("items:write")
D: Final = authenticated


def test_operators_build_what_the_functions_build() -> None:
    assert A & B == all_of(A, B) == AllOf((A, B))
    assert A | B == any_of(A, B) == AnyOf((A, B))
    assert ~A == not_(A) == Not(A)
    assert isinstance(A & B, AllOf)
    assert isinstance(A | B, AnyOf)
    assert isinstance(~A, Not)


def test_nested_all_of_and_any_of_are_flattened() -> None:
    assert (A & B) & C == A & (B & C) == all_of(A, all_of(B, C)) == AllOf((A, B, C))
    assert (A | B) | C == A | (B | C) == any_of(any_of(A, B), C) == AnyOf((A, B, C))
    chained = A & B & C & D
    assert isinstance(chained, AllOf)
    assert chained.policies == (A, B, C, D)
    assert all_of(A & B, C & D) == AllOf((A, B, C, D))
    # Different kinds are not merged into each other.
    mixed = (A & B) | C
    assert isinstance(mixed, AnyOf)
    assert mixed.policies == (AllOf((A, B)), C)
    assert AllOf((AnyOf((A, B)), C)) == (A | B) & C
    # Not is never simplified away.
    assert Not(Not(A)) == ~~A
    assert ~~A != A


def test_a_single_policy_is_itself() -> None:
    assert all_of(A) is A
    assert any_of(B) is B


def test_equality_is_structural_and_kind_sensitive() -> None:
    assert has_role("admin") == HasRole("admin")
    assert has_role("admin") != has_role("Admin")
    assert has_role("x") != has_claim("x")
    assert has_claim("x") != has_scope("x")
    assert A & B != B & A  # order is kept (it is the evaluation order)
    assert A & B != A | B
    assert IsAuthenticated() == authenticated


def test_policies_are_hashable_dict_keys() -> None:
    table: dict[Policy, str] = {
        has_role("admin"): "role",
        has_claim("admin"): "claim",
        A & B: "and",
        A | B: "or",
        ~A: "not",
        authenticated: "auth",
        by_method(GET=B): "method",
    }
    assert len(table) == 7
    assert table[HasRole("admin")] == "role"
    assert table[HasClaim("admin")] == "claim"
    assert table[AllOf((HasRole("admin"), HasClaim("can_read")))] == "and"
    assert table[any_of(A, B)] == "or"
    assert table[Not(HasRole("admin"))] == "not"
    assert table[IsAuthenticated()] == "auth"
    assert table[ByMethod({"get": HasClaim("can_read")})] == "method"
    assert hash(A & B) == hash(all_of(HasRole("admin"), HasClaim("can_read")))


def test_by_method_equal_rules_are_equal_and_hash_alike() -> None:
    first = by_method(GET=B, DELETE=has_claim("can_delete"))
    same = by_method(delete=has_claim("can_delete"), get=B)
    explicit_head = ByMethod({"GET": B, "HEAD": B, "DELETE": has_claim("can_delete")})
    assert first == same == explicit_head
    assert hash(first) == hash(same) == hash(explicit_head)
    assert len({first, same, explicit_head}) == 1
    assert first != by_method(GET=B)
    assert first != by_method(GET=B, DELETE=has_claim("can_delete"), otherwise=authenticated)
    assert by_method(GET=B, HEAD=A) != by_method(GET=B)
    assert by_method(GET=B, otherwise=A) == by_method(get=B, otherwise=HasRole("admin"))
    assert by_method(GET=B) != B


# --- immutability ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "attribute", "value"),
    [
        (has_role("admin"), "role", "root"),
        (has_claim("can_read"), "claim", "can_write"),
        (has_scope("a"), "scope", "b"),
        (A & B, "policies", (A,)),
        (A | B, "policies", (A,)),
        (~A, "policy", B),
        (by_method(GET=A), "rules", {"GET": B}),
        (by_method(GET=A), "otherwise", B),
    ],
)
def test_policies_are_frozen(policy: Policy, attribute: str, value: object) -> None:
    before = repr(policy)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(policy, attribute, value)
    assert repr(policy) == before


def test_by_method_rules_cannot_be_changed_from_outside() -> None:
    rules: dict[str, Policy] = {"GET": B}
    policy = ByMethod(rules)
    rules["PUT"] = authenticated  # the caller's dict, after construction
    assert policy.evaluate(facts(claims=(), method="PUT")) is False
    with pytest.raises(TypeError):
        policy.rules["PUT"] = authenticated  # type: ignore[index]
    assert "PUT" not in policy.rules


def test_facts_are_frozen() -> None:
    f = facts(roles=("admin",))
    with pytest.raises(AttributeError):
        f.authenticated = False  # type: ignore[misc]
    assert f.authenticated is True


# --- repr ----------------------------------------------------------------------------

NAMESPACE: Final[dict[str, Any]] = {
    "all_of": all_of,
    "any_of": any_of,
    "not_": not_,
    "has_role": has_role,
    "has_claim": has_claim,
    "has_scope": has_scope,
    "authenticated": authenticated,
    "by_method": by_method,
}


@pytest.mark.parametrize(
    ("policy", "text"),
    [
        (authenticated, "authenticated"),
        (has_role("admin"), "has_role('admin')"),
        (has_claim("can_read"), "has_claim('can_read')"),
        (has_scope("items:write"), "has_scope('items:write')"),
        (
            has_role("admin") & has_claim("can_read"),
            "all_of(has_role('admin'), has_claim('can_read'))",
        ),
        (
            has_scope("items:write") | ~has_role("banned"),
            "any_of(has_scope('items:write'), not_(has_role('banned')))",
        ),
        (
            authenticated & (has_role("a") | has_role("b")),
            "all_of(authenticated, any_of(has_role('a'), has_role('b')))",
        ),
        (
            by_method(get=has_claim("can_read"), DELETE=has_claim("can_delete")),
            "by_method(DELETE=has_claim('can_delete'), GET=has_claim('can_read'), "
            "HEAD=has_claim('can_read'))",
        ),
        (
            by_method(POST=has_role("writer"), otherwise=authenticated),
            "by_method(POST=has_role('writer'), otherwise=authenticated)",
        ),
        (has_role("o'brien"), 'has_role("o\'brien")'),
    ],
)
def test_repr_is_a_readable_expression_that_rebuilds_the_policy(policy: Policy, text: str) -> None:
    assert repr(policy) == text
    assert str(policy) == text
    rebuilt = eval(text, {"__builtins__": {}}, NAMESPACE)  # noqa: S307 -- our own literals
    assert rebuilt == policy


def test_repr_names_only_the_policy() -> None:
    policy = by_method(GET=has_role("admin") & ~has_claim("banned"), otherwise=has_scope("s"))
    text = repr(policy)
    # Nothing but the rule itself: no object addresses, no class internals, no facts.
    assert "0x" not in text
    assert "Facts" not in text
    assert "MappingProxy" not in text
    assert "HasRole" not in text
    assert text.count("(") == text.count(")")


# --- failures ------------------------------------------------------------------------


def test_failures_of_a_leaf() -> None:
    assert has_role("admin").failures(facts(roles=("admin",))) == ()
    assert has_role("admin").failures(facts()) == (has_role("admin"),)
    assert authenticated.failures(ANON) == (authenticated,)
    assert authenticated.failures(USER) == ()
    assert has_scope("s").failures(facts(scopes=("s",))) == ()
    assert has_scope("s").failures(facts()) == (has_scope("s"),)


def test_all_of_names_each_unmet_child() -> None:
    policy = has_role("admin") & has_claim("can_read") & has_scope("s") & authenticated
    assert policy.failures(facts(claims=("can_read",))) == (has_role("admin"), has_scope("s"))
    assert policy.failures(facts(roles=("admin",), claims=("can_read",), scopes=("s",))) == ()
    assert policy.failures(ANON) == (
        has_role("admin"),
        has_claim("can_read"),
        has_scope("s"),
        authenticated,
    )


def test_any_of_is_itself_when_nothing_holds() -> None:
    policy = has_role("admin") | has_claim("can_read")
    assert policy.failures(facts()) == (policy,)
    assert policy.failures(facts(claims=("can_read",))) == ()
    assert policy.failures(facts(roles=("admin",))) == ()


def test_failures_of_nested_and_negated_policies() -> None:
    either = has_role("a") | has_role("b")
    policy = has_claim("c") & either & ~has_role("banned")
    assert policy.failures(facts(roles=("banned",))) == (
        has_claim("c"),
        either,
        ~has_role("banned"),
    )
    assert policy.failures(facts(roles=("b",), claims=("c",))) == ()
    assert (~has_role("banned")).failures(facts()) == ()


def test_failures_of_by_method() -> None:
    policy = by_method(GET=has_claim("can_read") & has_scope("r"), DELETE=has_claim("can_delete"))
    assert policy.failures(facts(method="GET", scopes=("r",))) == (has_claim("can_read"),)
    assert policy.failures(facts(method="HEAD")) == (has_claim("can_read"), has_scope("r"))
    assert policy.failures(facts(method="DELETE", claims=("can_delete",))) == ()
    # No rule: the by_method itself is what is unmet.
    assert policy.failures(facts(method="PUT", claims=("can_read", "can_delete"))) == (policy,)


def test_failures_while_the_store_is_not_loaded_name_the_unknown_leaves() -> None:
    policy = has_role("admin") & has_scope("s")
    assert policy.failures(facts(scopes=("s",), store_loaded=False)) == (has_role("admin"),)


# --- scopes and needs_store ----------------------------------------------------------


def test_scopes_named_by_a_policy() -> None:
    assert has_scope("items:write").scopes() == ("items:write",)
    assert has_role("admin").scopes() == ()
    assert has_claim("c").scopes() == ()
    assert authenticated.scopes() == ()
    combined = has_scope("b") & has_role("r") & (has_scope("a") | has_scope("b"))
    assert combined.scopes() == ("b", "a")  # in order, once each
    assert (has_scope("x") | has_claim("c") | has_scope("y")).scopes() == ("x", "y")
    # A scope that must be absent is not one to ask for.
    assert (~has_scope("x")).scopes() == ()
    # Per method: only failures() knows which rule applies.
    assert by_method(GET=has_scope("x")).scopes() == ()


@pytest.mark.parametrize(
    ("policy", "needs"),
    [
        (authenticated, False),
        (has_scope("s"), False),
        (has_role("r"), True),
        (has_claim("c"), True),
        (has_scope("s") & authenticated, False),
        (has_scope("s") | authenticated, False),
        (has_scope("s") & has_role("r"), True),
        (has_scope("s") | has_claim("c"), True),
        (~has_scope("s"), False),
        (~has_claim("c"), True),
        (by_method(GET=has_scope("s")), False),
        (by_method(GET=has_scope("s"), DELETE=has_claim("d")), True),
        (by_method(GET=has_scope("s"), otherwise=has_role("r")), True),
        (by_method(GET=has_scope("s"), otherwise=authenticated), False),
    ],
    ids=repr,
)
def test_needs_store(policy: Policy, needs: bool) -> None:
    assert policy.needs_store is needs


# --- ByMethod ------------------------------------------------------------------------

RECORDS: Final = by_method(
    GET=has_claim("can_read"),
    POST=has_claim("can_write"),
    DELETE=has_claim("can_delete"),
)
READ_AND_DELETE: Final = ("can_read", "can_delete")


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("GET", True),
        ("HEAD", True),
        ("DELETE", True),
        ("POST", False),
        ("PUT", False),
        ("PATCH", False),
        ("OPTIONS", False),
        ("WEBSOCKET", False),
    ],
)
def test_by_method_picks_the_rule_of_the_method(method: str, expected: bool) -> None:
    assert RECORDS.evaluate(facts(claims=READ_AND_DELETE, method=method)) is expected


def test_by_method_unknown_method_is_refused_even_for_everything_else() -> None:
    everything = facts(
        roles=("admin",), claims=("can_read", "can_write", "can_delete"), method="PUT"
    )
    assert RECORDS.evaluate(everything) is False
    assert RECORDS.evaluate(everything._replace(method="POST")) is True


def test_by_method_otherwise() -> None:
    policy = by_method(GET=has_claim("can_read"), otherwise=has_role("admin"))
    assert policy.evaluate(facts(roles=("admin",), method="PUT")) is True
    assert policy.evaluate(facts(method="PUT")) is False
    assert policy.evaluate(facts(method="PUT", store_loaded=False)) is None
    # otherwise does not replace an existing rule.
    assert policy.evaluate(facts(roles=("admin",), method="GET")) is False
    assert policy.evaluate(facts(roles=("admin",), method="HEAD")) is False


def test_head_follows_get_unless_it_has_its_own_rule() -> None:
    follows = by_method(GET=has_claim("can_read"))
    own = by_method(GET=has_claim("can_read"), HEAD=authenticated)
    reader = facts(claims=("can_read",), method="HEAD")
    nobody = facts(method="HEAD")
    assert follows.evaluate(reader) is True
    assert follows.evaluate(nobody) is False
    assert own.evaluate(nobody) is True
    assert by_method(POST=authenticated).evaluate(facts(method="HEAD")) is False


def test_lower_case_method_names_are_accepted() -> None:
    for policy in (
        by_method(get=has_claim("can_read"), delete=has_claim("can_delete")),
        ByMethod({"get": has_claim("can_read"), "Delete": has_claim("can_delete")}),
    ):
        assert isinstance(policy, ByMethod)
        assert set(policy.rules) == {"GET", "HEAD", "DELETE"}
        assert policy.evaluate(facts(claims=("can_read",), method="GET")) is True
        assert policy.evaluate(facts(claims=("can_read",), method="HEAD")) is True
        assert policy.evaluate(facts(claims=("can_delete",), method="DELETE")) is True
        assert policy.evaluate(facts(claims=("can_read",), method="DELETE")) is False


def test_by_method_is_unknown_when_its_rule_is() -> None:
    assert RECORDS.evaluate(facts(method="GET", store_loaded=False)) is None
    assert RECORDS.evaluate(facts(method="PUT", store_loaded=False)) is False


# --- constructor validation ----------------------------------------------------------


@pytest.mark.parametrize("make", [has_role, has_claim, has_scope, HasRole, HasClaim, HasScope])
@pytest.mark.parametrize("name", ["", None, 1, b"admin", ("admin",)])
def test_leaf_names_must_be_non_empty_strings(make: Callable[[Any], Policy], name: Any) -> None:
    with pytest.raises(TypeError, match="non-empty string"):
        make(name)


def bad(value: object) -> Any:
    """A non-policy, typed as anything (these calls are type errors on purpose)."""
    return value


@pytest.mark.parametrize(
    "build",
    [
        lambda: AllOf(()),
        lambda: AnyOf(()),
        lambda: AllOf((A, bad("admin"))),
        lambda: AnyOf((bad(None), A)),
        lambda: all_of(),
        lambda: any_of(),
        lambda: all_of(A, bad("admin")),
        lambda: any_of(bad(True), A),
        lambda: A & bad("admin"),
        lambda: A | bad(None),
        lambda: Not(bad("admin")),
        lambda: not_(bad(None)),
        lambda: ByMethod({}),
        lambda: by_method(),
        lambda: ByMethod({"GET": bad("admin")}),
        lambda: by_method(GET=A, POST=bad(True)),
        lambda: by_method(GET=A, otherwise=bad("admin")),
    ],
    ids=[
        "AllOf-empty",
        "AnyOf-empty",
        "AllOf-str",
        "AnyOf-None",
        "all_of-empty",
        "any_of-empty",
        "all_of-str",
        "any_of-bool",
        "and-str",
        "or-None",
        "Not-str",
        "not_-None",
        "ByMethod-empty",
        "by_method-empty",
        "ByMethod-str-rule",
        "by_method-bool-rule",
        "by_method-str-otherwise",
    ],
)
def test_composites_refuse_non_policies(build: Callable[[], object]) -> None:
    with pytest.raises(TypeError):
        build()


@pytest.mark.parametrize("combine", [all_of, any_of], ids=["all_of", "any_of"])
def test_a_single_non_policy_is_refused_too(combine: Callable[..., Policy]) -> None:
    # all_of("admin") must not hand back the string as if it were a policy.
    with pytest.raises(TypeError):
        combine("admin")


def test_policy_is_abstract() -> None:
    with pytest.raises(TypeError):
        Policy()  # type: ignore[abstract]


# --- properties ----------------------------------------------------------------------

ROLES: Final = ("r1", "r2")
CLAIMS: Final = ("c1", "c2")
SCOPES: Final = ("s1", "s2")
METHODS: Final = ("GET", "HEAD", "POST", "DELETE", "PUT")

leaves: st.SearchStrategy[Policy] = st.one_of(
    st.just(authenticated),
    st.sampled_from(ROLES).map(has_role),
    st.sampled_from(CLAIMS).map(has_claim),
    st.sampled_from(SCOPES).map(has_scope),
)


def _extend(children: st.SearchStrategy[Policy]) -> st.SearchStrategy[Policy]:
    several = st.lists(children, min_size=1, max_size=3).map(tuple)
    rules = st.dictionaries(
        st.sampled_from(("GET", "post", "DELETE", "HEAD")), children, min_size=1
    )
    return st.one_of(
        several.map(AllOf),
        several.map(AnyOf),
        children.map(Not),
        st.builds(ByMethod, rules, st.none() | children),
    )


policies: st.SearchStrategy[Policy] = st.recursive(leaves, _extend, max_leaves=12)


def subset(items: tuple[str, ...]) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(items))


all_facts: st.SearchStrategy[Facts] = st.builds(
    Facts,
    authenticated=st.booleans(),
    scopes=subset(SCOPES),
    roles=subset(ROLES),
    claims=subset(CLAIMS),
    store_loaded=st.just(True),
    method=st.sampled_from(METHODS),
)


def reference(policy: Policy, f: Facts) -> bool:
    """The plain two-valued meaning of a policy when everything is known."""
    if isinstance(policy, IsAuthenticated):
        return f.authenticated
    if isinstance(policy, HasRole):
        return policy.role in f.roles
    if isinstance(policy, HasClaim):
        return policy.claim in f.claims
    if isinstance(policy, HasScope):
        return policy.scope in f.scopes
    if isinstance(policy, AllOf):
        return all(reference(p, f) for p in policy.policies)
    if isinstance(policy, AnyOf):
        return any(reference(p, f) for p in policy.policies)
    if isinstance(policy, Not):
        return not reference(policy.policy, f)
    if isinstance(policy, ByMethod):
        rules = {m.upper(): p for m, p in policy.rules.items()}
        rule = rules.get(f.method)
        if rule is None and f.method == "HEAD":
            rule = rules.get("GET")
        if rule is None:
            rule = policy.otherwise
        return False if rule is None else reference(rule, f)
    raise AssertionError(f"unexpected policy {policy!r}")


def completions(f: Facts) -> list[Facts]:
    """Every way the store could answer: any subset of the candidate roles and claims
    added (none for an anonymous caller, who has no store rights)."""
    if not f.authenticated:
        return [f._replace(store_loaded=True)]
    found = []
    for n_roles in range(len(ROLES) + 1):
        for roles in itertools.combinations(ROLES, n_roles):
            for n_claims in range(len(CLAIMS) + 1):
                for claims in itertools.combinations(CLAIMS, n_claims):
                    found.append(
                        f._replace(
                            roles=f.roles | frozenset(roles),
                            claims=f.claims | frozenset(claims),
                            store_loaded=True,
                        )
                    )
    return found


@settings(max_examples=400, deadline=None)
@given(policy=policies, f=all_facts)
def test_with_everything_known_evaluation_is_two_valued_and_matches_the_reference(
    policy: Policy, f: Facts
) -> None:
    result = policy.evaluate(f)
    assert result is not None
    assert result is reference(policy, f)
    # failures() is empty exactly when the policy holds.
    assert (policy.failures(f) == ()) is result
    # Operators agree with the constructors.
    assert (policy & authenticated).evaluate(f) is (result and f.authenticated)
    assert (~policy).evaluate(f) is (not result)


@settings(max_examples=400, deadline=None)
@given(policy=policies, f=all_facts)
def test_an_answer_before_the_store_is_loaded_is_the_final_answer(policy: Policy, f: Facts) -> None:
    partial = f._replace(store_loaded=False)
    early = policy.evaluate(partial)
    if not policy.needs_store:
        assert early is not None
    finals = {policy.evaluate(c) for c in completions(partial)}
    assert None not in finals
    if early is not None:
        # Sound: whatever the store says, the answer given early stands.
        assert finals == {early}
