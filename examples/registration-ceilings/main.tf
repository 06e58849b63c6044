# An agent whose ceiling adds a custom policy to the defaults: whatever token it presents, it can
# never do more than read the deploy secrets.
terraform {
  required_providers {
    vault = {
      source = "terraform.local/agentceiling/vault"
    }
  }
}

# Address and token come from VAULT_ADDR and VAULT_TOKEN (or a local `agentceiling serve`).
provider "vault" {}

resource "vault_policy" "deploy_read" {
  name   = "agent-deploy-read"
  policy = <<-EOT
    path "secret/data/deploy/*" {
      capabilities = ["read", "list"]
    }
  EOT
}

resource "vault_identity_entity" "agent" {
  name     = "deploy-agent-entity"
  policies = ["default"]
  metadata = {
    team = "platform"
  }
}

resource "vault_agent_registration" "agent" {
  display_name     = "deploy-agent"
  entity_id        = vault_identity_entity.agent.id
  ceiling_policies = [vault_policy.deploy_read.name]
  description      = "Reads deployment secrets for the release pipeline"
  owner            = "platform-team"
}

output "registration_id" {
  value = vault_agent_registration.agent.id
}
