# A ceiling made of exactly one policy: no_default_ceiling_policy leaves out default and
# default-ceiling, so the agent cannot even look up its own registration.
terraform {
  required_providers {
    vault = {
      source = "terraform.local/agentceiling/vault"
    }
  }
}

# Address and token come from VAULT_ADDR and VAULT_TOKEN (or a local `agentceiling serve`).
provider "vault" {}

resource "vault_policy" "reports" {
  name   = "agent-reports-only"
  policy = <<-EOT
    path "secret/data/reports/*" {
      capabilities = ["read"]
    }
  EOT
}

resource "vault_identity_entity" "agent" {
  name = "reporting-agent-entity"
}

resource "vault_agent_registration" "agent" {
  display_name              = "reporting-agent"
  entity_id                 = vault_identity_entity.agent.id
  ceiling_policies          = [vault_policy.reports.name]
  no_default_ceiling_policy = true
}

output "registration_id" {
  value = vault_agent_registration.agent.id
}
