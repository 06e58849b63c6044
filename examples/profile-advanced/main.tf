# Every profile argument: audiences, a private CA for the JWKS endpoint, a non-default user claim,
# a narrowed algorithm list, clock-skew leeway and no default policy.
terraform {
  required_providers {
    vault = {
      source = "terraform.local/agentceiling/vault"
    }
  }
}

# Address and token come from VAULT_ADDR and VAULT_TOKEN (or a local `agentceiling serve`).
provider "vault" {}

resource "vault_oauth_resource_server_config_profile" "advanced" {
  profile_name = "entra-agents"
  issuer_id    = "https://login.example.net/7f0c1a2b-0000-4000-8000-000000000001/v2.0"

  use_jwks    = true
  jwks_uri    = "https://login.example.net/7f0c1a2b-0000-4000-8000-000000000001/discovery/v2.0/keys"
  jwks_ca_pem = file("${path.module}/idp-ca.pem")

  audiences            = ["api://agentceiling", "https://vault.example.com"]
  user_claim           = "email"
  supported_algorithms = ["ES256", "PS256"]
  jwt_type             = "access_token"
  clock_skew_leeway    = 30
  no_default_policy    = true
  enabled              = true
}

output "profile_id" {
  value = vault_oauth_resource_server_config_profile.advanced.id
}
