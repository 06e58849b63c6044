# A profile created disabled: tokens from this issuer are refused until enabled = true.
terraform {
  required_providers {
    vault = {
      source = "terraform.local/agentceiling/vault"
    }
  }
}

# Address and token come from VAULT_ADDR and VAULT_TOKEN (or a local `agentceiling serve`).
provider "vault" {}

resource "vault_oauth_resource_server_config_profile" "staged" {
  profile_name = "staged-idp"
  issuer_id    = "https://staging-idp.example.com"
  jwks_uri     = "https://staging-idp.example.com/.well-known/jwks.json"
  enabled      = false
}

output "profile_id" {
  value = vault_oauth_resource_server_config_profile.staged.id
}
