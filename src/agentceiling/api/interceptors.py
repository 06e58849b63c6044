"""Server interceptors: the control plane's admin bearer token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

_DENY_MESSAGE = "a valid admin token is required: send `authorization: Bearer <token>` metadata"


def _deny(request: Any, context: grpc.ServicerContext) -> Any:
    context.abort(grpc.StatusCode.UNAUTHENTICATED, _DENY_MESSAGE)


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
                if scheme.lower() == "bearer" and token and self._check(token.strip()):
                    return continuation(handler_call_details)
        return self._deny_handler
