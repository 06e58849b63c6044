"""agentceiling.tokens: validate agents' IdP-issued JWTs against an OAuth resource-server profile.

Pure library code (no other agentceiling imports). Typical use::

    registry = KeySourceRegistry()
    validator = TokenValidator(registry)
    unverified = peek(token)                        # raises TokenError(code, reason)
    trust = profiles[normalize_issuer(unverified.issuer)]
    validated = validator.validate(unverified, trust)
"""

from __future__ import annotations

from .compact import MAX_TOKEN_BYTES, UnverifiedToken, peek, peek_issuer
from .config import ACCESS_TOKEN, TRANSACTION_TOKEN, JwtType, TrustConfig, normalize_issuer
from .errors import TOKEN_EXPIRED, TOKEN_INVALID, UNAVAILABLE, ErrorCode, TokenError
from .jwks import JwksClient
from .keys import SUPPORTED_ALGORITHMS, VerificationKey, key_from_jwk, load_pem_key
from .sources import KeySource, KeySourceFactory, KeySourceRegistry, StaticKeySource
from .validator import TokenValidator, ValidatedToken

__all__ = [
    "ACCESS_TOKEN",
    "MAX_TOKEN_BYTES",
    "SUPPORTED_ALGORITHMS",
    "TOKEN_EXPIRED",
    "TOKEN_INVALID",
    "TRANSACTION_TOKEN",
    "UNAVAILABLE",
    "ErrorCode",
    "JwksClient",
    "JwtType",
    "KeySource",
    "KeySourceFactory",
    "KeySourceRegistry",
    "StaticKeySource",
    "TokenError",
    "TokenValidator",
    "TrustConfig",
    "UnverifiedToken",
    "ValidatedToken",
    "VerificationKey",
    "key_from_jwk",
    "load_pem_key",
    "normalize_issuer",
    "peek",
    "peek_issuer",
]
