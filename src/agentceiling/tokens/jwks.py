"""Our own JWKS client: bounded fetches, per-kid key cache, rate-limited single-flight refresh.

Why not ``PyJWKClient`` (standards-idp §0.5, §6 rows 26-28): it holds its lock during a 30 s default
fetch, has no size cap, no serve-stale after its lifespan, and leaks ``json.JSONDecodeError``. Here:

* TLS is verified; ``ca_pem`` (the profile's ``jwks_ca_pem``) is then the *only* trust anchor,
  otherwise the system CAs are used. Plain ``http`` works (the control plane warns about it).
  Redirects are not followed and proxy environment variables are not consulted.
* Each fetch is bounded: ``timeout`` seconds in total (connect + read, default 3 s) and
  ``max_bytes`` of body (default 256 KiB). Non-200, non-JSON, or no ``keys`` array -> fetch error;
  individual unusable keys are skipped (RFC 7517 §5); a set with no usable key is a fetch error.
* Parsed keys are cached per ``kid`` (``cryptography`` key objects): a repeated token parses nothing.
* Unknown ``kid``: one refresh, rate-limited to one fetch attempt per ``min_refresh_interval``
  (default 10 s; the very first fetch is immediate) and single-flight (concurrent callers wait for
  the fetch in flight), so a flood of bogus kids cannot hammer the IdP ("Unknown key IDs trigger a
  rate-limited refresh to prevent DoS attacks" -- Vault docs). Still unknown -> ``TOKEN_INVALID``.
* Keys older than ``max_age`` (default 300 s) are refreshed in the background on use while the
  current keys keep serving. If refreshes fail, the last-known-good keys are served until
  ``stale_limit`` (default 24 h) after the last *successful* fetch; after that, or if nothing was
  ever fetched, lookups raise ``UNAVAILABLE``. Never fail open.
* The clock (used for ages and the rate limit) is injectable; network timeouts use real time.
  Thread-safe: readers take an immutable snapshot; only fetch bookkeeping takes the lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentceiling.domain.blocking import check_may_block

from .errors import ErrorCode, TokenError, invalid, quote
from .keys import VerificationKey, key_from_jwk

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MIN_REFRESH_INTERVAL",
    "DEFAULT_STALE_LIMIT",
    "DEFAULT_TIMEOUT",
    "JwksClient",
    "KeySet",
]

DEFAULT_TIMEOUT = 3.0
DEFAULT_MAX_BYTES = 256 * 1024
DEFAULT_MIN_REFRESH_INTERVAL = 10.0
DEFAULT_MAX_AGE = 300.0
DEFAULT_STALE_LIMIT = 24 * 3600.0

_USER_AGENT = "agentceiling-jwks/1"
_WAIT_GRACE = 0.25


class _FetchError(Exception):
    """A JWKS fetch failed; the message is safe to surface (no response bodies)."""


@dataclass(frozen=True, slots=True)
class KeySet:
    """An immutable snapshot of one successful fetch."""

    keys: tuple[VerificationKey, ...]
    by_kid: Mapping[str, tuple[VerificationKey, ...]]
    unusable: Mapping[str, str]
    """kid -> why that entry was skipped (only kids with no usable entry)."""
    fetched_at: float
    digest: str = ""
    """SHA-256 of the document: equal for a refetch of the same keys."""

    def resolve(self, kid: str | None) -> tuple[VerificationKey, ...] | None:
        """Keys for ``kid``; ``None`` when the kid is unknown. Raises for kid-less ambiguity."""
        if kid is None:
            if len(self.keys) == 1:
                return self.keys
            raise invalid(f'header "kid" is required: the key set has {len(self.keys)} keys')
        found = self.by_kid.get(kid)
        if found:
            return found
        reason = self.unusable.get(kid)
        if reason is not None:
            raise invalid(f"key {quote(kid)} is unusable: {reason}")
        return None


def parse_jwks(body: bytes, fetched_at: float) -> KeySet:
    """Parse a JWKS document; raise ``_FetchError`` if it is not one or has no usable key."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _FetchError("response is not JSON") from None
    raw_keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(raw_keys, list):
        raise _FetchError('response has no "keys" array')
    keys: list[VerificationKey] = []
    by_kid: dict[str, list[VerificationKey]] = {}
    unusable: dict[str, str] = {}
    for entry in raw_keys:
        try:
            key = key_from_jwk(entry)
        except (ValueError, TypeError) as exc:  # TypeError: a member of an unexpected JSON type
            kid = entry.get("kid") if isinstance(entry, dict) else None
            if isinstance(kid, str):
                unusable.setdefault(kid, str(exc))
            continue
        keys.append(key)
        if key.kid is not None:
            by_kid.setdefault(key.kid, []).append(key)
    if not keys:
        raise _FetchError("no usable signing keys in the key set")
    for kid in by_kid:
        unusable.pop(kid, None)
    digest = hashlib.sha256(body).hexdigest()
    return KeySet(tuple(keys), {k: tuple(v) for k, v in by_kid.items()}, unusable, fetched_at, digest)


@dataclass(slots=True)
class _Flight:
    started: float
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False


class JwksClient:
    """Fetches and caches one JWKS URI. Implements the ``KeySource`` protocol (``get_keys``)."""

    def __init__(
        self,
        jwks_uri: str,
        *,
        ca_pem: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        min_refresh_interval: float = DEFAULT_MIN_REFRESH_INTERVAL,
        max_age: float = DEFAULT_MAX_AGE,
        stale_limit: float = DEFAULT_STALE_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        url = urllib.parse.urlsplit(jwks_uri)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("jwks_uri must be an absolute http(s) URL")
        if url.username or url.password:
            raise ValueError("jwks_uri must not carry credentials")
        self._uri = jwks_uri
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port
        self._target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._min_interval = min_refresh_interval
        self._max_age = max_age
        self._stale_limit = stale_limit
        self._clock = clock
        self._ssl: ssl.SSLContext | None = None
        self._ssl_error: str | None = None
        if self._https:
            try:
                self._ssl = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
                self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
            except (ssl.SSLError, ValueError, TypeError):
                self._ssl_error = "jwks_ca_pem is not a valid PEM CA certificate"
        self._lock = threading.Lock()
        self._keyset: KeySet | None = None
        self._last_attempt: float | None = None
        self._last_error: str | None = None
        self._flight: _Flight | None = None

    # --- introspection (health checks, control-plane warnings) ---------------------------------

    @property
    def jwks_uri(self) -> str:
        return self._uri

    @property
    def fetched_at(self) -> float | None:
        """Clock value of the last successful fetch, or ``None``."""
        keyset = self._keyset
        return None if keyset is None else keyset.fetched_at

    @property
    def last_error(self) -> str | None:
        """Why the most recent fetch failed (``None`` if it succeeded or none happened)."""
        return self._last_error

    @property
    def epoch(self) -> object:
        """Changes whenever the keys this source would use change (a new key set, or the current
        one aging past the stale limit), so that work cached on the strength of a key (a token
        already verified) can be redone: a key removed from the JWKS stops vouching for tokens."""
        keyset = self._keyset
        if keyset is None or self._clock() - keyset.fetched_at > self._stale_limit:
            return object()  # equal to nothing: no key is currently vouched for
        return keyset.digest

    @property
    def key_ids(self) -> tuple[str, ...]:
        keyset = self._keyset
        return () if keyset is None else tuple(keyset.by_kid)

    # --- lookups -------------------------------------------------------------------------------

    def get_keys(self, kid: str | None) -> tuple[VerificationKey, ...]:
        """Keys the token's ``kid`` may refer to (non-empty), or raise ``TokenError``."""
        now = self._clock()
        keyset = self._keyset
        if keyset is None or now - keyset.fetched_at > self._stale_limit:
            check_may_block("fetching the JWKS")
            self._start_refresh(now, wait=True)
            keyset = self._keyset
            if keyset is None or self._clock() - keyset.fetched_at > self._stale_limit:
                raise self._unavailable(keyset)
        elif now - keyset.fetched_at >= self._max_age:
            self._start_refresh(now, wait=False)  # stale-while-revalidate
        found = keyset.resolve(kid)
        if found:
            return found
        # Unknown kid: maybe the IdP rotated. One rate-limited, single-flight refresh.
        check_may_block("fetching the JWKS")
        self._start_refresh(now, wait=True)
        latest = self._keyset
        if latest is not None and latest is not keyset:
            found = latest.resolve(kid)
            if found:
                return found
        raise invalid(f"kid {quote(kid)} not found")

    def refresh(self) -> bool:
        """Fetch now, ignoring the rate limit (start-up warm-up, admin checks). True on success."""
        flight = self._start_refresh(self._clock(), wait=True, force=True)
        return flight is not None and flight.done.is_set() and flight.ok

    def _unavailable(self, keyset: KeySet | None) -> TokenError:
        if self._flight is not None:
            detail = f"JWKS fetch did not complete within {self._timeout:g} s"
        else:
            detail = self._last_error or "no fetch attempted yet (rate limited)"
        if keyset is not None:
            detail = f"keys are older than the stale limit; last error: {detail}"
        return TokenError(ErrorCode.UNAVAILABLE, f"signing keys unavailable: {detail}")

    # --- fetching ------------------------------------------------------------------------------

    def _start_refresh(self, now: float, *, wait: bool, force: bool = False) -> _Flight | None:
        with self._lock:
            flight = self._flight
            if flight is not None and time.monotonic() - flight.started > 2 * self._timeout + 1:
                flight = None  # the worker is stuck beyond its own deadline: stop waiting for it
            if flight is None:
                if not force and self._last_attempt is not None and now - self._last_attempt < self._min_interval:
                    return None
                self._last_attempt = now
                flight = _Flight(started=time.monotonic())
                self._flight = flight
                try:
                    threading.Thread(target=self._run, args=(flight,), name="agentceiling-jwks", daemon=True).start()
                except RuntimeError:
                    self._flight = None
                    self._last_error = "could not start the fetch thread"
                    flight.done.set()
                    return flight
        if wait:
            flight.done.wait(self._timeout + _WAIT_GRACE)
        return flight

    def _run(self, flight: _Flight) -> None:
        error: str | None = None
        keyset: KeySet | None = None
        try:
            keyset = parse_jwks(self._download(), self._clock())
        except _FetchError as exc:
            error = str(exc)
        except Exception as exc:  # never let a worker die silently with the flight pending
            error = f"unexpected {type(exc).__name__}"
        with self._lock:
            if keyset is not None:
                self._keyset = keyset
                self._last_error = None
                flight.ok = True
            else:
                self._last_error = error
            if self._flight is flight:
                self._flight = None
        flight.done.set()

    def _download(self) -> bytes:
        if self._https and self._ssl is None:
            raise _FetchError(self._ssl_error or "TLS is not configured")
        deadline = time.monotonic() + self._timeout
        conn: http.client.HTTPConnection
        if self._ssl is not None:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._ssl)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

        fired = threading.Event()

        def expire() -> None:
            # The whole fetch's deadline, whatever it is doing: a server that drips a byte at a
            # time never trips a per-read timeout, so shut the socket under it.
            fired.set()
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(self._timeout, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.connect()
            sock = conn.sock
            _bound(sock, deadline)
            conn.request(
                "GET",
                self._target,
                headers={"Accept": "application/jwk-set+json, application/json", "User-Agent": _USER_AGENT},
            )
            _bound(sock, deadline)
            response = conn.getresponse()
            if response.status != 200:
                raise _FetchError(f"HTTP {response.status} from the JWKS endpoint")
            declared = response.getheader("Content-Length")
            if declared is not None and declared.strip().isdigit() and int(declared) > self._max_bytes:
                raise _FetchError(f"response exceeds {self._max_bytes} bytes")
            body = bytearray()
            while True:
                _bound(sock, deadline)
                chunk = response.read1(65536)
                if not chunk:
                    break
                body += chunk
                if len(body) > self._max_bytes:
                    raise _FetchError(f"response exceeds {self._max_bytes} bytes")
            if fired.is_set():  # the end of the body was the socket shut under it: a timeout
                raise TimeoutError
            return bytes(body)
        except ssl.SSLCertVerificationError as exc:
            raise _FetchError(f"TLS certificate verification failed: {exc.verify_message}") from None
        except TimeoutError:
            raise _FetchError(f"timed out after {self._timeout:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            if time.monotonic() >= deadline:
                raise _FetchError(f"timed out after {self._timeout:g} s") from None
            raise _FetchError(f"connection failed: {type(exc).__name__}") from None
        finally:
            watchdog.cancel()
            conn.close()


def _bound(sock: Any, deadline: float) -> None:
    """Give the next socket operation only what is left of the total deadline."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    if sock is not None:
        sock.settimeout(remaining)
