"""Where verification keys come from: static PEMs or a JWKS URI, handed out per profile."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from .config import TrustConfig
from .errors import invalid, quote
from .jwks import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_BYTES,
    DEFAULT_MIN_REFRESH_INTERVAL,
    DEFAULT_STALE_LIMIT,
    DEFAULT_TIMEOUT,
    JwksClient,
)
from .keys import VerificationKey, load_pem_key

__all__ = ["KeySource", "KeySourceFactory", "KeySourceRegistry", "StaticKeySource"]


@runtime_checkable
class KeySource(Protocol):
    def get_keys(self, kid: str | None) -> tuple[VerificationKey, ...]:
        """Non-empty candidate keys for ``kid`` (``None``: the token has no kid), or raise
        ``TokenError`` (``TOKEN_INVALID`` for an unknown kid, ``UNAVAILABLE`` if keys cannot be had)."""
        ...

    @property
    def epoch(self) -> object:
        """A value that changes whenever the keys change (a token verified under one epoch must be
        verified again under another)."""
        ...


KeySourceFactory = Callable[[TrustConfig], KeySource]


class StaticKeySource:
    """Keys from a profile's ``public_keys`` (``use_jwks=false``): ``kid`` matches ``key_id``.

    Entries that cannot be used (bad PEM, private key, RSA < 2048 bits, unsupported curve) are kept
    as reasons so a token naming them gets a precise ``TOKEN_INVALID`` instead of "not found".
    """

    def __init__(self, public_keys: Iterable[tuple[str, str]]) -> None:
        by_kid: dict[str, list[VerificationKey]] = {}
        unusable: dict[str, str] = {}
        count = 0
        for key_id, pem in public_keys:
            count += 1
            try:
                key = load_pem_key(pem, key_id)
            except ValueError as exc:
                unusable.setdefault(key_id, str(exc))
                continue
            by_kid.setdefault(key_id, []).append(key)
        self._by_kid = {k: tuple(v) for k, v in by_kid.items()}
        self._unusable = {k: v for k, v in unusable.items() if k not in by_kid}
        self._count = count

    #: Static keys change only with the profile (and so with its trust configuration).
    epoch: object = 0

    def get_keys(self, kid: str | None) -> tuple[VerificationKey, ...]:
        if kid is None:
            if self._count == 1:
                if self._by_kid:
                    return next(iter(self._by_kid.values()))
                only, reason = next(iter(self._unusable.items()))
                raise invalid(f"key {quote(only)} is unusable: {reason}")
            raise invalid(f'header "kid" is required: the profile has {self._count} keys')
        found = self._by_kid.get(kid)
        if found:
            return found
        why = self._unusable.get(kid)
        if why is not None:
            raise invalid(f"key {quote(kid)} is unusable: {why}")
        raise invalid(f"kid {quote(kid)} not found")


class KeySourceRegistry:
    """Hands out key sources: one :class:`JwksClient` per ``(jwks_uri, jwks_ca_pem)`` shared by all
    profiles naming it, and one :class:`StaticKeySource` per ``TrustConfig.cache_key``.

    Callable, so it can be passed directly as ``TokenValidator(key_source_factory=registry)``.
    """

    _MAX_STATIC = 4096

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        min_refresh_interval: float = DEFAULT_MIN_REFRESH_INTERVAL,
        max_age: float = DEFAULT_MAX_AGE,
        stale_limit: float = DEFAULT_STALE_LIMIT,
    ) -> None:
        self._clock = clock
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._min_refresh_interval = min_refresh_interval
        self._max_age = max_age
        self._stale_limit = stale_limit
        self._lock = threading.Lock()
        self._jwks: dict[tuple[str, str | None], JwksClient] = {}
        self._static: dict[str, StaticKeySource] = {}

    def __call__(self, trust: TrustConfig) -> KeySource:
        return self.source_for(trust)

    def source_for(self, trust: TrustConfig) -> KeySource:
        if trust.use_jwks:
            return self.jwks_client(trust.jwks_uri, trust.jwks_ca_pem)
        key = trust.cache_key
        with self._lock:
            source = self._static.get(key)
            if source is None:
                if len(self._static) >= self._MAX_STATIC:
                    self._static.clear()
                source = self._static[key] = StaticKeySource(trust.public_keys)
            return source

    def jwks_client(self, jwks_uri: str, ca_pem: str | None = None) -> JwksClient:
        """The shared client for this URI and CA (created on first use; raises ``ValueError``
        for a URI that is not absolute http(s))."""
        key = (jwks_uri, ca_pem or None)
        with self._lock:
            client = self._jwks.get(key)
            if client is None:
                client = self._jwks[key] = JwksClient(
                    jwks_uri,
                    ca_pem=ca_pem or None,
                    timeout=self._timeout,
                    max_bytes=self._max_bytes,
                    min_refresh_interval=self._min_refresh_interval,
                    max_age=self._max_age,
                    stale_limit=self._stale_limit,
                    clock=self._clock,
                )
            return client
