# A profile whose agents may omit RAR authorization_details (RFC 9396): their requests are then
# bounded by their policies and ceiling only.
terraform {
  required_providers {
    vault = {
      source = "terraform.local/agentceiling/vault"
    }
  }
}

# Address and token come from VAULT_ADDR and VAULT_TOKEN (or a local `agentceiling serve`).
provider "vault" {}

resource "vault_oauth_resource_server_config_profile" "rar_optional" {
  profile_name                   = "rar-optional-agents"
  issuer_id                      = "https://auth.rar-optional.example.com/"
  jwks_uri                       = "https://auth.rar-optional.example.com/.well-known/jwks.json"
  optional_authorization_details = true
}

output "profile_id" {
  value = vault_oauth_resource_server_config_profile.rar_optional.id
}
