"""Pieces every resource of the provider shares: the ``namespace`` attribute with Vault's
PathValidator messages, the gRPC call wrapper and the null-versus-empty read-back helpers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from agentceiling.tfprovider.client import ApiError, ControlPlaneClient
from agentceiling.tfprovider.framework.types import (
    STRING,
    UNKNOWN,
    Attribute,
    AttributePath,
    Diagnostics,
    Resource,
)

IMPORT_NAMESPACE_ENV = "TERRAFORM_VAULT_NAMESPACE_IMPORT"

NAMESPACE_ATTRIBUTE = Attribute(
    "namespace",
    STRING,
    description=(
        "Target namespace, relative to the provider's `namespace`. Changing it forces a new resource. "
        "On import, taken from `TERRAFORM_VAULT_NAMESPACE_IMPORT`."
    ),
    optional=True,
    requires_replace=True,
)


def known(value: Any) -> bool:
    return value is not UNKNOWN


def wholly_known(value: Any) -> bool:
    if value is UNKNOWN:
        return False
    if isinstance(value, dict):
        return all(wholly_known(v) for v in value.values())
    if isinstance(value, list):
        return all(wholly_known(v) for v in value)
    return True


def check_namespace(config: Mapping[str, Any], diags: Diagnostics, name: str = "namespace") -> None:
    """terraform-provider-vault's PathValidator, with its messages."""
    value = config.get(name)
    if value is None or value is UNKNOWN:
        return
    if value == "":
        diags.error("invalid Vault path", "value cannot be empty", (name,))
    elif value.startswith("/") or value.endswith("/"):
        diags.error("invalid Vault path", f'value {value} contains leading/trailing "/"', (name,))
    elif any(not part for part in value.split("/")) or any(c.isspace() for c in value):
        diags.error("invalid Vault path", f"value {value} is not a valid namespace path", (name,))


def check_not_blank(config: Mapping[str, Any], diags: Diagnostics, name: str, what: str = "") -> None:
    value = config.get(name)
    if isinstance(value, str) and not value.strip():
        diags.error(f"Invalid {name}", f"{what or name} cannot be empty.", (name,))


def check_string_map(config: Mapping[str, Any], name: str, diags: Diagnostics) -> None:
    """The control plane's limits on a metadata map, checked at plan time: on the attribute for
    the number of entries, on the entry for a key or value it would refuse."""
    from agentceiling.domain.validation import LIST_MAX, map_entry_problem, shown  # the server's own rules

    values = config.get(name)
    if not isinstance(values, dict):
        return
    if len(values) > LIST_MAX:
        diags.error(f"Invalid {name}", f"{name} must have at most {LIST_MAX} entries.", (name,))
        return
    for key, value in values.items():
        if isinstance(key, str) and isinstance(value, str):
            problem = map_entry_problem(key, value)
            if problem:
                diags.error(f"Invalid {name}", f'{name}["{shown(key, 64)}"]: {problem}.', (name, key))


def policy_name_problem(name: str, root_message: str) -> str | None:
    """What the control plane would refuse in one name of a policy list (an entity's policies, a
    registration's ceiling), said at plan time instead of at apply."""
    if not name.strip():
        return "A policy name cannot be empty."
    if name == "root":
        return root_message
    from agentceiling.domain.validation import policy_name_problem as problem  # the server's own check

    found = problem(name)
    return f"{found[0].upper()}{found[1:]}." if found else None


def http_url_problem(value: str, *, ascii_only: bool = False, credentials: bool = True) -> str | None:
    """None when ``value`` is an absolute http(s) URL the control plane accepts, else what is wrong
    with it: the plan refuses what an apply would (an apply refused half-way leaves the others
    done). ``ascii_only`` and ``credentials`` are the control plane's rules for the field."""
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        return f"it does not parse as a URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return "it must start with https:// (or http:// for development)"
    try:
        host = parts.hostname
        _ = parts.port
    except ValueError as exc:
        return f"it does not parse as a URL ({exc})"
    if not host:
        return "it names no host"
    from agentceiling.domain.validation import URL_MAX, url_problem  # the server's own check

    if len(value) > URL_MAX:
        return f"it is longer than {URL_MAX} characters"
    found = url_problem(value, ascii_only=ascii_only, credentials=credentials)
    return f"it {found}" if found else None


def import_namespace() -> str | None:
    return os.environ.get(IMPORT_NAMESPACE_ENV) or None


def str_back(api_value: str, previous: Any) -> str | None:
    """An optional string read back from the API, where the API cannot tell unset from "":
    keep "" only if that is what the configuration / state had."""
    if api_value:
        return api_value
    return "" if previous == "" else None


def list_back(api_value: Iterable[str], previous: Any) -> list[str] | None:
    """An optional list read back: an empty API list is [] only if the config said []."""
    values = list(api_value)
    if values:
        return values
    return [] if isinstance(previous, list) and not previous else None


def map_back(api_value: Mapping[str, str], previous: Any) -> dict[str, str] | None:
    values = dict(api_value)
    if values:
        return values
    return {} if isinstance(previous, dict) and not previous else None


def value_or(value: Any, default: Any) -> Any:
    return default if value is None or value is UNKNOWN else value


class VaultResource(Resource):
    """Adds the control-plane plumbing to :class:`Resource`."""

    #: API field names that differ from attribute names.
    renames: Mapping[str, str] = {}
    #: How terraform's import command takes this resource, for "already exists" hints.
    import_hint: str = ""
    #: The control-plane service of this kind, and the response field that holds the object.
    service: str = ""
    api_field: str = ""
    #: The attribute an "already exists" answer is about; empty: the one the message names.
    identity_attribute: str = ""

    def attribute_names(self) -> list[str]:
        return [a.name for a in self.schema.attributes] + [b.name for b in self.schema.blocks]

    def subject(self, values: Mapping[str, Any]) -> str:
        return self.type_name

    def client(self, client: Any, diags: Diagnostics) -> ControlPlaneClient | None:
        if not isinstance(client, ControlPlaneClient):
            diags.error(
                "Provider not configured",
                "The vault provider has no connection to the agentceiling control plane; "
                "see the provider configuration errors above.",
            )
            return None
        return client

    def call(
        self,
        client: ControlPlaneClient,
        diags: Diagnostics,
        *,
        action: str,
        subject: str,
        service: str,
        method: str,
        request: Any,
        hint: str = "",
        not_found_ok: bool = False,
    ) -> Any:
        """Make one call; on failure add diagnostics and return None. With ``not_found_ok`` a
        NOT_FOUND answer returns None without a diagnostic."""
        try:
            return client.call(service, method, request)
        except ApiError as err:
            if not_found_ok and err.not_found:
                return None
            client.add_error(
                diags,
                err,
                action=action,
                subject=subject,
                attributes=self.attribute_names(),
                renames=self.renames,
                hint=hint,
                identity=self.identity_attribute,
            )
            return None

    def warn(
        self,
        client: ControlPlaneClient,
        diags: Diagnostics,
        response: Any,
        subject: str,
        path_for: Callable[[str], AttributePath | None] | None = None,
    ) -> None:
        warnings = getattr(response, "warnings", ())
        if warnings:
            client.add_warnings(diags, list(warnings), subject=subject, path_for=path_for)

    def warning_path(self, text: str) -> AttributePath | None:
        """The attribute a control-plane warning is about (None: the resource as a whole)."""
        return None

    def _from_api(self, obj: Any, previous: dict[str, Any]) -> dict[str, Any]:
        """The state for the API object ``obj``; ``previous`` is the plan or state it answers."""
        raise NotImplementedError

    def send(
        self,
        cp: ControlPlaneClient,
        diags: Diagnostics,
        *,
        action: str,
        method: str,
        request: Any,
        values: Mapping[str, Any],
        hint: str = "",
    ) -> Any:
        """A write (Create, Update) to this kind's service; its warnings become Terraform warnings.
        The response, or None after an error diagnostic."""
        subject = self.subject(values)
        resp = self.call(
            cp, diags, action=action, subject=subject, service=self.service, method=method, request=request, hint=hint
        )
        if resp is not None:
            self.warn(cp, diags, resp, subject, self.warning_path)
        return resp

    def written(
        self,
        cp: ControlPlaneClient,
        diags: Diagnostics,
        *,
        action: str,
        method: str,
        request: Any,
        values: dict[str, Any],
        hint: str = "",
    ) -> dict[str, Any] | None:
        """:meth:`send`, then the new state read from the answer."""
        resp = self.send(cp, diags, action=action, method=method, request=request, values=values, hint=hint)
        return None if resp is None else self._from_api(getattr(resp, self.api_field), values)

    def fetch(
        self,
        cp: ControlPlaneClient,
        diags: Diagnostics,
        request: Any,
        values: Mapping[str, Any],
        *,
        action: str = "read",
        subject: str | None = None,
    ) -> Any:
        """Read through this kind's service: the response, or None when the object is gone (no
        diagnostic) or after an error diagnostic."""
        return self.call(
            cp,
            diags,
            action=action,
            subject=self.subject(values) if subject is None else subject,
            service=self.service,
            method="Read",
            request=request,
            not_found_ok=True,
        )

    def read_back(
        self,
        cp: ControlPlaneClient,
        diags: Diagnostics,
        request: Any,
        state: dict[str, Any],
        *,
        subject: str | None = None,
    ) -> dict[str, Any] | None:
        """The refreshed state: None when the object is gone, the old state after an error."""
        resp = self.fetch(cp, diags, request, state, subject=subject)
        if resp is None:
            return state if diags.has_errors else None
        return self._from_api(getattr(resp, self.api_field), state)

    def remove(
        self, cp: ControlPlaneClient, diags: Diagnostics, request: Any, state: Mapping[str, Any], *, hint: str = ""
    ) -> None:
        """Delete through this kind's service; already gone is fine."""
        self.call(
            cp,
            diags,
            action="delete",
            subject=self.subject(state),
            service=self.service,
            method="Delete",
            request=request,
            not_found_ok=True,
            hint=hint,
        )

    def empty_state(self, **values: Any) -> dict[str, Any]:
        """A state with every attribute null (blocks empty), then ``values``."""
        state: dict[str, Any] = {a.name: None for a in self.schema.attributes}
        state.update({b.name: [] for b in self.schema.blocks})
        state.update(values)
        return state
