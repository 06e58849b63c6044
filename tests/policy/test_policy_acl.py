from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from agentceiling.policy import ACL, AliasInfo, GroupInfo, TemplateContext, parse_policy
from agentceiling.policy._pattern import accepts, step


def acl(*texts: str, ctx: TemplateContext | None = None) -> ACL:
    return ACL.build([parse_policy(t, f"p{i}") for i, t in enumerate(texts)], ctx)


def rule(pattern: str, *caps: str, extra: str = "") -> str:
    quoted = ", ".join(f'"{c}"' for c in caps)
    return f'path "{pattern}" {{\n  capabilities = [{quoted}]\n{extra}}}\n'


# ------------------------------------------------------------------ Vault's documented examples


def test_glob_examples_from_vault_docs() -> None:
    a = acl(rule("secret/zip-*", "read") + rule("secret/bar/*", "read") + rule("secret/+/teamb", "read"))
    assert a.check("secret/zip-zap", "read").allowed
    assert a.check("secret/zip-zap/zong", "read").allowed
    assert a.check("secret/zip-", "read").allowed
    assert not a.check("secret/zip", "read").allowed
    assert a.check("secret/bar/zip", "read").allowed
    assert not a.check("secret/bars/zip", "read").allowed
    assert a.check("secret/foo/teamb", "read").allowed
    assert a.check("secret/bar/teamb", "read").allowed
    assert not a.check("secret/foo/bar/teamb", "read").allowed
    assert not a.check("secret/foo/teamb/x", "read").allowed


def test_exact_rule_beats_any_glob() -> None:
    a = acl(rule("secret/*", "read", "update") + rule("secret/special", "read"))
    assert not a.check("secret/special", "update").allowed
    assert a.check("secret/other", "update").allowed


def test_priority_rule_1_first_wildcard_position() -> None:
    # secret/+/x/* : first '+' at 7; secret/a/+/* : first '+' at 9 -> higher priority
    a = acl(rule("secret/+/x/*", "read") + rule("secret/a/+/*", "update"))
    r = a.check("secret/a/x/y", "read")
    assert not r.allowed and r.matched_pattern == "secret/a/+/*"
    # a longer literal prefix wins over an earlier '+'
    a = acl(rule("secret/+/*", "read") + rule("secret/a*", "update"))
    assert a.check("secret/ab/c", "update").allowed  # '*' at 8 beats '+' at 7
    assert not a.check("secret/ab/c", "read").allowed


def test_priority_rule_2_glob_end_loses() -> None:
    a = acl(rule("secret/+/x*", "read") + rule("secret/+/x", "update"))
    assert a.check("secret/a/x", "update").allowed
    assert not a.check("secret/a/x", "read").allowed
    assert a.check("secret/a/xy", "read").allowed


def test_priority_rule_3_more_plus_loses() -> None:
    a = acl(rule("a/+/+/+", "read") + rule("a/+/b/+", "update"))
    assert a.check("a/x/b/y", "update").allowed
    assert not a.check("a/x/b/y", "read").allowed


def test_priority_rule_4_shorter_loses() -> None:
    a = acl(rule("secret/+/b*", "read") + rule("secret/+/bc*", "update"))
    assert a.check("secret/a/bcd", "update").allowed
    assert not a.check("secret/a/bcd", "read").allowed
    assert a.check("secret/a/bd", "read").allowed


def test_priority_rule_5_lexicographically_smaller_loses() -> None:
    # same first '+' (2), no glob, two '+' each, same length: "k/+/a/+" > "k/+/+/b"
    a = acl(rule("k/+/a/+", "read") + rule("k/+/+/b", "update"))
    r = a.check("k/x/a/b", "read")
    assert r.allowed and r.matched_pattern == "k/+/a/+"


def test_longest_prefix_wins_among_prefixes() -> None:
    a = acl(rule("secret/*", "read") + rule("secret/team/*", "deny"))
    assert a.check("secret/x", "read").allowed
    r = a.check("secret/team/x", "read")
    assert not r.allowed and r.code == "EXPLICIT_DENY" and r.denying_policies == ("p0",)


def test_leading_slashes_are_ignored() -> None:
    a = acl(rule("secret/x", "read"))
    assert a.check("//secret/x", "read").allowed


def test_no_rule_is_default_deny() -> None:
    r = acl(rule("a", "read")).check("b", "read")
    assert not r.allowed and r.code == "NO_MATCHING_RULE"


# ------------------------------------------------------------------ merge across policies


def test_union_across_policies_with_granting_policies() -> None:
    a = acl(rule("secret/*", "read"), rule("secret/*", "update"), rule("secret/*", "read"))
    r = a.check("secret/x", "read")
    assert r.allowed and r.granting_policies == ("p0", "p2")
    assert a.check("secret/x", "update").granting_policies == ("p1",)
    assert not a.check("secret/x", "delete").allowed


def test_deny_anywhere_wins_even_over_sudo() -> None:
    a = acl(rule("sys/x", "read", "sudo"), rule("sys/x", "deny"), rule("sys/x", "update"))
    for op in ("read", "sudo", "update", "list"):
        r = a.check("sys/x", op)
        assert not r.allowed and r.code == "EXPLICIT_DENY"
    assert a.check("sys/x", "read").denying_policies == ("p1",)
    assert a.capabilities("sys/x") == ("deny",)


def test_sudo_operation_and_require_sudo() -> None:
    a = acl(rule("sys/a", "read", "sudo") + rule("sys/b", "read"))
    assert a.check("sys/a", "sudo").allowed
    assert not a.check("sys/b", "sudo").allowed
    assert a.check("sys/a", "read", require_sudo=True).allowed
    r = a.check("sys/b", "read", require_sudo=True)
    assert not r.allowed and r.code == "SUDO_REQUIRED"


def test_operation_mapping() -> None:
    a = acl(rule("x", "update"))
    for op in ("update", "revoke", "renew", "rollback"):
        assert a.check("x", op).allowed
    assert not a.check("x", "create").allowed
    r = a.check("x", "help")
    assert not r.allowed and r.code == "UNSUPPORTED_OPERATION"


def test_list_tolerates_trailing_slash_on_exact_rule() -> None:
    a = acl(rule("secret/metadata/app", "list"))
    assert a.check("secret/metadata/app/", "list").allowed
    assert not a.check("secret/metadata/app/", "read").allowed


def test_list_trailing_slash_considers_both_forms() -> None:
    a = acl(rule("kv1/+", "list"))
    assert a.check("kv1/private/", "list").allowed  # via the slash-stripped form
    # a more specific deny reachable only with the slash wins (Vault CVE fix)
    a = acl(rule("kv1/+", "list") + rule("kv1/private/*", "deny"))
    assert not a.check("kv1/private/", "list").allowed
    # a more specific rule without list does not hide a broader list grant
    a = acl(rule("kv1/*", "list") + rule("kv1/+/", "read"))
    assert a.check("kv1/private/", "list").allowed


# ------------------------------------------------------------------ parameters


def params_acl() -> ACL:
    extra = """  allowed_parameters = {
    "ttl" = ["1h", "2h"]
    "name" = ["app-*", "*-svc", "*core*"]
    "policies" = ["reader"]
    "any" = []
  }
  denied_parameters = { "name" = ["app-admin"] }
  required_parameters = ["ttl"]
"""
    return acl(rule("auth/token/create", "update", "list", extra=extra))


@pytest.mark.parametrize(
    ("data", "allowed"),
    [
        ({"ttl": "1h"}, True),
        ({"ttl": "3h"}, False),
        ({}, False),  # required missing
        ({"ttl": "1h", "name": "app-x"}, True),
        ({"ttl": "1h", "name": "x-svc"}, True),
        ({"ttl": "1h", "name": "mycorething"}, True),
        ({"ttl": "1h", "name": "app-admin"}, False),  # denied beats allowed
        ({"ttl": "1h", "name": "other"}, False),
        ({"ttl": "1h", "any": {"deep": 1}}, True),
        ({"ttl": "1h", "unknown": "x"}, False),
        ({"ttl": "1h", "policies": "READER"}, True),  # policies are lower-cased
        ({"ttl": "1h", "name": ["app-a", "b-svc"]}, True),
        ({"ttl": "1h", "name": ["app-a", "nope"]}, False),
        ({"ttl": "1h", "name": "app-a,app-admin"}, False),  # comma list: any denied element denies
        ({"ttl": "1h", "name": "app-a, b-svc"}, True),
        ({"TTL": "1h"}, False),  # required is looked up lower-cased
    ],
)
def test_parameter_constraints(data: dict[str, Any], allowed: bool) -> None:
    r = params_acl().check("auth/token/create", "update", data)
    assert r.allowed is allowed, r.reason
    if not allowed:
        assert r.code == "PARAMETER_REJECTED"


def test_parameters_not_checked_for_list_and_delete() -> None:
    assert params_acl().check("auth/token/create", "list", {"bad": 1}).allowed


def test_star_keys() -> None:
    a = acl(rule("a", "update", extra='  allowed_parameters = { "*" = [] }\n'))
    assert a.check("a", "update", {"x": 1, "y": "z"}).allowed
    a = acl(rule("a", "update", extra='  allowed_parameters = { "*" = [], "k" = ["v"] }\n'))
    assert a.check("a", "update", {"x": 1}).allowed
    assert not a.check("a", "update", {"k": "w"}).allowed
    a = acl(rule("a", "update", extra='  denied_parameters = { "*" = [] }\n'))
    assert a.check("a", "update").allowed
    assert not a.check("a", "update", {"x": 1}).allowed


def test_glob_value_edge_cases() -> None:
    a = acl(rule("a", "update", extra='  allowed_parameters = { "k" = ["*", 3, true] }\n'))
    assert a.check("a", "update", {"k": "*"}).allowed  # a lone '*' is literal
    assert not a.check("a", "update", {"k": "x"}).allowed
    assert a.check("a", "update", {"k": 3.0}).allowed
    assert a.check("a", "update", {"k": True}).allowed
    assert not a.check("a", "update", {"k": 1}).allowed  # 1 is not True


def test_parameter_merge_across_policies() -> None:
    a = acl(
        rule("a", "update", extra='  allowed_parameters = { "k" = ["1"] }\n'),
        rule("a", "update", extra='  allowed_parameters = { "k" = ["2"], "j" = [] }\n'),
    )
    assert a.check("a", "update", {"k": "1"}).allowed
    assert a.check("a", "update", {"k": "2", "j": "anything"}).allowed
    assert not a.check("a", "update", {"k": "3"}).allowed
    # Vault merge: a policy with no parameter constraints does not lift another's
    a = acl(rule("a", "update"), rule("a", "read", extra='  allowed_parameters = { "k" = [] }\n'))
    assert not a.check("a", "update", {"z": 1}).allowed


def test_wrapping_ttl() -> None:
    a = acl(rule("w", "read", extra='  min_wrapping_ttl = "1m"\n  max_wrapping_ttl = "1h"\n'))
    assert not a.check("w", "read").allowed
    assert a.check("w", "read", wrap_ttl=600).allowed
    assert not a.check("w", "read", wrap_ttl=30).allowed
    assert not a.check("w", "read", wrap_ttl=7200).allowed


# ------------------------------------------------------------------ templates


CTX = TemplateContext(
    entity_id="ent-1",
    entity_name="alice",
    metadata={"team": "blue", "wild": "a*", "empty": ""},
    aliases={"auth_oidc_123": AliasInfo(id="al-1", name="alice@x", metadata={"dept": "ops"})},
    groups=(GroupInfo(id="g-1", name="admins", metadata={"env": "prod"}),),
)


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("secret/{{identity.entity.id}}/*", "secret/ent-1/x"),
        ("secret/{{ identity.entity.name }}", "secret/alice"),
        ("secret/{{identity.entity.metadata.team}}/+", "secret/blue/x"),
        ("secret/{{identity.entity.aliases.auth_oidc_123.name}}", "secret/alice@x"),
        ("secret/{{identity.entity.aliases.auth_oidc_123.id}}", "secret/al-1"),
        ("secret/{{identity.entity.aliases.auth_oidc_123.metadata.dept}}", "secret/ops"),
        ("secret/{{identity.groups.ids.g-1.name}}", "secret/admins"),
        ("secret/{{identity.groups.names.admins.metadata.env}}", "secret/prod"),
    ],
)
def test_templates_render(pattern: str, path: str) -> None:
    a = acl(rule(pattern, "read"), ctx=CTX)
    assert a.check(path, "read").allowed
    assert not a.check("secret/zzz/x", "read").allowed
    assert not a.check("secret/zzz", "read").allowed


@pytest.mark.parametrize(
    "pattern",
    [
        "secret/{{identity.entity.metadata.missing}}",
        "secret/{{identity.entity.metadata.empty}}*",  # empty value would widen the glob
        "secret/{{identity.entity.metadata.wild}}",  # rendered '*' -> dropped
        "secret/{{identity.entity.aliases.other_acc.name}}",
        "secret/{{identity.entity.aliases.auth_oidc_123.custom_metadata.x}}",
    ],
)
def test_unrenderable_templates_drop_the_rule(pattern: str) -> None:
    a = acl(rule(pattern, "read") + rule("other", "read"), ctx=CTX)
    assert [r.pattern for r in a.rules] == ["other"]
    assert not a.check("secret/", "read").allowed
    assert not a.check("secret/a*", "read").allowed


def test_a_deny_rule_renders_an_empty_metadata_value_as_vault_does() -> None:
    """Vault renders a metadata key that is present with an empty value as "". Dropping a deny
    rule would allow what Vault denies; a granting rule is still dropped (it could only widen)."""
    text = rule("secret/*", "read") + rule("secret/{{identity.entity.metadata.empty}}/*", "deny")
    a = acl(text, ctx=CTX)
    assert sorted(r.pattern for r in a.rules) == ["secret/*", "secret//*"]
    assert not a.check("secret//x", "read").allowed
    assert a.check("secret/x", "read").allowed
    # A missing key, or an empty entity name (Vault: not found), drops the deny rule as in Vault.
    missing = acl(rule("secret/*", "read") + rule("secret/{{identity.entity.metadata.missing}}/*", "deny"), ctx=CTX)
    assert [r.pattern for r in missing.rules] == ["secret/*"]
    unnamed = TemplateContext(entity_id="ent-2", entity_name="", metadata={})
    nameless = acl(rule("secret/*", "read") + rule("secret/{{identity.entity.name}}/*", "deny"), ctx=unnamed)
    assert [r.pattern for r in nameless.rules] == ["secret/*"]


def team(value: str) -> TemplateContext:
    return TemplateContext(entity_id="ent-1", entity_name="alice", metadata={"team": value})


TEAM = "{{identity.entity.metadata.team}}"


@pytest.mark.parametrize("value", ["ops+1", "ops*", "a}}b", "a{{b", "+", "*", "+*", "a/+/b", "{{identity.entity.id}}"])
def test_a_deny_rule_keeps_a_value_with_wildcards_or_braces_literally(value: str) -> None:
    """Vault inserts the value verbatim; the deny must not vanish (that would let the broader grant
    decide). The value's characters are ordinary characters: the deny covers exactly the path that
    contains them, not a glob."""
    a = acl(rule("secret/data/*", "read") + rule(f"secret/data/{TEAM}/admin", "deny"), ctx=team(value))
    r = a.check(f"secret/data/{value}/admin", "read")
    assert not r.allowed and r.code == "EXPLICIT_DENY"
    assert r.matched_pattern == f"secret/data/{value}/admin"
    assert a.check("secret/data/ops/admin", "read").allowed
    assert a.check("secret/data/x/admin", "read").allowed
    assert a.check(f"secret/data/{value}/other", "read").allowed


def test_a_wildcard_in_a_rendered_deny_value_is_not_a_glob() -> None:
    # a '*' from the value at the end of the path: the exact path, not a prefix
    a = acl(rule("secret/*", "read") + rule(f"secret/{TEAM}", "deny"), ctx=team("ops*"))
    assert not a.check("secret/ops*", "read").allowed
    assert a.check("secret/ops", "read").allowed and a.check("secret/opsx", "read").allowed
    assert [r.kind for r in a.rules if r.is_deny] == ["exact"]
    # a '+' from the value as a whole segment: that segment, not any segment
    a = acl(rule("secret/*", "read") + rule(f"secret/{TEAM}/x", "deny"), ctx=team("+"))
    assert not a.check("secret/+/x", "read").allowed
    assert a.check("secret/a/x", "read").allowed
    # the template's own glob stays a glob; '+*' is then literal '+' followed by a glob
    a = acl(rule("secret/*", "read") + rule(f"secret/{TEAM}*", "deny"), ctx=team("+"))
    assert not a.check("secret/+", "read").allowed and not a.check("secret/+a/b", "read").allowed
    assert a.check("secret/a", "read").allowed
    # the template's own '+' stays a wildcard next to a literal '+'
    a = acl(rule("secret/*", "read") + rule(f"secret/{TEAM}/+", "deny"), ctx=team("+"))
    assert not a.check("secret/+/a", "read").allowed and not a.check("secret/+/+", "read").allowed
    assert a.check("secret/a/a", "read").allowed and a.check("secret/a/+", "read").allowed
    # LIST resolution sees the literal deny too
    a = acl(rule("kv/+", "list") + rule(f"kv/{TEAM}/*", "deny"), ctx=team("+"))
    assert not a.check("kv/+/", "list").allowed
    assert a.check("kv/a/", "list").allowed


def test_a_literal_deny_is_not_merged_with_the_glob_of_the_same_text() -> None:
    a = acl(rule("secret/ops*", "read"), rule(f"secret/{TEAM}", "deny"), ctx=team("ops*"))
    assert sorted((r.pattern, r.kind) for r in a.rules) == [("secret/ops*", "exact"), ("secret/ops*", "prefix")]
    assert not a.check("secret/ops*", "read").allowed
    assert a.check("secret/opsx", "read").allowed and a.check("secret/ops", "read").allowed
    # same text, same literal reading: one rule, deny wins as usual
    b = acl(rule(f"secret/{TEAM}", "deny"), rule(f"secret/{TEAM}", "deny"), ctx=team("ops*"))
    assert len(b.rules) == 1 and b.rules[0].denying_policies == ("p0", "p1")


def test_a_granting_rule_with_a_wildcard_value_is_still_dropped() -> None:
    for value in ("ops*", "+", "a}}b", "ops+1"):
        a = acl(rule(f"secret/{TEAM}", "read") + rule(f"secret/{TEAM}/x", "deny"), ctx=team(value))
        assert [r.pattern for r in a.rules] == [f"secret/{value}/x"]
        assert not a.check(f"secret/{value}", "read").allowed


LITERAL_TEMPLATES = [
    f"{TEAM}",
    f"a/{TEAM}",
    f"a/{TEAM}/*",
    f"a/{TEAM}*",
    f"+/{TEAM}",
    f"{TEAM}/b",
    f"a/+/{TEAM}",
    f"a/{TEAM}/+",
    f"{TEAM}/+/*",
]
LITERAL_VALUES = ["", "a", "+", "*", "a*", "+a", "a+", "a/+", "*/b", "+/"]
LITERAL_SEGMENTS = ["", "a", "b", "+", "*", "a*", "+a", "a+", "ab"]
LITERAL_PATHS = sorted(
    {"/".join(p) for n in (1, 2, 3) for p in itertools.product(LITERAL_SEGMENTS, repeat=n) if n == 1 or p[0]}
    | {"a/+/b/c", "a/a*/x/y", "+/b/c"}
)  # request paths never start with '/'


def _reference(template: str, value: str) -> re.Pattern[str]:
    """The template's own '+' segments and final '*' are wildcards, the value is literal text."""

    def conv(text: str) -> str:
        glob = text.endswith("*")
        body = re.escape(text[:-1] if glob else text).replace(r"\+", "[^/]*")
        return body + (".*" if glob else "")

    pre, post = template.split(TEAM)
    if not pre:  # one leading '/' of the rendered path is dropped, as Vault does
        if value.startswith("/"):
            value = value[1:]
        elif not value and post.startswith("/"):
            post = post[1:]
    return re.compile(conv(pre) + re.escape(value) + conv(post), re.S)


@pytest.mark.parametrize(("template", "value"), list(itertools.product(LITERAL_TEMPLATES, LITERAL_VALUES)))
def test_literal_deny_matching_agrees_with_a_reference(template: str, value: str) -> None:
    """Selection (exact index, prefix index, segment trie), ``matches`` and the automaton the
    ceiling containment uses must all read the value's characters literally."""
    a = acl(rule(template, "deny"), ctx=team(value))
    (deny,) = a.rules
    ref = _reference(template, value)
    for path in LITERAL_PATHS:
        want = ref.fullmatch(path) is not None
        assert (a.select(path) is deny) == want, path
        assert deny.compiled.matches(path) == want, path
        state = 0
        for ch in path:
            state = step(deny.compiled.items, state, ch)
            if state < 0:
                break
        assert (state >= 0 and accepts(deny.compiled.items, state)) == want, path


def test_templates_without_context_are_dropped() -> None:
    a = acl(rule("secret/{{identity.entity.id}}", "read"))
    assert a.rules == ()


def test_rendered_template_merges_with_literal_rule() -> None:
    a = acl(rule("secret/{{identity.entity.id}}", "read"), rule("secret/ent-1", "deny"), ctx=CTX)
    assert not a.check("secret/ent-1", "read").allowed
