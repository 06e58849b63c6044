"""``vault_identity_entity_policies``: the policies of an identity entity managed apart from the
entity (which then sets ``external_policies = true``), as in terraform-provider-vault.

``exclusive`` (default true) makes this resource the owner of the whole list: it writes exactly
``policies``, reads back every policy the entity has, and clears them on destroy. With
``exclusive = false`` it only adds its own policies to whatever else the entity has, reads back
only those of its own the entity still has, and removes only its own on destroy, so several such
resources can share one entity. Switching from exclusive to shared removes nothing: the exclusive
state held every policy of the entity, not only this resource's own.

Every write is a read-modify-write of the entity carrying the version it read, retried when another
writer got there first, so concurrent applies never lose each other's policies."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import grpc

from agentceiling.tfprovider.client import ApiError, ControlPlaneClient
from agentceiling.tfprovider.framework.types import BOOL, STRING, Attribute, Diagnostics, Schema, set_of
from agentceiling.tfprovider.resources._common import (
    NAMESPACE_ATTRIBUTE,
    VaultResource,
    check_namespace,
    import_namespace,
    policy_name_problem,
    value_or,
)

#: Attempts at a read-modify-write that another writer keeps overtaking (ABORTED).
_ATTEMPTS = 8

SCHEMA = Schema(
    description="Manages the policies of an identity entity.",
    attributes=(
        Attribute("id", STRING, "ID of the entity.", computed=True),
        NAMESPACE_ATTRIBUTE,
        Attribute("policies", set_of(STRING), "Policies to be tied to the entity.", required=True),
        Attribute(
            "exclusive",
            BOOL,
            "Should the resource manage policies exclusively (the entity has exactly `policies`), "
            "or only add its own to the entity's others.",
            optional=True,
            computed=True,
            default=True,
        ),
        Attribute("entity_id", STRING, "ID of the entity.", required=True),
        Attribute("entity_name", STRING, "Name of the entity.", computed=True),
    ),
)

Edit = Callable[[list[str]], list[str]]


def _left_on_switch(prior: Mapping[str, Any] | None, planned: Mapping[str, Any]) -> list[str]:
    """The policies an exclusive owner switching to ``exclusive = false`` leaves on the entity.

    While exclusive, the state holds every policy the entity has (an import claims them all, and a
    read takes in what others added), not only what this resource's configuration listed. So they
    cannot all be taken as its own when it stops being exclusive: those it no longer lists stay."""
    if prior is None or planned.get("exclusive") is not False or prior.get("exclusive") is not True:
        return []
    if prior.get("entity_id") != planned.get("entity_id"):
        return []
    wanted = planned.get("policies")
    if not isinstance(wanted, list) or not all(isinstance(p, str) for p in wanted):
        return []  # unknown until apply: the apply decides the same way, without the warning
    return sorted(set(prior.get("policies") or ()) - set(wanted))


class IdentityEntityPolicies(VaultResource):
    type_name = "vault_identity_entity_policies"
    schema = SCHEMA
    import_hint = "terraform import vault_identity_entity_policies.<name> <entity id>"
    service = "IdentityEntities"
    api_field = "entity"

    def subject(self, values: Mapping[str, Any]) -> str:
        return f'the policies of identity entity "{values.get("entity_id")}"'

    def validate(self, config: dict[str, Any], diags: Diagnostics) -> None:
        check_namespace(config, diags)
        entity_id = config.get("entity_id")
        if isinstance(entity_id, str) and not entity_id.strip():
            diags.error("Invalid entity_id", "entity_id cannot be empty.", ("entity_id",))
        policies = config.get("policies")
        if isinstance(policies, list):
            for name in policies:
                if isinstance(name, str):
                    problem = policy_name_problem(name, '"root" cannot be attached to an entity.')
                    if problem:
                        diags.error("Invalid policies", problem, ("policies",))

    # ---------------------------------------------------------------- the entity, read and edited

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
        # The id is the entity's id, known as soon as entity_id is: a change of policies alone
        # must not show it as "(known after apply)", which would replace whatever references it.
        # The same for entity_name while the entity stays the same (upstream, an SDKv2 resource,
        # keeps it too); a rename of the entity shows at the next refresh.
        if isinstance(planned.get("entity_id"), str):
            planned["id"] = planned["entity_id"]
            if (
                prior is not None
                and prior.get("entity_id") == planned["entity_id"]
                and isinstance(prior.get("entity_name"), str)
            ):
                planned["entity_name"] = prior["entity_name"]
        left = _left_on_switch(prior, planned)
        if left:
            diags.warning(
                "Policies stay on the entity",
                "With exclusive = false this resource answers only for the policies it lists. The "
                "entity's other policies, which it owned while exclusive (imported, or added by "
                f"others), stay where they are: {', '.join(left)}. Remove any that should go with "
                "the configuration that owns them.",
                ("exclusive",),
            )
        return planned

    def _read(self, cp: ControlPlaneClient, values: Mapping[str, Any], entity_id: str) -> Any:
        request = cp.pb.ReadEntityRequest(namespace=cp.namespace(values.get("namespace")), id=entity_id)
        return cp.call(self.service, "Read", request).entity

    def _edit(
        self,
        cp: ControlPlaneClient,
        diags: Diagnostics,
        values: Mapping[str, Any],
        entity_id: str,
        edit: Edit,
        *,
        action: str,
        missing_ok: bool = False,
    ) -> Any:
        """Apply ``edit`` to the entity's policies with optimistic concurrency; the entity written,
        or None (a diagnostic added, unless the entity is gone and ``missing_ok``)."""
        subject = self.subject(values)
        for attempt in range(_ATTEMPTS):
            try:
                entity = self._read(cp, values, entity_id)
                wanted = edit(list(entity.policies))
                if sorted(wanted) == sorted(entity.policies):
                    return entity  # nothing to write
                changed = cp.pb.IdentityEntity()
                changed.CopyFrom(entity)
                del changed.policies[:]
                changed.policies.extend(wanted)
                request = cp.pb.UpdateEntityRequest(entity=changed, expected_version=entity.version)
                return cp.call(self.service, "Update", request).entity
            except ApiError as err:
                if err.not_found and missing_ok:
                    return None
                if err.code == grpc.StatusCode.ABORTED and attempt + 1 < _ATTEMPTS:
                    continue  # another writer changed the entity since we read it: read again
                if err.not_found:
                    diags.error(
                        f"Unable to {action.capitalize()} Resource",
                        f'Identity entity "{entity_id}" does not exist in the control plane.',
                        ("entity_id",),
                    )
                    return None
                cp.add_error(
                    diags, err, action=action, subject=subject, attributes=self.attribute_names(), renames=self.renames
                )
                return None
        return None  # unreachable: the last attempt returns or reports

    def _state(self, entity: Any, values: Mapping[str, Any], exclusive: bool) -> dict[str, Any]:
        mine = value_or(values.get("policies"), []) or []
        have = set(entity.policies)
        return {
            "id": entity.id,
            "namespace": values.get("namespace"),
            "policies": sorted(have) if exclusive else sorted(p for p in set(mine) if p in have),
            "exclusive": exclusive,
            "entity_id": entity.id,
            "entity_name": entity.name,
        }

    # ---------------------------------------------------------------- CRUD

    def _write(
        self, client: Any, prior: dict[str, Any] | None, planned: dict[str, Any], diags: Diagnostics, action: str
    ) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return None
        exclusive = bool(value_or(planned.get("exclusive"), True))
        wanted = list(dict.fromkeys(value_or(planned.get("policies"), []) or []))
        dropped: set[str] = set()
        if prior is not None and prior.get("entity_id") == planned.get("entity_id"):
            if not _left_on_switch(prior, planned):
                dropped = set(prior.get("policies") or ()) - set(wanted)
        elif prior is not None:
            # Moved to another entity: take this resource's policies off the old one first, as a
            # destroy would, so that no grant is left behind that nothing tracks.
            self.delete(client, prior, diags)
            if diags.has_errors:
                return None

        def edit(current: list[str]) -> list[str]:
            if exclusive:
                return sorted(wanted)
            kept = [p for p in current if p not in dropped]
            return kept + [p for p in wanted if p not in kept]

        entity = self._edit(cp, diags, planned, str(planned["entity_id"]), edit, action=action)
        if entity is None:
            return None
        state = self._state(entity, planned, exclusive)
        if isinstance(planned.get("entity_name"), str):
            state["entity_name"] = planned["entity_name"]  # as planned; a rename shows at refresh
        return state

    def create(self, client: Any, planned: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        return self._write(client, None, planned, diags, "create")

    def update(
        self, client: Any, prior: dict[str, Any], planned: dict[str, Any], diags: Diagnostics
    ) -> dict[str, Any] | None:
        return self._write(client, prior, planned, diags, "update")

    def read(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return state
        entity_id = state.get("entity_id") or state.get("id") or ""
        if not entity_id:
            return None
        try:
            entity = self._read(cp, state, entity_id)
        except ApiError as err:
            if err.not_found:
                return None  # the entity is gone: so are its policies
            cp.add_error(diags, err, action="read", subject=self.subject(state))
            return state
        return self._state(entity, state, bool(value_or(state.get("exclusive"), True)))

    def delete(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> None:
        cp = self.client(client, diags)
        if cp is None:
            return
        exclusive = bool(value_or(state.get("exclusive"), True))
        mine = set(state.get("policies") or ())

        def edit(current: list[str]) -> list[str]:
            return [] if exclusive else [p for p in current if p not in mine]

        entity_id = str(state.get("entity_id") or state.get("id"))
        self._edit(cp, diags, state, entity_id, edit, action="delete", missing_ok=True)

    def import_state(self, client: Any, import_id: str, diags: Diagnostics) -> dict[str, Any] | None:
        if not import_id.strip():
            diags.error("Invalid import ID", f"Import by the entity's id, e.g. `{self.import_hint}`.")
            return None
        return self.empty_state(id=import_id, entity_id=import_id, exclusive=True, namespace=import_namespace())
