"""gRPC adapters for the control plane: decode, call the service, encode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb
from agentceiling._gen.agentceiling.v1 import control_plane_pb2_grpc as pbg
from agentceiling.api import convert
from agentceiling.api.admin_auth import AdminAuth
from agentceiling.api.errors import Undecodable, rpc, tolerant_decoder
from agentceiling.domain.models import PolicyDoc
from agentceiling.service.control import ControlPlane, page_token

Ctx = grpc.ServicerContext
M = TypeVar("M", bound=Message)

# Replies stay well under the 4 MiB message limit: a page ends early when it would not fit.
PAGE_BYTES = 3 * 1024 * 1024


def fit_page(msgs: list[M], keys: list[str], next_token: str) -> tuple[list[M], str]:
    """Cut a page that would not fit in a reply. ``keys`` are what the service pages by (the token
    of a cut page is the key of its last item, as the service's own)."""
    total = 0
    for i, m in enumerate(msgs):
        total += m.ByteSize() + 16
        if total > PAGE_BYTES and i > 0:
            return msgs[:i], page_token(keys[i - 1])
    return msgs, next_token


class Profiles(pbg.OAuthResourceServerProfilesServicer):
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    @rpc
    def Create(self, request: pb.CreateProfileRequest, context: Ctx) -> pb.ProfileResponse:
        w = self.cp.create_profile(convert.profile_from_pb(request.profile))
        return pb.ProfileResponse(profile=convert.profile_to_pb(w.obj), warnings=w.warnings, generation=w.generation)

    @rpc
    def Read(self, request: pb.ReadProfileRequest, context: Ctx) -> pb.ProfileResponse:
        p = self.cp.read_profile(request.namespace, name=request.profile_name, config_id=request.config_id)
        return pb.ProfileResponse(profile=convert.profile_to_pb(p))

    @rpc
    def Update(self, request: pb.UpdateProfileRequest, context: Ctx) -> pb.ProfileResponse:
        w = self.cp.update_profile(convert.profile_from_pb(request.profile), request.expected_version)
        return pb.ProfileResponse(profile=convert.profile_to_pb(w.obj), warnings=w.warnings, generation=w.generation)

    @rpc
    def Delete(self, request: pb.DeleteProfileRequest, context: Ctx) -> pb.DeleteResponse:
        gen = self.cp.delete_profile(request.namespace, request.profile_name, request.expected_version)
        return pb.DeleteResponse(generation=gen)

    @rpc
    def List(self, request: pb.ListRequest, context: Ctx) -> pb.ListProfilesResponse:
        page = self.cp.list_profiles(request.namespace, request.page_size, request.page_token)
        items, token = fit_page(
            [convert.profile_to_pb(p) for p in page.items], [p.profile_name for p in page.items], page.next_page_token
        )
        return pb.ListProfilesResponse(profiles=items, next_page_token=token)


class Registrations(pbg.AgentRegistrationsServicer):
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    @rpc
    def Create(self, request: pb.CreateRegistrationRequest, context: Ctx) -> pb.RegistrationResponse:
        w = self.cp.create_registration(convert.registration_from_pb(request.registration))
        return pb.RegistrationResponse(
            registration=convert.registration_to_pb(w.obj), warnings=w.warnings, generation=w.generation
        )

    @rpc
    def Read(self, request: pb.ReadRegistrationRequest, context: Ctx) -> pb.RegistrationResponse:
        r = self.cp.read_registration(
            request.namespace, id=request.id, display_name=request.display_name, entity_id=request.entity_id
        )
        return pb.RegistrationResponse(registration=convert.registration_to_pb(r))

    @rpc
    def Update(self, request: pb.UpdateRegistrationRequest, context: Ctx) -> pb.RegistrationResponse:
        w = self.cp.update_registration(convert.registration_from_pb(request.registration), request.expected_version)
        return pb.RegistrationResponse(
            registration=convert.registration_to_pb(w.obj), warnings=w.warnings, generation=w.generation
        )

    @rpc
    def Delete(self, request: pb.DeleteRegistrationRequest, context: Ctx) -> pb.DeleteResponse:
        return pb.DeleteResponse(
            generation=self.cp.delete_registration(request.namespace, request.id, request.expected_version)
        )

    @rpc
    def List(self, request: pb.ListRequest, context: Ctx) -> pb.ListRegistrationsResponse:
        page = self.cp.list_registrations(request.namespace, request.page_size, request.page_token)
        items, token = fit_page(
            [convert.registration_to_pb(r) for r in page.items],
            [r.id for r in page.items],  # the service pages registrations by id
            page.next_page_token,
        )
        return pb.ListRegistrationsResponse(registrations=items, next_page_token=token)


class Policies(pbg.PoliciesServicer):
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    @rpc
    def Create(self, request: pb.CreatePolicyRequest, context: Ctx) -> pb.PolicyResponse:
        m = request.policy
        w = self.cp.create_policy(PolicyDoc(m.namespace, m.name, m.policy))
        return pb.PolicyResponse(policy=convert.policy_to_pb(w.obj), warnings=w.warnings, generation=w.generation)

    @rpc
    def Read(self, request: pb.ReadPolicyRequest, context: Ctx) -> pb.PolicyResponse:
        return pb.PolicyResponse(policy=convert.policy_to_pb(self.cp.read_policy(request.namespace, request.name)))

    @rpc
    def Update(self, request: pb.UpdatePolicyRequest, context: Ctx) -> pb.PolicyResponse:
        m = request.policy
        w = self.cp.update_policy(PolicyDoc(m.namespace, m.name, m.policy), request.expected_version)
        return pb.PolicyResponse(policy=convert.policy_to_pb(w.obj), warnings=w.warnings, generation=w.generation)

    @rpc
    def Delete(self, request: pb.DeletePolicyRequest, context: Ctx) -> pb.DeleteResponse:
        return pb.DeleteResponse(
            generation=self.cp.delete_policy(request.namespace, request.name, request.expected_version)
        )

    @rpc
    def List(self, request: pb.ListRequest, context: Ctx) -> pb.ListPoliciesResponse:
        page = self.cp.list_policies(request.namespace, request.page_size, request.page_token)
        items, token = fit_page(
            [convert.policy_to_pb(p) for p in page.items], [p.name for p in page.items], page.next_page_token
        )
        return pb.ListPoliciesResponse(policies=items, next_page_token=token)


class Entities(pbg.IdentityEntitiesServicer):
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    @rpc
    def Create(self, request: pb.CreateEntityRequest, context: Ctx) -> pb.EntityResponse:
        w = self.cp.create_entity(convert.entity_from_pb(request.entity))
        return pb.EntityResponse(entity=convert.entity_to_pb(w.obj), warnings=w.warnings, generation=w.generation)

    @rpc
    def Read(self, request: pb.ReadEntityRequest, context: Ctx) -> pb.EntityResponse:
        e = self.cp.read_entity(request.namespace, id=request.id, name=request.name)
        return pb.EntityResponse(entity=convert.entity_to_pb(e))

    @rpc
    def Update(self, request: pb.UpdateEntityRequest, context: Ctx) -> pb.EntityResponse:
        w = self.cp.update_entity(convert.entity_from_pb(request.entity), request.expected_version)
        return pb.EntityResponse(entity=convert.entity_to_pb(w.obj), warnings=w.warnings, generation=w.generation)

    @rpc
    def Delete(self, request: pb.DeleteEntityRequest, context: Ctx) -> pb.DeleteResponse:
        return pb.DeleteResponse(
            generation=self.cp.delete_entity(request.namespace, request.id, request.expected_version)
        )

    @rpc
    def List(self, request: pb.ListRequest, context: Ctx) -> pb.ListEntitiesResponse:
        page = self.cp.list_entities(request.namespace, request.page_size, request.page_token)
        items, token = fit_page(
            [convert.entity_to_pb(e) for e in page.items], [e.id for e in page.items], page.next_page_token
        )
        return pb.ListEntitiesResponse(entities=items, next_page_token=token)


class Aliases(pbg.EntityAliasesServicer):
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    @rpc
    def Create(self, request: pb.CreateAliasRequest, context: Ctx) -> pb.AliasResponse:
        w = self.cp.create_alias(convert.alias_from_pb(request.alias))
        return pb.AliasResponse(alias=convert.alias_to_pb(w.obj), warnings=w.warnings, generation=w.generation)

    @rpc
    def Read(self, request: pb.ReadAliasRequest, context: Ctx) -> pb.AliasResponse:
        return pb.AliasResponse(alias=convert.alias_to_pb(self.cp.read_alias(request.namespace, request.id)))

    @rpc
    def Update(self, request: pb.UpdateAliasRequest, context: Ctx) -> pb.AliasResponse:
        w = self.cp.update_alias(convert.alias_from_pb(request.alias), request.expected_version)
        return pb.AliasResponse(alias=convert.alias_to_pb(w.obj), warnings=w.warnings, generation=w.generation)

    @rpc
    def Delete(self, request: pb.DeleteAliasRequest, context: Ctx) -> pb.DeleteResponse:
        return pb.DeleteResponse(
            generation=self.cp.delete_alias(request.namespace, request.id, request.expected_version)
        )

    @rpc
    def List(self, request: pb.ListRequest, context: Ctx) -> pb.ListAliasesResponse:
        page = self.cp.list_aliases(request.namespace, request.page_size, request.page_token)
        items, token = fit_page(
            [convert.alias_to_pb(a) for a in page.items], [a.id for a in page.items], page.next_page_token
        )
        return pb.ListAliasesResponse(aliases=items, next_page_token=token)


class System(pbg.SystemServicer):
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    @rpc
    def Status(self, request: pb.StatusRequest, context: Ctx) -> pb.StatusResponse:
        version, generation, database = self.cp.status()
        return pb.StatusResponse(version=version, generation=generation, database=database)

    @rpc
    def ActivateFeature(self, request: pb.ActivateFeatureRequest, context: Ctx) -> pb.ActivationFlagResponse:
        flag, gen = self.cp.activate_feature(request.feature)
        return pb.ActivationFlagResponse(
            flag=pb.ActivationFlag(feature=flag.feature, activated_time=flag.activated_time), generation=gen
        )

    @rpc
    def ListActivationFlags(
        self, request: pb.ListActivationFlagsRequest, context: Ctx
    ) -> pb.ListActivationFlagsResponse:
        return pb.ListActivationFlagsResponse(
            activated=[
                pb.ActivationFlag(feature=f.feature, activated_time=f.activated_time)
                for f in self.cp.list_activation_flags()
            ]
        )


def _decoded(method: Callable[[Any, Ctx], Any], message: str, auth: AdminAuth) -> Callable[[Any, Ctx], Any]:
    def handler(request: Any, context: Ctx) -> Any:
        auth.authenticate(context)  # before anything about the request is said
        if isinstance(request, Undecodable):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request is not a valid {message} message (truncated or garbled bytes, invalid UTF-8 in a "
                "string, or nested deeper than 100 levels)",
            )
        return method(request, context)

    return handler


def register(server: grpc.aio.Server, cp: ControlPlane) -> list[str]:
    """Add every control-plane service to ``server``; return their full names. As the generated
    ``add_*Servicer_to_server`` do, but every call needs the admin token, and a request that does
    not decode is INVALID_ARGUMENT (gRPC's own decoding answers INTERNAL and logs a traceback).
    The handlers are synchronous: a grpc.aio server runs them in its worker pool."""
    servicers = {
        "OAuthResourceServerProfiles": Profiles(cp),
        "AgentRegistrations": Registrations(cp),
        "Policies": Policies(cp),
        "IdentityEntities": Entities(cp),
        "EntityAliases": Aliases(cp),
        "System": System(cp),
    }
    auth = AdminAuth(cp.check_admin_token)
    for name, servicer in servicers.items():
        service = pb.DESCRIPTOR.services_by_name[name]
        handlers = {
            m.name: grpc.unary_unary_rpc_method_handler(
                _decoded(getattr(servicer, m.name), m.input_type.full_name, auth),
                request_deserializer=tolerant_decoder(GetMessageClass(m.input_type)),
                response_serializer=GetMessageClass(m.output_type).SerializeToString,
            )
            for m in service.methods
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
        server.add_registered_method_handlers(service.full_name, handlers)  # type: ignore[attr-defined]  # grpcio >= 1.62
    return [s.full_name for s in pb.DESCRIPTOR.services_by_name.values()]
