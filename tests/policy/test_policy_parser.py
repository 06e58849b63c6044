from __future__ import annotations

import json

import pytest

from agentceiling.policy import (
    ACL,
    CAPABILITIES,
    DEFAULT_CEILING_POLICY,
    DEFAULT_POLICY,
    POLICY_INVALID,
    POLICY_SYNTAX_ERROR,
    PolicyParseError,
    TemplateContext,
    builtin_policies,
    parse_policy,
)


def _err(text: str, name: str = "p") -> PolicyParseError:
    with pytest.raises(PolicyParseError) as info:
        parse_policy(text, name)
    return info.value


def test_basic_hcl_block() -> None:
    p = parse_policy('path "secret/data/*" {\n  capabilities = ["read", "list"]\n}\n', "kv")
    assert p.name == "kv"
    (rule,) = p.rules
    assert rule.pattern == "secret/data/*"
    assert rule.capabilities == {"read", "list"}
    assert rule.is_glob and not rule.has_plus and rule.kind == "prefix"
    assert (rule.line, rule.column) == (1, 1)


def test_all_ten_capabilities_accepted() -> None:
    caps = sorted(CAPABILITIES - {"deny"})
    p = parse_policy(f'path "a" {{ capabilities = {json.dumps(caps)} }}')
    assert p.rules[0].capabilities == frozenset(caps)
    assert len(CAPABILITIES) == 10


def test_deny_keeps_only_deny() -> None:
    p = parse_policy('path "a" { capabilities = ["read", "deny", "sudo"] }')
    assert p.rules[0].capabilities == {"deny"}


@pytest.mark.parametrize(
    ("legacy", "caps"),
    [
        ("deny", {"deny"}),
        ("read", {"read", "list"}),
        ("write", {"create", "read", "update", "delete", "list"}),
        ("sudo", {"create", "read", "update", "delete", "list", "sudo"}),
    ],
)
def test_legacy_policy_mapping(legacy: str, caps: set[str]) -> None:
    p = parse_policy(f'path "secret/*" {{ policy = "{legacy}" }}')
    assert p.rules[0].capabilities == caps


def test_legacy_policy_combines_with_capabilities() -> None:
    p = parse_policy('path "a" { policy = "read"\n capabilities = ["patch"] }')
    assert p.rules[0].capabilities == {"read", "list", "patch"}


def test_comments_separators_and_syntax_variants() -> None:
    text = """
    # hash comment
    // slash comment
    /* block
       comment */
    name = "ignored"
    path "a/b" {
      capabilities: ["read",]   # colon form and trailing comma
      allowed_parameters {
        "Foo" = ["x", 1, true]
        bar = []
      },
      denied_parameters = { "baz" = ["q*"] }
      required_parameters = ["Foo"]
      min_wrapping_ttl = "1m"
      max_wrapping_ttl = 300
      comment = "kept out"
    }
    path "/c" = { capabilities = ["update"] }
    """
    p = parse_policy(text)
    ab, c = p.rules
    assert ab.allowed_parameters == {"foo": ("x", 1, True), "bar": ()}
    assert ab.denied_parameters == {"baz": ("q*",)}
    assert ab.required_parameters == ("foo",)
    assert (ab.min_wrapping_ttl, ab.max_wrapping_ttl) == (60.0, 300.0)
    assert c.pattern == "c"  # one leading slash stripped, like Vault


def test_string_escapes_and_heredoc() -> None:
    p = parse_policy('path "a\\u00e9\\"b" { capabilities = ["read"] }')
    assert p.rules[0].pattern == 'aé"b'
    p = parse_policy('path "x" {\n  comment = <<EOT\nline1\nEOT\n  capabilities = ["read"]\n}\n')
    assert p.rules[0].capabilities == {"read"}


def test_empty_policy_is_valid() -> None:
    assert parse_policy("  # nothing\n").rules == ()
    assert parse_policy("{}").rules == ()


def test_json_form() -> None:
    text = json.dumps(
        {
            "path": {
                "secret/*": {"capabilities": ["read"], "allowed_parameters": {"K": ["v"]}},
                "sys/+/x": {"policy": "write"},
            }
        }
    )
    p = parse_policy(text)
    assert [r.pattern for r in p.rules] == ["secret/*", "sys/+/x"]
    assert p.rules[0].allowed_parameters == {"k": ("v",)}
    assert p.rules[1].has_plus and p.rules[1].kind == "segment"


def test_json_list_of_path_objects() -> None:
    text = '{"path": [{"a": {"capabilities": ["read"]}}, {"b": {"capabilities": ["list"]}}]}'
    assert [r.pattern for r in parse_policy(text).rules] == ["a", "b"]


# ------------------------------------------------------------------ duplicates


def test_duplicate_hcl_blocks_are_merged() -> None:
    text = """
path "secret/app/*" {
  capabilities = ["read"]
  allowed_parameters = { "a" = ["1"], "b" = ["x"] }
  required_parameters = ["a"]
}
path "secret/app/*" {
  capabilities = ["update"]
  allowed_parameters = { "a" = ["2"], "b" = [] , "c" = ["z"] }
  denied_parameters = { "d" = ["bad"] }
  required_parameters = ["c"]
}
"""
    (rule,) = parse_policy(text).rules
    assert rule.capabilities == {"read", "update"}
    assert rule.allowed_parameters == {"a": ("1", "2"), "b": (), "c": ("z",)}
    assert rule.denied_parameters == {"d": ("bad",)}
    assert set(rule.required_parameters) == {"a", "c"}
    assert (rule.line, rule.column) == (2, 1)


def test_duplicate_blocks_with_deny_merge_to_deny() -> None:
    text = 'path "a" { capabilities = ["read"] }\npath "a" { capabilities = ["deny"] }\n'
    assert parse_policy(text).rules[0].capabilities == {"deny"}


def test_duplicate_json_blocks_are_merged() -> None:
    # Python's json (and pyhcl) keep only the last duplicate key; we must merge both.
    text = (
        '{"path": {"kv/*": {"capabilities": ["read"]}, "kv/*": {"capabilities": ["list"]}},'
        ' "path": {"kv/*": {"capabilities": ["create"]}}}'
    )
    (rule,) = parse_policy(text).rules
    assert rule.capabilities == {"read", "list", "create"}


def test_leading_slash_duplicates_merge() -> None:
    text = 'path "/a" { capabilities = ["read"] }\npath "a" { capabilities = ["list"] }'
    (rule,) = parse_policy(text).rules
    assert rule.capabilities == {"read", "list"}


def test_duplicate_wrapping_ttls_keep_smaller() -> None:
    text = (
        'path "a" { capabilities = ["read"]\n max_wrapping_ttl = "10m" }\n'
        'path "a" { capabilities = ["read"]\n max_wrapping_ttl = "5m"\n min_wrapping_ttl = 30 }\n'
    )
    (rule,) = parse_policy(text).rules
    assert (rule.min_wrapping_ttl, rule.max_wrapping_ttl) == (30.0, 300.0)


# ------------------------------------------------------------------ errors


def test_error_unknown_capability_points_at_block() -> None:
    text = '\n\n  path "secret/*" {\n    capabilities = ["read", "raed"]\n  }\n'
    err = _err(text, "mine")
    assert (err.line, err.column) == (3, 3)
    assert err.code == POLICY_INVALID
    assert err.detail == 'path "secret/*": unknown capability "raed" (at line 4, column 29)'
    assert str(err) == f"policy mine: line 3, column 3: {err.detail}"


def test_error_unknown_key_in_block() -> None:
    err = _err('path "a" {\n  capabilities = ["read"]\n  capabilites = ["read"]\n}\n')
    assert (err.line, err.column) == (1, 1)
    assert "unknown key 'capabilites'" in err.detail
    assert "(at line 3, column 3)" in err.detail


def test_error_duplicate_key_in_block() -> None:
    err = _err('path "a" {\n  capabilities = ["read"]\n  capabilities = ["list"]\n}\n')
    assert "duplicate key 'capabilities' (first set at line 2, column 3)" in err.detail


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("secret/*/x", "'*' is only allowed as the last character"),
        ("secret/a+b", "'+' must be a whole path segment"),
        ("secret/+*", "'+*' is not allowed"),
        ("", "empty path"),
        ("secret/{{identity.entity.id}", "unbalanced"),
        ("secret/{{identity.entity.nope}}", "unsupported identity template"),
        ("secret/{{foo}}", "unsupported identity template"),
    ],
)
def test_error_bad_patterns(pattern: str, message: str) -> None:
    err = _err(f'# header\npath "{pattern}" {{ capabilities = ["read"] }}\n')
    assert (err.line, err.column) == (2, 1)
    assert message in err.detail
    assert err.code == POLICY_INVALID


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ('path "a" {\n  capabilities = ["read"\n}', 3, 1, "expected ',' or ']'"),
        ('path "a" {\n  capabilities = ["read"]\n', 1, 10, "unclosed '{'"),
        ('path "a {\n}', 1, 6, "unterminated string"),
        ('path "a" {\n  capabilities = ["r\\qd"]\n}', 2, 21, "invalid escape sequence"),
        ('path "a" {\n  capabilities ["read"]\n}', 2, 16, "expected '=' or '{'"),
        ('path "a" {}\n}\n', 2, 1, "unexpected '}'"),
        ('path "a" { capabilities = [read] }', 1, 28, "expected a value"),
        ("/* open\n\npath", 1, 1, "unterminated block comment"),
        ('path "a" { capabilities = @ }', 1, 27, "unexpected character '@'"),
    ],
)
def test_syntax_errors_have_exact_positions(text: str, line: int, column: int, message: str) -> None:
    err = _err(text)
    assert (err.line, err.column) == (line, column), str(err)
    assert message in err.detail
    assert err.code == POLICY_SYNTAX_ERROR


def test_invalid_json_position() -> None:
    err = _err('{"path": {"a": {"capabilities": ["read"]}},\n  }')
    assert (err.line, err.column) == (2, 3)
    assert err.detail.startswith("invalid JSON")


def test_error_other_semantics() -> None:
    assert "unknown top-level key 'paths'" in _err('paths "a" { capabilities = ["read"] }').detail
    assert "invalid policy 'admin'" in _err('path "a" { policy = "admin" }').detail
    assert "'control_group' is not supported" in _err('path "a" { control_group = {} }').detail
    assert "must be a list of strings" in _err('path "a" { capabilities = "read" }').detail
    assert "must be a list of values" in _err('path "a" { allowed_parameters = { k = "v" } }').detail
    assert (
        "max_wrapping_ttl cannot be less"
        in _err('path "a" {\n min_wrapping_ttl = 60\n max_wrapping_ttl = 30\n}').detail
    )
    assert "invalid duration" in _err('path "a" { min_wrapping_ttl = "soon" }').detail
    assert "duplicate parameter 'k'" in _err('path "a" { allowed_parameters = { k = [], K = [] } }').detail


def test_unnamed_policy_message() -> None:
    with pytest.raises(PolicyParseError, match=r"^policy: line 1, column 1: "):
        parse_policy('path "a" { capabilities = ["nope"] }')


def test_pyhcl_would_drop_duplicates() -> None:
    """Documents why we do not use pyhcl: it silently keeps only the last block."""
    hcl = pytest.importorskip("hcl")
    text = 'path "a" { capabilities = ["read"] }\npath "a" { capabilities = ["list"] }\n'
    assert hcl.loads(text)["path"]["a"]["capabilities"] == ["list"]
    assert parse_policy(text).rules[0].capabilities == {"read", "list"}


# ------------------------------------------------------------------ builtins


def test_builtin_policies_parse() -> None:
    texts = builtin_policies()
    assert set(texts) == {"default", "default-ceiling"}
    default = parse_policy(texts["default"], "default")
    patterns = {r.pattern: r.capabilities for r in default.rules}
    assert patterns["auth/token/lookup-self"] == {"read"}
    assert patterns["auth/token/renew-self"] == {"update"}
    assert patterns["sys/capabilities-self"] == {"update"}
    assert patterns["identity/entity/id/{{identity.entity.id}}"] == {"read"}
    assert patterns["cubbyhole/*"] == {"create", "read", "update", "delete", "list"}
    assert patterns["sys/control-group/request"] == {"update"}
    assert patterns["identity/oidc/provider/+/authorize"] == {"read", "update"}
    assert default.templated
    ceiling = parse_policy(DEFAULT_CEILING_POLICY, "default-ceiling")
    assert [r.pattern for r in ceiling.rules] == [
        "agent-registry/registration/entity_id/{{identity.entity.id}}",
        "policy/default",
        "policy/default-ceiling",
    ]
    assert texts["default"] == DEFAULT_POLICY


def test_default_ceiling_rendered_for_entity() -> None:
    ceiling = parse_policy(DEFAULT_CEILING_POLICY, "default-ceiling")
    acl = ACL.build([ceiling], TemplateContext(entity_id="e-123"))
    assert acl.check("agent-registry/registration/entity_id/e-123", "read").allowed
    assert not acl.check("agent-registry/registration/entity_id/e-999", "read").allowed
    assert acl.check("policy/default-ceiling", "read").allowed
    assert not acl.check("policy/default-ceiling", "update").allowed


def test_json_semantic_error_points_at_pattern_key() -> None:
    err = _err('{\n  "path": {\n    "a/*/b": {"capabilities": ["read"]}\n  }\n}')
    assert (err.line, err.column) == (3, 5)
    assert err.detail.startswith('path "a/*/b": ')


def test_policies_are_hashable_values() -> None:
    text = 'path "a" {\n capabilities = ["read"]\n allowed_parameters = { k = [1, "x"] }\n}'
    assert parse_policy(text, "n") == parse_policy(text, "n")
    assert len({parse_policy(text, "n"), parse_policy(text, "n")}) == 1


@pytest.mark.parametrize("depth", [65, 1_000, 100_000])
@pytest.mark.parametrize("form", ["hcl", "json"])
def test_deep_nesting_is_a_parse_error_not_a_crash(depth: int, form: str) -> None:
    deep = "[" * depth + "]" * depth
    if form == "hcl":
        text = f'path "a" {{\n  capabilities = ["read"]\n  x = {deep}\n}}\n'
    else:
        text = f'{{"path": {{"a": {{"capabilities": ["read"], "x": {deep}}}}}}}'
    with pytest.raises(PolicyParseError, match="nested more than 64 levels deep"):
        parse_policy(text)


def test_nesting_up_to_the_limit_parses_to_its_usual_verdict() -> None:
    deep = "[" * 62 + "]" * 62  # inside the path block and its body: 64 levels in all
    with pytest.raises(PolicyParseError) as err:
        parse_policy(f'path "a" {{\n  capabilities = ["read"]\n  x = {deep}\n}}\n')
    assert "nested" not in str(err.value)  # refused for the unknown key, not for the depth


def test_subscribe_event_types_parse_and_restricted_subscriptions_grant_nothing() -> None:
    """Vault policies may restrict ``subscribe`` to event types; a decision has no event type to
    check, so a restricted block keeps its other capabilities and loses ``subscribe``."""
    p = parse_policy(
        'path "sys/events/subscribe/*" {\n  capabilities = ["read", "subscribe"]\n'
        '  subscribe_event_types = ["kv*"]\n}\n'
        'path "kv/*" {\n  capabilities = ["subscribe"]\n  subscribe_event_types = ["*"]\n}\n'
    )
    caps = {r.pattern: set(r.capabilities) for r in p.rules}
    assert caps == {"sys/events/subscribe/*": {"read"}, "kv/*": {"subscribe"}}
    with pytest.raises(PolicyParseError, match="subscribe_event_types must be a list of strings"):
        parse_policy('path "a" {\n  capabilities = ["subscribe"]\n  subscribe_event_types = "kv*"\n}\n')
