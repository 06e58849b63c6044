"""The OAuth resource-server profile as the token layer sees it.

Mirrors Vault's ``sys/config/oauth-resource-server`` parameters (issuer_id, use_jwks, jwks_uri,
jwks_ca_pem, public_keys, audiences, supported_algorithms, jwt_type, clock_skew_leeway, user_claim,
unique_id_claim, actor_claim). The control plane owns validation of stored profiles; here we only
refuse values that would make validation meaningless, so a bad profile fails loudly at construction.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

__all__ = ["ACCESS_TOKEN", "TRANSACTION_TOKEN", "JwtType", "TrustConfig", "normalize_issuer"]

JwtType = Literal["access_token", "transaction_token"]
ACCESS_TOKEN: JwtType = "access_token"
TRANSACTION_TOKEN: JwtType = "transaction_token"


def normalize_issuer(issuer: str) -> str:
    """Vault's ``issuer_id`` normalisation: lower-cased, trailing ``/`` trimmed.

    Used both to route a token to a profile and to compare the verified ``iss`` with the profile's
    issuer, so ``https://Tenant.auth0.com/`` and ``https://tenant.auth0.com`` are the same issuer.
    """
    return issuer.lower().rstrip("/")


@dataclass(frozen=True)
class TrustConfig:
    """What a token must satisfy to be accepted for one issuer profile (immutable, hashable).

    ``supported_algorithms`` empty means "any algorithm the key supports" among RS/PS/ES 256/384/512
    and EdDSA; HMAC and ``none`` are never accepted whatever is listed. ``public_keys`` holds
    ``(key_id, pem)`` pairs (a SubjectPublicKeyInfo public key or an X.509 certificate) and is used
    when ``use_jwks`` is false. ``actor_claim`` is a dotted path (``act.sub``); empty disables
    delegation detection.
    """

    issuer: str
    use_jwks: bool = True
    jwks_uri: str = ""
    jwks_ca_pem: str | None = None
    public_keys: tuple[tuple[str, str], ...] = ()
    audiences: tuple[str, ...] = ()
    supported_algorithms: tuple[str, ...] = ()
    jwt_type: JwtType = ACCESS_TOKEN
    clock_skew_leeway: int = 0
    user_claim: str = "sub"
    unique_id_claim: str = "jti"
    actor_claim: str = "act.sub"

    def __post_init__(self) -> None:
        # Accept lists from callers but store tuples so the config stays hashable.
        object.__setattr__(self, "public_keys", tuple((str(k), str(p)) for k, p in self.public_keys))
        object.__setattr__(self, "audiences", tuple(self.audiences))
        object.__setattr__(self, "supported_algorithms", tuple(self.supported_algorithms))
        if self.jwks_ca_pem == "":
            object.__setattr__(self, "jwks_ca_pem", None)
        if not isinstance(self.issuer, str) or not self.issuer:
            raise ValueError("issuer is required")
        if self.jwt_type not in (ACCESS_TOKEN, TRANSACTION_TOKEN):
            raise ValueError(f"jwt_type must be {ACCESS_TOKEN!r} or {TRANSACTION_TOKEN!r}")
        if type(self.clock_skew_leeway) is not int or self.clock_skew_leeway < 0:
            raise ValueError("clock_skew_leeway must be a non-negative integer")
        if self.use_jwks and not self.jwks_uri:
            raise ValueError("jwks_uri is required when use_jwks=true")
        if not self.use_jwks and not self.public_keys:
            raise ValueError("public_keys is required when use_jwks=false")
        if not self.user_claim or not self.unique_id_claim:
            raise ValueError("user_claim and unique_id_claim must be non-empty")

    @cached_property
    def cache_key(self) -> str:
        """A stable digest of every field: equal configs share it across processes and restarts."""
        doc = {
            "issuer": self.issuer,
            "use_jwks": self.use_jwks,
            "jwks_uri": self.jwks_uri,
            "jwks_ca_pem": self.jwks_ca_pem,
            "public_keys": [list(k) for k in self.public_keys],
            "audiences": list(self.audiences),
            "supported_algorithms": list(self.supported_algorithms),
            "jwt_type": self.jwt_type,
            "clock_skew_leeway": self.clock_skew_leeway,
            "user_claim": self.user_claim,
            "unique_id_claim": self.unique_id_claim,
            "actor_claim": self.actor_claim,
        }
        canon = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canon.encode()).hexdigest()
