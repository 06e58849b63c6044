"""``vault_agent_registration``: registers an AI agent (an identity entity) in the Agent Registry,
with the ceiling policies that bound what it may ever do (vault-semantics §1.4).

Unlike terraform-provider-vault, ``ceiling_policies`` reads back exactly the list the user
declared (the API's ``requested_ceiling_policies``), so listing ``default`` or
``default-ceiling`` explicitly is harmless, and removing the attribute keeps the stored list
instead of failing with "Provider produced inconsistent result"."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agentceiling.tfprovider.client import ControlPlaneClient
from agentceiling.tfprovider.framework.types import (
    BOOL,
    STRING,
    UNKNOWN,
    Attribute,
    Diagnostics,
    Schema,
    list_of,
)
from agentceiling.tfprovider.resources._common import (
    NAMESPACE_ATTRIBUTE,
    VaultResource,
    check_namespace,
    import_namespace,
    policy_name_problem,
    str_back,
    value_or,
    wholly_known,
)

# hashicorp/go-uuid ParseUUID: 36 characters, hyphens at 8/13/18/23, hex, any case.
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_uuid(value: str) -> bool:
    return bool(_UUID.match(value))


SCHEMA = Schema(
    description="Registers an AI agent in the Agent Registry and sets the ceiling policies that bound it.",
    attributes=(
        Attribute("id", STRING, "The registration's UUID.", computed=True, use_state_for_unknown=True),
        NAMESPACE_ATTRIBUTE,
        Attribute(
            "display_name",
            STRING,
            "Name of the agent, unique in its namespace. Changing it forces a new resource.",
            required=True,
            requires_replace=True,
        ),
        Attribute(
            "entity_id",
            STRING,
            "ID of the identity entity that represents the agent (one registration "
            "per entity). Changing it forces a new resource.",
            required=True,
            requires_replace=True,
        ),
        Attribute(
            "ceiling_policies",
            list_of(STRING),
            "ACL policies that cap what the agent can do. "
            "`default` and `default-ceiling` are added by the control plane unless "
            "`no_default_ceiling_policy` is set; they are not shown here unless you list them.",
            optional=True,
            computed=True,
        ),
        Attribute(
            "no_default_ceiling_policy",
            BOOL,
            "Do not add `default` and `default-ceiling` to the ceiling.",
            optional=True,
            computed=True,
            default=False,
        ),
        Attribute("description", STRING, "Free-form description.", optional=True),
        Attribute("owner", STRING, "Who owns the agent (team, person).", optional=True),
        Attribute(
            "creation_time",
            STRING,
            "When the registration was created (RFC 3339).",
            computed=True,
            use_state_for_unknown=True,
        ),
        Attribute(
            "last_updated_time",
            STRING,
            "When the registration was last changed (RFC 3339); refreshed on read.",
            computed=True,
            use_state_for_unknown=True,
        ),
        Attribute(
            "optional_authorization_details",
            BOOL,
            "Make RAR `authorization_details` optional for this agent.",
            optional=True,
            computed=True,
            default=False,
        ),
    ),
)


class AgentRegistration(VaultResource):
    type_name = "vault_agent_registration"
    schema = SCHEMA
    import_hint = "terraform import vault_agent_registration.<name> <id or display_name>"
    service = "AgentRegistrations"
    api_field = "registration"

    def subject(self, values: Mapping[str, Any]) -> str:
        return f'agent registration "{values.get("display_name")}"'

    def validate(self, config: dict[str, Any], diags: Diagnostics) -> None:
        check_namespace(config, diags)
        for name in ("display_name", "entity_id"):
            value = config.get(name)
            if isinstance(value, str) and not value.strip():
                diags.error(f"Invalid {name}", f"{name} cannot be empty.", (name,))
        policies = config.get("ceiling_policies")
        if isinstance(policies, list):
            seen: set[str] = set()
            for i, name in enumerate(policies):
                if not isinstance(name, str):
                    continue
                problem = policy_name_problem(name, '"root" cannot be used as a ceiling policy.')
                if problem:
                    diags.error("Invalid ceiling_policies", problem, ("ceiling_policies", i))
                elif name in seen:
                    diags.error("Invalid ceiling_policies", f'"{name}" is listed twice.', ("ceiling_policies", i))
                seen.add(name)

    def modify_plan(
        self,
        client: Any,
        prior: dict[str, Any] | None,
        planned: dict[str, Any],
        config: dict[str, Any],
        diags: Diagnostics,
    ) -> dict[str, Any]:
        if planned is None:
            return planned
        # ceiling_policies not configured: keep what is stored (or nothing, on create) instead of
        # a perpetual "(known after apply)"; the apply sends exactly that list back.
        if config.get("ceiling_policies") is None:
            if prior is not None and isinstance(prior.get("ceiling_policies"), list):
                planned["ceiling_policies"] = list(prior["ceiling_policies"])
            else:
                planned["ceiling_policies"] = []
        return planned

    # ------------------------------------------------------------------ API mapping

    def _to_api(self, cp: ControlPlaneClient, values: dict[str, Any], prior: dict[str, Any] | None) -> Any:
        policies = values.get("ceiling_policies")
        if not wholly_known(policies) or policies is None:
            policies = (prior or {}).get("ceiling_policies") or []
        return cp.pb.AgentRegistration(
            namespace=cp.namespace(values.get("namespace")),
            id=(prior or {}).get("id") or "",
            display_name=values["display_name"],
            entity_id=values["entity_id"],
            description=value_or(values.get("description"), ""),
            owner=value_or(values.get("owner"), ""),
            ceiling_policies=list(policies),
            no_default_ceiling_policy=bool(value_or(values.get("no_default_ceiling_policy"), False)),
            optional_authorization_details=bool(value_or(values.get("optional_authorization_details"), False)),
        )

    def _from_api(self, r: Any, previous: dict[str, Any], *, timestamps: bool = True) -> dict[str, Any]:
        return {
            "id": r.id,
            "namespace": previous.get("namespace"),
            "display_name": r.display_name,
            "entity_id": r.entity_id,
            "ceiling_policies": list(r.requested_ceiling_policies),
            "no_default_ceiling_policy": bool(r.no_default_ceiling_policy),
            "description": str_back(r.description, previous.get("description")),
            "owner": str_back(r.owner, previous.get("owner")),
            "creation_time": r.creation_time if timestamps else previous.get("creation_time"),
            "last_updated_time": r.last_updated_time if timestamps else previous.get("last_updated_time"),
            "optional_authorization_details": bool(r.optional_authorization_details),
        }

    # ------------------------------------------------------------------ CRUD

    def create(self, client: Any, planned: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return None
        resp = self.send(
            cp,
            diags,
            action="create",
            method="Create",
            request=cp.pb.CreateRegistrationRequest(registration=self._to_api(cp, planned, None)),
            values=planned,
            hint=f"If Terraform should manage the existing registration, import it: {self.import_hint}",
        )
        if resp is None:
            return None
        if not resp.registration.id:
            diags.error("Missing ID in response", "Agent registration creation did not return an ID")
            return None
        return self._from_api(resp.registration, planned)

    def read(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return state
        ns = cp.namespace(state.get("namespace"))
        ident = state.get("id")
        if ident and ident is not UNKNOWN:
            request = cp.pb.ReadRegistrationRequest(namespace=ns, id=ident)
        else:
            request = cp.pb.ReadRegistrationRequest(namespace=ns, display_name=state.get("display_name") or "")
        return self.read_back(cp, diags, request, state)

    def update(
        self, client: Any, prior: dict[str, Any], planned: dict[str, Any], diags: Diagnostics
    ) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return None
        resp = self.send(
            cp,
            diags,
            action="update",
            method="Update",
            request=cp.pb.UpdateRegistrationRequest(registration=self._to_api(cp, planned, prior)),
            values=planned,
        )
        if resp is None:
            return None
        # Timestamps stay as planned (the prior values): the next refresh picks up the new
        # last_updated_time, as terraform-provider-vault does.
        state = self._from_api(resp.registration, planned, timestamps=False)
        state["creation_time"] = prior.get("creation_time")
        state["last_updated_time"] = prior.get("last_updated_time")
        return state

    def delete(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> None:
        cp = self.client(client, diags)
        if cp is None:
            return
        request = cp.pb.DeleteRegistrationRequest(namespace=cp.namespace(state.get("namespace")), id=state["id"])
        self.remove(cp, diags, request, state)

    def import_state(self, client: Any, import_id: str, diags: Diagnostics) -> dict[str, Any] | None:
        if not import_id:
            diags.error(
                "Invalid import ID",
                f"Import a registration by its UUID or its display_name, e.g. `{self.import_hint}`.",
            )
            return None
        ns = import_namespace()
        if is_uuid(import_id):
            return self.empty_state(id=import_id, namespace=ns)
        return self.empty_state(display_name=import_id, namespace=ns)
