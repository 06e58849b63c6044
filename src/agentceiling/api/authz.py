"""gRPC adapter of the authorization endpoint: decode, decide, encode.

A refusal is a normal response (``allowed=false`` and a code); gRPC errors are for malformed
requests only (INVALID_ARGUMENT with a google.rpc.BadRequest field violation: an unknown
operation, an oversized token, path or namespace)."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Any, Protocol

import grpc
from google.protobuf import json_format

from agentceiling._gen.agentceiling.v1 import authorization_pb2 as pb
from agentceiling._gen.agentceiling.v1 import authorization_pb2_grpc as pbg
from agentceiling.api.errors import Undecodable, rpc_async, tolerant_decoder
from agentceiling.domain.blocking import WouldBlock, never_block
from agentceiling.domain.errors import InvalidArgument
from agentceiling.service.authz import AuthorizeInput, Authorizer, BadRequest, Decision
from agentceiling.store.audit_log import AuditReceipt

#: Longer tokens are a malformed request (INVALID_ARGUMENT, not audited). Tokens between the
#: validator's 8 KiB cap and this are refused as TOKEN_INVALID (and audited) like any bad token.
MAX_TOKEN_CHARS = 64 * 1024

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Authorization"].full_name

#: Requests whose parameters are larger are decided in a worker thread, not on the event loop.
LOOP_PARAMETERS_BYTES = 64 * 1024


def _bearer(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


def _input(request: pb.AuthorizeRequest | Undecodable, context: grpc.ServicerContext) -> AuthorizeInput:
    """The request as the service takes it; malformed requests raise InvalidArgument."""
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
    return AuthorizeInput(
        token=token,
        namespace=request.namespace or "root",
        path=request.path,
        operation=request.operation,
        parameters=params,
    )


def _response(d: Decision) -> pb.AuthorizeResponse:
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


class RecordWriter(Protocol):
    """Where the endpoint's audit records go (:class:`agentceiling.store.audit_writer.AuditWriter`)."""

    async def write(self, record: str) -> AuditReceipt:
        """Return once ``record`` is durable; raise when it cannot be."""
        ...


class AuthorizationService(pbg.AuthorizationServicer):
    """Decides on the event loop when everything the decision needs is in memory (the common case:
    a known agent, cached keys); otherwise (a directory lookup, a JWKS fetch) in a worker thread.
    Either way the answer leaves only once its audit record is durable."""

    def __init__(self, authorizer: Authorizer, audit: RecordWriter, blocking: Executor) -> None:
        self.authorizer = authorizer
        self.audit = audit
        self.blocking = blocking

    def _decide(self, request: pb.AuthorizeRequest, context: Any) -> tuple[Decision, str]:
        return self.authorizer.decide(_input(request, context))

    @rpc_async
    async def Authorize(
        self, request: pb.AuthorizeRequest | Undecodable, context: grpc.aio.ServicerContext
    ) -> pb.AuthorizeResponse:
        loop = asyncio.get_running_loop()
        try:
            if not isinstance(request, Undecodable) and request.parameters.ByteSize() > LOOP_PARAMETERS_BYTES:
                # Converting megabytes of parameters takes the CPU for a while: not on the event
                # loop, where it would hold up every other call (and any caller can send them).
                decision, record = await loop.run_in_executor(self.blocking, self._decide, request, context)
            else:
                req = _input(request, context)  # type: ignore[arg-type]
                try:
                    with never_block():
                        decision, record = self.authorizer.decide(req)
                except WouldBlock:
                    decision, record = await loop.run_in_executor(self.blocking, self.authorizer.decide, req)
        except BadRequest as exc:
            raise InvalidArgument.one(exc.field, str(exc)) from None
        try:
            await self.audit.write(record)
        except Exception as exc:
            decision = Authorizer.unavailable(decision, exc)
        return _response(decision)


def register(server: grpc.aio.Server, authorizer: Authorizer, audit: RecordWriter, blocking: Executor) -> list[str]:
    """Add the Authorization service to ``server``."""
    service = AuthorizationService(authorizer, audit, blocking)
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
