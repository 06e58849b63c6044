"""The tfplugin6 ``Provider`` service: decode, call the framework or the resource, encode.

Every handler answers with a response; a Python exception becomes an error diagnostic carrying
the exception text (never an RPC failure, which terraform reports as "Plugin error ... Exception
calling application", pitfall P10). Diagnostics keep their attribute paths, converted to
``AttributePath`` steps against the schema's type (attribute name / map key / list index).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import grpc

from agentceiling._gen.tfplugin6 import tfplugin6_pb2 as pb
from agentceiling._gen.tfplugin6 import tfplugin6_pb2_grpc as pb_grpc
from agentceiling.tfprovider.framework import cty
from agentceiling.tfprovider.framework.cty import CompiledType, CtyError, schema_type
from agentceiling.tfprovider.framework.plan import plan_resource_change, validate_config
from agentceiling.tfprovider.framework.schema import check_schema, schema_to_proto
from agentceiling.tfprovider.framework.types import (
    UNKNOWN,
    AttributePath,
    DataSource,
    Diagnostic,
    Diagnostics,
    Provider,
    Resource,
)

log = logging.getLogger("agentceiling.tfprovider")

CAPABILITIES = pb.ServerCapabilities(plan_destroy=True, get_provider_schema_optional=True)

_Resp = TypeVar("_Resp")


class _Call:
    """Per-RPC scratch: the diagnostics and the type paths are resolved against."""

    __slots__ = ("diags", "type")

    def __init__(self) -> None:
        self.diags = Diagnostics()
        self.type: CompiledType | None = None


# ---------------------------------------------------------------------------------------------
# Diagnostics and paths


def path_to_proto(path: AttributePath, t: CompiledType | None = None) -> pb.AttributePath:
    """Contract path -> AttributePath. With the value's type, a string is an attribute name in an
    object and a key in a map; a path stops at a set (the protocol has no set-element step)."""
    steps: list[pb.AttributePath.Step] = []
    for step in path:
        if t is not None and isinstance(t, cty._Set):
            break
        if isinstance(step, int) and not isinstance(step, bool) and not isinstance(t, cty._Map):
            steps.append(pb.AttributePath.Step(element_key_int=step))
            t = getattr(t, "elem", None) if not isinstance(t, cty._Tuple) else _tuple_elem(t, step)
        elif t is not None and isinstance(t, cty._Map):  # a key, even one that reads as a number
            steps.append(pb.AttributePath.Step(element_key_string=str(step)))
            t = t.elem
        else:
            steps.append(pb.AttributePath.Step(attribute_name=str(step)))
            t = t.attrs.get(str(step)) if isinstance(t, cty._Object) else None
    return pb.AttributePath(steps=steps)


def _tuple_elem(t: cty._Tuple, i: int) -> CompiledType | None:
    return t.elems[i] if 0 <= i < len(t.elems) else None


def diagnostic_to_proto(d: Diagnostic, t: CompiledType | None = None) -> pb.Diagnostic:
    severity = pb.Diagnostic.WARNING if d.severity == "warning" else pb.Diagnostic.ERROR
    out = pb.Diagnostic(severity=severity, summary=d.summary, detail=d.detail)
    if d.path:
        out.attribute.CopyFrom(path_to_proto(d.path, t))
    return out


def diagnostics_to_proto(diags: Diagnostics, t: CompiledType | None = None) -> list[pb.Diagnostic]:
    return [diagnostic_to_proto(d, t) for d in diags.items]


def exception_diagnostic(exc: BaseException, rpc: str) -> Diagnostic:
    if isinstance(exc, CtyError):
        return Diagnostic("error", "Invalid value", f"{rpc}: {exc.message}", exc.path or None)
    text = str(exc) or type(exc).__name__
    return Diagnostic("error", "Provider error", f"{rpc} failed: {type(exc).__name__}: {text}")


# ---------------------------------------------------------------------------------------------
# The servicer


class ProviderServer(pb_grpc.ProviderServicer):
    """Serves one :class:`Provider`. ``provider`` may be a factory: it is then built on the first
    RPC (or by :meth:`warm_up`), keeping imports off the plugin's start-up path."""

    def __init__(self, provider: Provider | Callable[[], Provider]) -> None:
        self._provider: Provider | None = provider if isinstance(provider, Provider) else None
        self._factory = None if isinstance(provider, Provider) else provider
        self._lock = threading.Lock()
        self._loaded = False
        self._resources: dict[str, Resource] = {}
        self._data_sources: dict[str, DataSource] = {}
        self._schema_response: pb.GetProviderSchema.Response | None = None
        self.client: Any = None
        self.terraform_version = ""
        self.stopping = threading.Event()

    # -- set-up ----------------------------------------------------------------------------

    @property
    def provider(self) -> Provider:
        """The provider, built on first use; its resources and data sources indexed by type."""
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    provider = self._provider
                    if provider is None:
                        assert self._factory is not None
                        provider = self._factory()
                    self._resources = {r.type_name: r for r in provider.resources()}
                    self._data_sources = {d.type_name: d for d in provider.data_sources()}
                    self._provider = provider
                    self._loaded = True
        assert self._provider is not None
        return self._provider

    def warm_up(self) -> None:
        """Build the provider and its codecs ahead of the first RPC (called from a thread)."""
        try:
            provider = self.provider
            schema_type(provider.schema)
            for r in self._resources.values():
                schema_type(r.schema)
        except Exception:  # reported again, as a diagnostic, by the RPC that needs it
            log.exception("building the provider failed")

    def _resource(self, type_name: str) -> Resource:
        _ = self.provider
        try:
            return self._resources[type_name]
        except KeyError:
            raise LookupError(
                f"this provider has no resource type {type_name!r} "
                f"(it has: {', '.join(sorted(self._resources)) or 'none'})"
            ) from None

    def _data_source(self, type_name: str) -> DataSource:
        _ = self.provider
        try:
            return self._data_sources[type_name]
        except KeyError:
            raise LookupError(
                f"this provider has no data source {type_name!r} "
                f"(it has: {', '.join(sorted(self._data_sources)) or 'none'})"
            ) from None

    # -- plumbing ----------------------------------------------------------------------------

    def _run(
        self, rpc: str, detail: str, make: Callable[..., _Resp], body: Callable[[_Call], dict[str, Any]]
    ) -> _Resp:
        """Run ``body``; turn its diagnostics and any exception into the response's diagnostics."""
        started = time.perf_counter()
        call = _Call()
        fields: dict[str, Any] = {}
        try:
            fields = body(call)
        except Exception as exc:
            log.exception("%s %s raised", rpc, detail)
            call.diags.items.append(exception_diagnostic(exc, rpc))
        diags = call.diags
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s: %.1f ms, %d diagnostic(s)%s",
                rpc,
                detail,
                (time.perf_counter() - started) * 1000,
                len(diags.items),
                "".join(f"\n  {d.severity}: {d.summary}: {d.detail} {d.path or ''}" for d in diags.items),
            )
        return make(diagnostics=diagnostics_to_proto(diags, call.type), **fields)

    # -- provider-level RPCs --------------------------------------------------------------

    def GetMetadata(
        self, request: pb.GetMetadata.Request, context: grpc.ServicerContext
    ) -> pb.GetMetadata.Response:
        def body(call: _Call) -> dict[str, Any]:
            _ = self.provider
            return {
                "server_capabilities": CAPABILITIES,
                "resources": [pb.GetMetadata.ResourceMetadata(type_name=n) for n in sorted(self._resources)],
                "data_sources": [
                    pb.GetMetadata.DataSourceMetadata(type_name=n) for n in sorted(self._data_sources)
                ],
            }

        return self._run("GetMetadata", "", pb.GetMetadata.Response, body)

    def GetProviderSchema(
        self, request: pb.GetProviderSchema.Request, context: grpc.ServicerContext
    ) -> pb.GetProviderSchema.Response:
        cached = self._schema_response
        if cached is not None:
            return cached

        def body(call: _Call) -> dict[str, Any]:
            provider = self.provider
            problems = check_schema(provider.schema, "provider")
            for r in self._resources.values():
                problems += check_schema(r.schema, r.type_name)
            for d in self._data_sources.values():
                problems += check_schema(d.schema, f"data.{d.type_name}")
            for p in problems:
                call.diags.error("Invalid provider schema", p)
            return {
                "provider": schema_to_proto(provider.schema),
                "resource_schemas": {n: schema_to_proto(r.schema) for n, r in self._resources.items()},
                "data_source_schemas": {n: schema_to_proto(d.schema) for n, d in self._data_sources.items()},
                "server_capabilities": CAPABILITIES,
            }

        response = self._run("GetProviderSchema", "", pb.GetProviderSchema.Response, body)
        if not response.diagnostics:
            self._schema_response = response
        return response

    def GetResourceIdentitySchemas(
        self, request: pb.GetResourceIdentitySchemas.Request, context: grpc.ServicerContext
    ) -> pb.GetResourceIdentitySchemas.Response:
        return pb.GetResourceIdentitySchemas.Response()

    def ValidateProviderConfig(
        self, request: pb.ValidateProviderConfig.Request, context: grpc.ServicerContext
    ) -> pb.ValidateProviderConfig.Response:
        def body(call: _Call) -> dict[str, Any]:
            provider = self.provider
            t = schema_type(provider.schema)
            call.type = t
            diags = call.diags
            config = _decode(t, request.config) or {}
            validate_config(provider.schema, config, diags)
            provider.validate(config, diags)
            return {}

        return self._run("ValidateProviderConfig", "", pb.ValidateProviderConfig.Response, body)

    def ConfigureProvider(
        self, request: pb.ConfigureProvider.Request, context: grpc.ServicerContext
    ) -> pb.ConfigureProvider.Response:
        def body(call: _Call) -> dict[str, Any]:
            provider = self.provider
            t = schema_type(provider.schema)
            call.type = t
            diags = call.diags
            self.terraform_version = request.terraform_version
            config = _decode(t, request.config) or {}
            self.client = provider.configure(config, diags)
            return {}

        return self._run("ConfigureProvider", request.terraform_version, pb.ConfigureProvider.Response, body)

    def StopProvider(
        self, request: pb.StopProvider.Request, context: grpc.ServicerContext
    ) -> pb.StopProvider.Response:
        # Not a shutdown: terraform asks to cancel in-flight work (Ctrl-C). Shutdown comes later.
        log.info("StopProvider: terraform is interrupting the operation")
        self.stopping.set()
        return pb.StopProvider.Response(Error="")

    # -- managed resources ----------------------------------------------------------------

    def _validate(
        self,
        rpc: str,
        type_name: str,
        config_value: pb.DynamicValue,
        lookup: Callable[[str], Resource | DataSource],
        response: Any,
    ) -> Any:
        """Validate*Config for a resource or a data source: schema checks, then the type's own."""

        def body(call: _Call) -> dict[str, Any]:
            target = lookup(type_name)
            t = schema_type(target.schema)
            call.type = t
            config = _decode(t, config_value) or {}
            validate_config(target.schema, config, call.diags)
            target.validate(config, call.diags)
            return {}

        return self._run(rpc, type_name, response, body)

    def ValidateResourceConfig(
        self, request: pb.ValidateResourceConfig.Request, context: grpc.ServicerContext
    ) -> pb.ValidateResourceConfig.Response:
        return self._validate(
            "ValidateResourceConfig",
            request.type_name,
            request.config,
            self._resource,
            pb.ValidateResourceConfig.Response,
        )

    def UpgradeResourceState(
        self, request: pb.UpgradeResourceState.Request, context: grpc.ServicerContext
    ) -> pb.UpgradeResourceState.Response:
        def body(call: _Call) -> dict[str, Any]:
            resource = self._resource(request.type_name)
            schema = resource.schema
            t = schema_type(schema)
            call.type = t
            diags = call.diags
            raw = request.raw_state
            if not raw.json:
                if raw.flatmap:
                    diags.error(
                        "Unsupported state format",
                        f"{request.type_name}: the stored state uses the pre-0.12 flatmap format.",
                    )
                    return {}
                return {"upgraded_state": pb.DynamicValue(msgpack=b"\xc0")}
            if request.version > schema.version:
                diags.error(
                    "Resource state is from a newer provider",
                    f"{request.type_name}: the state was written with schema version {request.version}; "
                    f"this provider knows version {schema.version}. Upgrade the provider.",
                )
                return {}
            stored = json.loads(raw.json)
            if request.version != schema.version and isinstance(stored, dict):
                stored = resource.upgrade_state(int(request.version), stored, diags)
            state = t.from_json(stored, ())
            return {"upgraded_state": pb.DynamicValue(msgpack=cty.encode_msgpack(t, state))}

        return self._run("UpgradeResourceState", request.type_name, pb.UpgradeResourceState.Response, body)

    def ReadResource(
        self, request: pb.ReadResource.Request, context: grpc.ServicerContext
    ) -> pb.ReadResource.Response:
        def body(call: _Call) -> dict[str, Any]:
            resource = self._resource(request.type_name)
            t = schema_type(resource.schema)
            call.type = t
            diags = call.diags
            current = _decode(t, request.current_state)
            fields: dict[str, Any] = {"private": request.private}
            if current is None:
                fields["new_state"] = _NULL
                return fields
            new = resource.read(self.client, current, diags)
            if new is None and diags.has_errors:
                new = current  # keep what terraform has; the error explains
            if new is not None:
                _check_known(new, f"{type(resource).__name__}.read", t, diags)
            fields["new_state"] = _encode(t, new)
            return fields

        return self._run("ReadResource", request.type_name, pb.ReadResource.Response, body)

    def PlanResourceChange(
        self, request: pb.PlanResourceChange.Request, context: grpc.ServicerContext
    ) -> pb.PlanResourceChange.Response:
        def body(call: _Call) -> dict[str, Any]:
            resource = self._resource(request.type_name)
            t = schema_type(resource.schema)
            call.type = t
            diags = call.diags
            prior = _decode(t, request.prior_state)
            proposed = _decode(t, request.proposed_new_state)
            config = _decode(t, request.config)
            result = plan_resource_change(resource, self.client, prior, proposed, config, diags)
            return {
                "planned_state": _encode(t, result.planned),
                "requires_replace": [path_to_proto(p, t) for p in result.requires_replace],
                "planned_private": request.prior_private,
            }

        return self._run("PlanResourceChange", request.type_name, pb.PlanResourceChange.Response, body)

    def ApplyResourceChange(
        self, request: pb.ApplyResourceChange.Request, context: grpc.ServicerContext
    ) -> pb.ApplyResourceChange.Response:
        def body(call: _Call) -> dict[str, Any]:
            resource = self._resource(request.type_name)
            t = schema_type(resource.schema)
            call.type = t
            diags = call.diags
            prior = _decode(t, request.prior_state)
            planned = _decode(t, request.planned_state)
            name = type(resource).__name__
            new: dict[str, Any] | None
            if planned is None:
                if prior is not None:
                    resource.delete(self.client, prior, diags)
                new = prior if diags.has_errors else None
            elif prior is None:
                new = resource.create(self.client, planned, diags)
                if new is not None:
                    _check_known(new, f"{name}.create", t, diags)
            else:
                new = resource.update(self.client, prior, planned, diags)
                if new is None and diags.has_errors:
                    new = prior
                elif new is None:
                    diags.error("Provider error", f"{name}.update returned no state and no error")
                    new = prior
                else:
                    _check_known(new, f"{name}.update", t, diags)
            return {"new_state": _encode(t, new), "private": request.planned_private}

        return self._run("ApplyResourceChange", request.type_name, pb.ApplyResourceChange.Response, body)

    def ImportResourceState(
        self, request: pb.ImportResourceState.Request, context: grpc.ServicerContext
    ) -> pb.ImportResourceState.Response:
        def body(call: _Call) -> dict[str, Any]:
            resource = self._resource(request.type_name)
            t = schema_type(resource.schema)
            call.type = t
            diags = call.diags
            state = resource.import_state(self.client, request.id, diags)
            if state is None:
                if not diags.has_errors:
                    diags.error(
                        "Cannot import non-existent remote object",
                        f"No {request.type_name} with ID {request.id!r} exists.",
                    )
                return {}
            imported = pb.ImportResourceState.ImportedResource(
                type_name=request.type_name, state=_encode(t, state)
            )
            return {"imported_resources": [imported]}

        return self._run(
            "ImportResourceState",
            f"{request.type_name} {request.id!r}",
            pb.ImportResourceState.Response,
            body,
        )

    # -- data sources ---------------------------------------------------------------------

    def ValidateDataResourceConfig(
        self, request: pb.ValidateDataResourceConfig.Request, context: grpc.ServicerContext
    ) -> pb.ValidateDataResourceConfig.Response:
        return self._validate(
            "ValidateDataResourceConfig",
            request.type_name,
            request.config,
            self._data_source,
            pb.ValidateDataResourceConfig.Response,
        )

    def ReadDataSource(
        self, request: pb.ReadDataSource.Request, context: grpc.ServicerContext
    ) -> pb.ReadDataSource.Response:
        def body(call: _Call) -> dict[str, Any]:
            source = self._data_source(request.type_name)
            t = schema_type(source.schema)
            call.type = t
            diags = call.diags
            config = _decode(t, request.config) or {}
            state = source.read(self.client, config, diags)
            if state is not None:
                _check_known(state, f"{type(source).__name__}.read", t, diags)
            return {"state": _encode(t, state)}

        return self._run("ReadDataSource", request.type_name, pb.ReadDataSource.Response, body)


_NULL = pb.DynamicValue(msgpack=b"\xc0")


def _decode(t: CompiledType, value: pb.DynamicValue) -> Any:
    if value.msgpack:
        return cty.decode_msgpack(t, value.msgpack)
    if value.json:
        return cty.decode_json(t, value.json)
    return None


def _encode(t: CompiledType, value: Any) -> pb.DynamicValue:
    if value is None:
        return _NULL
    return pb.DynamicValue(msgpack=cty.encode_msgpack(t, value))


def _check_known(value: Any, where: str, t: CompiledType, diags: Diagnostics) -> None:
    for path in _unknown_paths(value, ()):
        diags.error(
            "Provider returned an unknown value",
            f"{where} left {cty.format_path(path)} unknown; a result must be wholly known.",
            path,
        )


def _unknown_paths(v: Any, path: AttributePath) -> Iterable[AttributePath]:
    if v is UNKNOWN:
        yield path
    elif isinstance(v, dict):
        for k, x in v.items():
            yield from _unknown_paths(x, (*path, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _unknown_paths(x, (*path, i))
