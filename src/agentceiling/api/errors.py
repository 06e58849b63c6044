"""Domain errors -> gRPC statuses. INVALID_ARGUMENT carries google.rpc.BadRequest field violations.

A status travels in HTTP/2 trailers: ``grpc-message`` (percent-encoded) and
``grpc-status-details-bin`` (the whole google.rpc.Status, base64). gRPC clients refuse trailers past
their metadata limit (8 KiB soft, 16 KiB hard) and report RESOURCE_EXHAUSTED instead of the real
error, so every status is bounded here: the message, each violation and the details as a whole."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import sqlalchemy as sa
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from agentceiling.domain.errors import DomainError, FieldViolation, InvalidArgument, Unavailable

log = logging.getLogger(__name__)

_CODES = {
    "INVALID_ARGUMENT": code_pb2.INVALID_ARGUMENT,
    "NOT_FOUND": code_pb2.NOT_FOUND,
    "ALREADY_EXISTS": code_pb2.ALREADY_EXISTS,
    "FAILED_PRECONDITION": code_pb2.FAILED_PRECONDITION,
    "ABORTED": code_pb2.ABORTED,
    "UNAVAILABLE": code_pb2.UNAVAILABLE,
}

# Budgets (bytes) that keep both trailers together well under the clients' soft limit.
MESSAGE_BUDGET = 1024  # grpc-message, as percent-encoded on the wire
DETAILS_BUDGET = 1536  # the serialized BadRequest inside grpc-status-details-bin
FIELD_MAX = 200  # characters of one violation's field path
DESCRIPTION_MAX = 300  # characters of one violation's description
ELLIPSIS = "…"

DB_UNAVAILABLE = "the database is unavailable; retry later"

AF = TypeVar("AF", bound=Callable[..., Any])
F = TypeVar("F", bound=Callable[..., Any])


def _wire_size(text: str) -> int:
    """Bytes of ``text`` in a grpc-message header: printable ASCII as is, other bytes as %XX."""
    return sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in text.encode())


def bound_message(text: str, budget: int = MESSAGE_BUDGET) -> str:
    """``text`` cut (at a character boundary, marked with "…") to fit ``budget`` wire bytes."""
    if _wire_size(text) <= budget:
        return text
    room = budget - _wire_size(ELLIPSIS)
    used = 0
    for i, c in enumerate(text):
        used += _wire_size(c)
        if used > room:
            return text[:i] + ELLIPSIS
    return text


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + ELLIPSIS


def _bad_request(violations: list[FieldViolation]) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description) for v in violations
        ]
    )


def _size(v: FieldViolation) -> int:
    """What ``v`` adds to a serialized BadRequest (its only field is the repeated violation)."""
    return _bad_request([v]).ByteSize()


def bound_violations(violations: tuple[FieldViolation, ...]) -> list[FieldViolation]:
    """The violations, trimmed to fit DETAILS_BUDGET. Every field path is kept while they fit, with
    shorter descriptions if need be; past that the first ones are kept and a last violation (on
    the first field left out) says how many more there were."""
    kept = [FieldViolation(_cut(v.field, FIELD_MAX), _cut(v.description, DESCRIPTION_MAX)) for v in violations]
    for limit in (DESCRIPTION_MAX, 120, 60):
        kept = [FieldViolation(v.field, _cut(v.description, limit)) for v in kept]
        if sum(_size(v) for v in kept) <= DETAILS_BUDGET:
            return kept
    out: list[FieldViolation] = []
    used = 0
    for i, v in enumerate(kept):
        rest = len(kept) - i
        note = FieldViolation(v.field, f"… and {rest} more violation{'s' if rest > 1 else ''} not shown")
        last = rest == 1 and used + _size(v) <= DETAILS_BUDGET
        if not last and used + _size(v) + _size(note) > DETAILS_BUDGET:
            return [*out, note]
        out.append(v)
        used += _size(v)
    return out


def to_status(exc: DomainError) -> grpc.Status:
    message = exc.message
    details: list[any_pb2.Any] = []
    if isinstance(exc, InvalidArgument):
        kept = bound_violations(exc.violations)
        if kept != list(exc.violations):
            message = "; ".join(f"{v.field}: {v.description}" for v in kept)
        packed = any_pb2.Any()
        packed.Pack(_bad_request(kept))
        details.append(packed)
    status = status_pb2.Status(
        code=_CODES.get(exc.code, code_pb2.INTERNAL), message=bound_message(message), details=details
    )
    return rpc_status.to_status(status)


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached or cannot serve right now (as opposed to
    refusing a statement): a lost or refused connection, a server shutting down, the pool
    exhausted, SQLite locked or its file unusable."""
    if isinstance(exc, sa.exc.TimeoutError | sa.exc.InterfaceError):  # pool exhausted; driver-level
        return True
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, sa.exc.OperationalError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is None:  # no server answer: connection refused, DNS, timeout, SQLite I/O
        return True
    # 08: connection exception; 53: insufficient resources; 57P01-57P05: shutdown, cannot connect
    # now, idle timeouts; 58: system error (I/O); 55P03: a lock not granted within the lock
    # timeout (store/db.py: something holds it stuck); 25P03: our session ended by the server for
    # idling in a transaction.
    return sqlstate[:2] in ("08", "53", "58") or sqlstate in (
        "57P01",
        "57P02",
        "57P03",
        "57P04",
        "57P05",
        "55P03",
        "25P03",
    )


def abort_with_status(context: grpc.ServicerContext, status: grpc.Status) -> None:
    """``context.abort_with_status`` where there is one; a synchronous handler of a grpc.aio server
    has none, but its ``abort`` takes the status's trailing metadata (the rich details)."""
    if hasattr(context, "abort_with_status"):
        context.abort_with_status(status)
    context.abort(status.code, status.details, status.trailing_metadata)  # type: ignore[call-arg]


def rpc(fn: F) -> F:
    """Servicer method wrapper: domain errors become statuses; an unreachable database becomes
    UNAVAILABLE; anything else is logged with its traceback on the server and reaches the client as
    INTERNAL with an incident id only."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except DomainError as exc:
            abort_with_status(context, to_status(exc))
        except Exception as exc:  # an RPC never answers with a traceback
            incident = uuid.uuid4().hex[:12]
            if database_unavailable(exc):
                log.warning("database unavailable in %s (incident %s): %s", fn.__qualname__, incident, exc)
                abort_with_status(context, to_status(Unavailable(f"{DB_UNAVAILABLE} (incident {incident})")))
            log.exception("internal error in %s (incident %s)", fn.__qualname__, incident)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error (incident {incident}); see the server log")

    return wrapper  # type: ignore[return-value]


class Undecodable:
    """Stands for a request protobuf could not decode (invalid UTF-8 in a string field, a truncated
    or garbled message, nesting deeper than protobuf's 100 levels). gRPC would answer INTERNAL
    "Exception deserializing request!" and log a traceback; the handlers answer INVALID_ARGUMENT."""


UNDECODABLE = Undecodable()


def tolerant_decoder(message_cls: Any) -> Callable[[bytes], Any]:
    """A request deserializer that returns :data:`UNDECODABLE` instead of raising."""

    def decode(data: bytes) -> Any:
        try:
            return message_cls.FromString(data)
        except (DecodeError, RecursionError):
            return UNDECODABLE

    return decode


def rpc_async(fn: AF) -> AF:
    """:func:`rpc` for a coroutine servicer method of a grpc.aio server."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: Any) -> Any:
        try:
            return await fn(self, request, context)
        except DomainError as exc:
            status = to_status(exc)
            await context.abort(status.code, status.details, status.trailing_metadata)
        except Exception as exc:  # an RPC never answers with a traceback
            if isinstance(exc, grpc.aio.AbortError):
                raise
            incident = uuid.uuid4().hex[:12]
            log.exception("internal error in %s (incident %s)", fn.__qualname__, incident)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error (incident {incident}); see the server log")

    return wrapper  # type: ignore[return-value]
