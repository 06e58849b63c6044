# The smallest registration: an entity for the agent, registered with the default ceiling
# (the built-in default and default-ceiling policies).
terraform {
  required_providers {
    vault = {
      source = "terraform.local/agentceiling/vault"
    }
  }
}

# Address and token come from VAULT_ADDR and VAULT_TOKEN (or a local `agentceiling serve`).
provider "vault" {}

resource "vault_identity_entity" "agent" {
  name     = "support-bot-entity"
  policies = ["default"]
}

resource "vault_agent_registration" "agent" {
  display_name = "support-bot"
  entity_id    = vault_identity_entity.agent.id
}

output "registration_id" {
  value = vault_agent_registration.agent.id
}

output "created" {
  value = vault_agent_registration.agent.creation_time
}
