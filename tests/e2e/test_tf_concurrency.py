"""Thirty resources applied ten at a time (terraform's default parallelism) through one provider
process: the shared gRPC channel and the control plane keep up, and the second plan is clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ControlPlane, Installation, Terraform, unique, workdir

pytestmark = [pytest.mark.terraform, pytest.mark.slow]


def test_parallel_apply(tf: Terraform, control_plane: ControlPlane, installation: Installation, tmp_path: Path) -> None:
    env = control_plane.env
    n = unique("par")
    d = workdir(tmp_path, installation, f"""
locals {{
  names = [for i in range(10) : format("{n}-%02d", i)]
}}

resource "vault_policy" "p" {{
  for_each = toset(local.names)
  name     = each.key
  policy   = <<-EOT
    path "secret/data/${{each.key}}/*" {{
      capabilities = ["read"]
    }}
  EOT
}}

resource "vault_identity_entity" "e" {{
  for_each = toset(local.names)
  name     = "${{each.key}}-entity"
  policies = [vault_policy.p[each.key].name]
}}

resource "vault_agent_registration" "r" {{
  for_each         = toset(local.names)
  display_name     = "${{each.key}}-agent"
  entity_id        = vault_identity_entity.e[each.key].id
  ceiling_policies = [vault_policy.p[each.key].name]
}}
""")
    tf.init(d)
    apply = tf.apply(d, "-parallelism=10", env=env)
    assert "Resources: 30 added, 0 changed, 0 destroyed." in apply.stdout, apply
    tf.plan(d, "-parallelism=10", env=env, expect=0)
    destroy = tf.destroy(d, "-parallelism=10", env=env)
    assert "Resources: 30 destroyed." in destroy.stdout, destroy
