"""gRPC adapter of the authorization endpoint: decode, decide, encode."""

from __future__ import annotations

import json

import grpc
from google.protobuf import json_format

from agentceiling._gen.agentceiling.v1 import authorization_pb2 as pb
from agentceiling._gen.agentceiling.v1 import authorization_pb2_grpc as pbg
from agentceiling.api.errors import rpc
from agentceiling.domain.errors import InvalidArgument
from agentceiling.service.authz import AuthorizeInput, Authorizer, BadRequest

MAX_TOKEN_CHARS = 64 * 1024


def _bearer(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


class AuthorizationService(pbg.AuthorizationServicer):
    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    @rpc
    def Authorize(self, request: pb.AuthorizeRequest, context: grpc.ServicerContext) -> pb.AuthorizeResponse:
        token = request.token or _bearer(context)
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidArgument.one("token", f"token is longer than {MAX_TOKEN_CHARS} characters")
        params = json_format.MessageToDict(request.parameters) if request.HasField("parameters") else None
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
            authorization_details=json.dumps(d.authorization_details, sort_keys=True),
        )


def register(server: grpc.Server, authorizer: Authorizer) -> list[str]:
    pbg.add_AuthorizationServicer_to_server(AuthorizationService(authorizer), server)
    return [s.full_name for s in pb.DESCRIPTOR.services_by_name.values()]
