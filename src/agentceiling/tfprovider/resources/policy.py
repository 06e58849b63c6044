"""``vault_policy``: an ACL policy (name + HCL/JSON text), as in terraform-provider-vault.

A policy that does not parse is a plan-time error on ``policy`` that names the line and column,
instead of an error from the server halfway through an apply."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agentceiling.tfprovider.framework.types import BOOL, STRING, Attribute, AttributePath, Diagnostics, Schema
from agentceiling.tfprovider.resources._common import (
    NAMESPACE_ATTRIBUTE,
    VaultResource,
    check_namespace,
    import_namespace,
    value_or,
)

BUILTIN = ("default", "default-ceiling")

SCHEMA = Schema(
    description="Manages an ACL policy.",
    attributes=(
        Attribute("id", STRING, "The policy name.", computed=True, use_state_for_unknown=True),
        NAMESPACE_ATTRIBUTE,
        Attribute(
            "name",
            STRING,
            "Name of the policy. Changing it forces a new resource.",
            required=True,
            requires_replace=True,
        ),
        Attribute(
            "policy", STRING, "The policy document (Vault ACL policy syntax, HCL or JSON).", required=True
        ),
        Attribute(
            "allow_overwrite",
            BOOL,
            "Allow overwriting an existing policy. Defaults to `true` for backwards compatibility purposes. "
            "Deprecated: use `terraform import` to manage existing policies.",
            optional=True,
            computed=True,
            default=True,
            deprecated=True,
        ),
    ),
)

#: terraform-provider-vault's deprecation message for ``allow_overwrite``.
ALLOW_OVERWRITE_DEPRECATED = (
    "Deprecated. Overwriting pre-existing policies will soon be removed. "
    "Use 'terraform import' to manage existing policies."
)


class Policy(VaultResource):
    type_name = "vault_policy"
    schema = SCHEMA
    import_hint = "terraform import vault_policy.<name> <policy name>"
    service = "Policies"
    api_field = "policy"
    identity_attribute = "name"  # 'policy "p" already exists' is about the name, not the text

    def subject(self, values: Mapping[str, Any]) -> str:
        return f'policy "{values.get("name")}"'

    def validate(self, config: dict[str, Any], diags: Diagnostics) -> None:
        check_namespace(config, diags)
        if config.get("allow_overwrite") is not None:
            diags.warning("Argument is deprecated", ALLOW_OVERWRITE_DEPRECATED, ("allow_overwrite",))
        name = config.get("name")
        if isinstance(name, str):
            if not name.strip():
                diags.error("Invalid name", "The policy name cannot be empty.", ("name",))
            elif name == "root":
                diags.error("Invalid name", 'The "root" policy is built in and cannot be managed.', ("name",))
            elif any(c.isspace() for c in name) or name.startswith("/") or name.endswith("/"):
                diags.error(
                    "Invalid name",
                    f'"{name}" is not a valid policy name: no whitespace, and no leading or trailing "/".',
                    ("name",),
                )
        text = config.get("policy")
        if isinstance(text, str):
            self._check_syntax(text, diags)

    @staticmethod
    def _check_syntax(text: str, diags: Diagnostics) -> None:
        try:
            from agentceiling.policy import PolicyParseError, parse_policy  # type: ignore[attr-defined,unused-ignore]
        except ImportError:  # parser not available in this build: the server still checks
            return
        try:
            parse_policy(text)
        except PolicyParseError as exc:
            line = getattr(exc, "line", None)
            column = getattr(exc, "column", None)
            detail = getattr(exc, "detail", None) or str(exc)
            # Semantic errors point at their path block and name the exact spot in the detail.
            inner = re.search(r"\(at line (\d+), column (\d+)\)", detail)
            if inner:
                line, column = int(inner.group(1)), int(inner.group(2))
                detail = (detail[: inner.start()] + detail[inner.end() :]).strip()
            where = ""
            if line:
                where = f" at line {line}" + (f", column {column}" if column else "")
                lines = text.splitlines()
                if 0 < int(line) <= len(lines):
                    caret = " " * (max(int(column or 1), 1) - 1) + "^"
                    where += f":\n\n    {lines[int(line) - 1]}\n    {caret}\n"
                else:
                    where += "."
            diags.error(
                "Invalid policy document", f"The policy is not valid{where}\n{detail}".rstrip(), ("policy",)
            )

    def _from_api(self, p: Any, previous: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": p.name,
            "namespace": previous.get("namespace"),
            "name": p.name,
            "policy": p.policy,
            "allow_overwrite": bool(value_or(previous.get("allow_overwrite"), True)),  # configuration only
        }

    def warning_path(self, text: str) -> AttributePath | None:
        return ("policy",)  # the control plane's warnings about a policy are about its text

    def _to_api(self, cp: Any, values: dict[str, Any]) -> Any:
        namespace = cp.namespace(values.get("namespace"))
        return cp.pb.Policy(namespace=namespace, name=values["name"], policy=values["policy"])

    def create(self, client: Any, planned: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return None
        policy = self._to_api(cp, planned)
        overwrite = planned["name"] in BUILTIN  # built-in policies always exist
        if not overwrite:
            # As terraform-provider-vault: an existing policy is overwritten (Vault's PUT), unless
            # allow_overwrite = false.
            namespace = cp.namespace(planned.get("namespace"))
            read = cp.pb.ReadPolicyRequest(namespace=namespace, name=planned["name"])
            existing = self.fetch(cp, diags, read, planned)
            if diags.has_errors:
                return None
            if existing is not None:
                if not value_or(planned.get("allow_overwrite"), True):
                    diags.error(
                        f'The policy "{planned["name"]}" already exists',
                        f'policy "{planned["name"]}" already exists; use terraform import to manage it or set '
                        f"allow_overwrite = true\n\n{self.import_hint}",
                        ("name",),
                    )
                    return None
                overwrite = True
        if overwrite:
            request = cp.pb.UpdatePolicyRequest(policy=policy)
            return self.written(cp, diags, action="create", method="Update", request=request, values=planned)
        return self.written(
            cp,
            diags,
            action="create",
            method="Create",
            request=cp.pb.CreatePolicyRequest(policy=policy),
            values=planned,
            hint=f"If Terraform should manage the existing policy, import it: {self.import_hint}",
        )

    def read(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return state
        name = state.get("name") or state.get("id") or ""
        request = cp.pb.ReadPolicyRequest(namespace=cp.namespace(state.get("namespace")), name=name)
        return self.read_back(cp, diags, request, state, subject=f'policy "{name}"')

    def update(
        self, client: Any, prior: dict[str, Any], planned: dict[str, Any], diags: Diagnostics
    ) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return None
        request = cp.pb.UpdatePolicyRequest(policy=self._to_api(cp, planned))
        return self.written(cp, diags, action="update", method="Update", request=request, values=planned)

    def delete(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> None:
        cp = self.client(client, diags)
        if cp is None:
            return
        if state.get("name") in BUILTIN:
            diags.warning(
                f'The built-in policy "{state["name"]}" was not deleted',
                "Built-in policies cannot be deleted; it was removed from the Terraform state only and keeps "
                "its current text.",
            )
            return
        request = cp.pb.DeletePolicyRequest(
            namespace=cp.namespace(state.get("namespace")), name=state["name"]
        )
        self.remove(
            cp,
            diags,
            request,
            state,
            hint="A policy that is still used as a ceiling policy cannot be deleted: remove it from "
            "vault_agent_registration.ceiling_policies first. When a change of name replaces the policy, "
            "give the vault_policy `lifecycle { create_before_destroy = true }` and reference it from "
            "ceiling_policies: the registration then moves to the new policy before the old one is deleted.",
        )

    def import_state(self, client: Any, import_id: str, diags: Diagnostics) -> dict[str, Any] | None:
        if not import_id.strip():
            diags.error("Invalid import ID", f"Import a policy by its name, e.g. `{self.import_hint}`.")
            return None
        return self.empty_state(id=import_id, name=import_id, namespace=import_namespace(), allow_overwrite=True)
