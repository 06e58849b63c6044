"""``vault_identity_entity``: an identity entity (the agent or person that aliases resolve to),
with terraform-provider-vault's attributes: name, policies, metadata, disabled,
external_policies and namespace. Imported by id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from agentceiling.tfprovider.client import ApiError, ControlPlaneClient
from agentceiling.tfprovider.framework.types import (
    BOOL,
    STRING,
    Attribute,
    Diagnostics,
    Schema,
    map_of,
    set_of,
)
from agentceiling.tfprovider.resources._common import (
    NAMESPACE_ATTRIBUTE,
    VaultResource,
    check_namespace,
    check_string_map,
    import_namespace,
    list_back,
    map_back,
    policy_name_problem,
    value_or,
)

#: Attempts at carrying the policies through an update while other writers keep changing them.
_ATTEMPTS = 8

SCHEMA = Schema(
    description="Manages an identity entity.",
    attributes=(
        Attribute("id", STRING, "ID of the entity.", computed=True, use_state_for_unknown=True),
        NAMESPACE_ATTRIBUTE,
        Attribute(
            "name",
            STRING,
            "Name of the entity, unique in its namespace; generated when not set.",
            optional=True,
            computed=True,
            use_state_for_unknown=True,
        ),
        Attribute("policies", set_of(STRING), "Policies tied to the entity.", optional=True),
        Attribute("metadata", map_of(STRING), "Metadata to associate with the entity.", optional=True),
        Attribute(
            "disabled",
            BOOL,
            "Whether the entity is disabled. Disabled entities' tokens cannot be used.",
            optional=True,
            computed=True,
            default=False,
        ),
        Attribute(
            "external_policies",
            BOOL,
            "When true, `policies` is neither set nor read here: manage the "
            "entity's policies elsewhere (e.g. vault_identity_entity_policies).",
            optional=True,
            computed=True,
            default=False,
        ),
    ),
)


class IdentityEntity(VaultResource):
    type_name = "vault_identity_entity"
    schema = SCHEMA
    import_hint = "terraform import vault_identity_entity.<name> <entity id>"
    service = "IdentityEntities"
    api_field = "entity"

    def subject(self, values: Mapping[str, Any]) -> str:
        name = values.get("name")
        return f'identity entity "{name}"' if isinstance(name, str) and name else "identity entity"

    def validate(self, config: dict[str, Any], diags: Diagnostics) -> None:
        check_namespace(config, diags)
        check_string_map(config, "metadata", diags)
        name = config.get("name")
        if isinstance(name, str) and not name.strip():
            diags.error("Invalid name", "name cannot be empty: leave it out to have one generated.", ("name",))
        policies = config.get("policies")
        if isinstance(policies, list):
            for name in policies:
                if isinstance(name, str):
                    problem = policy_name_problem(name, '"root" cannot be attached to an entity.')
                    if problem:
                        diags.error("Invalid policies", problem, ("policies",))
        if config.get("external_policies") is True and isinstance(policies, list) and policies:
            # terraform-provider-vault ignores policies then (a DiffSuppressFunc): so do we, aloud.
            diags.warning(
                "policies is ignored",
                "external_policies is true: the entity's policies are managed elsewhere (e.g. "
                "vault_identity_entity_policies), so policies is neither written nor read here.",
                ("policies",),
            )

    def _to_api(self, cp: ControlPlaneClient, values: dict[str, Any], current: Any) -> Any:
        external = bool(value_or(values.get("external_policies"), False))
        if external:
            policies = list(current.policies) if current is not None else []
        else:
            policies = sorted(value_or(values.get("policies"), []))
        return cp.pb.IdentityEntity(
            namespace=cp.namespace(values.get("namespace")),
            id=(current.id if current is not None else ""),
            name=value_or(values.get("name"), ""),
            policies=policies,
            metadata=dict(value_or(values.get("metadata"), {})),
            disabled=bool(value_or(values.get("disabled"), False)),
        )

    def _from_api(self, e: Any, previous: dict[str, Any]) -> dict[str, Any]:
        external = bool(value_or(previous.get("external_policies"), False))
        return {
            "id": e.id,
            "namespace": previous.get("namespace"),
            "name": e.name,
            "policies": previous.get("policies") if external else list_back(e.policies, previous.get("policies")),
            "metadata": map_back(e.metadata, previous.get("metadata")),
            "disabled": bool(e.disabled),
            "external_policies": external,
        }

    def _read_request(self, cp: ControlPlaneClient, values: dict[str, Any]) -> Any:
        return cp.pb.ReadEntityRequest(namespace=cp.namespace(values.get("namespace")), id=values.get("id") or "")

    def create(self, client: Any, planned: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return None
        return self.written(
            cp,
            diags,
            action="create",
            method="Create",
            request=cp.pb.CreateEntityRequest(entity=self._to_api(cp, planned, None)),
            values=planned,
            hint=f"If Terraform should manage the existing entity, import it by id: {self.import_hint}",
        )

    def read(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return state
        if not state.get("id"):
            return None
        return self.read_back(cp, diags, self._read_request(cp, state), state)

    def update(
        self, client: Any, prior: dict[str, Any], planned: dict[str, Any], diags: Diagnostics
    ) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return None
        if not value_or(planned.get("external_policies"), False):
            entity = self._to_api(cp, planned, None)
            entity.id = prior["id"]
            request = cp.pb.UpdateEntityRequest(entity=entity)
            return self.written(cp, diags, action="update", method="Update", request=request, values=planned)
        # Policies are managed elsewhere (vault_identity_entity_policies) and an update replaces the
        # whole entity: carry the policies it has, written with the version they were read at, and
        # read again when another writer got in between (else its policies would be lost).
        for attempt in range(_ATTEMPTS):
            got = self.fetch(cp, diags, self._read_request(cp, prior), prior, action="update")
            if got is None:
                if not diags.has_errors:
                    diags.error(
                        "Unable to Update Resource",
                        f"{self.subject(planned)} no longer exists in the control plane.",
                    )
                return None
            entity = self._to_api(cp, planned, got.entity)
            request = cp.pb.UpdateEntityRequest(entity=entity, expected_version=got.entity.version)
            try:
                resp = cp.call(self.service, "Update", request)
            except ApiError as err:
                if err.code == grpc.StatusCode.ABORTED and attempt + 1 < _ATTEMPTS:
                    continue
                cp.add_error(
                    diags,
                    err,
                    action="update",
                    subject=self.subject(planned),
                    attributes=self.attribute_names(),
                    renames=self.renames,
                )
                return None
            self.warn(cp, diags, resp, self.subject(planned), self.warning_path)
            return self._from_api(resp.entity, planned)
        return None  # unreachable: the last attempt returns or reports

    def delete(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> None:
        cp = self.client(client, diags)
        if cp is None:
            return
        request = cp.pb.DeleteEntityRequest(namespace=cp.namespace(state.get("namespace")), id=state["id"])
        self.remove(
            cp,
            diags,
            request,
            state,
            hint="An entity that still has an agent registration cannot be deleted: delete the registration first.",
        )

    def import_state(self, client: Any, import_id: str, diags: Diagnostics) -> dict[str, Any] | None:
        if not import_id.strip():
            diags.error("Invalid import ID", f"Import an entity by its id, e.g. `{self.import_hint}`.")
            return None
        return self.empty_state(id=import_id, namespace=import_namespace())
