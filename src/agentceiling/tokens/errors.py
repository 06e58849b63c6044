"""Errors raised by token validation, with stable machine codes.

Every failure of :meth:`TokenValidator.validate` is a :class:`TokenError`; nothing else escapes.
``code`` is one of three stable strings that the API layer maps 1:1 onto a gRPC status and an audit
field; ``reason`` is a short, stable, human-readable explanation (it may quote header values such as
``kid`` or ``alg``, JSON-escaped and truncated, but never the raw token).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Final

__all__ = ["TOKEN_EXPIRED", "TOKEN_INVALID", "UNAVAILABLE", "ErrorCode", "TokenError"]


class ErrorCode(StrEnum):
    """Stable error codes (RFC 6750 §3.1 ``invalid_token`` splits into the first two)."""

    TOKEN_INVALID = "TOKEN_INVALID"
    """The token is malformed, forged, for someone else, or violates the profile."""
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    """The token was valid but ``exp`` (plus the profile's clock-skew leeway) has passed."""
    UNAVAILABLE = "UNAVAILABLE"
    """Signing keys cannot be obtained (JWKS unreachable and nothing usable cached): fail closed."""


TOKEN_INVALID: Final = ErrorCode.TOKEN_INVALID
TOKEN_EXPIRED: Final = ErrorCode.TOKEN_EXPIRED
UNAVAILABLE: Final = ErrorCode.UNAVAILABLE


class TokenError(Exception):
    """A token was refused. ``code`` is an :class:`ErrorCode`, ``reason`` a stable explanation."""

    __slots__ = ("code", "reason")

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code: ErrorCode = code
        self.reason: str = reason

    def __repr__(self) -> str:
        return f"TokenError({self.code.value!r}, {self.reason!r})"


def invalid(reason: str) -> TokenError:
    return TokenError(ErrorCode.TOKEN_INVALID, reason)


def quote(value: object, limit: int = 64) -> str:
    """JSON-quote an attacker-controlled value for a reason string (escaped, bounded length)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return json.dumps(text)
