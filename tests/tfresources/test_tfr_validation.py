"""Plan-time checks of the provider's resources and the client's parsing helpers (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from agentceiling.tfprovider.client import AddressError, field_path, join_namespace, parse_address
from agentceiling.tfprovider.framework.types import UNKNOWN, Diagnostics
from agentceiling.tfprovider.resources import (
    AgentRegistration,
    IdentityEntity,
    IdentityEntityAlias,
    IdentityEntityPolicies,
    OAuthResourceServerConfigProfile,
    Policy,
)
from agentceiling.tfprovider.resources.agent_registration import is_uuid

EC_PUBLIC = """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8xOUetsCa8EfOlDEBAfREhJqspDo
yEh6Szz2in47Tv5n52m9dLYyPCbqZkOB5nTSqtscpkQD/HpykCggvx09iQ==
-----END PUBLIC KEY-----
"""


def _profile(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {a.name: None for a in OAuthResourceServerConfigProfile.schema.attributes}
    base.update(profile_name="p", issuer_id="https://idp.example.com/", jwks_uri="https://idp.example.com/jwks",
                public_keys=[])
    base.update(over)
    return base


def _errors(diags: Diagnostics) -> list[tuple[str, str, Any]]:
    return [(d.summary, d.detail, d.path) for d in diags.items if d.severity == "error"]


def _validate(resource: Any, config: dict[str, Any]) -> list[tuple[str, str, Any]]:
    diags = Diagnostics()
    resource.validate(config, diags)
    return _errors(diags)


@pytest.mark.parametrize(
    ("over", "message", "path"),
    [
        ({"jwks_uri": None}, "jwks_uri is required when use_jwks=true", ("jwks_uri",)),
        ({"use_jwks": False, "jwks_uri": None}, "public_keys is required when use_jwks=false", ("use_jwks",)),
        (
            {"public_keys": [{"key_id": "k", "pem": EC_PUBLIC}]},
            "cannot specify both use_jwks=true and public_keys",
            ("public_keys",),
        ),
        (
            {"use_jwks": False, "public_keys": [{"key_id": "k", "pem": EC_PUBLIC}]},
            "cannot specify both use_jwks=false and jwks_uri",
            ("jwks_uri",),
        ),
    ],
)
def test_profile_key_source_conflicts_use_vaults_messages(over: dict[str, Any], message: str, path: Any) -> None:
    errors = _validate(OAuthResourceServerConfigProfile(), _profile(**over))
    assert ("Configuration Validation Error", message, path) in errors


def test_profile_valid_configs_pass() -> None:
    assert _validate(OAuthResourceServerConfigProfile(), _profile()) == []
    static = _profile(use_jwks=False, jwks_uri=None, public_keys=[{"key_id": "k", "pem": EC_PUBLIC}])
    assert _validate(OAuthResourceServerConfigProfile(), static) == []


def test_profile_unknown_values_are_not_judged() -> None:
    config = _profile(use_jwks=UNKNOWN, jwks_uri=UNKNOWN, issuer_id=UNKNOWN, supported_algorithms=UNKNOWN)
    assert _validate(OAuthResourceServerConfigProfile(), config) == []


@pytest.mark.parametrize(
    ("over", "path", "needle"),
    [
        ({"supported_algorithms": ["RS256", "HS256"]}, ("supported_algorithms", 1), "HMAC"),
        ({"supported_algorithms": ["rs256"]}, ("supported_algorithms", 0), "case-sensitive"),
        ({"jwt_type": "id_token"}, ("jwt_type",), "access_token"),
        ({"clock_skew_leeway": -5}, ("clock_skew_leeway",), "at least 0"),
        ({"issuer_id": "idp.example.com"}, ("issuer_id",), "absolute http(s) URL"),
        ({"jwks_uri": "ftp://x/keys"}, ("jwks_uri",), "absolute http(s) URL"),
        ({"namespace": "/ns"}, ("namespace",), 'leading/trailing "/"'),
        ({"namespace": ""}, ("namespace",), "value cannot be empty"),
    ],
)
def test_profile_bad_input_points_at_the_attribute(over: dict[str, Any], path: Any, needle: str) -> None:
    errors = _validate(OAuthResourceServerConfigProfile(), _profile(**over))
    assert any(p == path and needle in detail for _, detail, p in errors), errors


def test_profile_pem_checks() -> None:
    private = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n-----END PRIVATE KEY-----\n"
    config = _profile(
        use_jwks=False,
        jwks_uri=None,
        public_keys=[
            {"key_id": "a", "pem": private},
            {"key_id": "b", "pem": "not a pem"},
            {"key_id": "a", "pem": EC_PUBLIC},
        ],
    )
    errors = _validate(OAuthResourceServerConfigProfile(), config)
    paths = {p: d for _, d, p in errors}
    assert "private key" in paths[("public_keys", 0, "pem")]
    assert ("public_keys", 1, "pem") in paths
    assert "already used" in paths[("public_keys", 2, "key_id")]


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("", "A policy name cannot be empty."),
        ("  ", "A policy name cannot be empty."),
        ("a b", 'Invalid policy name "a b".'),
        ("/lead", 'Invalid policy name "/lead".'),
        ("trail/", 'Invalid policy name "trail/".'),
        ("zero\u200bwidth", "invisible"),
    ],
)
def test_policy_lists_refuse_at_plan_what_the_server_refuses_at_apply(name: str, detail: str) -> None:
    """An entity's policies, an entity_policies' policies and a registration's ceiling_policies:
    the control plane's own policy-name check, on the attribute, before anything is applied."""
    entity, owned, reg = IdentityEntity(), IdentityEntityPolicies(), AgentRegistration()
    cases = [
        (entity, {"name": "e", "policies": ["ok", name]}, ("policies",)),
        (owned, {"entity_id": "e", "policies": ["ok", name]}, ("policies",)),
        (reg, {"display_name": "a", "entity_id": "e", "ceiling_policies": ["ok", name]}, ("ceiling_policies", 1)),
    ]
    for resource, over, path in cases:
        config = {a.name: None for a in resource.schema.attributes}
        config.update(over)
        errors = _validate(resource, config)
        assert len(errors) == 1 and errors[0][2] == path and detail in errors[0][1], (resource, errors)


def test_registration_ceiling_checks_and_uuid_import() -> None:
    reg = AgentRegistration()
    config = {a.name: None for a in reg.schema.attributes}
    config.update(display_name="a", entity_id="e", ceiling_policies=["x", "root", "x"])
    errors = _validate(reg, config)
    assert [p for _, _, p in errors] == [("ceiling_policies", 1), ("ceiling_policies", 2)]
    assert is_uuid("4C5E0D6A-2F7B-4C1E-9A7E-0B5F5A3C2D11")
    assert is_uuid("4c5e0d6a-2f7b-4c1e-9a7e-0b5f5a3c2d11")
    for not_uuid in ("my-agent", "team/app/my-agent", "4c5e0d6a-2f7b-4c1e-9a7e", ""):
        assert not is_uuid(not_uuid)
    diags = Diagnostics()
    assert reg.import_state(None, "team/app/my-agent", diags)["display_name"] == "team/app/my-agent"  # type: ignore[index]


def test_registration_plan_keeps_or_empties_unset_ceiling() -> None:
    reg = AgentRegistration()
    diags = Diagnostics()
    planned = reg.modify_plan(None, None, {"ceiling_policies": UNKNOWN}, {"ceiling_policies": None}, diags)
    assert planned["ceiling_policies"] == []
    planned = reg.modify_plan(None, {"ceiling_policies": ["a"]}, {"ceiling_policies": UNKNOWN},
                              {"ceiling_policies": None}, diags)
    assert planned["ceiling_policies"] == ["a"]


def test_alias_needs_accessor_or_issuer() -> None:
    alias = IdentityEntityAlias()
    config = {a.name: None for a in alias.schema.attributes}
    config.update(name="n", canonical_id="c")
    assert [p for _, _, p in _validate(alias, config)] == [("mount_accessor",)]
    config.update(issuer="https://idp.example.com/", external_id="ci-agent")
    assert _validate(alias, config) == []


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("https://idp.example.com/a b", "whitespace"),
        ("https://idp.example.com:0/", "invalid port"),
        ("https://idp.example.com/\u200b", "whitespace or control characters"),
        ("https://" + "a" * 3000 + ".example.com/", "longer than"),
    ],
)
def test_url_rules_of_the_control_plane_hold_at_plan_time(url: str, needle: str) -> None:
    """What the control plane refuses in a URL is refused by the plan: a refusal at apply leaves
    the resources before it applied and the rest not."""
    errors = _validate(OAuthResourceServerConfigProfile(), _profile(issuer_id=url))
    assert any(p == ("issuer_id",) and needle in detail for _, detail, p in errors), errors
    errors = _validate(OAuthResourceServerConfigProfile(), _profile(jwks_uri=url))
    assert any(p == ("jwks_uri",) and needle in detail for _, detail, p in errors), errors
    alias = IdentityEntityAlias()
    config = {a.name: None for a in alias.schema.attributes}
    config.update(name="n", canonical_id="c", issuer=url, external_id="x")
    assert any(p == ("issuer",) and needle in detail for _, detail, p in _validate(alias, config))


def test_jwks_uri_is_ascii_without_credentials_at_plan_time() -> None:
    for url, needle in (("https://idp.example.com/k\u00e9ys", "ASCII"),
                        ("https://user:pw@idp.example.com/keys", "credentials")):
        errors = _validate(OAuthResourceServerConfigProfile(), _profile(jwks_uri=url))
        assert any(p == ("jwks_uri",) and needle in detail for _, detail, p in errors), errors
        assert not _validate(OAuthResourceServerConfigProfile(), _profile(issuer_id=url.replace("/keys", "/")))


def test_policy_name_checks() -> None:
    errors = _validate(Policy(), {"id": None, "namespace": None, "name": "root", "policy": UNKNOWN})
    assert errors and errors[0][2] == ("name",)


@pytest.mark.parametrize(
    ("address", "target", "tls"),
    [
        ("127.0.0.1:8250", "127.0.0.1:8250", False),
        ("http://localhost:9000", "localhost:9000", False),
        ("https://cp.example.com", "cp.example.com:443", True),
        ("https://cp.example.com:8443/", "cp.example.com:8443", True),
        ("localhost", "localhost:8250", False),
        ("[::1]:8250", "[::1]:8250", False),
        ("unix:/run/ac.sock", "unix:/run/ac.sock", False),
    ],
)
def test_parse_address(address: str, target: str, tls: bool) -> None:
    ep = parse_address(address)
    assert (ep.target, ep.tls) == (target, tls)


@pytest.mark.parametrize("address", ["", "ftp://x:1", "host:notaport", "http://:80"])
def test_parse_address_rejects(address: str) -> None:
    with pytest.raises(AddressError):
        parse_address(address)


def test_field_path_and_namespace() -> None:
    names = ["issuer_id", "public_keys", "ceiling_policies"]
    assert field_path("public_keys[0].pem", names) == ("public_keys", 0, "pem")
    assert field_path("profile.issuer_id", names) == ("issuer_id",)
    assert field_path("ceiling_policies[2]", names) == ("ceiling_policies", 2)
    assert field_path("unique_id_claim", names) is None
    # A map entry, as the control plane names it (the key clipped, escaped, maybe with dots in it):
    # the diagnostic goes on the map attribute (it used to have no path at all).
    maps = ["metadata", "custom_metadata"]
    assert field_path("metadata[team]", maps) == ("metadata",)
    assert field_path("entity.metadata[a.b]", maps) == ("metadata",)
    assert field_path("alias.custom_metadata[x[1]]", maps) == ("custom_metadata",)


@pytest.mark.parametrize(
    ("resource", "attr"), [(IdentityEntity(), "metadata"), (IdentityEntityAlias(), "custom_metadata")]
)
def test_metadata_maps_are_checked_at_plan_time_on_the_entry(resource: Any, attr: str) -> None:
    """What the control plane refuses in a metadata map was found only at apply (and its error had
    no attribute path); it is refused by the plan, on the entry."""
    config = {a.name: None for a in resource.schema.attributes}
    config.update(name="n", canonical_id="c", issuer="https://idp.example.com/", external_id="e")
    config[attr] = {"team": "ok", "big": "v" * 4097, "k" * 257: "v", "nul": "a\x00b", "unknown": UNKNOWN}
    errors = _validate(resource, config)
    assert sorted((p, d.split(": ", 1)[1]) for _, d, p in errors) == sorted([
        ((attr, "big"), "must be at most 4096 characters."),
        ((attr, "k" * 257), "key must be at most 256 characters."),
        ((attr, "nul"), "must not contain NUL characters."),
    ])
    config[attr] = {f"k{i}": "v" for i in range(65)}
    assert _validate(resource, config) == [(f"Invalid {attr}", f"{attr} must have at most 64 entries.", (attr,))]
    config[attr] = {f"k{i}": "v" for i in range(64)}
    assert _validate(resource, config) == []
    assert join_namespace("", None) == "root"
    assert join_namespace("admin", "team") == "admin/team"
    assert join_namespace("root", "team") == "team"
