"""Plans that must update in place rather than replace (as upstream's do), and renames that need
`create_before_destroy` or `replace_triggered_by`, with the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ControlPlane, Installation, Terraform, unique, workdir, write

pytestmark = [pytest.mark.terraform, pytest.mark.slow]


def test_changing_only_entity_policies_keeps_what_references_its_id(
    tf: Terraform, control_plane: ControlPlane, installation: Installation, tmp_path: Path
) -> None:
    """The id of vault_identity_entity_policies is its entity's id, known at plan time: a change of
    policies alone used to show it as "(known after apply)" and replace the registration keyed on it."""
    env, n = control_plane.env, unique("idkeep")

    def config(policies: str) -> str:
        return f"""
resource "vault_identity_entity" "e" {{
  name              = "{n}-e"
  external_policies = true
}}
resource "vault_identity_entity_policies" "ep" {{
  entity_id = vault_identity_entity.e.id
  policies  = {policies}
}}
resource "vault_agent_registration" "r" {{
  display_name = "{n}-agent"
  entity_id    = vault_identity_entity_policies.ep.id
}}
"""

    d = workdir(tmp_path, installation, config('["a"]'))
    tf.init(d)
    tf.apply(d, env=env)
    registration = tf.resource(d, "vault_agent_registration.r")["id"]
    write(d, config('["a", "b"]'))
    plan = tf.plan(d, env=env, expect=2)
    assert "0 to add, 1 to change, 0 to destroy" in plan.stdout, plan
    tf.apply(d, env=env)
    assert tf.resource(d, "vault_agent_registration.r")["id"] == registration
    tf.plan(d, env=env, expect=0)
    tf.destroy(d, env=env)


def test_moving_an_alias_to_another_profiles_accessor_updates_it_in_place(
    tf: Terraform, control_plane: ControlPlane, installation: Installation, tmp_path: Path
) -> None:
    """An alias named by mount_accessor alone has no issuer: moving it used to plan the issuer
    "(known after apply) # forces replacement"."""
    env, n = control_plane.env, unique("move")

    def config(which: str) -> str:
        profiles = "".join(
            f"""
resource "vault_oauth_resource_server_config_profile" "{p}" {{
  profile_name = "{n}-{p}"
  issuer_id    = "https://{n}.{p}.example.com"
  jwks_uri     = "https://{n}.{p}.example.com/jwks"
}}
"""
            for p in ("one", "two")
        )
        return profiles + f"""
resource "vault_identity_entity" "e" {{
  name = "{n}-e"
}}
resource "vault_identity_entity_alias" "a" {{
  name           = "{n}-alias"
  canonical_id   = vault_identity_entity.e.id
  mount_accessor = "oauth-resource-server_root_${{vault_oauth_resource_server_config_profile.{which}.id}}"
}}
"""

    d = workdir(tmp_path, installation, config("one"))
    tf.init(d)
    tf.apply(d, env=env)
    alias = tf.resource(d, "vault_identity_entity_alias.a")
    write(d, config("two"))
    plan = tf.plan(d, env=env, expect=2)
    assert "0 to add, 1 to change, 0 to destroy" in plan.stdout and "forces replacement" not in plan.stdout, plan
    tf.apply(d, env=env)
    moved = tf.resource(d, "vault_identity_entity_alias.a")
    assert moved["id"] == alias["id"] and moved["issuer"] is None
    assert moved["mount_accessor"] != alias["mount_accessor"]
    tf.plan(d, env=env, expect=0)
    tf.destroy(d, env=env)


def test_renaming_a_ceiling_policy_needs_create_before_destroy_and_says_so(
    tf: Terraform, control_plane: ControlPlane, installation: Installation, tmp_path: Path
) -> None:
    """A ceiling policy in use cannot be deleted (referential integrity, docs/resources): a rename,
    which replaces the policy, fails with a hint, and applies with create_before_destroy."""
    env, n = control_plane.env, unique("rename")

    def config(name: str, cbd: bool) -> str:
        lifecycle = "\n  lifecycle {\n    create_before_destroy = true\n  }" if cbd else ""
        return f"""
resource "vault_policy" "ceiling" {{
  name   = "{name}"
  policy = "path \\"secret/data/ci/*\\" {{ capabilities = [\\"read\\"] }}"{lifecycle}
}}
resource "vault_identity_entity" "e" {{
  name = "{n}-e"
}}
resource "vault_agent_registration" "r" {{
  display_name     = "{n}-agent"
  entity_id        = vault_identity_entity.e.id
  ceiling_policies = [vault_policy.ceiling.name]
}}
"""

    d = workdir(tmp_path, installation, config(f"{n}-c1", cbd=False))
    tf.init(d)
    tf.apply(d, env=env)
    write(d, config(f"{n}-c2", cbd=False))
    failed = tf.apply(d, env=env, expect=1)
    assert "create_before_destroy" in failed.output, failed
    write(d, config(f"{n}-c2", cbd=True))
    tf.apply(d, env=env)
    assert tf.resource(d, "vault_agent_registration.r")["ceiling_policies"] == [f"{n}-c2"]
    tf.plan(d, env=env, expect=0)
    tf.destroy(d, env=env)


def test_renaming_a_profile_in_use_needs_its_aliases_replaced_and_says_so(
    tf: Terraform, control_plane: ControlPlane, installation: Installation, tmp_path: Path
) -> None:
    """A profile that aliases use cannot be deleted: a rename, which replaces the profile, failed
    with nothing to say what to do. It fails with a hint, and applies with replace_triggered_by on
    the alias (its issuer does not change, so Terraform would not replace it by itself)."""
    env, n = control_plane.env, unique("prename")

    def config(name: str, replace_aliases: bool) -> str:
        lifecycle = (
            "\n  lifecycle {\n    replace_triggered_by = [vault_oauth_resource_server_config_profile.p.id]\n  }"
            if replace_aliases
            else ""
        )
        return f"""
resource "vault_oauth_resource_server_config_profile" "p" {{
  profile_name = "{name}"
  issuer_id    = "https://{n}.idp.example.com/"
  jwks_uri     = "https://{n}.idp.example.com/jwks"
}}
resource "vault_identity_entity" "e" {{
  name = "{n}-e"
}}
resource "vault_identity_entity_alias" "a" {{
  name         = "{n}-a"
  canonical_id = vault_identity_entity.e.id
  issuer       = vault_oauth_resource_server_config_profile.p.issuer_id
  external_id  = "{n}-agent"{lifecycle}
}}
"""

    d = workdir(tmp_path, installation, config(f"{n}-p1", replace_aliases=False))
    tf.init(d)
    tf.apply(d, env=env)
    write(d, config(f"{n}-p2", replace_aliases=False))
    failed = tf.apply(d, env=env, expect=1)
    assert "used by entity aliases" in failed.output and "replace_triggered_by" in failed.output, failed
    write(d, config(f"{n}-p2", replace_aliases=True))
    tf.apply(d, env=env)
    profile = tf.resource(d, "vault_oauth_resource_server_config_profile.p")
    assert profile["profile_name"] == f"{n}-p2"
    alias = tf.resource(d, "vault_identity_entity_alias.a")
    assert alias["mount_accessor"] == f"oauth-resource-server_root_{profile['id']}", alias
    tf.plan(d, env=env, expect=0)
    tf.destroy(d, env=env)
