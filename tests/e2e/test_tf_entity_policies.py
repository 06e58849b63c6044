"""`vault_identity_entity_policies` with the real CLI: exclusive and shared ownership of an entity's
policies, drift, out-of-band policies, destroy, import, and `external_policies` on the entity."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb

from .conftest import ControlPlane, Installation, Terraform, unique, workdir, write

pytestmark = [pytest.mark.terraform, pytest.mark.slow]


def _config(n: str, excl: list[str], shared_a: list[str], shared_b: list[str]) -> str:
    def names(items: list[str]) -> str:
        return ", ".join(f"vault_policy.{p}.name" for p in items)

    policies = "".join(
        f'resource "vault_policy" "{p}" {{\n  name   = "{n}-{p}"\n'
        f'  policy = "path \\"secret/{p}\\" {{ capabilities = [\\"read\\"] }}"\n}}\n'
        for p in ("p1", "p2", "p3")
    )
    return policies + f"""
resource "vault_identity_entity" "owned" {{
  name              = "{n}-owned"
  external_policies = true
  policies          = [vault_policy.p3.name]
}}

resource "vault_identity_entity" "shared" {{
  name              = "{n}-shared"
  external_policies = true
}}

resource "vault_identity_entity_policies" "excl" {{
  entity_id = vault_identity_entity.owned.id
  policies  = [{names(excl)}]
}}

resource "vault_identity_entity_policies" "a" {{
  entity_id = vault_identity_entity.shared.id
  exclusive = false
  policies  = [{names(shared_a)}]
}}

resource "vault_identity_entity_policies" "b" {{
  entity_id = vault_identity_entity.shared.id
  exclusive = false
  policies  = [{names(shared_b)}]
}}
"""


def _policies(cp: ControlPlane, entity_id: str) -> list[str]:
    return sorted(cp.call("IdentityEntities", "Read", pb.ReadEntityRequest(id=entity_id)).entity.policies)


def _set_policies(cp: ControlPlane, entity_id: str, policies: list[str]) -> None:
    entity = cp.call("IdentityEntities", "Read", pb.ReadEntityRequest(id=entity_id)).entity
    del entity.policies[:]
    entity.policies.extend(policies)
    cp.call("IdentityEntities", "Update", pb.UpdateEntityRequest(entity=entity, expected_version=entity.version))


def test_entity_policies(tf: Terraform, control_plane: ControlPlane, installation: Installation,
                         tmp_path: Path) -> None:
    env, cp = control_plane.env, control_plane
    n = unique("ep")
    d = workdir(tmp_path, installation, _config(n, ["p1", "p2"], ["p1"], ["p2"]))
    tf.init(d)
    valid = tf.run(d, "validate", "-no-color", env=env)
    assert "policies is ignored" in valid.output and "external_policies is true" in valid.output, valid
    apply = tf.apply(d, env=env)
    assert "Resources: 8 added" in apply.stdout, apply
    tf.plan(d, env=env, expect=0)
    owned = tf.resource(d, "vault_identity_entity.owned")["id"]
    shared = tf.resource(d, "vault_identity_entity.shared")["id"]
    assert _policies(cp, owned) == [f"{n}-p1", f"{n}-p2"]  # the entity's own policies were ignored
    assert _policies(cp, shared) == [f"{n}-p1", f"{n}-p2"]  # two shared owners, one policy each
    assert tf.resource(d, "vault_identity_entity_policies.excl")["entity_name"] == f"{n}-owned"

    # A policy added behind Terraform's back: drift for the exclusive owner (removed on apply),
    # none for the shared ones (they only answer for their own).
    _set_policies(cp, owned, [f"{n}-p1", f"{n}-p2", f"{n}-p3"])
    _set_policies(cp, shared, [f"{n}-p1", f"{n}-p2", f"{n}-p3"])
    plan = tf.plan(d, env=env, expect=2)
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.stdout, plan
    assert "vault_identity_entity_policies.excl" in plan.stdout
    tf.apply(d, env=env)
    tf.plan(d, env=env, expect=0)
    assert _policies(cp, owned) == [f"{n}-p1", f"{n}-p2"]
    assert _policies(cp, shared) == [f"{n}-p1", f"{n}-p2", f"{n}-p3"]

    # One shared owner swaps its policy: only its own change, the others' stay.
    write(d, _config(n, ["p1", "p2"], ["p3"], ["p2"]))
    tf.apply(d, env=env)
    tf.plan(d, env=env, expect=0)
    assert _policies(cp, shared) == [f"{n}-p2", f"{n}-p3"]

    # A shared owner's policy removed behind Terraform's back is re-added.
    _set_policies(cp, shared, [f"{n}-p3"])
    tf.plan(d, env=env, expect=2)
    tf.apply(d, env=env)
    assert _policies(cp, shared) == [f"{n}-p2", f"{n}-p3"]

    # Import by the entity's id; the imported exclusive owner plans clean.
    tf.run(d, "state", "rm", "vault_identity_entity_policies.excl", env=env)
    tf.run(d, "import", "-no-color", "vault_identity_entity_policies.excl", owned, env=env)
    tf.plan(d, env=env, expect=0)

    # Moving a shared owner to the other entity takes its policy off the old one (nothing left behind).
    moved = _config(n, ["p1", "p2"], ["p3"], ["p2"])
    moved = moved.replace(
        'resource "vault_identity_entity_policies" "b" {\n  entity_id = vault_identity_entity.shared.id',
        'resource "vault_identity_entity_policies" "b" {\n  entity_id = vault_identity_entity.owned.id',
    )
    moved = moved.replace(
        'resource "vault_identity_entity_policies" "excl" {',
        'resource "vault_identity_entity_policies" "excl" {\n  exclusive = false',
    )
    write(d, moved)
    tf.apply(d, env=env)
    tf.plan(d, env=env, expect=0)
    assert _policies(cp, shared) == [f"{n}-p3"]
    assert _policies(cp, owned) == [f"{n}-p1", f"{n}-p2"]  # b's p2 was there already (excl's too)
    write(d, _config(n, ["p1", "p2"], ["p3"], ["p2"]))
    tf.apply(d, env=env)
    assert _policies(cp, shared) == [f"{n}-p2", f"{n}-p3"]

    # Destroy: the exclusive owner clears the entity's policies, a shared owner removes its own.
    tf.run(d, "destroy", "-auto-approve", "-no-color", "-target=vault_identity_entity_policies.excl",
           "-target=vault_identity_entity_policies.a", env=env)
    assert _policies(cp, owned) == []
    assert _policies(cp, shared) == [f"{n}-p2"]
    tf.destroy(d, env=env)


def _switch_config(n: str, with_owner: bool, policies: list[str] | None = None) -> str:
    config = "".join(
        f'resource "vault_policy" "{p}" {{\n  name   = "{n}-{p}"\n'
        f'  policy = "path \\"secret/{p}\\" {{ capabilities = [\\"read\\"] }}"\n}}\n'
        for p in ("p1", "p2", "p3")
    )
    config += (
        f'resource "vault_identity_entity" "e" {{\n  name              = "{n}-e"\n  external_policies = true\n}}\n'
    )
    if with_owner:
        names = ", ".join(f"vault_policy.{p}.name" for p in policies or ["p1"])
        config += f"""
resource "vault_identity_entity_policies" "x" {{
  entity_id = vault_identity_entity.e.id
  exclusive = false
  policies  = [{names}]
}}

resource "terraform_data" "uses_name" {{
  triggers_replace = vault_identity_entity_policies.x.entity_name
}}
"""
    return config


def test_an_imported_owner_made_shared_keeps_the_others(
    tf: Terraform, control_plane: ControlPlane, installation: Installation, tmp_path: Path
) -> None:
    """An import claims every policy of the entity (exclusive). A configuration with
    exclusive = false used to remove all those it did not list at the first apply: other owners'
    policies were lost. Now they stay, and the plan says so. And a change of policies alone no
    longer plans entity_name as unknown (which replaced whatever used it)."""
    env, cp = control_plane.env, control_plane
    n = unique("sw")
    d = workdir(tmp_path, installation, _switch_config(n, with_owner=False))
    tf.init(d)
    tf.apply(d, env=env)
    entity = tf.resource(d, "vault_identity_entity.e")["id"]
    _set_policies(cp, entity, [f"{n}-p1", f"{n}-p2", f"{n}-p3"])  # p2, p3: other owners'

    write(d, _switch_config(n, with_owner=True))
    tf.run(d, "import", "-no-color", "vault_identity_entity_policies.x", entity, env=env)
    plan = tf.plan(d, env=env, expect=2)
    assert "Policies stay on the entity" in plan.output and f"{n}-p2, {n}-p3" in plan.output, plan
    tf.apply(d, env=env)
    assert _policies(cp, entity) == [f"{n}-p1", f"{n}-p2", f"{n}-p3"]
    tf.plan(d, env=env, expect=0)
    assert tf.resource(d, "vault_identity_entity_policies.x")["policies"] == [f"{n}-p1"]

    write(d, _switch_config(n, with_owner=True, policies=["p1", "p2"]))
    plan = tf.plan(d, env=env, expect=2)
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.stdout, plan
    assert "known after apply" not in plan.stdout, plan
    tf.apply(d, env=env)
    tf.plan(d, env=env, expect=0)
    assert tf.resource(d, "vault_identity_entity_policies.x")["entity_name"] == f"{n}-e"

    tf.run(d, "destroy", "-auto-approve", "-no-color", "-target=vault_identity_entity_policies.x", env=env)
    assert _policies(cp, entity) == [f"{n}-p3"]  # its own removed, the other owner's kept
    tf.destroy(d, env=env)
