"""Domain errors -> gRPC statuses. INVALID_ARGUMENT carries google.rpc.BadRequest field violations."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from agentceiling.domain.errors import DomainError, InvalidArgument

log = logging.getLogger(__name__)

_CODES = {
    "INVALID_ARGUMENT": code_pb2.INVALID_ARGUMENT,
    "NOT_FOUND": code_pb2.NOT_FOUND,
    "ALREADY_EXISTS": code_pb2.ALREADY_EXISTS,
    "FAILED_PRECONDITION": code_pb2.FAILED_PRECONDITION,
    "ABORTED": code_pb2.ABORTED,
    "UNAVAILABLE": code_pb2.UNAVAILABLE,
}

F = TypeVar("F", bound=Callable[..., Any])


def to_status(exc: DomainError) -> grpc.Status:
    status = status_pb2.Status(code=_CODES.get(exc.code, code_pb2.INTERNAL), message=exc.message)
    if isinstance(exc, InvalidArgument):
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in exc.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return rpc_status.to_status(status)


def rpc(fn: F) -> F:
    """Servicer method wrapper: domain errors become statuses; anything else is logged with its
    traceback on the server and reaches the client as INTERNAL with an incident id only."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except DomainError as exc:
            context.abort_with_status(to_status(exc))
        except Exception:  # an RPC never answers with a traceback
            incident = uuid.uuid4().hex[:12]
            log.exception("internal error in %s (incident %s)", fn.__qualname__, incident)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error (incident {incident}); see the server log")

    return wrapper  # type: ignore[return-value]
