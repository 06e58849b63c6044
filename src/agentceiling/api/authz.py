"""gRPC adapter of the authorization endpoint, on the server's event loop.

The event loop does not decide: it hands each Authorize request, as the bytes it arrived in, to the
authorization worker process (:mod:`agentceiling.api.authz_worker`), which decodes it, decides,
writes the decision's audit record durably and answers; the answer goes back as it came. So the loop
pays gRPC's own cost and one pipe hand-off per call, and deciding runs beside it, not in its thread
(docs/performance.md, eighth pass).

A refusal is a normal response (``allowed=false`` and a code); gRPC errors are for malformed
requests only (INVALID_ARGUMENT with a google.rpc.BadRequest field violation: an unknown
operation, an oversized token, path or namespace). When no answer can come (the worker is gone,
or its disk hangs), the answer is UNAVAILABLE, with the decision id drawn here."""

from __future__ import annotations

import logging
from typing import Protocol

import grpc

from agentceiling._gen.agentceiling.v1 import authorization_pb2 as pb
from agentceiling.api.authz_worker import encode_request
from agentceiling.api.errors import rpc_async
from agentceiling.domain.errors import InvalidArgument
from agentceiling.service import audit_record
from agentceiling.service.authz import AUDIT_UNAVAILABLE_REASON
from agentceiling.store.audit_log import AuditUnavailable
from agentceiling.store.audit_writer import BadRequestReply

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Authorization"].full_name


def _bearer(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


class Worker(Protocol):
    """Where requests are decided (:class:`agentceiling.store.audit_writer.AuditWriter`, started
    with the authorization worker)."""

    async def decide(self, body: bytes) -> bytes:
        """The answer once the decision's record is durable; raises ``BadRequestReply`` or
        ``AuditUnavailable``."""
        ...


class AuthorizationService:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    @rpc_async
    async def Authorize(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        decision_id = audit_record.decision_id()
        try:
            return await self.worker.decide(encode_request(decision_id, request, _bearer(context)))
        except BadRequestReply as exc:
            raise InvalidArgument.one(exc.field, str(exc)) from None
        except AuditUnavailable as exc:
            log.error("audit log unavailable, refusing decision %s: %s", decision_id, exc)
            return pb.AuthorizeResponse(
                allowed=False,
                code="UNAVAILABLE",
                reason=AUDIT_UNAVAILABLE_REASON,
                decision_id=decision_id,
                authorization_details="[]",
            ).SerializeToString()


def register(server: grpc.aio.Server, worker: Worker) -> list[str]:
    """Add the Authorization service to ``server``."""
    service = AuthorizationService(worker)
    # No (de)serializers: the request's bytes go to the worker as they came, its answer (a
    # serialized AuthorizeResponse) comes back as it goes out.
    handlers = {"Authorize": grpc.unary_unary_rpc_method_handler(service.Authorize)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)  # type: ignore[attr-defined]  # grpcio >= 1.62
    return [s.full_name for s in pb.DESCRIPTOR.services_by_name.values()]
