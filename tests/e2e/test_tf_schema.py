"""`terraform providers schema -json` shows every resource with the flags of terraform-provider-vault."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import PROVIDER_SOURCE, Installation, Terraform, workdir

pytestmark = pytest.mark.terraform

REQ, OPT, COMP, OC = "required", "optional", "computed", "optional+computed"

EXPECTED: dict[str, dict[str, str]] = {
    "vault_oauth_resource_server_config_profile": {
        "id": COMP, "namespace": OPT, "profile_name": REQ, "issuer_id": REQ, "use_jwks": OC, "jwks_uri": OPT,
        "jwks_ca_pem": OPT, "audiences": OPT, "no_default_policy": OC, "user_claim": OC,
        "supported_algorithms": OC, "jwt_type": OC, "clock_skew_leeway": OC, "enabled": OC,
        "optional_authorization_details": OC,
    },
    "vault_agent_registration": {
        "id": COMP, "namespace": OPT, "display_name": REQ, "entity_id": REQ, "ceiling_policies": OC,
        "no_default_ceiling_policy": OC, "description": OPT, "owner": OPT, "creation_time": COMP,
        "last_updated_time": COMP, "optional_authorization_details": OC,
    },
    "vault_policy": {"id": COMP, "namespace": OPT, "name": REQ, "policy": REQ, "allow_overwrite": OC},
    "vault_identity_entity": {
        "id": COMP, "namespace": OPT, "name": OC, "policies": OPT, "metadata": OPT, "disabled": OC,
        "external_policies": OC,
    },
    "vault_identity_entity_alias": {
        "id": COMP, "namespace": OPT, "name": REQ, "mount_accessor": OC, "canonical_id": REQ, "custom_metadata": OPT,
        "issuer": OC, "external_id": OPT,
    },
    "vault_identity_entity_policies": {
        "id": COMP, "namespace": OPT, "policies": REQ, "exclusive": OC, "entity_id": REQ, "entity_name": COMP,
    },
    "vault_activation_flags": {"id": COMP, "feature": REQ},
}

TYPES = {
    ("vault_oauth_resource_server_config_profile", "audiences"): ["list", "string"],
    ("vault_oauth_resource_server_config_profile", "supported_algorithms"): ["list", "string"],
    ("vault_oauth_resource_server_config_profile", "clock_skew_leeway"): "number",
    ("vault_oauth_resource_server_config_profile", "use_jwks"): "bool",
    ("vault_agent_registration", "ceiling_policies"): ["list", "string"],
    ("vault_identity_entity", "policies"): ["set", "string"],
    ("vault_identity_entity", "metadata"): ["map", "string"],
    ("vault_identity_entity_alias", "custom_metadata"): ["map", "string"],
    ("vault_identity_entity_policies", "policies"): ["set", "string"],
    ("vault_identity_entity_policies", "exclusive"): "bool",
    ("vault_policy", "allow_overwrite"): "bool",
}


def _flags(attr: dict[str, object]) -> str:
    if attr.get("required"):
        return REQ
    if attr.get("optional") and attr.get("computed"):
        return OC
    if attr.get("optional"):
        return OPT
    assert attr.get("computed"), attr
    return COMP


def test_providers_schema_json(tf: Terraform, installation: Installation, tmp_path: Path) -> None:
    d = workdir(tmp_path, installation, "")
    tf.init(d)
    out = tf.run(d, "providers", "schema", "-json")
    schema = json.loads(out.stdout)
    assert schema["format_version"].startswith("1.")
    provider = schema["provider_schemas"][PROVIDER_SOURCE]
    resources = provider["resource_schemas"]
    assert set(resources) == set(EXPECTED)
    for rtype, attrs in EXPECTED.items():
        block = resources[rtype]["block"]
        got = {name: _flags(a) for name, a in block["attributes"].items()}
        assert got == attrs, rtype
        for name, a in block["attributes"].items():
            assert a.get("description"), f"{rtype}.{name} has no description"
            assert not a.get("sensitive"), f"{rtype}.{name}"
    for (rtype, name), cty in TYPES.items():
        assert resources[rtype]["block"]["attributes"][name]["type"] == cty, (rtype, name)

    keys = resources["vault_oauth_resource_server_config_profile"]["block"]["block_types"]["public_keys"]
    assert keys["nesting_mode"] == "list"
    assert {n: _flags(a) for n, a in keys["block"]["attributes"].items()} == {"key_id": REQ, "pem": REQ}

    pconf = provider["provider"]["block"]
    for name in ("address", "token", "namespace", "ca_cert_file", "skip_tls_verify", "max_retries", "skip_child_token",
                 "max_lease_ttl_seconds", "add_address_to_env", "skip_get_vault_version", "vault_version_override",
                 "token_name", "tls_server_name"):
        assert _flags(pconf["attributes"][name]) == OPT, name
    assert pconf["attributes"]["token"]["sensitive"] is True
    assert set(pconf["block_types"]) >= {"headers", "client_auth"}
