"""Bad input and bad environments: every error names the attribute and says what is wrong; the
control plane's warnings show as Terraform warnings; an unreachable server or a refused token is
one clear diagnostic."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb

from .conftest import PROVIDER_SOURCE, ControlPlane, Installation, Terraform, free_port, unique, workdir

pytestmark = [pytest.mark.terraform, pytest.mark.slow]

PRIVATE_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgevZzL1gdAFr88hb2
OF/2NxApJCzGCEDdfSp6VQO30hyhRANCAAQRWz+jn65BtOMvdyHKcvjBeBSDZH2r
1RTwjmYSi9R/zpBnuQ4EiMnCqfMPWiZqB4QdbAd0E7oH50VpuZ1P087G
-----END PRIVATE KEY-----"""


SIMPLE_POLICY = """
resource "vault_policy" "p" {
  name   = "p"
  policy = "path \\"a\\" { capabilities = [\\"read\\"] }"
}
"""


def _errors(text: str) -> list[str]:
    """Each "Error: ..." diagnostic block of terraform's output."""
    blocks = re.split(r"\n(?=(?:│ )?Error: )", text)
    return [b for b in blocks if re.match(r"\s*(?:╷\s*)?(?:│ )?Error: ", b)]


def test_plan_time_validation_names_each_attribute(tf: Terraform, control_plane: ControlPlane,
                                                   installation: Installation, tmp_path: Path) -> None:
    n = unique("bad")
    d = workdir(tmp_path, installation, f"""
resource "vault_oauth_resource_server_config_profile" "conflict" {{
  profile_name = "{n}-a"
  issuer_id    = "https://{n}.example.com"
  use_jwks     = false
  jwks_uri     = "https://{n}.example.com/keys"

  public_keys {{
    key_id = "k1"
    pem    = <<-EOT
{PRIVATE_KEY}
    EOT
  }}
}}

resource "vault_oauth_resource_server_config_profile" "values" {{
  profile_name         = "{n}-b"
  issuer_id            = "{n}.example.com"
  jwks_uri             = "https://{n}.example.com/keys"
  supported_algorithms = ["RS256", "HS256"]
  jwt_type             = "id_token"
  clock_skew_leeway    = -5
}}

resource "vault_policy" "broken" {{
  name   = "{n}-broken"
  policy = <<-EOT
    path "secret/*" {{
      capabilities = ["read"
    }}
  EOT
}}

resource "vault_agent_registration" "root_ceiling" {{
  display_name     = "{n}-agent"
  entity_id        = "00000000-0000-4000-8000-000000000000"
  ceiling_policies = ["root"]
  namespace        = "/team-a"
}}
""")
    tf.init(d)
    out = tf.run(d, "validate", "-no-color", env=control_plane.env, expect=1)
    text = out.output
    expectations = [
        # (a message, the configuration line terraform must quote for it)
        ("cannot specify both use_jwks=false and jwks_uri", 'jwks_uri     = "https://'),
        ("This is a private key", "pem    = <<-EOT"),
        ("must be an absolute http(s) URL", f'issuer_id            = "{n}.example.com"'),
        ('"HS256" is not a supported algorithm', 'supported_algorithms = ["RS256", "HS256"]'),
        (
            'jwt_type must be one of "access_token", "transaction_token", got "id_token"',
            'jwt_type             = "id_token"',
        ),
        ("clock_skew_leeway must be at least 0 seconds, got -5", "clock_skew_leeway    = -5"),
        ("The policy is not valid at line", "policy = <<-EOT"),
        ('"root" cannot be used as a ceiling policy', 'ceiling_policies = ["root"]'),
        ('value /team-a contains leading/trailing "/"', 'namespace        = "/team-a"'),
    ]
    blocks = _errors(text)
    for message, line in expectations:
        matching = [b for b in blocks if message in b]
        assert matching, f"no error says {message!r}:\n{text}"
        assert any(line in b for b in matching), f"the error {message!r} does not point at {line!r}:\n{text}"
    assert "invalid Vault path" in text


def test_server_side_errors_and_rs256_warning(tf: Terraform, control_plane: ControlPlane,
                                             installation: Installation, tmp_path: Path) -> None:
    env = control_plane.env
    n = unique("warn")
    d = workdir(tmp_path, installation, f"""
resource "vault_oauth_resource_server_config_profile" "rsa_only" {{
  profile_name         = "{n}"
  issuer_id            = "https://{n}.example.com/"
  jwks_uri             = "https://{n}.example.com/keys"
  supported_algorithms = ["RS256"]
}}
""")
    tf.init(d)
    apply = tf.apply(d, env=env)
    assert 'Warning: algorithm "RS256" is functional but consider using PS256 (RSA-PSS) for better security' in \
        apply.output, apply
    assert "supported_algorithms" in apply.output  # the warning points at the attribute
    tf.plan(d, env=env, expect=0)

    # The same issuer again (normalised: case and trailing slash differ) is refused by the server,
    # on issuer_id; a registration for a missing entity is refused on entity_id.
    d2 = workdir(tmp_path, installation, f"""
resource "vault_oauth_resource_server_config_profile" "dup" {{
  profile_name = "{n}-dup"
  issuer_id    = "HTTPS://{n}.example.com"
  jwks_uri     = "https://{n}.example.com/keys"
}}

resource "vault_agent_registration" "orphan" {{
  display_name = "{n}-orphan"
  entity_id    = "00000000-0000-4000-8000-000000000000"
}}
""")
    tf.init(d2)
    out = tf.apply(d2, env=env, expect=1)
    assert ("issuer_id" in out.output and "duplicate issuer_id" in out.output.lower()) or "already" in out.output, out
    assert "entity_id" in out.output, out
    tf.destroy(d2, env=env)
    tf.destroy(d, env=env)


def test_unreachable_server_is_one_clear_error(tf: Terraform, installation: Installation, tmp_path: Path) -> None:
    d = workdir(tmp_path, installation, SIMPLE_POLICY)
    tf.init(d)
    port = free_port()
    out = tf.plan(d, env={"VAULT_ADDR": f"http://127.0.0.1:{port}", "VAULT_TOKEN": "x"}, expect=1, timeout=120)
    errors = _errors(out.output)
    assert len(errors) == 1, out
    assert "Cannot reach the agentceiling control plane" in errors[0]
    assert f"127.0.0.1:{port}" in errors[0] and "connection refused" in errors[0], out


def test_refused_token_is_one_clear_error(tf: Terraform, control_plane: ControlPlane, installation: Installation,
                                          tmp_path: Path) -> None:
    d = workdir(tmp_path, installation, SIMPLE_POLICY)
    tf.init(d)
    env = {**control_plane.env, "VAULT_TOKEN": "not-the-admin-token"}
    out = tf.plan(d, env=env, expect=1)
    errors = _errors(out.output)
    assert len(errors) == 1, out
    assert "The control plane refused the token" in errors[0] and "VAULT_TOKEN" in errors[0], out


def test_auth_login_token_file_with_the_real_cli(tf: Terraform, control_plane: ControlPlane,
                                                 installation: Installation, tmp_path: Path) -> None:
    """HCP Terraform's Vault dynamic credentials write the token to a file and name it in
    `auth_login_token_file`: the same HCL works here."""
    token_file = tmp_path / "vault-token"
    token_file.write_text(control_plane.token + "\n")
    token_file.chmod(0o600)
    name = unique("tokfile")

    def main_tf(filename: Path) -> str:
        return (
            f'terraform {{\n  required_providers {{\n    vault = {{ source = "{PROVIDER_SOURCE}" }}\n  }}\n}}\n'
            'provider "vault" {\n  skip_child_token = true\n'
            f'  auth_login_token_file {{\n    filename = "{filename}"\n  }}\n}}\n'
            f'resource "vault_policy" "p" {{\n  name   = "{name}"\n'
            '  policy = "path \\"a\\" { capabilities = [\\"read\\"] }"\n}\n'
        )

    d = workdir(tmp_path, installation, main_tf(token_file), provider_block=False)
    tf.init(d)
    addr = {"VAULT_ADDR": f"http://{control_plane.address}"}  # no VAULT_TOKEN, no local admin-token file
    tf.apply(d, env=addr)
    assert tf.resource(d, "vault_policy.p")["name"] == name

    (d / "main.tf").write_text(main_tf(tmp_path / "absent"))
    out = tf.plan(d, env=addr, expect=1)
    errors = _errors(out.output)
    assert len(errors) == 1, out
    assert "Cannot read the token file" in errors[0] and str(tmp_path / "absent") in errors[0], out
    (d / "main.tf").write_text(main_tf(token_file))
    tf.destroy(d, env=addr)


def test_null_elements_out_of_range_numbers_and_duplicates_point_at_the_attribute(
    tf: Terraform, control_plane: ControlPlane, installation: Installation, tmp_path: Path
) -> None:
    env = control_plane.env
    n = unique("nul")
    d = workdir(tmp_path, installation, f"""
resource "vault_oauth_resource_server_config_profile" "p" {{
  profile_name      = "{n}"
  issuer_id         = "https://{n}.example.com"
  jwks_uri          = "https://{n}.example.com/keys"
  audiences         = ["a", null]
  clock_skew_leeway = 1e30
}}

resource "vault_identity_entity" "e" {{
  name     = "{n}"
  metadata = {{ team = null }}
}}
""")
    tf.init(d)
    text = tf.run(d, "validate", "-no-color", env=env, expect=1).output
    blocks = _errors(text)
    for message, line in [
        ("audiences[1] is null", 'audiences         = ["a", null]'),
        ("clock_skew_leeway must be at most 9223372036854775807", "clock_skew_leeway = 1e30"),
        ('metadata["team"] is null', "metadata = { team = null }"),
    ]:
        matching = [b for b in blocks if message in b]
        assert matching and any(line in b for b in matching), f"{message!r} at {line!r}:\n{text}"

    # A null that is only known during the apply (here: a terraform_data output) is refused by the
    # plan terraform makes just before applying, on the attribute, not as a provider crash.
    d2 = workdir(tmp_path, installation, f"""
resource "terraform_data" "later" {{
  input = null
}}

resource "vault_identity_entity" "e" {{
  name     = "{n}-late"
  policies = [terraform_data.later.output]
}}
""")
    tf.init(d2)
    out = tf.apply(d2, env=env, expect=1)
    assert "policies" in out.output and "cannot hold null elements" in out.output, out
    assert "Provider error" not in out.output and "Traceback" not in out.output, out
    tf.destroy(d2, env=env)

    # A policy that already exists: with allow_overwrite = false (deprecated, as upstream) an error
    # on its name, in terraform-provider-vault's words; by default (upstream's `true`) it is
    # overwritten, as Vault's PUT does.
    d3 = workdir(tmp_path, installation, SIMPLE_POLICY.replace('name   = "p"', f'name   = "{n}-pol"'))
    tf.init(d3)
    tf.apply(d3, env=env)
    d4 = workdir(tmp_path, installation, SIMPLE_POLICY.replace(
        'name   = "p"', f'name   = "{n}-pol"\n  allow_overwrite = false'))
    tf.init(d4)
    out = tf.apply(d4, env=env, expect=1)
    (block,) = [b for b in _errors(out.output) if "already exists" in b]
    assert f'name   = "{n}-pol"' in block, out
    assert (f'policy "{n}-pol" already exists; use terraform import to manage it or set allow_overwrite = true'
            in " ".join(block.split())), out
    assert "Argument is deprecated" in out.output, out
    d5 = workdir(tmp_path, installation, SIMPLE_POLICY.replace('name   = "p"', f'name   = "{n}-pol"').replace(
        'capabilities = [\\"read\\"]', 'capabilities = [\\"list\\"]'))
    tf.init(d5)
    out = tf.apply(d5, env=env)
    assert "Argument is deprecated" not in out.output, out
    stored = control_plane.call("Policies", "Read", pb.ReadPolicyRequest(name=f"{n}-pol")).policy.policy
    assert '"list"' in stored, "the existing policy was not overwritten"
    tf.plan(d5, env=env, expect=0)  # nothing left to do
    tf.destroy(d5, env=env)


def test_values_unknown_at_plan_are_checked_before_anything_is_written(
    tf: Terraform, control_plane: ControlPlane, installation: Installation, tmp_path: Path
) -> None:
    """A value known only at apply (from another resource) passes the plan's checks unjudged;
    terraform validates the configuration again at apply, with it known, so the provider's checks
    (a fractional clock_skew_leeway, an oversized metadata value) still refuse it on the attribute,
    before anything is written."""
    env, n = control_plane.env, unique("late")
    d = workdir(tmp_path, installation, f"""
resource "terraform_data" "leeway" {{
  input = 1.5
}}
resource "vault_oauth_resource_server_config_profile" "p" {{
  profile_name      = "{n}"
  issuer_id         = "https://{n}.idp.example.com/"
  jwks_uri          = "https://{n}.idp.example.com/jwks"
  clock_skew_leeway = terraform_data.leeway.output
}}
resource "vault_identity_entity" "e" {{
  name     = "{n}-e"
  metadata = {{ team = terraform_data.leeway.id == "" ? "" : "{"x" * 5000}" }}
}}
""")
    tf.init(d)
    tf.plan(d, env=env, expect=2)  # nothing to refuse yet: the values are unknown
    failed = tf.apply(d, env=env, expect=1)
    out = re.sub(r"\s+", " ", failed.output)
    assert "clock_skew_leeway is a whole number of seconds, got 1.5" in out, failed
    assert "inconsistent result" not in out, failed
    assert 'metadata["team"]: must be at most 4096 characters' in out, failed
    with pytest.raises(Exception) as err:
        control_plane.call("OAuthResourceServerProfiles", "Read", pb.ReadProfileRequest(profile_name=n))
    assert "NOT_FOUND" in str(err.value) or "not found" in str(err.value), err.value
    listed = control_plane.call("IdentityEntities", "List", pb.ListRequest(page_size=1000)).entities
    assert f"{n}-e" not in [e.name for e in listed]
    assert "vault_oauth_resource_server_config_profile.p" not in tf.run(d, "state", "list", env=env).stdout
