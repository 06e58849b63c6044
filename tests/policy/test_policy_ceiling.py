"""Ceiling containment, checked against brute-force enumeration.

Why the enumeration is complete for the generated patterns: every pattern is built from the
segments ``a``, ``b``, ``ab`` and ``+`` (at most 3 segments counting a trailing ``/*``), with an
optional final ``*`` directly after a literal segment. Whether a pattern matches a concrete path
then only depends, per path segment, on equality with ``a``/``b``/``ab`` and on starting with
``a``/``b``/``ab``, so the segments ``"" a b ab aa abc bc c`` represent every class of segment
(``""`` and ``c`` differ only as the empty last segment that ``list`` may trim). Beyond depth 3
only glob patterns match and they look at the first 3 segments only, so depth 4 needs a last
segment in {"", c} and depth 5 the endings ``c/`` and ``c/c``; deeper paths behave like depth 5.
Hence the enumeration contains a representative of every class the containment algorithm's
product automaton distinguishes, and "no counterexample among PATHS" is equivalent to "no
counterexample at all".
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentceiling.policy import (
    ACL,
    RarEntry,
    TemplateContext,
    entry_within_ceiling,
    parse_authorization_details,
    parse_policy,
    rar_allows,
)
from agentceiling.policy._params import check_parameters, params_within

REPS = ["", "a", "b", "ab", "aa", "abc", "bc", "c"]


def _paths() -> list[str]:
    out = [""]
    heads = [s for s in REPS if s]
    for depth in (1, 2, 3):
        for combo in itertools.product(heads, *([REPS] * (depth - 1))):
            out.append("/".join(combo))
    base3 = [p for p in out if p.count("/") == 2 and p]
    out += [p + "/" for p in base3] + [p + "/c" for p in base3]
    out += [p + "/c/" for p in base3] + [p + "/c/c" for p in base3]
    return out


PATHS = _paths()


@st.composite
def patterns(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 30)) == 0:
        return "*"
    ending = draw(st.sampled_from(["", "*", "/*"]))
    n = draw(st.integers(1, 2 if ending == "/*" else 3))
    segs = draw(st.lists(st.sampled_from(["a", "b", "ab", "+"]), min_size=n, max_size=n))
    if ending == "*" and segs[-1] == "+":
        segs[-1] = draw(st.sampled_from(["a", "b", "ab"]))
    return "/".join(segs) + ending


CEILING_CAPS = ["read", "list", "create", "sudo", "deny"]
ENTRY_CAPS = ["read", "list", "create", "sudo"]

ceiling_rules = st.lists(
    st.tuples(patterns(), st.lists(st.sampled_from(CEILING_CAPS), min_size=1, max_size=3, unique=True)),
    min_size=0,
    max_size=7,
)


def build_ceiling(rules: list[tuple[str, list[str]]], split: int) -> ACL:
    texts = ["", ""]
    for i, (pattern, caps) in enumerate(rules):
        quoted = ", ".join(f'"{c}"' for c in caps)
        texts[int(i < split)] += f'path "{pattern}" {{ capabilities = [{quoted}] }}\n'
    return ACL.build([parse_policy(texts[0], "c0"), parse_policy(texts[1], "c1")])


def brute_force(entry: RarEntry, ceiling: ACL) -> str | None:
    for q in PATHS:
        for cap in sorted(entry.capabilities):
            if cap == "list" and not q.endswith("/"):
                continue  # never a LIST request: Vault's HTTP layer adds the slash
            if rar_allows([entry], q, cap)[0] and not ceiling.check(q, cap).allowed:
                return q
    return None


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rules=ceiling_rules,
    split=st.integers(0, 7),
    e_pattern=patterns(),
    e_caps=st.lists(st.sampled_from(ENTRY_CAPS), min_size=1, max_size=3, unique=True),
)
def test_containment_matches_brute_force(
    rules: list[tuple[str, list[str]]], split: int, e_pattern: str, e_caps: list[str]
) -> None:
    ceiling = build_ceiling(rules, split)
    entry = RarEntry(path=e_pattern, capabilities=frozenset(e_caps))
    result = entry_within_ceiling(entry, ceiling)
    counterexample = brute_force(entry, ceiling)
    assert result.ok == (counterexample is None), (result, counterexample)
    if not result.ok:
        w, cap = result.witness_path, result.capability
        assert w is not None and cap is not None
        assert rar_allows([entry], w, cap)[0], "witness must be admitted by the entry"
        assert not ceiling.check(w, cap).allowed, "witness must be refused by the ceiling"


# ------------------------------------------------------------------ ACL vs a literal port of Vault


def _vault_less(a: tuple[int, bool, int, str], b: tuple[int, bool, int, str]) -> bool:
    """wildcardPathDescriptorComparePriority: is a lower priority than b?"""
    if a[0] != b[0]:
        return a[0] < b[0]
    if a[1] != b[1]:
        return a[1]
    if a[2] != b[2]:
        return a[2] > b[2]
    if len(a[3]) != len(b[3]):
        return len(a[3]) < len(b[3])
    return a[3] < b[3]


def _cmp(a: Any, b: Any) -> int:
    return -1 if _vault_less(a[0], b[0]) else (1 if _vault_less(b[0], a[0]) else 0)


def vault_reference(rules: list[tuple[str, list[str]]], path: str, op: str) -> bool:
    exact: dict[str, set[str]] = {}
    prefix: dict[str, set[str]] = {}
    seg: dict[str, set[str]] = {}
    for pattern, caps in rules:
        is_seg = "/+" in pattern or pattern.startswith("+/") or pattern == "+"
        tree, key = (
            (seg, pattern) if is_seg else ((prefix, pattern[:-1]) if pattern.endswith("*") else (exact, pattern))
        )
        new = {"deny"} if "deny" in caps else set(caps)
        old = tree.get(key)
        tree[key] = new if old is None else ({"deny"} if "deny" in old | new else old | new)

    def candidates(p: str) -> list[Any]:
        out: list[Any] = []
        keys = [k for k in prefix if p.startswith(k)]
        if keys:
            k = max(keys, key=len)
            out.append(((len(k), True, 0, k), prefix[k]))
        parts = p.split("/")
        for full, perms in seg.items():
            is_prefix = full.endswith("*")
            wc = full[:-1] if is_prefix else full
            split = wc.split("/")
            if len(parts) < len(split) or (not is_prefix and len(split) != len(parts)):
                continue
            wildcards = 0
            for i, acl_part in enumerate(split):
                if acl_part == "+":
                    wildcards += 1
                elif acl_part == parts[i] or (is_prefix and i == len(split) - 1 and parts[i].startswith(acl_part)):
                    pass
                else:
                    break
            else:
                out.append(((full.index("+"), is_prefix, wildcards, wc), perms))
        return out

    perms = exact.get(path)
    if perms is None and op == "list" and path.endswith("/"):
        perms = exact.get(path[:-1])
        if perms is None:
            cands = candidates(path[:-1]) + candidates(path)
            if not cands:
                return False
            order = functools.cmp_to_key(_cmp)
            denies = [c for c in cands if "deny" in c[1]]
            lists = [c for c in cands if "list" in c[1]]
            best_deny = max(denies, key=order) if denies else None
            best_list = max(lists, key=order) if lists else None
            if best_deny is not None and (best_list is None or _vault_less(best_list[0], best_deny[0])):
                perms = best_deny[1]
            elif best_list is not None:
                perms = best_list[1]
            else:
                perms = max(cands, key=order)[1]
    elif perms is None:
        cands = candidates(path)
        if not cands:
            return False
        perms = max(cands, key=functools.cmp_to_key(_cmp))[1]
    return "deny" not in perms and op in perms


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=ceiling_rules, split=st.integers(0, 7))
def test_acl_matches_vault_reference(rules: list[tuple[str, list[str]]], split: int) -> None:
    acl = build_ceiling(rules, split)
    for q in PATHS:
        for op in ("read", "list"):
            assert acl.check(q, op).allowed == vault_reference(rules, q, op), (q, op)


# ------------------------------------------------------------------ unit cases


def ceiling_of(text: str) -> ACL:
    return ACL.build([parse_policy(text, "ceiling")])


def one(**kw: Any) -> RarEntry:
    base: dict[str, Any] = {"type": "vault:path_access", "capabilities": ["read"]}
    base.update(kw)
    (e,) = parse_authorization_details([base])
    assert isinstance(e, RarEntry)
    return e


def test_exact_entries() -> None:
    c = ceiling_of('path "secret/data/*" { capabilities = ["read"] }\npath "secret/data/x" { capabilities = ["list"] }')
    assert entry_within_ceiling(one(path="secret/data/app"), c).ok
    r = entry_within_ceiling(one(path="secret/data/x"), c)
    assert not r.ok and r.witness_path == "secret/data/x" and r.capability == "read"
    r = entry_within_ceiling(one(path="secret/data/app", capabilities=["update"]), c)
    assert not r.ok and "does not grant 'update'" in r.reason


def test_glob_entry_hits_deny_hole() -> None:
    c = ceiling_of('path "secret/*" { capabilities = ["read"] }\npath "secret/admin/*" { capabilities = ["deny"] }')
    r = entry_within_ceiling(one(path="secret/a*"), c)
    assert not r.ok and r.witness_path == "secret/admin/" and "denies" in r.reason
    assert entry_within_ceiling(one(path="secret/b*"), c).ok
    assert entry_within_ceiling(one(path="secret/+/x"), c).ok is False  # secret/admin/x


def test_glob_entry_wider_than_ceiling() -> None:
    c = ceiling_of('path "secret/app/*" { capabilities = ["read"] }')
    r = entry_within_ceiling(one(path="secret/*"), c)
    assert not r.ok and r.reason.endswith("no ceiling rule matches")
    assert entry_within_ceiling(one(path="secret/app/x*"), c).ok


def test_plus_entry_against_plus_ceiling() -> None:
    c = ceiling_of('path "kv/+/data/*" { capabilities = ["read", "list"] }')
    assert entry_within_ceiling(one(path="kv/+/data/app*", capabilities=["read", "list"]), c).ok
    # a LIST request path always ends in "/" (Vault's HTTP layer adds it): "kv/team/data/" is covered
    assert entry_within_ceiling(one(path="kv/team/data", capabilities=["list"]), c).ok
    r = entry_within_ceiling(one(path="kv/team/dat", capabilities=["list"]), c)
    assert not r.ok and r.witness_path == "kv/team/dat/"


def test_list_is_judged_only_on_paths_ending_in_a_slash() -> None:
    """The entry "secret/metadata/app" [list] admits LIST on "secret/metadata/app/" only: a
    ceiling granting list below it holds it (a request without the slash is given one)."""
    c = ceiling_of('path "secret/metadata/app/*" { capabilities = ["list"] }')
    assert entry_within_ceiling(one(path="secret/metadata/app", capabilities=["list"]), c).ok
    # ... and a deny below a "+" grant is not sidestepped by leaving the slash out
    c = ceiling_of('path "kv1/+" { capabilities = ["list"] }\npath "kv1/private/*" { capabilities = ["deny"] }')
    r = entry_within_ceiling(one(path="kv1/private", capabilities=["list"]), c)
    assert not r.ok and r.witness_path == "kv1/private/"


def test_list_trailing_slash_is_part_of_the_entry() -> None:
    # the entry admits LIST on "a/b/" (trailing slash tolerated), which the ceiling denies
    c = ceiling_of('path "a/b" { capabilities = ["list"] }\npath "a/b/" { capabilities = ["deny"] }')
    r = entry_within_ceiling(one(path="a/b", capabilities=["list"]), c)
    assert not r.ok and r.witness_path == "a/b/"


def test_templated_entry_must_be_rendered() -> None:
    c = ceiling_of('path "*" { capabilities = ["read"] }')
    r = entry_within_ceiling(one(path="x/{{identity.entity.id}}"), c)
    assert not r.ok and "unrendered" in r.reason


def test_wrapping_ceiling_is_not_containable() -> None:
    c = ceiling_of('path "a" {\n capabilities = ["read"]\n max_wrapping_ttl = 60\n}')
    assert not entry_within_ceiling(one(path="a"), c).ok


def test_state_budget_fails_closed() -> None:
    text = 'path "s/*" { capabilities = ["read"] }\n'
    text += "".join(f'path "s/{i}/+/x*" {{ capabilities = ["read"] }}\n' for i in range(30))
    c = ceiling_of(text)
    assert entry_within_ceiling(one(path="s/*"), c).ok
    r = entry_within_ceiling(one(path="s/*"), c, max_states=20)
    assert not r.ok and "too complex" in r.reason


def test_realistic_default_ceiling() -> None:
    from agentceiling.policy import DEFAULT_CEILING_POLICY, TemplateContext

    ctx = TemplateContext(entity_id="e1")
    c = ACL.build([parse_policy(DEFAULT_CEILING_POLICY, "default-ceiling")], ctx)
    assert entry_within_ceiling(one(path="agent-registry/registration/entity_id/e1"), c).ok
    assert not entry_within_ceiling(one(path="agent-registry/registration/entity_id/*"), c).ok
    assert not entry_within_ceiling(one(path="policy/default*"), c).ok  # policy/defaultX


# ------------------------------------------------------------------ parameters


def param_ceiling(extra: str) -> ACL:
    return ceiling_of(f'path "db/creds/*" {{\n capabilities = ["read", "update", "list"]\n{extra}}}\n')


def test_entry_without_allowed_parameters_under_restricting_ceiling() -> None:
    c = param_ceiling(' allowed_parameters = { "ttl" = ["1h", "2h"] }\n')
    r = entry_within_ceiling(one(path="db/creds/x", capabilities=["update"]), c)
    assert not r.ok and "declares no allowed_parameters" in r.reason
    # list is not parameter-checked
    assert entry_within_ceiling(one(path="db/creds/x", capabilities=["list"]), c).ok
    ok = one(path="db/creds/x", capabilities=["update"], allowed_parameters={"ttl": ["1h"]})
    assert entry_within_ceiling(ok, c).ok
    wide = one(path="db/creds/x", capabilities=["update"], allowed_parameters={"ttl": ["3h"]})
    assert not entry_within_ceiling(wide, c).ok
    anyv = one(path="db/creds/x", capabilities=["update"], allowed_parameters={"ttl": []})
    assert not entry_within_ceiling(anyv, c).ok


def test_glob_values_subset() -> None:
    c = param_ceiling(' allowed_parameters = { "role" = ["app-*", "*-ro"] }\n')
    assert entry_within_ceiling(
        one(path="db/creds/x", allowed_parameters={"role": ["app-web*", "x-ro", "app-1"]}), c
    ).ok
    assert not entry_within_ceiling(one(path="db/creds/x", allowed_parameters={"role": ["ap*"]}), c).ok


def test_denied_and_required_must_be_kept() -> None:
    c = param_ceiling(' denied_parameters = { "role" = ["admin"] }\n required_parameters = ["ttl"]\n')
    r = entry_within_ceiling(one(path="db/creds/x", required_parameters=["ttl"]), c)
    assert not r.ok and "does not deny" in r.reason
    both = one(path="db/creds/x", required_parameters=["ttl"], denied_parameters={"role": ["adm*"]})
    assert entry_within_ceiling(both, c).ok
    r = entry_within_ceiling(one(path="db/creds/x", denied_parameters={"role": []}), c)
    assert not r.ok and "requires parameters ['ttl']" in r.reason
    # an entry that never admits the parameter needs not deny it
    narrow = one(path="db/creds/x", required_parameters=["ttl"], allowed_parameters={"ttl": ["1h"]})
    assert entry_within_ceiling(narrow, c).ok


def test_an_entry_whose_allowed_values_leave_out_what_the_ceiling_denies_is_within_it() -> None:
    """The ceiling denies role=admin; an entry allowing only role=reader never admits it."""
    c = param_ceiling(' denied_parameters = { "role" = ["admin", "root"] }\n')

    def within(**kw: Any) -> bool:
        return entry_within_ceiling(one(path="db/creds/x", capabilities=["update"], **kw), c).ok

    assert within(allowed_parameters={"role": ["reader"]})
    assert within(allowed_parameters={"role": ["reader", "writer"], "ttl": []})
    # a denied value may be left out for one value and denied by the entry for the other
    assert within(allowed_parameters={"role": ["reader", "root"]}, denied_parameters={"role": ["root"]})
    assert not within(allowed_parameters={"role": ["reader", "admin"]})
    assert not within(allowed_parameters={"role": []})  # any value
    # not proven where globs or commas would have to be intersected: refused, never admitted
    assert not within(allowed_parameters={"role": ["read*"]})
    assert not within(allowed_parameters={"role": ["reader,admin"]})
    # the empty string splits into no elements: every allowed list admits it
    empty = param_ceiling(' denied_parameters = { "role" = [""] }\n')
    assert not entry_within_ceiling(
        one(path="db/creds/x", capabilities=["update"], allowed_parameters={"role": ["reader"]}), empty
    ).ok
    assert check_parameters({"role": ("reader",)}, {}, (), {"role": ""}) is None
    # a ceiling that denies every value of the parameter is not left out by any allowed list
    every = param_ceiling(' denied_parameters = { "role" = [] }\n')
    assert not entry_within_ceiling(
        one(path="db/creds/x", capabilities=["update"], allowed_parameters={"role": ["reader"]}), every
    ).ok


def test_denied_values_left_out_of_allowed_ones_exhaustively() -> None:
    """Every allowed list (up to two elements), entry-denied list and ceiling-denied list of one
    parameter over VALUES: whenever params_within admits the entry, no request value it admits is
    denied by the ceiling (the soundness property, without sampling)."""
    small = [(), *((v,) for v in VALUES), *itertools.combinations(VALUES, 2)]
    datas = [{"x": v} for v in DATA_VALUES] + [{"x": "a, b"}, {"x": "a,,b"}, {"x": []}, {"x": 1.0}, {"x": "a "},
                                               {"x": " b"}, {"x": "a ,b"}]
    admitted = 0
    for avals in small[1:]:
        for evals in [None, (), *((v,) for v in VALUES)]:
            ed = {} if evals is None else {"x": evals}
            for cvals in small[1:]:
                if params_within({"x": avals}, ed, (), {}, {"x": cvals}, ()) is not None:
                    continue
                admitted += 1
                for data in datas:
                    if check_parameters({"x": avals}, ed, (), data) is None:
                        assert check_parameters({}, {"x": cvals}, (), data) is None, (avals, evals, cvals, data)
    assert admitted > 1000  # the property is exercised, not vacuous


VALUES: list[Any] = ["a", "b", "ab", "a*", "*b", "*a*", "**", 1, True, "", "a,b", 1.0, "a ", " b"]
DATA_VALUES: list[Any] = ["a", "b", "ab", "ba", "abc", "a,b", "", 1, True, ["a", "b"]]
KEYS = ["x", "y", "*"]

param_maps = st.dictionaries(
    st.sampled_from(KEYS), st.lists(st.sampled_from(VALUES), max_size=3).map(tuple), max_size=2
)
required = st.lists(st.sampled_from(["x", "y"]), max_size=2, unique=True).map(tuple)
ALL_DATA = [
    {k: v for k, v in zip(("x", "y", "z"), combo, strict=True) if v is not _ABSENT}
    for _ABSENT in [object()]
    for combo in itertools.product([_ABSENT, *DATA_VALUES], repeat=3)
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ea=param_maps, ed=param_maps, er=required, ca=param_maps, cd=param_maps, cr=required)
def test_parameter_containment_is_sound(
    ea: dict[str, tuple[Any, ...]],
    ed: dict[str, tuple[Any, ...]],
    er: tuple[str, ...],
    ca: dict[str, tuple[Any, ...]],
    cd: dict[str, tuple[Any, ...]],
    cr: tuple[str, ...],
) -> None:
    _assert_sound(ea, ed, er, ca, cd, cr, ALL_DATA)


def _assert_sound(
    ea: dict[str, tuple[Any, ...]],
    ed: dict[str, tuple[Any, ...]],
    er: tuple[str, ...],
    ca: dict[str, tuple[Any, ...]],
    cd: dict[str, tuple[Any, ...]],
    cr: tuple[str, ...],
    requests: list[dict[str, Any]],
) -> None:
    """When params_within says the entry is within the ceiling, no request it admits is refused."""
    if params_within(ea, ed, er, ca, cd, cr) is not None:
        return
    for data in requests:
        if check_parameters(ea, ed, er, data) is None:
            assert check_parameters(ca, cd, cr, data) is None, data


def test_a_parameter_named_star_is_compared() -> None:
    """check_parameters looks a parameter literally named "*" up under the "*" key (as Vault's
    AllowOperation does), so an entry allowing "*" must keep within the ceiling's "*" values."""
    c = ceiling_of(
        'path "secret/app" {\n capabilities = ["update"]\n allowed_parameters = { "*" = ["a"], "x" = [] }\n}'
    )
    entry = RarEntry(path="secret/app", capabilities=frozenset({"update"}), allowed_parameters={"*": (), "x": ()})
    assert rar_allows([entry], "secret/app", "update", {"*": "b"})[0]
    assert not c.check("secret/app", "update", {"*": "b"}).allowed
    r = entry_within_ceiling(entry, c)
    assert not r.ok and "parameter named '*'" in r.reason
    narrow = RarEntry(path="secret/app", capabilities=frozenset({"update"}), allowed_parameters={"*": ("a",), "x": ()})
    assert entry_within_ceiling(narrow, c).ok
    # a ceiling that allows only "*" allows everything, whatever its "*" values
    assert entry_within_ceiling(
        entry, ceiling_of('path "secret/app" {\n capabilities = ["update"]\n allowed_parameters = { "*" = ["a"] }\n}')
    ).ok


STAR_DATA = [
    {"*": v, **extra}
    for v in DATA_VALUES
    for extra in ({}, {"x": "a"}, {"x": "b"}, {"y": "ab"}, {"z": "a"}, {"x": "a", "y": "b"})
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ea=param_maps.map(lambda m: {"*": m.pop("*", ("a",)), **m}),
    ed=param_maps.map(lambda m: {k: v for k, v in m.items() if k != "*"}),
    er=required,
    ca=param_maps.map(lambda m: {"*": m.pop("*", ("a",)), **m}),
    cd=param_maps.map(lambda m: {k: v for k, v in m.items() if k != "*"}),
    cr=required,
)
def test_parameter_containment_is_sound_for_a_parameter_named_star(
    ea: dict[str, tuple[Any, ...]],
    ed: dict[str, tuple[Any, ...]],
    er: tuple[str, ...],
    ca: dict[str, tuple[Any, ...]],
    cd: dict[str, tuple[Any, ...]],
    cr: tuple[str, ...],
) -> None:
    """Both sides allow "*" (the case params_within used to skip); requests name "*" too."""
    _assert_sound(ea, ed, er, ca, cd, cr, STAR_DATA + ALL_DATA[:: len(ALL_DATA) // 97])


# ------------------------------------------------------------------ ceilings with rendered deny rules

TEAM = "{{identity.entity.metadata.team}}"


def templated_ceiling(text: str, value: str) -> ACL:
    ctx = TemplateContext(entity_id="e1", entity_name="agent", metadata={"team": value})
    return ACL.build([parse_policy(text, "ceiling")], ctx)


def test_a_rendered_deny_with_a_wildcard_value_holds_in_the_ceiling() -> None:
    text = f'path "secret/*" {{ capabilities = ["read"] }}\npath "secret/{TEAM}/admin" {{ capabilities = ["deny"] }}\n'
    c = templated_ceiling(text, "ops+1")
    r = entry_within_ceiling(one(path="secret/*"), c)
    assert not r.ok and r.witness_path == "secret/ops+1/admin" and "denies" in r.reason
    assert not entry_within_ceiling(one(path="secret/+/admin"), c).ok
    assert not entry_within_ceiling(one(path="secret/o*"), c).ok
    assert entry_within_ceiling(one(path="secret/ops/*"), c).ok
    assert entry_within_ceiling(one(path="secret/+/other"), c).ok
    # the value's '*' is literal: only the path with the '*' is denied, not the prefix
    c = templated_ceiling(
        f'path "secret/*" {{ capabilities = ["read"] }}\npath "secret/{TEAM}" {{ capabilities = ["deny"] }}\n', "ops*"
    )
    r = entry_within_ceiling(one(path="secret/ops*"), c)
    assert not r.ok and r.witness_path == "secret/ops*"
    assert entry_within_ceiling(one(path="secret/opsx*"), c).ok
    # a '+' value is a literal segment
    c = templated_ceiling(
        f'path "kv/*" {{ capabilities = ["read", "list"] }}\npath "kv/{TEAM}/*" {{ capabilities = ["deny"] }}\n', "+"
    )
    r = entry_within_ceiling(one(path="kv/+/x", capabilities=["read"]), c)
    assert not r.ok and r.witness_path == "kv/+/x"
    assert entry_within_ceiling(one(path="kv/a/*", capabilities=["read", "list"]), c).ok
    assert not entry_within_ceiling(one(path="kv/+", capabilities=["list"]), c).ok
    # ... also next to the template's own '+' wildcard
    c = templated_ceiling(
        f'path "kv/*" {{ capabilities = ["read"] }}\npath "kv/+/{TEAM}" {{ capabilities = ["deny"] }}\n', "+"
    )
    assert entry_within_ceiling(one(path="kv/a/b*"), c).ok
    r = entry_within_ceiling(one(path="kv/a/*"), c)
    assert not r.ok and r.witness_path == "kv/a/+"


DENY_TEMPLATES = [f"{TEAM}", f"a/{TEAM}", f"a/{TEAM}/*", f"a/{TEAM}*", f"+/{TEAM}", f"{TEAM}/b", f"a/+/{TEAM}"]
DENY_VALUES = ["", "a", "+", "*", "a*", "+a", "a+", "a/+", "+/"]
WILD_SEGMENTS = ["", "a", "b", "ab", "c", "+", "*", "a*", "+a", "a+"]
WILD_PATHS = sorted(
    {"/".join(p) for n in (1, 2, 3) for p in itertools.product(WILD_SEGMENTS, repeat=n) if n == 1 or p[0]}
    | {p + end for p in ("a/+/b", "a/+/+", "+/a/c", "a/a*/c") for end in ("/", "/c", "/c/")}
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rules=st.lists(
        st.tuples(patterns(), st.lists(st.sampled_from(CEILING_CAPS[:-1]), min_size=1, max_size=3, unique=True)),
        max_size=4,
    ),
    templates=st.lists(st.sampled_from(DENY_TEMPLATES), min_size=1, max_size=2),
    value=st.sampled_from(DENY_VALUES),
    e_pattern=patterns(),
    e_caps=st.lists(st.sampled_from(ENTRY_CAPS), min_size=1, max_size=3, unique=True),
)
def test_containment_is_sound_with_rendered_literal_denies(
    rules: list[tuple[str, list[str]]],
    templates: list[str],
    value: str,
    e_pattern: str,
    e_caps: list[str],
) -> None:
    """Ceilings whose deny rules were rendered from values with '*'/'+' (literal characters):
    "within" must hold on every enumerated path (including ones with literal '*'/'+'), and a
    witness must be a real counterexample."""
    text = "".join(f"path {pattern!r} {{ capabilities = {caps!r} }}\n".replace("'", '"') for pattern, caps in rules)
    text += "".join(f'path "{t}" {{ capabilities = ["deny"] }}\n' for t in templates)
    ceiling = templated_ceiling(text, value)
    assert sum(r.is_deny for r in ceiling.rules) >= 1
    entry = RarEntry(path=e_pattern, capabilities=frozenset(e_caps))
    result = entry_within_ceiling(entry, ceiling)
    if result.ok:
        for q in WILD_PATHS:
            for cap in e_caps:
                if cap == "list" and not q.endswith("/"):
                    continue
                if rar_allows([entry], q, cap)[0]:
                    assert ceiling.check(q, cap).allowed, (q, cap)
    else:
        w, cap = result.witness_path, result.capability
        assert w is not None and cap is not None
        assert rar_allows([entry], w, cap)[0], "witness must be admitted by the entry"
        assert not ceiling.check(w, cap).allowed, "witness must be refused by the ceiling"
