# Everything in the "team-a" namespace (relative to the provider's namespace). The same names may
# be used again in another namespace.
terraform {
  required_providers {
    vault = {
      source = "terraform.local/agentceiling/vault"
    }
  }
}

# Address and token come from VAULT_ADDR and VAULT_TOKEN (or a local `agentceiling serve`).
provider "vault" {}

variable "namespace" {
  type    = string
  default = "team-a"
}

resource "vault_policy" "ceiling" {
  namespace = var.namespace
  name      = "agent-ceiling"
  policy    = <<-EOT
    path "secret/data/team-a/*" {
      capabilities = ["read"]
    }
  EOT
}

resource "vault_identity_entity" "agent" {
  namespace = var.namespace
  name      = "team-a-agent-entity"
  policies  = ["default"]
}

resource "vault_agent_registration" "agent" {
  namespace        = var.namespace
  display_name     = "team-a-agent"
  entity_id        = vault_identity_entity.agent.id
  ceiling_policies = [vault_policy.ceiling.name]
}

output "registration_id" {
  value = vault_agent_registration.agent.id
}
