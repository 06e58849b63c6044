"""The whole lifecycle with the real CLI, on terraform 1.11.4 and 1.15.5: init (silent), validate,
plan, apply, a clean second plan, in-place update, RequiresReplace, drift re-creation, `terraform
import`, an `import {}` block with -generate-config-out, and destroy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import grpc
import pytest

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb

from .conftest import ControlPlane, Installation, Terraform, unique, workdir, write

pytestmark = [pytest.mark.terraform, pytest.mark.slow]


def _config(n: str, *, description: str = "v1", leeway: int = 0, display: str = "", text: str = "read") -> str:
    return f"""
resource "vault_policy" "ceiling" {{
  name   = "{n}-ceiling"
  policy = <<-EOT
    path "secret/data/{n}/*" {{
      capabilities = ["{text}"]
    }}
  EOT
}}

resource "vault_identity_entity" "agent" {{
  name     = "{n}-entity"
  policies = ["default"]
  metadata = {{ team = "e2e" }}
}}

resource "vault_oauth_resource_server_config_profile" "idp" {{
  profile_name      = "{n}-idp"
  issuer_id         = "https://{n}.idp.example.com/"
  jwks_uri          = "https://{n}.idp.example.com/.well-known/jwks.json"
  audiences         = ["agentceiling"]
  clock_skew_leeway = {leeway}
}}

resource "vault_identity_entity_alias" "agent" {{
  name         = "{n}-agent"
  canonical_id = vault_identity_entity.agent.id
  issuer       = vault_oauth_resource_server_config_profile.idp.issuer_id
  external_id  = "{n}-agent"
}}

resource "vault_agent_registration" "agent" {{
  display_name     = "{display or n + '-agent'}"
  entity_id        = vault_identity_entity.agent.id
  ceiling_policies = [vault_policy.ceiling.name]
  description      = "{description}"
}}
"""


def test_lifecycle(tf: Terraform, control_plane: ControlPlane, installation: Installation, tmp_path: Path) -> None:
    env = control_plane.env
    n = unique("life")
    d = workdir(tmp_path, installation, _config(n))

    init = tf.init(d)
    assert "Warning" not in init.output, init
    assert "Terraform has been successfully initialized" in init.stdout

    valid = tf.run(d, "validate", "-no-color", env=env)
    assert "Success" in valid.stdout and "Warning" not in valid.output, valid

    plan = tf.plan(d, env=env, expect=2)
    assert "Plan: 5 to add, 0 to change, 0 to destroy." in plan.stdout, plan

    apply = tf.apply(d, env=env)
    assert "Apply complete! Resources: 5 added, 0 changed, 0 destroyed." in apply.stdout, apply
    assert "Warning" not in apply.output, apply
    tf.plan(d, env=env, expect=0)

    reg = tf.resource(d, "vault_agent_registration.agent")
    assert reg["ceiling_policies"] == [f"{n}-ceiling"]
    assert reg["creation_time"] and reg["last_updated_time"]
    alias = tf.resource(d, "vault_identity_entity_alias.agent")
    profile = tf.resource(d, "vault_oauth_resource_server_config_profile.idp")
    assert profile["issuer_id"] == f"https://{n}.idp.example.com/"  # verbatim, trailing slash kept
    # The control plane fills in the profile's accessor for an issuer-only alias (control_plane.proto).
    assert alias["mount_accessor"] == f"oauth-resource-server_root_{profile['id']}", alias
    assert profile["supported_algorithms"][0] == "RS256" and profile["user_claim"] == "sub"

    # In-place update of three resources.
    write(d, _config(n, description="v2", leeway=30, text="list"))
    plan = tf.plan(d, env=env, expect=2)
    assert "Plan: 0 to add, 3 to change, 0 to destroy." in plan.stdout, plan
    assert "update in-place" in plan.stdout
    tf.apply(d, env=env)
    tf.plan(d, env=env, expect=0)
    assert tf.resource(d, "vault_agent_registration.agent")["id"] == reg["id"]
    assert tf.resource(d, "vault_oauth_resource_server_config_profile.idp")["id"] == profile["id"]

    # RequiresReplace: a new display_name means a new registration.
    write(d, _config(n, description="v2", leeway=30, text="list", display=f"{n}-renamed"))
    plan = tf.plan(d, env=env, expect=2)
    assert "must be replaced" in plan.stdout and "# forces replacement" in plan.stdout, plan
    assert "Plan: 1 to add, 0 to change, 1 to destroy." in plan.stdout, plan
    tf.apply(d, env=env)
    tf.plan(d, env=env, expect=0)
    new_reg = tf.resource(d, "vault_agent_registration.agent")
    assert new_reg["id"] != reg["id"] and new_reg["display_name"] == f"{n}-renamed"

    # Drift: the registration deleted behind Terraform's back is planned and re-created.
    control_plane.call("AgentRegistrations", "Delete", pb.DeleteRegistrationRequest(id=new_reg["id"]))
    plan = tf.plan(d, env=env, expect=2)
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in plan.stdout, plan
    tf.apply(d, env=env)
    tf.plan(d, env=env, expect=0)

    # Drift that widens trust: supported_algorithms cleared behind Terraform's back ([] accepts
    # whatever the keys support). A read used to keep the previous list, hiding it.
    stored = control_plane.call(
        "OAuthResourceServerProfiles", "Read", pb.ReadProfileRequest(profile_name=f"{n}-idp")
    ).profile
    del stored.supported_algorithms[:]
    control_plane.call("OAuthResourceServerProfiles", "Update", pb.UpdateProfileRequest(profile=stored))
    plan = tf.plan(d, env=env, expect=2)
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.stdout and "supported_algorithms" in plan.stdout, plan
    tf.apply(d, env=env)
    tf.plan(d, env=env, expect=0)
    stored = control_plane.call(
        "OAuthResourceServerProfiles", "Read", pb.ReadProfileRequest(profile_name=f"{n}-idp")
    ).profile
    assert stored.supported_algorithms[0] == "RS256", stored

    # Destroy removes everything from the control plane.
    ids = {
        "entity": tf.resource(d, "vault_identity_entity.agent")["id"],
        "reg": tf.resource(d, "vault_agent_registration.agent")["id"],
    }
    destroy = tf.destroy(d, env=env)
    assert "Destroy complete! Resources: 5 destroyed." in destroy.stdout, destroy
    for service, request in (
        ("IdentityEntities", pb.ReadEntityRequest(id=ids["entity"])),
        ("AgentRegistrations", pb.ReadRegistrationRequest(id=ids["reg"])),
        ("Policies", pb.ReadPolicyRequest(name=f"{n}-ceiling")),
        ("OAuthResourceServerProfiles", pb.ReadProfileRequest(profile_name=f"{n}-idp")),
    ):
        with pytest.raises(grpc.RpcError) as err:
            control_plane.call(service, "Read", request)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_import_cli_and_block(tf: Terraform, control_plane: ControlPlane, installation: Installation,
                              tmp_path: Path) -> None:
    env = control_plane.env
    n = unique("imp")
    # Objects made outside Terraform.
    text = f'path "secret/data/{n}/*" {{\n  capabilities = ["read"]\n}}\n'
    control_plane.call("Policies", "Create", pb.CreatePolicyRequest(policy=pb.Policy(name=f"{n}-pol", policy=text)))
    control_plane.call(
        "OAuthResourceServerProfiles",
        "Create",
        pb.CreateProfileRequest(
            profile=pb.OAuthResourceServerProfile(
                profile_name=f"{n}-idp",
                issuer_id=f"https://{n}.example.com",
                jwks_uri=f"https://{n}.example.com/keys",
                supported_algorithms=["ES256", "PS256"],
            )
        ),
    )
    entity = control_plane.call(
        "IdentityEntities", "Create", pb.CreateEntityRequest(entity=pb.IdentityEntity(name=f"{n}-ent"))
    ).entity
    reg = control_plane.call(
        "AgentRegistrations",
        "Create",
        pb.CreateRegistrationRequest(
            registration=pb.AgentRegistration(display_name=f"{n}/team/agent", entity_id=entity.id,
                                              ceiling_policies=[f"{n}-pol"])
        ),
    ).registration

    # terraform import (CLI) of a policy and of a registration by display name (with slashes).
    hcl = f"""
resource "vault_policy" "imported" {{
  name   = "{n}-pol"
  policy = <<EOT
{text}EOT
}}

resource "vault_agent_registration" "imported" {{
  display_name     = "{n}/team/agent"
  entity_id        = "{entity.id}"
  ceiling_policies = [vault_policy.imported.name]
}}
"""
    d = workdir(tmp_path, installation, hcl)
    tf.init(d)
    out = tf.run(d, "import", "-no-color", "vault_policy.imported", f"{n}-pol", env=env)
    assert "Import successful!" in out.stdout, out
    out = tf.run(d, "import", "-no-color", "vault_agent_registration.imported", f"{n}/team/agent", env=env)
    assert "Import successful!" in out.stdout, out
    assert tf.resource(d, "vault_agent_registration.imported")["id"] == reg.id
    tf.plan(d, env=env, expect=0)

    # An import block with -generate-config-out writes the profile's HCL; it then imports cleanly.
    d2 = workdir(tmp_path, installation, f"""
import {{
  to = vault_oauth_resource_server_config_profile.found
  id = "{n}-idp"
}}
""")
    tf.init(d2)
    plan = tf.plan(d2, "-generate-config-out=generated.tf", env=env, expect=2)
    assert "1 to import, 0 to add, 0 to change, 0 to destroy" in plan.stdout, plan
    generated = (d2 / "generated.tf").read_text()
    assert re.search(rf'profile_name\s+=\s+"{n}-idp"', generated), generated
    assert "supported_algorithms" in generated and '"ES256"' in generated
    apply = tf.apply(d2, env=env)
    assert "1 imported, 0 added, 0 changed, 0 destroyed" in apply.stdout, apply
    tf.plan(d2, env=env, expect=0)

    # An import by UUID works as well.
    d3 = workdir(tmp_path, installation, f"""
import {{
  to = vault_agent_registration.by_id
  id = "{reg.id}"
}}

resource "vault_agent_registration" "by_id" {{
  display_name     = "{n}/team/agent"
  entity_id        = "{entity.id}"
  ceiling_policies = ["{n}-pol"]
}}
""")
    tf.init(d3)
    plan = tf.plan(d3, env=env, expect=2)
    assert "1 to import, 0 to add, 0 to change, 0 to destroy" in plan.stdout, plan

    # Importing something that does not exist is a clear error.
    d4 = workdir(tmp_path, installation, 'resource "vault_policy" "ghost" {\n  name = "x"\n  policy = "y"\n}\n')
    tf.init(d4)
    out = tf.run(d4, "import", "-no-color", "vault_policy.ghost", f"{n}-missing", env=env, expect=1)
    assert "Cannot import non-existent remote object" in out.output, out

    tf.destroy(d2, env=env)
    tf.destroy(d, env=env)


def test_collections_with_elements_known_only_after_apply(
    tf: Terraform, control_plane: ControlPlane, installation: Installation, tmp_path: Path
) -> None:
    """A list, set or map holding a value computed by another resource (a policy's id) plans as
    "(known after apply)" for that element and applies cleanly; the configuration's sensitive
    values never appear in the provider's messages."""
    env = control_plane.env
    n = unique("unk")
    d = workdir(tmp_path, installation, f"""
resource "vault_policy" "a" {{
  name   = "{n}-a"
  policy = "path \\"x\\" {{ capabilities = [\\"read\\"] }}"
}}

resource "terraform_data" "aud" {{
  input = "{n}-aud"
}}

resource "vault_identity_entity" "e" {{
  name     = "{n}-e"
  policies = [vault_policy.a.id, "default"]
  metadata = {{ pol = vault_policy.a.id, team = "ops" }}
}}

resource "vault_agent_registration" "r" {{
  display_name     = "{n}-r"
  entity_id        = vault_identity_entity.e.id
  ceiling_policies = [vault_policy.a.id]
}}

resource "vault_oauth_resource_server_config_profile" "p" {{
  profile_name = "{n}"
  issuer_id    = "https://{n}.example.com"
  jwks_uri     = "https://{n}.example.com/keys"
  audiences    = [terraform_data.aud.output, "fixed"]
}}
""")
    tf.init(d)
    plan = tf.plan(d, env=env, expect=2)
    assert "Plan: 5 to add" in plan.stdout and "(known after apply)" in plan.stdout, plan
    tf.apply(d, env=env)
    tf.plan(d, env=env, expect=0)
    assert tf.resource(d, "vault_agent_registration.r")["ceiling_policies"] == [f"{n}-a"]
    assert tf.resource(d, "vault_identity_entity.e")["metadata"] == {"pol": f"{n}-a", "team": "ops"}
    assert tf.resource(d, "vault_oauth_resource_server_config_profile.p")["audiences"] == [f"{n}-aud", "fixed"]
    tf.destroy(d, env=env)


def test_collections_wholly_unknown_and_sets_of_several_unknowns(
    tf: Terraform, control_plane: ControlPlane, installation: Installation, tmp_path: Path
) -> None:
    """A list, set or map whose whole value is known only after apply plans as unknown (it crashed
    the plan with a TypeError), and a set of two values both known only after apply keeps both (one
    was dropped: "Provider produced invalid plan"); on create and on update."""
    env = control_plane.env
    n = unique("whole")

    def config(meta: str, pols: list[str]) -> str:
        return f"""
resource "vault_policy" "a" {{
  name   = "{n}-a"
  policy = "path \\"x\\" {{ capabilities = [\\"read\\"] }}"
}}

resource "vault_policy" "b" {{
  name   = "{n}-b"
  policy = "path \\"y\\" {{ capabilities = [\\"read\\"] }}"
}}

resource "terraform_data" "pols" {{
  input = {json.dumps(pols)}
}}

resource "terraform_data" "meta" {{
  input = {{ team = "{meta}" }}
}}

resource "vault_identity_entity" "e" {{
  name     = "{n}-e"
  metadata = terraform_data.meta.output
}}

resource "vault_identity_entity" "two" {{
  name     = "{n}-two"
  policies = [vault_policy.a.id, vault_policy.b.id]
}}

resource "vault_identity_entity" "e3" {{
  name       = "{n}-e3"
  policies   = toset(terraform_data.pols.output)
  depends_on = [vault_policy.a, vault_policy.b]
}}

resource "vault_agent_registration" "r" {{
  display_name     = "{n}-r"
  entity_id        = vault_identity_entity.e3.id
  ceiling_policies = terraform_data.pols.output
}}
"""

    d = workdir(tmp_path, installation, config("ops", [f"{n}-a"]))
    tf.init(d)
    plan = tf.plan(d, env=env, expect=2)
    assert "Plan: 8 to add" in plan.stdout, plan
    tf.apply(d, env=env)
    tf.plan(d, env=env, expect=0)
    assert tf.resource(d, "vault_identity_entity.e")["metadata"] == {"team": "ops"}
    assert sorted(tf.resource(d, "vault_identity_entity.two")["policies"]) == [f"{n}-a", f"{n}-b"]
    assert tf.resource(d, "vault_agent_registration.r")["ceiling_policies"] == [f"{n}-a"]

    # Update: the terraform_data inputs change, so their outputs are unknown again in the plan.
    (d / "main.tf").write_text((d / "main.tf").read_text().replace(
        config("ops", [f"{n}-a"]), config("dev", [f"{n}-a", f"{n}-b"])))
    tf.plan(d, env=env, expect=2)
    tf.apply(d, env=env)
    tf.plan(d, env=env, expect=0)
    assert tf.resource(d, "vault_identity_entity.e")["metadata"] == {"team": "dev"}
    assert tf.resource(d, "vault_agent_registration.r")["ceiling_policies"] == [f"{n}-a", f"{n}-b"]
    tf.destroy(d, env=env)
