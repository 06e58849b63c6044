"""``vault_activation_flags``: activates a feature flag (Vault 2.0 needed
``oauth-resource-server`` activated before profiles worked). The control plane records the flag
so configurations written for Vault 2.0 apply unchanged. Root namespace only; flags cannot be
deactivated, so destroying the resource only forgets it (vault-semantics §1.5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentceiling.tfprovider.framework.types import STRING, Attribute, Diagnostics, Schema
from agentceiling.tfprovider.resources._common import VaultResource

SCHEMA = Schema(
    description="Activates a feature flag.",
    attributes=(
        Attribute("id", STRING, "The feature name.", computed=True, use_state_for_unknown=True),
        Attribute(
            "feature",
            STRING,
            "The feature to activate, e.g. `oauth-resource-server`. Changing it forces a new resource.",
            required=True,
            requires_replace=True,
        ),
    ),
)


class ActivationFlags(VaultResource):
    type_name = "vault_activation_flags"
    schema = SCHEMA
    import_hint = "terraform import vault_activation_flags.<name> <feature>"

    def subject(self, values: Mapping[str, Any]) -> str:
        return f'activation flag "{values.get("feature")}"'

    def validate(self, config: dict[str, Any], diags: Diagnostics) -> None:
        feature = config.get("feature")
        if isinstance(feature, str) and (not feature.strip() or "/" in feature):
            diags.error(
                "Invalid feature",
                f'"{feature}" is not a feature name (e.g. "oauth-resource-server").',
                ("feature",),
            )

    def _activated(self, cp: Any, diags: Diagnostics, subject: str, action: str) -> set[str] | None:
        resp = self.call(
            cp,
            diags,
            action=action,
            subject=subject,
            service="System",
            method="ListActivationFlags",
            request=cp.pb.ListActivationFlagsRequest(),
        )
        if resp is None:
            return None
        return {f.feature for f in resp.activated}

    def create(self, client: Any, planned: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return None
        feature = planned["feature"]
        subject = self.subject(planned)
        resp = self.call(
            cp,
            diags,
            action="create",
            subject=subject,
            service="System",
            method="ActivateFeature",
            request=cp.pb.ActivateFeatureRequest(feature=feature),
        )
        if resp is None:
            return None
        activated = self._activated(cp, diags, subject, "create")
        if activated is None:
            return None
        if feature not in activated:
            diags.error(
                "Unable to Create Resource",
                f'The feature "{feature}" was activated but the control plane does not list it as activated.',
            )
            return None
        return {"id": feature, "feature": feature}

    def read(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return state
        feature = state.get("feature") or state.get("id")
        activated = self._activated(cp, diags, self.subject(state), "read")
        if activated is None:
            return state
        if feature not in activated:
            return None
        return {"id": feature, "feature": feature}

    def update(
        self, client: Any, prior: dict[str, Any], planned: dict[str, Any], diags: Diagnostics
    ) -> dict[str, Any] | None:
        # Every attribute forces replacement; nothing to do in place.
        return {"id": planned["feature"], "feature": planned["feature"]}

    def delete(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> None:
        diags.warning(
            "Activation flags cannot be deactivated",
            f'The feature "{state.get("feature")}" stays activated; it was removed from the Terraform state only.',
        )

    def import_state(self, client: Any, import_id: str, diags: Diagnostics) -> dict[str, Any] | None:
        if not import_id.strip():
            diags.error(
                "Invalid import ID", f"Import an activation flag by its feature, e.g. `{self.import_hint}`."
            )
            return None
        return {"id": import_id, "feature": import_id}
