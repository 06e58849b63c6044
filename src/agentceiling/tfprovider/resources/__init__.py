"""The provider's managed resources, one module each."""

from __future__ import annotations

from agentceiling.tfprovider.framework.types import Resource
from agentceiling.tfprovider.resources.activation_flags import ActivationFlags
from agentceiling.tfprovider.resources.agent_registration import AgentRegistration
from agentceiling.tfprovider.resources.identity_entity import IdentityEntity
from agentceiling.tfprovider.resources.identity_entity_alias import IdentityEntityAlias
from agentceiling.tfprovider.resources.identity_entity_policies import IdentityEntityPolicies
from agentceiling.tfprovider.resources.oauth_resource_server_config_profile import (
    OAuthResourceServerConfigProfile,
)
from agentceiling.tfprovider.resources.policy import Policy

__all__ = [
    "ActivationFlags",
    "AgentRegistration",
    "IdentityEntity",
    "IdentityEntityAlias",
    "IdentityEntityPolicies",
    "OAuthResourceServerConfigProfile",
    "Policy",
    "all_resources",
]


def all_resources() -> list[Resource]:
    return [
        OAuthResourceServerConfigProfile(),
        AgentRegistration(),
        Policy(),
        IdentityEntity(),
        IdentityEntityAlias(),
        IdentityEntityPolicies(),
        ActivationFlags(),
    ]
