"""Server interceptors: the control plane's admin bearer token."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from agentceiling.api.errors import DB_UNAVAILABLE, database_unavailable

log = logging.getLogger(__name__)

_DENY_MESSAGE = "a valid admin token is required: send `authorization: Bearer <token>` metadata"


def _deny(request: Any, context: grpc.ServicerContext) -> Any:
    context.abort(grpc.StatusCode.UNAUTHENTICATED, _DENY_MESSAGE)


def _failing(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(handler)


class AdminTokenInterceptor(grpc.ServerInterceptor):
    """Every method under ``protected_prefix`` needs ``authorization: Bearer <admin token>``.
    Health checking and reflection stay open so that probes work."""

    def __init__(self, check: Callable[[str], bool], protected_prefix: str = "/agentceiling.v1.") -> None:
        self._check = check
        self._prefix = protected_prefix
        self._deny_handler = grpc.unary_unary_rpc_method_handler(_deny)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        if not handler_call_details.method.startswith(self._prefix):
            return continuation(handler_call_details)
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, token = value.partition(" ")
                if scheme.lower() != "bearer" or not token:
                    continue
                try:
                    ok = self._check(token.strip())
                except Exception as exc:  # a token not in the cache is looked up in the database
                    # An exception escaping an interceptor reaches the client as UNKNOWN "Error in
                    # service handler!": answer with a status that says what happened instead.
                    incident = uuid.uuid4().hex[:12]
                    if database_unavailable(exc):
                        log.warning("admin token check: database unavailable (incident %s): %s", incident, exc)
                        return _failing(grpc.StatusCode.UNAVAILABLE, f"{DB_UNAVAILABLE} (incident {incident})")
                    log.exception("admin token check failed (incident %s)", incident)
                    return _failing(
                        grpc.StatusCode.INTERNAL, f"internal error (incident {incident}); see the server log"
                    )
                # One bearer token per call: a call carrying many cannot make the server look each
                # one up (an unknown token costs a database read).
                return continuation(handler_call_details) if ok else self._deny_handler
        return self._deny_handler
