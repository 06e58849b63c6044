# Several ceiling policies, created with for_each; the ceiling is their union.
terraform {
  required_providers {
    vault = {
      source = "terraform.local/agentceiling/vault"
    }
  }
}

# Address and token come from VAULT_ADDR and VAULT_TOKEN (or a local `agentceiling serve`).
provider "vault" {}

locals {
  ceilings = {
    "agent-kv-read"      = <<-EOT
      path "secret/data/app/*" {
        capabilities = ["read"]
      }
    EOT
    "agent-db-creds"     = <<-EOT
      path "database/creds/app-readonly" {
        capabilities = ["read"]
      }
    EOT
    "agent-transit-sign" = <<-EOT
      path "transit/sign/agent-key" {
        capabilities = ["update"]
      }
    EOT
  }
}

resource "vault_policy" "ceiling" {
  for_each = local.ceilings
  name     = each.key
  policy   = each.value
}

resource "vault_identity_entity" "agent" {
  name     = "ops-agent-entity"
  policies = ["default"]
}

resource "vault_agent_registration" "agent" {
  display_name     = "ops-agent"
  entity_id        = vault_identity_entity.agent.id
  ceiling_policies = sort([for p in vault_policy.ceiling : p.name])
}

output "ceiling_policies" {
  value = vault_agent_registration.agent.ceiling_policies
}
