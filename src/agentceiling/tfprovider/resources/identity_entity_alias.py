"""``vault_identity_entity_alias``: binds an external identity to an entity. For AI agents the alias
names the token issuer (``issuer``, the profile's ``issuer_id``) and the agent's subject
(``external_id``); for an alias named by its issuer only, the control plane answers with the
profile's synthetic ``mount_accessor``. Attributes as in terraform-provider-vault 5.11."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentceiling.tfprovider.client import ControlPlaneClient
from agentceiling.tfprovider.framework.types import (
    STRING,
    UNKNOWN,
    Attribute,
    Diagnostics,
    Schema,
    map_of,
)
from agentceiling.tfprovider.resources._common import (
    NAMESPACE_ATTRIBUTE,
    VaultResource,
    check_namespace,
    check_string_map,
    http_url_problem,
    import_namespace,
    map_back,
    str_back,
    value_or,
)

SCHEMA = Schema(
    description="Manages an identity entity alias.",
    attributes=(
        Attribute("id", STRING, "ID of the entity alias.", computed=True, use_state_for_unknown=True),
        NAMESPACE_ATTRIBUTE,
        Attribute("name", STRING, "Name of the alias.", required=True),
        Attribute(
            "mount_accessor",
            STRING,
            "Accessor of the mount the alias belongs to. For an OAuth "
            "resource-server profile: `oauth-resource-server_<namespace>_<config_id>`; filled in from "
            "`issuer` when not set.",
            optional=True,
            computed=True,
            use_state_for_unknown=True,
        ),
        Attribute("canonical_id", STRING, "ID of the entity the alias belongs to.", required=True),
        Attribute(
            "custom_metadata", map_of(STRING), "Custom metadata to associate with the alias.", optional=True
        ),
        Attribute(
            "issuer",
            STRING,
            "Issuer URL of the external identity provider (a profile's `issuer_id`); "
            "can replace `mount_accessor`. Changing it forces a new resource.",
            optional=True,
            computed=True,
            requires_replace=True,
            use_state_for_unknown=True,
        ),
        Attribute(
            "external_id",
            STRING,
            "The subject of the alias at the issuer (the agent's `sub`), unique "
            "together with `issuer`. Changing it forces a new resource.",
            optional=True,
            requires_replace=True,
        ),
    ),
)


def _norm(issuer: str) -> str:
    return issuer.strip().lower().rstrip("/")


class IdentityEntityAlias(VaultResource):
    type_name = "vault_identity_entity_alias"
    schema = SCHEMA
    import_hint = "terraform import vault_identity_entity_alias.<name> <alias id>"
    service = "EntityAliases"
    api_field = "alias"

    def subject(self, values: Mapping[str, Any]) -> str:
        return f'entity alias "{values.get("name")}"'

    def validate(self, config: dict[str, Any], diags: Diagnostics) -> None:
        check_namespace(config, diags)
        check_string_map(config, "custom_metadata", diags)
        for name in ("name", "canonical_id", "mount_accessor", "external_id"):
            value = config.get(name)
            if isinstance(value, str) and not value.strip():
                diags.error(f"Invalid {name}", f"{name} cannot be empty.", (name,))
        accessor, issuer = config.get("mount_accessor"), config.get("issuer")
        if accessor is None and issuer is None:
            diags.error(
                "Missing mount_accessor or issuer",
                "An alias needs a mount_accessor, an issuer, or both. For an AI agent, set issuer to the "
                "profile's issuer_id and external_id to the agent's subject.",
                ("mount_accessor",),
            )
        if isinstance(issuer, str):
            problem = http_url_problem(issuer)
            if problem:
                diags.error(
                    "Invalid issuer",
                    f"issuer must be an absolute http(s) URL (a profile's issuer_id), "
                    f'but "{issuer}" is not: {problem}.',
                    ("issuer",),
                )

    def modify_plan(
        self,
        client: Any,
        prior: dict[str, Any] | None,
        planned: dict[str, Any],
        config: dict[str, Any],
        diags: Diagnostics,
    ) -> dict[str, Any]:
        if planned is None or prior is None:
            return planned
        # mount_accessor and issuer name the same profile: when one changes and the other is left to
        # the control plane, the other is not known until apply (and a new issuer means a new alias).
        # An alias that never had an issuer keeps none (the control plane leaves it empty), so
        # moving it to another accessor is an update in place, as upstream's.
        if (
            config.get("issuer") is None
            and prior.get("issuer") is not None
            and config.get("mount_accessor") != prior.get("mount_accessor")
        ):
            planned["issuer"] = UNKNOWN
        if (
            config.get("mount_accessor") is None
            and config.get("issuer") not in (None, UNKNOWN)
            and (_norm(config["issuer"]) != _norm(prior.get("issuer") or ""))
        ):
            planned["mount_accessor"] = UNKNOWN
        return planned

    def _to_api(self, cp: ControlPlaneClient, values: dict[str, Any], alias_id: str = "") -> Any:
        return cp.pb.EntityAlias(
            namespace=cp.namespace(values.get("namespace")),
            id=alias_id,
            name=values["name"],
            canonical_id=values["canonical_id"],
            mount_accessor=value_or(values.get("mount_accessor"), ""),
            issuer=value_or(values.get("issuer"), ""),
            external_id=value_or(values.get("external_id"), ""),
            custom_metadata=dict(value_or(values.get("custom_metadata"), {})),
        )

    def _from_api(self, a: Any, previous: dict[str, Any]) -> dict[str, Any]:
        issuer = a.issuer or None
        prev_issuer = previous.get("issuer")
        if issuer and isinstance(prev_issuer, str) and _norm(prev_issuer) == _norm(issuer):
            issuer = prev_issuer  # the same issuer, as the configuration spells it
        return {
            "id": a.id,
            "namespace": previous.get("namespace"),
            "name": a.name,
            "mount_accessor": a.mount_accessor or None,
            "canonical_id": a.canonical_id,
            "custom_metadata": map_back(a.custom_metadata, previous.get("custom_metadata")),
            "issuer": issuer,
            "external_id": str_back(a.external_id, previous.get("external_id")),
        }

    def create(self, client: Any, planned: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return None
        return self.written(
            cp,
            diags,
            action="create",
            method="Create",
            request=cp.pb.CreateAliasRequest(alias=self._to_api(cp, planned)),
            values=planned,
            hint=f"If Terraform should manage the existing alias, import it by id: {self.import_hint}",
        )

    def read(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return state
        if not state.get("id"):
            return None
        request = cp.pb.ReadAliasRequest(namespace=cp.namespace(state.get("namespace")), id=state["id"])
        return self.read_back(cp, diags, request, state)

    def update(
        self, client: Any, prior: dict[str, Any], planned: dict[str, Any], diags: Diagnostics
    ) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return None
        return self.written(
            cp,
            diags,
            action="update",
            method="Update",
            request=cp.pb.UpdateAliasRequest(alias=self._to_api(cp, planned, prior["id"])),
            values=planned,
        )

    def delete(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> None:
        cp = self.client(client, diags)
        if cp is None:
            return
        request = cp.pb.DeleteAliasRequest(namespace=cp.namespace(state.get("namespace")), id=state["id"])
        self.remove(cp, diags, request, state)

    def import_state(self, client: Any, import_id: str, diags: Diagnostics) -> dict[str, Any] | None:
        if not import_id.strip():
            diags.error("Invalid import ID", f"Import an alias by its id, e.g. `{self.import_hint}`.")
            return None
        return self.empty_state(id=import_id, namespace=import_namespace())
