"""The JWKS client against a real loopback HTTP(S) server."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any

import pytest
from test_tokens_support import (
    NOW,
    FakeClock,
    JwksServer,
    Keys,
    TlsMaterial,
    claims,
    jwk,
    jwks_trust,
    make_token,
)

from agentceiling.tokens import (
    TOKEN_INVALID,
    UNAVAILABLE,
    JwksClient,
    KeySourceRegistry,
    TokenError,
    TokenValidator,
    TrustConfig,
)

TIMEOUT = 0.5  # short network timeout to keep the "hang" tests quick


def setup(
    server: JwksServer, clock: FakeClock | None = None, **registry_kw: Any
) -> tuple[TokenValidator, TrustConfig, FakeClock, KeySourceRegistry]:
    clock = clock or FakeClock(1000.0)
    registry_kw.setdefault("timeout", TIMEOUT)
    registry = KeySourceRegistry(clock=clock, **registry_kw)
    return TokenValidator(registry, clock=lambda: float(NOW)), jwks_trust(server.url), clock, registry


def refused(validator: TokenValidator, token: str, trust: TrustConfig) -> tuple[str, str]:
    with pytest.raises(TokenError) as info:
        validator.validate(token, trust)
    return info.value.code, info.value.reason


def test_keys_are_fetched_once_and_cached(keys: Keys, jwks_server: JwksServer) -> None:
    jwks_server.serve(jwk(keys.rsa, "r1"), jwk(keys.p256, "e1"), jwk(keys.ed25519, "o1"))
    validator, trust, _, registry = setup(jwks_server)
    for kid, key, alg in (("r1", keys.rsa, "PS384"), ("e1", keys.p256, "ES256"), ("o1", keys.ed25519, "EdDSA")):
        for _ in range(3):
            assert validator.validate(make_token(key, alg=alg, kid=kid), trust).kid == kid
    assert jwks_server.requests == 1
    client = registry.jwks_client(jwks_server.url)
    assert client.get_keys("r1")[0] is client.get_keys("r1")[0]  # parsed once, cached per kid
    assert set(client.key_ids) == {"r1", "e1", "o1"}


def test_one_client_per_uri_and_ca(jwks_server: JwksServer) -> None:
    registry = KeySourceRegistry()
    a = registry(jwks_trust(jwks_server.url))
    b = registry(jwks_trust(jwks_server.url, audiences=("other",), issuer="https://other.example"))
    assert a is b
    assert registry(jwks_trust(jwks_server.url, jwks_ca_pem="x")) is not a


def test_first_fetch_is_single_flight(keys: Keys, jwks_server: JwksServer) -> None:
    jwks_server.serve(jwk(keys.rsa, "k1"))
    jwks_server.delay = 0.2
    validator, trust, _, _ = setup(jwks_server)
    token, results, errors = make_token(keys.rsa), [], []

    def worker() -> None:
        try:
            results.append(validator.validate(token, trust).kid)
        except TokenError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == ["k1"] * 20
    assert jwks_server.requests == 1


def test_unknown_kid_flood_is_rate_limited_and_single_flight(keys: Keys, jwks_server: JwksServer) -> None:
    jwks_server.serve(jwk(keys.rsa, "k1"))
    validator, trust, clock, _ = setup(jwks_server, min_refresh_interval=10.0)
    validator.validate(make_token(keys.rsa), trust)
    assert jwks_server.requests == 1

    def flood(n: int) -> list[tuple[str, str]]:
        outcomes: list[tuple[str, str]] = []
        lock = threading.Lock()

        def worker(i: int) -> None:
            try:
                validator.validate(make_token(keys.rsa, kid=f"bogus-{i}"), trust)
            except TokenError as exc:
                with lock:
                    outcomes.append((exc.code, exc.reason))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return outcomes

    # Within the interval after the first fetch: no request at all.
    outcomes = flood(40)
    assert jwks_server.requests == 1
    assert sorted(outcomes) == sorted((TOKEN_INVALID, f'kid "bogus-{i}" not found') for i in range(40))
    # Interval passed: the whole flood shares exactly one (slow) refresh.
    clock.advance(10.0)
    jwks_server.delay = 0.2
    assert len(flood(40)) == 40
    assert jwks_server.requests == 2
    clock.advance(5.0)
    flood(10)
    assert jwks_server.requests == 2


def test_rotation_is_picked_up_on_unknown_kid(keys: Keys, jwks_server: JwksServer) -> None:
    jwks_server.serve(jwk(keys.rsa, "old"))
    validator, trust, clock, _ = setup(jwks_server)
    old_token, new_token = make_token(keys.rsa, kid="old"), make_token(keys.rsa_b, kid="new")
    validator.validate(old_token, trust)
    jwks_server.serve(jwk(keys.rsa_b, "new"))
    clock.advance(11)
    assert validator.validate(new_token, trust).kid == "new"
    assert jwks_server.requests == 2
    # The retired key is gone with the refresh.
    assert refused(validator, old_token, trust) == (TOKEN_INVALID, 'kid "old" not found')


def test_rotation_is_picked_up_by_age(keys: Keys, jwks_server: JwksServer) -> None:
    jwks_server.serve(jwk(keys.rsa, "k1"))
    validator, trust, clock, registry = setup(jwks_server, max_age=300.0)
    validator.validate(make_token(keys.rsa), trust)
    jwks_server.serve(jwk(keys.rsa_b, "k1"))  # same kid, new key
    clock.advance(299)
    validator.validate(make_token(keys.rsa), trust)
    assert jwks_server.requests == 1
    clock.advance(2)
    validator.validate(make_token(keys.rsa), trust)  # served from cache, refresh starts in background
    assert jwks_server.wait_requests(2)
    client = registry.jwks_client(jwks_server.url)
    deadline = time.monotonic() + 2
    while client.fetched_at != clock.now and time.monotonic() < deadline:
        time.sleep(0.01)
    assert validator.validate(make_token(keys.rsa_b), trust).kid == "k1"
    assert refused(validator, make_token(keys.rsa), trust) == (TOKEN_INVALID, "signature verification failed")


def test_last_known_good_while_the_idp_returns_500(keys: Keys, jwks_server: JwksServer) -> None:
    jwks_server.serve(jwk(keys.rsa, "k1"))
    validator, trust, clock, registry = setup(jwks_server, max_age=300.0, stale_limit=3600.0)
    token = make_token(keys.rsa)
    validator.validate(token, trust)
    jwks_server.status = 500
    clock.advance(301)
    assert validator.validate(token, trust).kid == "k1"
    assert jwks_server.wait_requests(2)
    client = registry.jwks_client(jwks_server.url)
    deadline = time.monotonic() + 2
    while client.last_error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.last_error == "HTTP 500 from the JWKS endpoint"
    clock.advance(3000)  # 3301 s after the last success: still within the stale limit
    assert validator.validate(token, trust).kid == "k1"
    clock.advance(300)  # 3601 s: beyond it
    assert refused(validator, token, trust) == (
        UNAVAILABLE,
        "signing keys unavailable: keys are older than the stale limit; last error: HTTP 500 from the JWKS endpoint",
    )
    # The IdP recovers: the next allowed fetch brings the keys back.
    jwks_server.status = 200
    clock.advance(10)
    assert validator.validate(token, trust).kid == "k1"


def test_last_known_good_while_the_idp_hangs(keys: Keys, jwks_server: JwksServer) -> None:
    jwks_server.serve(jwk(keys.rsa, "k1"))
    validator, trust, clock, _ = setup(jwks_server, max_age=300.0, stale_limit=3600.0)
    token = make_token(keys.rsa)
    validator.validate(token, trust)
    jwks_server.delay = 10.0
    clock.advance(301)
    started = time.monotonic()
    assert validator.validate(token, trust).kid == "k1"  # background refresh: no waiting at all
    assert time.monotonic() - started < TIMEOUT
    # An unknown kid has to wait for the hung refresh, but only up to the timeout.
    clock.advance(11)
    started = time.monotonic()
    assert refused(validator, make_token(keys.rsa, kid="new"), trust) == (TOKEN_INVALID, 'kid "new" not found')
    assert time.monotonic() - started < TIMEOUT + 0.5
    assert validator.validate(token, trust).kid == "k1"
    # Beyond the stale limit the hang means UNAVAILABLE, still within bounded time.
    clock.advance(3600)
    time.sleep(TIMEOUT)  # let the previous flight time out
    started = time.monotonic()
    code, reason = refused(validator, token, trust)
    assert time.monotonic() - started < TIMEOUT + 0.5
    assert code == UNAVAILABLE
    assert reason.startswith("signing keys unavailable: keys are older than the stale limit")


def test_unavailable_when_nothing_was_ever_fetched(keys: Keys, jwks_server: JwksServer) -> None:
    jwks_server.status = 500
    validator, trust, clock, _ = setup(jwks_server)
    token = make_token(keys.rsa)
    assert refused(validator, token, trust) == (
        UNAVAILABLE,
        "signing keys unavailable: HTTP 500 from the JWKS endpoint",
    )
    # Rate limited: the failing IdP is not asked again within the interval.
    assert refused(validator, token, trust)[0] == UNAVAILABLE
    assert jwks_server.requests == 1
    jwks_server.status = 200
    jwks_server.serve(jwk(keys.rsa, "k1"))
    clock.advance(10)
    assert validator.validate(token, trust).kid == "k1"
    assert jwks_server.requests == 2


def test_unavailable_when_the_first_fetch_hangs(keys: Keys, jwks_server: JwksServer) -> None:
    jwks_server.delay = 10.0
    validator, trust, _, _ = setup(jwks_server)
    started = time.monotonic()
    code, reason = refused(validator, make_token(keys.rsa), trust)
    assert time.monotonic() - started < TIMEOUT + 0.5
    assert code == UNAVAILABLE
    assert reason in (
        f"signing keys unavailable: timed out after {TIMEOUT:g} s",
        f"signing keys unavailable: JWKS fetch did not complete within {TIMEOUT:g} s",  # waiter woke first
    )


def test_unavailable_when_nothing_listens(keys: Keys) -> None:
    server = JwksServer()
    url = server.url
    server.close()
    validator, trust, _, _ = setup(server)
    assert jwks_trust(url) == trust
    code, reason = refused(validator, make_token(keys.rsa), trust)
    assert (code, reason) == (UNAVAILABLE, "signing keys unavailable: connection failed: ConnectionRefusedError")


def test_default_timeout_is_three_seconds() -> None:
    client = JwksClient("https://idp.example.com/jwks")
    assert client._timeout == 3.0


@pytest.mark.parametrize(
    ("body", "send_length", "error"),
    [
        (b"<html>login</html>", True, "response is not JSON"),
        (b"[1, 2]", True, 'response has no "keys" array'),
        (b'{"keys": {}}', True, 'response has no "keys" array'),
        (b'{"keys": []}', True, "no usable signing keys in the key set"),
        (b"\xff\xfe", True, "response is not JSON"),
        (b'{"keys": [' + b"1," * 200_000 + b"1]}", True, "response exceeds 262144 bytes"),
        (b'{"keys": [' + b"1," * 200_000 + b"1]}", False, "response exceeds 262144 bytes"),
    ],
)
def test_garbage_bodies(keys: Keys, jwks_server: JwksServer, body: bytes, send_length: bool, error: str) -> None:
    jwks_server.body = body
    jwks_server.send_length = send_length
    validator, trust, clock, _ = setup(jwks_server)
    token = make_token(keys.rsa)
    assert refused(validator, token, trust) == (UNAVAILABLE, f"signing keys unavailable: {error}")
    # With a good key set cached, the same garbage does not evict it.
    jwks_server.serve(jwk(keys.rsa, "k1"))
    jwks_server.body = None
    clock.advance(10)
    validator.validate(token, trust)
    jwks_server.body = body
    clock.advance(400)
    validator.validate(token, trust)
    assert jwks_server.wait_requests(3)
    clock.advance(10)
    assert validator.validate(token, trust).kid == "k1"


def test_unusable_keys_are_skipped_not_fatal(keys: Keys, jwks_server: JwksServer) -> None:
    jwks_server.serve(
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        jwk(keys.rsa_b, "enc", use="enc"),
        jwk(keys.rsa_b, "private", d="AAAA"),
        jwk(keys.rsa_b, "ops", key_ops=["encrypt"]),
        {"kty": "XYZ", "kid": "future"},
        jwk(keys.rsa1024, "weak"),
        jwk(keys.rsa_b, "bound", alg="PS256"),
        jwk(keys.p256, "badalg", alg="ES384"),
        "not an object",
        jwk(keys.rsa, "k1", use="sig", key_ops=["verify"], alg="RS256"),
    )
    validator, trust, _, _ = setup(jwks_server)
    assert validator.validate(make_token(keys.rsa), trust).kid == "k1"
    reasons = {
        "hmac": "symmetric (oct) keys are never used",
        "enc": "key use 'enc' is not sig",
        "private": "key contains private members",
        "ops": "key_ops does not include verify",
        "future": "kty 'XYZ' is not supported",
        "weak": "RSA key is 1024 bits; at least 2048 are required",
        "badalg": "alg 'ES384' does not fit a EC P-256 key",
    }
    for kid, reason in reasons.items():
        key = keys.rsa1024 if kid == "weak" else keys.rsa_b
        assert refused(validator, make_token(key, kid=kid), trust) == (
            TOKEN_INVALID,
            f'key "{kid}" is unusable: {reason}',
        )
    # A JWK "alg" binds the key to that one algorithm (8725bis).
    assert validator.validate(make_token(keys.rsa_b, kid="bound", alg="PS256"), trust).alg == "PS256"
    assert refused(validator, make_token(keys.rsa_b, kid="bound", alg="RS256"), trust) == (
        TOKEN_INVALID,
        'alg "RS256" does not fit key "bound" (RSA-2048)',
    )
    assert jwks_server.requests == 1


def test_duplicate_kids_across_key_types(keys: Keys, jwks_server: JwksServer) -> None:
    jwks_server.serve(jwk(keys.rsa, "same"), jwk(keys.p256, "same"))
    validator, trust, _, _ = setup(jwks_server)
    assert validator.validate(make_token(keys.rsa, kid="same"), trust).alg == "RS256"
    assert validator.validate(make_token(keys.p256, kid="same", alg="ES256"), trust).alg == "ES256"


def test_no_kid_uses_the_only_key_of_the_set(keys: Keys, jwks_server: JwksServer) -> None:
    jwks_server.serve(jwk(keys.rsa, None))
    validator, trust, _, _ = setup(jwks_server)
    assert validator.validate(make_token(keys.rsa, kid=None), trust).kid is None
    jwks_server.serve(jwk(keys.rsa, None), jwk(keys.rsa_b, "b"))
    validator2, trust2, _, _ = setup(jwks_server)
    assert refused(validator2, make_token(keys.rsa, kid=None), trust2) == (
        TOKEN_INVALID,
        'header "kid" is required: the key set has 2 keys',
    )


def test_refresh_forces_a_fetch(keys: Keys, jwks_server: JwksServer) -> None:
    jwks_server.serve(jwk(keys.rsa, "k1"))
    client = JwksClient(jwks_server.url, timeout=TIMEOUT, clock=FakeClock(0.0))
    assert client.fetched_at is None and client.last_error is None
    assert client.refresh() and client.refresh()
    assert jwks_server.requests == 2 and client.fetched_at == 0.0
    jwks_server.status = 404
    assert not client.refresh()
    assert client.last_error == "HTTP 404 from the JWKS endpoint"
    assert client.get_keys("k1")[0].kid == "k1"


@pytest.mark.parametrize(
    "uri", ["ftp://idp/jwks", "file:///etc/passwd", "/jwks", "https://user:pw@idp/jwks", "https://"]
)
def test_jwks_uri_must_be_http_or_https(uri: str) -> None:
    with pytest.raises(ValueError):
        JwksClient(uri)


def test_bad_uri_in_a_profile_is_unavailable(keys: Keys) -> None:
    validator = TokenValidator(KeySourceRegistry(), clock=lambda: float(NOW))
    trust = jwks_trust("file:///etc/passwd")
    assert refused(validator, make_token(keys.rsa), trust) == (
        UNAVAILABLE,
        "key source unavailable: jwks_uri must be an absolute http(s) URL",
    )


# --- TLS ------------------------------------------------------------------------------------------


def test_https_with_the_profile_ca(keys: Keys, tls_jwks_server: JwksServer, tls_material: TlsMaterial) -> None:
    tls_jwks_server.serve(jwk(keys.rsa, "k1"))
    registry = KeySourceRegistry(timeout=2.0)
    validator = TokenValidator(registry, clock=lambda: float(NOW))
    trust = jwks_trust(tls_jwks_server.url, jwks_ca_pem=tls_material.ca_pem)
    assert tls_jwks_server.url.startswith("https://")
    assert validator.validate(make_token(keys.rsa), trust).kid == "k1"


def test_https_without_the_ca_fails_verification(keys: Keys, tls_jwks_server: JwksServer) -> None:
    tls_jwks_server.serve(jwk(keys.rsa, "k1"))
    validator = TokenValidator(KeySourceRegistry(timeout=2.0), clock=lambda: float(NOW))
    code, reason = refused(validator, make_token(keys.rsa), jwks_trust(tls_jwks_server.url))
    assert code == UNAVAILABLE
    assert reason.startswith("signing keys unavailable: TLS certificate verification failed")
    assert tls_jwks_server.requests == 0


def test_https_with_another_ca_fails_verification(
    keys: Keys, tls_jwks_server: JwksServer, tls_material: TlsMaterial
) -> None:
    tls_jwks_server.serve(jwk(keys.rsa, "k1"))
    validator = TokenValidator(KeySourceRegistry(timeout=2.0), clock=lambda: float(NOW))
    trust = jwks_trust(tls_jwks_server.url, jwks_ca_pem=tls_material.other_ca_pem)
    code, reason = refused(validator, make_token(keys.rsa), trust)
    assert code == UNAVAILABLE
    assert reason.startswith("signing keys unavailable: TLS certificate verification failed")


def test_invalid_ca_pem(keys: Keys, tls_jwks_server: JwksServer) -> None:
    validator = TokenValidator(KeySourceRegistry(timeout=2.0), clock=lambda: float(NOW))
    trust = jwks_trust(
        tls_jwks_server.url, jwks_ca_pem="-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"
    )
    assert refused(validator, make_token(keys.rsa), trust) == (
        UNAVAILABLE,
        "signing keys unavailable: jwks_ca_pem is not a valid PEM CA certificate",
    )


def test_the_key_epoch_changes_with_the_keys_and_past_the_stale_limit(keys: Keys, jwks_server: JwksServer) -> None:
    """What a token already verified is reused under (service/authz.py): a key removed from the
    JWKS, or keys older than the stale limit, end its reuse."""
    jwks_server.serve(jwk(keys.rsa, "old"))
    validator, trust, clock, _ = setup(jwks_server, max_age=300.0, stale_limit=3600.0)
    validator.validate(make_token(keys.rsa, kid="old"), trust)
    first = validator.key_epoch(trust)
    assert validator.key_epoch(trust) == first  # steady while the keys are
    clock.advance(11)
    jwks_server.serve(jwk(keys.rsa_b, "new"))
    assert validator.validate(make_token(keys.rsa_b, kid="new"), trust).kid == "new"  # unknown kid: refetch
    assert validator.key_epoch(trust) != first
    rotated = validator.key_epoch(trust)
    clock.advance(3601)  # the IdP is gone long enough: no key vouches for anything any more
    assert validator.key_epoch(trust) != rotated and validator.key_epoch(trust) != validator.key_epoch(trust)


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_server_that_drips_its_answer_is_cut_off_at_the_deadline(keys: Keys, where: str) -> None:
    """One byte every 0.1 s never trips a per-read timeout: the whole fetch is still bounded, and
    the fetching thread and its socket end with it (they used to pile up, one per refresh). Cut
    off in the body, it is a timeout too (it read as "response is not JSON")."""
    import socket as socketlib

    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    if where == "headers":
        sent, dripped = b"", head + b"X-Slow: " + b"x" * 200
    else:
        body = b'{"keys": [' + b" " * 200 + b"]}"
        sent, dripped = head + b"Content-Length: %d\r\n\r\n" % len(body), body

    listener = socketlib.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                with contextlib.suppress(OSError):
                    conn.sendall(sent)
                for byte in dripped:
                    if stop.is_set():
                        break
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break
                    time.sleep(0.1)

    server = threading.Thread(target=drip, daemon=True)
    server.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/jwks"
        trust = jwks_trust(url)
        validator = TokenValidator(KeySourceRegistry(timeout=TIMEOUT))
        started = time.monotonic()
        with pytest.raises(TokenError) as info:
            validator.validate(make_token(keys.rsa), trust)
        assert info.value.code == UNAVAILABLE
        assert "timed out" in info.value.reason, info.value.reason
        assert time.monotonic() - started < TIMEOUT + 0.6
        deadline = time.monotonic() + 2
        while any(t.name == "agentceiling-jwks" for t in threading.enumerate()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(t.name == "agentceiling-jwks" for t in threading.enumerate())
    finally:
        stop.set()
        listener.close()
        server.join(timeout=2)


def test_a_jwk_with_an_alg_of_the_wrong_json_type_is_skipped_not_fatal(keys: Keys, jwks_server: JwksServer) -> None:
    jwks_server.serve(jwk(keys.rsa, "k1"), jwk(keys.rsa_b, "k2", alg=["RS256"]), jwk(keys.rsa_b, "k3", alg={"a": 1}))
    validator, trust, _, _ = setup(jwks_server)
    assert validator.validate(make_token(keys.rsa, kid="k1"), trust).kid == "k1"
    assert refused(validator, make_token(keys.rsa_b, kid="k2"), trust) == (
        TOKEN_INVALID,
        'key "k2" is unusable: member "alg" is not a string',
    )


def test_keys_sharing_a_kid_are_each_tried(keys: Keys, jwks_server: JwksServer) -> None:
    jwks_server.serve(jwk(keys.rsa, "same"), jwk(keys.rsa_b, "same"))
    validator, trust, _, _ = setup(jwks_server)
    assert validator.validate(make_token(keys.rsa, kid="same"), trust).kid == "same"
    assert validator.validate(make_token(keys.rsa_b, kid="same"), trust).kid == "same"


def test_an_unpaired_surrogate_in_a_claim_is_refused(keys: Keys, jwks_server: JwksServer) -> None:
    jwks_server.serve(jwk(keys.rsa, "k1"))
    validator, trust, _, _ = setup(jwks_server)
    payload = json.dumps(claims(sub="agent\ud800")).encode()  # ensure_ascii: the escape \\ud800
    assert b"\\ud800" in payload
    assert refused(validator, make_token(keys.rsa, payload), trust) == (
        TOKEN_INVALID,
        "malformed payload: a string holds an unpaired UTF-16 surrogate escape",
    )
    paired = json.dumps(claims(sub="agent\U0001f600")).encode()  # \\ud83d\\ude00: one character
    assert validator.validate(make_token(keys.rsa, paired), trust).subject == "agent\U0001f600"
