"""The control plane's admin bearer token, checked in each control-plane handler (health checking
and reflection stay open, so that probes work)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import grpc

from agentceiling.api.errors import DB_UNAVAILABLE, database_unavailable

log = logging.getLogger(__name__)

DENY_MESSAGE = "a valid admin token is required: send `authorization: Bearer <token>` metadata"


class AdminAuth:
    """``authenticate(context)`` aborts the call unless it carries ``authorization: Bearer <admin
    token>``. It runs in the handler's worker thread: a token that is not cached is looked up in the
    database, which must not block the server's event loop."""

    def __init__(self, check: Callable[[str], bool]) -> None:
        self._check = check

    def authenticate(self, context: grpc.ServicerContext) -> None:
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, token = value.partition(" ")
                if scheme.lower() != "bearer" or not token:
                    continue
                try:
                    ok = self._check(token.strip())
                except Exception as exc:  # a token not in the cache is looked up in the database
                    incident = uuid.uuid4().hex[:12]
                    if database_unavailable(exc):
                        log.warning("admin token check: database unavailable (incident %s): %s", incident, exc)
                        context.abort(grpc.StatusCode.UNAVAILABLE, f"{DB_UNAVAILABLE} (incident {incident})")
                    log.exception("admin token check failed (incident %s)", incident)
                    context.abort(grpc.StatusCode.INTERNAL, f"internal error (incident {incident}); see the server log")
                # One bearer token per call: a call carrying many cannot make the server look each
                # one up (an unknown token costs a database read).
                if ok:
                    return
                break
        context.abort(grpc.StatusCode.UNAUTHENTICATED, DENY_MESSAGE)
