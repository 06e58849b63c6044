# The whole picture: an OAuth resource-server profile for the agents' identity provider, an entity
# for the agent, an alias binding the agent's token subject ("ci-agent" at that issuer) to the
# entity, a ceiling policy, and the agent's registration.
#
# `make run` applies this against a local control plane and then issues tokens for "ci-agent".

terraform {
  required_providers {
    vault = {
      source = "terraform.local/agentceiling/vault"
    }
  }
}

# Address and token come from VAULT_ADDR and VAULT_TOKEN (or a local `agentceiling serve`).
provider "vault" {}

variable "issuer" {
  description = "Issuer (iss claim) of the agents' tokens."
  type        = string
  default     = "http://127.0.0.1:8252/"
}

variable "jwks_uri" {
  description = "JWKS endpoint of the issuer; defaults to <issuer>/.well-known/jwks.json."
  type        = string
  default     = null
}

variable "agent_subject" {
  description = "The agent's subject (sub claim) at the issuer."
  type        = string
  default     = "ci-agent"
}

locals {
  jwks_uri = coalesce(var.jwks_uri, "${trimsuffix(var.issuer, "/")}/.well-known/jwks.json")
}

resource "vault_oauth_resource_server_config_profile" "agents" {
  profile_name         = "demo-agents"
  issuer_id            = var.issuer
  use_jwks             = true
  jwks_uri             = local.jwks_uri
  audiences            = ["agentceiling"]
  supported_algorithms = ["ES256", "PS256", "EdDSA"]
  clock_skew_leeway    = 30
}

# What the agent may ever do, whatever its token asks for.
resource "vault_policy" "ci_ceiling" {
  name   = "ci-agent-ceiling"
  policy = <<-EOT
    path "secret/data/ci/*" {
      capabilities = ["read", "list"]
    }
    path "secret/metadata/ci/*" {
      capabilities = ["list"]
    }
  EOT
}

# What the agent's entity is granted (the ceiling still bounds it).
resource "vault_policy" "ci_access" {
  name   = "ci-agent-access"
  policy = <<-EOT
    path "secret/data/ci/*" {
      capabilities = ["create", "read", "update", "delete", "list"]
    }
  EOT
}

resource "vault_identity_entity" "ci_agent" {
  name     = "ci-agent"
  policies = [vault_policy.ci_access.name]
  metadata = {
    purpose = "continuous-integration"
  }
}

resource "vault_identity_entity_alias" "ci_agent" {
  name           = var.agent_subject
  canonical_id   = vault_identity_entity.ci_agent.id
  issuer         = vault_oauth_resource_server_config_profile.agents.issuer_id
  external_id    = var.agent_subject
  mount_accessor = "oauth-resource-server_root_${vault_oauth_resource_server_config_profile.agents.id}"
}

resource "vault_agent_registration" "ci_agent" {
  display_name     = "ci-agent"
  entity_id        = vault_identity_entity.ci_agent.id
  ceiling_policies = [vault_policy.ci_ceiling.name]
  description      = "Runs the CI pipeline"
  owner            = "platform-team"
}

output "profile_id" {
  value = vault_oauth_resource_server_config_profile.agents.id
}

output "issuer" {
  value = vault_oauth_resource_server_config_profile.agents.issuer_id
}

output "entity_id" {
  value = vault_identity_entity.ci_agent.id
}

output "alias_id" {
  value = vault_identity_entity_alias.ci_agent.id
}

output "mount_accessor" {
  value = vault_identity_entity_alias.ci_agent.mount_accessor
}

output "registration_id" {
  value = vault_agent_registration.ci_agent.id
}
