# An OAuth resource-server profile that verifies agent JWTs with the issuer's JWKS endpoint.
terraform {
  required_providers {
    vault = {
      source = "terraform.local/agentceiling/vault"
    }
  }
}

# Address and token come from VAULT_ADDR and VAULT_TOKEN (or a local `agentceiling serve`).
provider "vault" {}

# Vault 2.0 needed this flag before profiles worked; agentceiling records it so configurations
# written for Vault 2.0 apply unchanged.
resource "vault_activation_flags" "oauth" {
  feature = "oauth-resource-server"
}

resource "vault_oauth_resource_server_config_profile" "okta" {
  profile_name = "okta-agents"
  issuer_id    = "https://example.okta.com/oauth2/default"
  use_jwks     = true
  jwks_uri     = "https://example.okta.com/oauth2/default/v1/keys"
  audiences    = ["api://vault"]

  depends_on = [vault_activation_flags.oauth]
}

output "profile_id" {
  value = vault_oauth_resource_server_config_profile.okta.id
}
