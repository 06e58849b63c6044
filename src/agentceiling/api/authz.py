"""gRPC adapter of the authorization endpoint: decode, decide, encode.

A refusal is a normal response (``allowed=false`` and a code); gRPC errors are for malformed
requests only (INVALID_ARGUMENT with a google.rpc.BadRequest field violation: an unknown
operation, an oversized token, path or namespace)."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format

from agentceiling._gen.agentceiling.v1 import authorization_pb2 as pb
from agentceiling._gen.agentceiling.v1 import authorization_pb2_grpc as pbg
from agentceiling.api.errors import Undecodable, rpc, tolerant_decoder
from agentceiling.domain.errors import InvalidArgument
from agentceiling.service.authz import AuthorizeInput, Authorizer, BadRequest

#: Longer tokens are a malformed request (INVALID_ARGUMENT, not audited). Tokens between the
#: validator's 8 KiB cap and this are refused as TOKEN_INVALID (and audited) like any bad token.
MAX_TOKEN_CHARS = 64 * 1024

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Authorization"].full_name


def _bearer(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


class AuthorizationService(pbg.AuthorizationServicer):
    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    @rpc
    def Authorize(
        self, request: pb.AuthorizeRequest | Undecodable, context: grpc.ServicerContext
    ) -> pb.AuthorizeResponse:
        if isinstance(request, Undecodable):
            raise InvalidArgument.one(
                "parameters",
                "the request could not be decoded (protobuf allows 100 levels of nesting; "
                "parameters are probably nested deeper)",
            )
        token = request.token or _bearer(context)
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidArgument.one("token", f"token is longer than {MAX_TOKEN_CHARS} characters")
        params: dict[str, Any] | None = None
        if request.HasField("parameters"):
            try:
                params = json_format.MessageToDict(request.parameters)
            except ValueError:  # NaN or an infinity in a number_value: JSON has no such number
                raise InvalidArgument.one(
                    "parameters", "parameters hold a number JSON cannot represent (NaN or an infinity)"
                ) from None
        try:
            d = self.authorizer.authorize(
                AuthorizeInput(
                    token=token,
                    namespace=request.namespace or "root",
                    path=request.path,
                    operation=request.operation,
                    parameters=params,
                )
            )
        except BadRequest as exc:
            raise InvalidArgument.one(exc.field, str(exc)) from None
        return pb.AuthorizeResponse(
            allowed=d.allowed,
            code=d.code,
            reason=d.reason,
            decision_id=d.decision_id,
            entity_id=d.entity_id,
            actor_entity_id=d.actor_entity_id,
            registration_id=d.registration_id,
            authorization_details=d.authorization_details_json,
        )


def register(server: grpc.Server, authorizer: Authorizer) -> list[str]:
    service = AuthorizationService(authorizer)
    handlers = {
        "Authorize": grpc.unary_unary_rpc_method_handler(
            service.Authorize,
            request_deserializer=tolerant_decoder(pb.AuthorizeRequest),
            response_serializer=pb.AuthorizeResponse.SerializeToString,
        )
    }
    # As the generated add_AuthorizationServicer_to_server does, with the tolerant decoder.
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)  # type: ignore[attr-defined]  # grpcio >= 1.62
    return [s.full_name for s in pb.DESCRIPTOR.services_by_name.values()]
