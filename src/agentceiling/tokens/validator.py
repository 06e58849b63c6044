"""Validate an agent's JWT against one OAuth resource-server profile.

Order (standards-idp §6.2, Vault pipeline §3.1 steps 2-3): size cap; compact structure; header
policy (``typ``, ``alg`` allow-list, no embedded keys, no ``crit``/``b64``/``zip``/JWE); key by
``kid``; alg/key fit; signature; then claims (``exp``, ``nbf``, ``iat`` with leeway; ``iss``;
``aud``; unique id; subject; actor; ``txn``). ``authorization_details`` is returned raw: enforcing
it against a ceiling is the policy layer's job (joserfc's verify-then-claims split, plus a third
step). Every failure is a :class:`TokenError`; nothing else escapes :meth:`TokenValidator.validate`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .compact import UnverifiedToken, decode_segment, decode_signature, split_token
from .config import TRANSACTION_TOKEN, TrustConfig, normalize_issuer
from .errors import ErrorCode, TokenError, invalid, quote
from .keys import SUPPORTED_ALGORITHMS, VerificationKey, verify_signature
from .sources import KeySource, KeySourceFactory

__all__ = ["DEFAULT_MAX_LIFETIME", "TokenValidator", "ValidatedToken"]

_MAX_KID = 256
_MAX_CACHED_HEADERS = 256
_MAX_NUMERIC_DATE = 2**40  # ~ year 36812: anything later is a "never expires" trick

DEFAULT_MAX_LIFETIME = 30 * 86_400
"""Longest accepted token lifetime, in seconds (``exp - iat``; ``exp - now`` without ``iat``):
standards-idp §6 #15, a far-off ``exp`` is a token that never expires. 30 days is the longest
access-token lifetime the common IdPs can be configured to issue (Auth0's maximum); agents' tokens
are normally minutes to hours, and ``agentceiling serve --max-token-lifetime`` tightens it."""
_MISSING: Any = object()

# RFC 9068 §4: typ must be at+jwt (media types compare case-insensitively; RFC 7515 §4.1.9: the
# "application/" prefix may be omitted). Vault 2.0.4+ also accepts "JWT" for access tokens, which
# Entra, Auth0's default profile and others send. Transaction tokens use txn+jwt.
_TYPS = {
    "access_token": frozenset({"application/at+jwt", "application/jwt"}),
    "transaction_token": frozenset({"application/txn+jwt"}),
}
# Header parameters that carry or point at keys (RFC 8725 §2.9, §3.10), compression (§3.6) or
# belong to JWE / nested JWTs: never honoured, so refuse rather than silently ignore.
_FORBIDDEN_HEADERS = ("jwk", "jku", "x5u", "x5c", "zip", "enc", "cty")


@dataclass(frozen=True, slots=True)
class ValidatedToken:
    """A token that passed every check. ``claims`` is the full verified payload."""

    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    alg: str
    kid: str | None
    issuer: str
    """``iss`` as written in the token."""
    subject: str
    """Value of the profile's ``user_claim``."""
    unique_id: str
    """Value of the profile's ``unique_id_claim`` (``jti``; Entra: ``uti``)."""
    actor_subject: str | None
    """Value at ``actor_claim`` (``act.sub``): the current actor of an on-behalf-of request."""
    audiences: tuple[str, ...]
    authorization_details: Any | None
    """Raw RFC 9396 claim, not interpreted here (None when absent, and when it is JSON ``null``:
    :attr:`has_authorization_details` tells the two apart)."""
    transaction_claim: str | None
    """``txn`` (audited as ``jwt_transaction_claim``)."""
    expires_at: int
    token_sha256: str
    """Hex SHA-256 of the raw token: correlate in audit logs without logging the token."""
    has_authorization_details: bool = False
    """Whether the token carries the ``authorization_details`` claim at all (a present claim is
    always enforced, even ``null``, which is not an array)."""


@dataclass(frozen=True, slots=True)
class _Profile:
    """A TrustConfig precompiled for the hot path."""

    allowed_algs: frozenset[str]
    issuer: str
    audiences: frozenset[str]
    typs: frozenset[str]
    leeway: int
    user_claim: str
    unique_id_claim: str
    actor_claim: str
    actor_path: tuple[str, ...]
    require_txn: bool
    keys: KeySource
    headers: dict[str, tuple[dict[str, Any], str, str | None]] = field(default_factory=dict)
    """Encoded headers that passed :func:`_check_header` for this profile -> parsed results."""


class TokenValidator:
    """Validates tokens against :class:`TrustConfig` profiles; thread-safe.

    ``key_source_factory`` maps a profile to its key source (normally a ``KeySourceRegistry``);
    it is called once per distinct profile. ``clock`` returns Unix seconds for ``exp``/``nbf``/``iat``.
    """

    _MAX_PROFILES = 4096

    def __init__(
        self,
        key_source_factory: KeySourceFactory,
        clock: Callable[[], float] = time.time,
        *,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
    ) -> None:
        if not isinstance(max_lifetime, int) or isinstance(max_lifetime, bool) or max_lifetime <= 0:
            raise ValueError("max_lifetime must be a positive number of seconds")
        self._factory = key_source_factory
        self._clock = clock
        self.max_lifetime = max_lifetime
        self._profiles: dict[str, _Profile] = {}
        self._lock = threading.Lock()

    def key_epoch(self, trust: TrustConfig) -> object:
        """The epoch of the profile's keys (see ``KeySource.epoch``): a token validated under one
        value must be validated again once it changes. Raises ``TokenError`` like ``validate``."""
        return self._profile(trust).keys.epoch

    def validate(self, token: str | UnverifiedToken, trust: TrustConfig) -> ValidatedToken:
        """Validate ``token`` (its text, or what :func:`peek` made of it) against ``trust``."""
        try:
            return self._validate(token, trust)
        except TokenError:
            raise
        except Exception as exc:  # a bug must refuse the token, never leak another exception type
            raise TokenError(ErrorCode.TOKEN_INVALID, "token could not be validated") from exc

    # --- profile compilation -------------------------------------------------------------------

    def _profile(self, trust: TrustConfig) -> _Profile:
        key = trust.cache_key
        profile = self._profiles.get(key)
        if profile is not None:
            return profile
        try:
            source = self._factory(trust)
        except TokenError:
            raise
        except Exception as exc:
            raise TokenError(ErrorCode.UNAVAILABLE, f"key source unavailable: {exc}") from exc
        if trust.supported_algorithms:
            allowed = frozenset(trust.supported_algorithms) & SUPPORTED_ALGORITHMS
        else:
            allowed = SUPPORTED_ALGORITHMS
        profile = _Profile(
            allowed_algs=allowed,
            issuer=normalize_issuer(trust.issuer),
            audiences=frozenset(trust.audiences),
            typs=_TYPS[trust.jwt_type],
            leeway=trust.clock_skew_leeway,
            user_claim=trust.user_claim,
            unique_id_claim=trust.unique_id_claim,
            actor_claim=trust.actor_claim,
            actor_path=tuple(trust.actor_claim.split(".")) if trust.actor_claim else (),
            require_txn=trust.jwt_type == TRANSACTION_TOKEN,
            keys=source,
        )
        with self._lock:
            if len(self._profiles) >= self._MAX_PROFILES:
                self._profiles.clear()
            self._profiles[key] = profile
        return profile

    # --- the pipeline --------------------------------------------------------------------------

    def _validate(self, token: str | UnverifiedToken, trust: TrustConfig) -> ValidatedToken:
        claims: dict[str, Any] | None = None
        if isinstance(token, UnverifiedToken):
            h64, p64, s64, claims = token.h64, token.p64, token.s64, token.payload
            token = token.text
        else:
            h64, p64, s64 = split_token(token)
        profile = self._profile(trust)
        # Tokens from one IdP share a handful of headers: remember the ones that passed the checks.
        checked = profile.headers.get(h64)
        if checked is None:
            header = decode_segment(h64, "header")
            alg, kid = _check_header(header, profile)
            if len(profile.headers) >= _MAX_CACHED_HEADERS:
                profile.headers.clear()
            profile.headers[h64] = (header, alg, kid)
        else:
            header, alg, kid = checked

        candidates = profile.keys.get_keys(kid)
        keys = _fitting_keys(candidates, alg, kid)
        signature = decode_signature(s64)
        signing_input = token[: len(h64) + 1 + len(p64)].encode("ascii")
        # Several keys may share a kid (RFC 7517 only says kids SHOULD differ): any of them may sign.
        if not any(verify_signature(key, alg, signing_input, signature) for key in keys):
            raise invalid("signature verification failed")

        if claims is None:
            claims = decode_segment(p64, "payload")
        return _check_claims(claims, header, alg, kid, profile, self._clock(), token, self.max_lifetime)


def _check_header(header: Mapping[str, Any], profile: _Profile) -> tuple[str, str | None]:
    typ = header.get("typ", _MISSING)
    if typ is _MISSING:
        raise invalid('header "typ" is required')
    if not isinstance(typ, str):
        raise invalid('header "typ" must be a string')
    media = typ.lower()
    if "/" not in media:
        media = "application/" + media
    if media not in profile.typs:
        raise invalid(f"typ {quote(typ)} is not allowed")

    # RFC 8725 §3.1 / 8725bis: exact allow-list membership; "none" and HS* are never in it.
    alg = header.get("alg", _MISSING)
    if alg is _MISSING:
        raise invalid('header "alg" is required')
    if not isinstance(alg, str):
        raise invalid('header "alg" must be a string')
    if alg not in profile.allowed_algs:
        raise invalid(f"alg {quote(alg)} is not allowed")

    for name in _FORBIDDEN_HEADERS:
        if name in header:
            raise invalid(f"header {quote(name)} is not allowed")
    # RFC 7515 §4.1.11: a crit extension we do not understand makes the JWS invalid; we
    # understand none.
    if "crit" in header:
        crit = header["crit"]
        if not isinstance(crit, list) or not crit or not all(isinstance(c, str) for c in crit):
            raise invalid('header "crit" is malformed')
        raise invalid(f"crit extension {quote(crit[0])} is not supported")
    if "b64" in header and header["b64"] is not True:
        raise invalid("unencoded payload (b64=false) is not supported")

    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not 0 < len(kid) <= _MAX_KID):
        raise invalid(f'header "kid" must be a non-empty string of at most {_MAX_KID} characters')
    return alg, kid


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _fitting_keys(candidates: tuple[VerificationKey, ...], alg: str, kid: str | None) -> list[VerificationKey]:
    fitting = [key for key in candidates if alg in key.algorithms]
    if fitting:
        return fitting
    first = candidates[0]
    name = f"key {quote(kid)}" if kid is not None else "the key"
    raise invalid(f"alg {quote(alg)} does not fit {name} ({first.description})")


def _numeric_date(claims: Mapping[str, Any], name: str) -> int | None:
    value = claims.get(name, _MISSING)
    if value is _MISSING:
        return None
    # RFC 7519 NumericDate is a JSON number; we accept integers only. Strings ("9999999999"),
    # floats, booleans (bool is an int subclass) and absurd values are refused (standards-idp §6).
    if type(value) is not int or not 0 <= value < _MAX_NUMERIC_DATE:
        raise invalid(f"claim {quote(name)} must be an integer NumericDate")
    return value


def _required_string(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name, _MISSING)
    if value is _MISSING:
        raise invalid(f"claim {quote(name)} is required")
    if not isinstance(value, str) or not value:
        raise invalid(f"claim {quote(name)} must be a non-empty string")
    return value


def _audiences(claims: Mapping[str, Any]) -> tuple[str, ...] | None:
    aud = claims.get("aud", _MISSING)
    if aud is _MISSING:
        return None
    if isinstance(aud, str) and aud:
        return (aud,)
    if isinstance(aud, list) and aud and all(isinstance(a, str) and a for a in aud):
        return tuple(aud)
    raise invalid('claim "aud" must be a string or an array of strings')


def _actor(claims: Mapping[str, Any], profile: _Profile) -> str | None:
    if not profile.actor_path:
        return None
    node: Any = claims
    for depth, part in enumerate(profile.actor_path):
        if not isinstance(node, dict):
            raise invalid(f"claim {quote('.'.join(profile.actor_path[:depth]))} must be an object")
        node = node.get(part, _MISSING)
        if node is _MISSING:
            if depth == 0:
                return None  # no delegation: a direct call
            # Delegation named without its actor ({"act": {}}): fail closed rather than take the
            # call as a direct one (vault-semantics §3.1 step 5).
            container = quote(profile.actor_path[0])
            raise invalid(f"claim {quote(profile.actor_claim)} is required when {container} is present")
    if not isinstance(node, str) or not node:
        raise invalid(f"claim {quote(profile.actor_claim)} must be a non-empty string")
    return node


def _check_claims(
    claims: dict[str, Any],
    header: dict[str, Any],
    alg: str,
    kid: str | None,
    profile: _Profile,
    now: float,
    token: str,
    max_lifetime: int,
) -> ValidatedToken:
    exp = _numeric_date(claims, "exp")
    nbf = _numeric_date(claims, "nbf")
    iat = _numeric_date(claims, "iat")
    if exp is None:
        raise invalid('claim "exp" is required')
    leeway = profile.leeway
    if now >= exp + leeway:
        raise TokenError(ErrorCode.TOKEN_EXPIRED, "token expired")
    if nbf is not None and nbf > now + leeway:
        raise invalid("token is not yet valid (nbf)")
    if iat is not None and iat > now + leeway:
        raise invalid('claim "iat" is in the future')
    # standards-idp §6 #15: a far-off exp is a token that never expires (and a cache entry that
    # never leaves). Issued-at is the issuer's word; without it, count from now (with the leeway).
    if iat is not None:
        if exp - iat > max_lifetime:
            raise invalid(f"token lifetime (exp - iat) exceeds the maximum of {_duration(max_lifetime)}")
    elif exp - now > max_lifetime + leeway:
        raise invalid(f'token expires later than {_duration(max_lifetime)} from now (and has no "iat")')

    # RFC 9068 §4 / Vault: iss must match the profile's issuer (after Vault's issuer_id
    # normalisation: case and trailing slash).
    iss = _required_string(claims, "iss")
    if normalize_issuer(iss) != profile.issuer:
        raise invalid('claim "iss" does not match the profile issuer')

    audiences = _audiences(claims)
    if profile.audiences:
        if audiences is None:
            raise invalid('claim "aud" is required')
        if profile.audiences.isdisjoint(audiences):
            raise invalid('claim "aud" does not contain an accepted audience')

    unique_id = _required_string(claims, profile.unique_id_claim)
    subject = _required_string(claims, profile.user_claim)
    actor = _actor(claims, profile)

    txn = claims.get("txn", _MISSING)
    if txn is _MISSING:
        if profile.require_txn:
            raise invalid('claim "txn" is required')
        txn = None
    elif not isinstance(txn, str) or not txn:
        raise invalid('claim "txn" must be a non-empty string')

    return ValidatedToken(
        header=dict(header),
        claims=claims,
        alg=alg,
        kid=kid,
        issuer=iss,
        subject=subject,
        unique_id=unique_id,
        actor_subject=actor,
        audiences=audiences or (),
        authorization_details=claims.get("authorization_details"),
        transaction_claim=txn,
        expires_at=exp,
        token_sha256=hashlib.sha256(token.encode("ascii")).hexdigest(),
        has_authorization_details="authorization_details" in claims,
    )
