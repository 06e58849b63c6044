from __future__ import annotations

from typing import Any

import pytest

from agentceiling.policy import (
    RAR_INVALID,
    ForeignEntry,
    RarEntry,
    RarError,
    TemplateContext,
    parse_authorization_details,
    rar_allows,
    render_entry,
)

PA = "vault:path_access"


def entry(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": PA, "path": "secret/data/app", "capabilities": ["read"]}
    base.update(kw)
    return base


def parse_one(**kw: Any) -> RarEntry:
    (e,) = parse_authorization_details([entry(**kw)])
    assert isinstance(e, RarEntry)
    return e


def test_parse_valid_entry() -> None:
    e = parse_one(
        path="/secret/data/app-*",
        capabilities=["read", "create", "update", "delete", "list", "sudo", "patch", "subscribe", "recover"],
        allowed_parameters={"Version": ["1", 2, True]},
        denied_parameters={"x": []},
        required_parameters=["Version", "version"],
    )
    assert e.path == "secret/data/app-*"
    assert len(e.capabilities) == 9
    assert e.allowed_parameters == {"version": ("1", 2, True)}
    assert e.denied_parameters == {"x": ()}
    assert e.required_parameters == ("version",)
    assert e.raw["path"] == "/secret/data/app-*"


def test_foreign_entries_are_kept_and_grant_nothing() -> None:
    details = parse_authorization_details([{"type": "payment_initiation", "actions": ["x"], "whatever": {}}, entry()])
    assert isinstance(details[0], ForeignEntry) and details[0].type == "payment_initiation"
    assert rar_allows(details[:1], "secret/data/app", "read") == (False, ())
    assert rar_allows(details, "secret/data/app", "read")[0]


def test_empty_array_is_valid_but_allows_nothing() -> None:
    assert parse_authorization_details([]) == ()
    assert rar_allows((), "a", "read") == (False, ())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"type": PA}, "must be a JSON array"),
        ('[{"type": "vault:path_access"}]', "must be a JSON array"),
        (None, "must be a JSON array"),
        (["x"], "entry must be a JSON object"),
        ([{"path": "a"}], "type must be a non-empty string"),
        ([{"type": ""}], "type must be a non-empty string"),
        ([{"type": 3}], "type must be a non-empty string"),
        ([entry(path="")], "path must be a non-empty string"),
        ([entry(path=None)], "path must be a non-empty string"),
        ([{"type": PA, "capabilities": ["read"]}], "path must be a non-empty string"),
        ([entry(path="a/*/b")], "'*' is only allowed as the last character"),
        ([entry(path="a/x+")], "'+' must be a whole path segment"),
        ([entry(path="a/{{identity.entity.id")], "unbalanced"),
        ([entry(path="a/{{nope}}")], "unsupported identity template"),
        ([entry(capabilities=[])], "capabilities must be a non-empty array"),
        ([entry(capabilities="read")], "capabilities must be a non-empty array"),
        ([{"type": PA, "path": "a"}], "capabilities must be a non-empty array"),
        ([entry(capabilities=["read", "read"])], "capabilities must be unique"),
        ([entry(capabilities=["deny"])], "unknown capability 'deny'"),
        ([entry(capabilities=["write"])], "unknown capability 'write'"),
        ([entry(capabilities=[1])], "capabilities must be strings"),
        ([entry(locations=["https://vault"])], "unknown member 'locations'"),
        ([entry(allowed_parameters=["a"])], "allowed_parameters must be an object"),
        ([entry(allowed_parameters={"a": "b"})], "allowed_parameters.a must be an array"),
        ([entry(denied_parameters={"a": [{"x": 1}]})], "denied_parameters.a must be an array"),
        ([entry(denied_parameters={"a": [None]})], "denied_parameters.a must be an array"),
        ([entry(allowed_parameters={"A": [], "a": []})], "duplicate parameter 'a'"),
        ([entry(required_parameters="a")], "required_parameters must be an array of strings"),
        ([entry(required_parameters=[1])], "required_parameters must be an array of strings"),
    ],
)
def test_strict_parse_errors(value: Any, message: str) -> None:
    with pytest.raises(RarError) as info:
        parse_authorization_details(value)
    assert info.value.code == RAR_INVALID
    assert message in info.value.message


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("secret/data/ci/../prod/db", 'path has a ".." segment'),
        ("secret/./data", 'path has a "." segment'),
        ("secret/data/../*", 'path has a ".." segment'),
        ("secret//data/prod", 'path has an empty segment ("//")'),
        ("secret/+//x", 'path has an empty segment ("//")'),
    ],
)
def test_entry_paths_with_dot_or_empty_segments_are_invalid(path: str, message: str) -> None:
    """Request paths with dot or empty segments are refused before any decision, so an entry
    declaring one would never match: it is a bad entry, not one within (or beyond) the ceiling."""
    with pytest.raises(RarError) as info:
        parse_authorization_details([entry(path=path)])
    assert info.value.code == RAR_INVALID and message in info.value.message


def test_entry_paths_lose_their_leading_slashes_as_request_paths_do() -> None:
    for path in ("/secret/data/app", "//secret/data/app", "///secret/data/app"):
        (e,) = parse_authorization_details([entry(path=path)])
        assert isinstance(e, RarEntry) and e.path == "secret/data/app"
    (glob,) = parse_authorization_details([entry(path="//*")])
    assert isinstance(glob, RarEntry) and glob.path == "*"
    for path in ("secret/metadata/", "secret/.hidden", "secret/..x/*", "secret/data/a.b"):
        (ok,) = parse_authorization_details([entry(path=path)])
        assert isinstance(ok, RarEntry) and ok.path == path


def test_error_names_the_entry_index() -> None:
    with pytest.raises(RarError, match=r"authorization_details\[1\]"):
        parse_authorization_details([entry(), entry(capabilities=["nope"])])


# ------------------------------------------------------------------ matching


def test_exact_matching_and_capability() -> None:
    details = parse_authorization_details([entry(capabilities=["create", "read"])])
    assert rar_allows(details, "secret/data/app", "create")[0]
    assert rar_allows(details, "/secret/data/app", "read")[0]
    assert not rar_allows(details, "secret/data/app", "update")[0]  # second write fails
    assert not rar_allows(details, "secret/data/app2", "read")[0]
    assert not rar_allows(details, "secret/data/app", "frobnicate")[0]


def test_glob_and_plus_matching() -> None:
    details = parse_authorization_details(
        [
            entry(path="secret/data/app-*", capabilities=["read"]),
            entry(path="db/+/creds", capabilities=["read"]),
        ]
    )
    assert rar_allows(details, "secret/data/app-1/x", "read")[0]
    assert not rar_allows(details, "secret/data/ap", "read")[0]
    assert rar_allows(details, "db/x/creds", "read")[0]
    assert not rar_allows(details, "db/x/y/creds", "read")[0]


def test_list_tolerates_trailing_slash() -> None:
    details = parse_authorization_details([entry(path="secret/metadata/app", capabilities=["list"])])
    assert rar_allows(details, "secret/metadata/app/", "list")[0]
    assert not rar_allows(details, "secret/metadata/app/", "read")[0]


def test_entries_are_independent_and_matched_entries_reported() -> None:
    details = parse_authorization_details(
        [
            entry(path="contacts", capabilities=["read"]),
            entry(path="photos", capabilities=["update"]),
            entry(path="photos", capabilities=["update", "read"]),
        ]
    )
    assert not rar_allows(details, "contacts", "update")[0]  # no cross-entry union
    ok, matched = rar_allows(details, "photos", "update")
    assert ok and len(matched) == 2


def test_parameter_constraints() -> None:
    details = parse_authorization_details(
        [
            entry(
                path="db/creds/x",
                capabilities=["update"],
                allowed_parameters={"ttl": ["1h", "2h"]},
                denied_parameters={"ttl": ["2h"]},
                required_parameters=["ttl"],
            )
        ]
    )
    assert rar_allows(details, "db/creds/x", "update", {"ttl": "1h"})[0]
    assert not rar_allows(details, "db/creds/x", "update", {"ttl": "2h"})[0]
    assert not rar_allows(details, "db/creds/x", "update", {})[0]
    assert not rar_allows(details, "db/creds/x", "update", {"ttl": "1h", "x": 1})[0]


def test_deny_entry_constructed_directly_denies() -> None:
    allow = RarEntry(path="a", capabilities=frozenset({"read"}))
    deny = RarEntry(path="a*", capabilities=frozenset({"deny"}))
    assert rar_allows([allow], "a", "read")[0]
    assert rar_allows([allow, deny], "a", "read") == (False, ())


# ------------------------------------------------------------------ templates


CTX = TemplateContext(entity_id="ent-9", entity_name="bob", metadata={"bad": "x+y", "up": "../prod", "gap": "a//b"})


def test_render_entry() -> None:
    e = parse_one(path="agent-registry/registration/entity_id/{{identity.entity.id}}")
    assert e.templated
    r = render_entry(e, CTX)
    assert r is not None and r.path == "agent-registry/registration/entity_id/ent-9"
    assert not r.templated
    assert render_entry(r, CTX) is r
    assert rar_allows([r], "agent-registry/registration/entity_id/ent-9", "read")[0]


@pytest.mark.parametrize(
    "path",
    [
        "secret/{{identity.entity.metadata.missing}}",
        "secret/{{identity.entity.metadata.bad}}",  # rendered '+' -> skipped
        "secret/{{identity.entity.aliases.acc.id}}",
        "secret/{{identity.entity.metadata.up}}/db",  # rendered '..' segment -> skipped
        "secret/{{identity.entity.metadata.gap}}",  # rendered empty segment -> skipped
    ],
)
def test_unrenderable_entries_are_skipped(path: str) -> None:
    assert render_entry(parse_one(path=path), CTX) is None


def test_unrendered_entries_never_match() -> None:
    e = parse_one(path="secret/{{identity.entity.id}}")
    assert render_entry(e, None) is None
    assert not rar_allows([e], "secret/{{identity.entity.id}}", "read")[0]


def test_entries_are_equal_only_with_equally_typed_parameter_values() -> None:
    """Entries key the cache of ceiling verdicts: ``true``, ``1`` and ``1.0`` must not collide."""
    as_true = parse_one(allowed_parameters={"force": [True]})
    as_one = parse_one(allowed_parameters={"force": [1]})
    as_float = parse_one(allowed_parameters={"force": [1.0]})
    assert len({as_true, as_one, as_float}) == 3
    assert as_true != as_one and as_one != as_float
    assert parse_one(allowed_parameters={"force": [True]}) == as_true
    assert hash(parse_one(denied_parameters={"x": [0]})) == hash(parse_one(denied_parameters={"x": [0]}))
    assert parse_one(denied_parameters={"x": [0]}) != parse_one(denied_parameters={"x": [False]})
