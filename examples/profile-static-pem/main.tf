# A profile with static verification keys (no JWKS endpoint): one EC and one RSA public key.
terraform {
  required_providers {
    vault = {
      source = "terraform.local/agentceiling/vault"
    }
  }
}

# Address and token come from VAULT_ADDR and VAULT_TOKEN (or a local `agentceiling serve`).
provider "vault" {}

resource "vault_oauth_resource_server_config_profile" "static_keys" {
  profile_name = "static-key-agents"
  issuer_id    = "https://agents.internal.example.com"
  use_jwks     = false

  public_keys {
    key_id = "agent-signing-2025"
    pem    = file("${path.module}/agent-signing-key.pub.pem")
  }

  public_keys {
    key_id = "agent-signing-2024"
    pem    = file("${path.module}/agent-signing-key-2024.pub.pem")
  }

  supported_algorithms = ["ES256", "PS256", "RS256"]
}

output "profile_id" {
  value = vault_oauth_resource_server_config_profile.static_keys.id
}
