"""Happy paths and the public API of agentceiling.tokens."""

from __future__ import annotations

import hashlib
from typing import Any

import jwt as pyjwt
import pytest
from test_tokens_support import (
    AUD,
    DROP,
    ISS,
    NOW,
    Keys,
    PrivateKey,
    claims,
    make_token,
    public_pem,
    static_trust,
)

from agentceiling.tokens import (
    SUPPORTED_ALGORITHMS,
    TOKEN_INVALID,
    UNAVAILABLE,
    ErrorCode,
    KeySourceRegistry,
    TokenError,
    TokenValidator,
    TrustConfig,
    ValidatedToken,
    normalize_issuer,
    peek_issuer,
)


def _key_for(keys: Keys, alg: str) -> PrivateKey:
    if alg.startswith(("RS", "PS")):
        return keys.rsa
    by_alg: dict[str, PrivateKey] = {"ES256": keys.p256, "ES384": keys.p384, "ES512": keys.p521, "EdDSA": keys.ed25519}
    return by_alg[alg]


@pytest.mark.parametrize("alg", sorted(SUPPORTED_ALGORITHMS))
def test_every_supported_algorithm_validates(keys: Keys, validator: TokenValidator, alg: str) -> None:
    key = _key_for(keys, alg)
    result = validator.validate(make_token(key, alg=alg), static_trust(("k1", key)))
    assert result.alg == alg
    assert result.subject == "user-1"


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "ES512", "EdDSA"])
def test_tokens_signed_by_pyjwt_validate(keys: Keys, validator: TokenValidator, alg: str) -> None:
    key = _key_for(keys, alg)
    token = pyjwt.encode(claims(), key, algorithm=alg, headers={"kid": "k1", "typ": "at+jwt"})
    assert validator.validate(token, static_trust(("k1", key))).unique_id == "jti-1"


def test_validated_token_fields(keys: Keys, validator: TokenValidator) -> None:
    payload = claims(act={"sub": "agent-7", "act": {"sub": "older-agent"}}, txn="txn-9", aud=[AUD, "other"])
    token = make_token(keys.rsa, payload)
    result = validator.validate(token, static_trust(("k1", keys.rsa)))
    assert isinstance(result, ValidatedToken)
    assert result.header == {"alg": "RS256", "typ": "at+jwt", "kid": "k1"}
    assert result.claims == payload
    assert (result.alg, result.kid, result.issuer) == ("RS256", "k1", ISS)
    assert (result.subject, result.unique_id, result.actor_subject) == ("user-1", "jti-1", "agent-7")
    assert result.audiences == (AUD, "other")
    assert result.authorization_details == payload["authorization_details"]
    assert result.transaction_claim == "txn-9"
    assert result.expires_at == NOW + 300
    assert result.token_sha256 == hashlib.sha256(token.encode()).hexdigest()


def test_header_mutation_by_caller_does_not_leak_into_cache(keys: Keys, validator: TokenValidator) -> None:
    trust, token = static_trust(("k1", keys.rsa)), make_token(keys.rsa)
    first = validator.validate(token, trust)
    first.header["alg"] = "none"  # type: ignore[index]
    assert validator.validate(token, trust).header["alg"] == "RS256"


def test_no_actor_and_raw_authorization_details_passthrough(keys: Keys, validator: TokenValidator) -> None:
    odd_details: Any = {"not": "a list"}  # interpretation is the policy layer's job
    result = validator.validate(
        make_token(keys.rsa, claims(authorization_details=odd_details)), static_trust(("k1", keys.rsa))
    )
    assert result.actor_subject is None
    assert result.transaction_claim is None
    assert result.authorization_details == odd_details


def test_missing_authorization_details_is_none(keys: Keys, validator: TokenValidator) -> None:
    token = make_token(keys.rsa, claims(authorization_details=DROP))
    assert validator.validate(token, static_trust(("k1", keys.rsa))).authorization_details is None


def test_custom_claim_names(keys: Keys, validator: TokenValidator) -> None:
    # Entra: uti instead of jti, oid as the user claim; a custom actor path.
    payload = claims(jti=DROP, uti="u-1", oid="object-1", delegation={"agent": {"id": "a-1"}})
    trust = static_trust(("k1", keys.rsa), unique_id_claim="uti", user_claim="oid", actor_claim="delegation.agent.id")
    result = validator.validate(make_token(keys.rsa, payload), trust)
    assert (result.unique_id, result.subject, result.actor_subject) == ("u-1", "object-1", "a-1")


def test_actor_claim_disabled(keys: Keys, validator: TokenValidator) -> None:
    token = make_token(keys.rsa, claims(act="not even an object"))
    result = validator.validate(token, static_trust(("k1", keys.rsa), actor_claim=""))
    assert result.actor_subject is None


def test_issuer_normalisation_matches_either_side(keys: Keys, validator: TokenValidator) -> None:
    token = make_token(keys.rsa, claims(iss="HTTPS://IDP.example.com/"))
    assert validator.validate(token, static_trust(("k1", keys.rsa), issuer=ISS + "/")).issuer == (
        "HTTPS://IDP.example.com/"
    )


def test_no_audiences_configured_skips_the_audience_check(keys: Keys, validator: TokenValidator) -> None:
    token = make_token(keys.rsa, claims(aud=DROP))
    assert validator.validate(token, static_trust(("k1", keys.rsa), audiences=())).audiences == ()
    token = make_token(keys.rsa, claims(aud="someone-else"))
    assert validator.validate(token, static_trust(("k1", keys.rsa), audiences=())).audiences == ("someone-else",)


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT", "Application/At+Jwt", "JWT", "jwt"])
def test_access_token_typ_values(keys: Keys, validator: TokenValidator, typ: str) -> None:
    assert validator.validate(make_token(keys.rsa, typ=typ), static_trust(("k1", keys.rsa))).kid == "k1"


def test_transaction_token_profile(keys: Keys, validator: TokenValidator) -> None:
    trust = static_trust(("k1", keys.rsa), jwt_type="transaction_token")
    token = make_token(keys.rsa, claims(txn="t-1"), typ="txn+jwt")
    assert validator.validate(token, trust).transaction_claim == "t-1"
    with pytest.raises(TokenError) as info:
        validator.validate(make_token(keys.rsa, claims(), typ="txn+jwt"), trust)
    assert (info.value.code, info.value.reason) == (TOKEN_INVALID, 'claim "txn" is required')
    with pytest.raises(TokenError) as info:
        validator.validate(make_token(keys.rsa, claims(txn="t-1")), trust)
    assert info.value.reason == 'typ "at+jwt" is not allowed'


def test_no_kid_with_a_single_static_key(keys: Keys, validator: TokenValidator) -> None:
    assert validator.validate(make_token(keys.rsa, kid=None), static_trust(("k1", keys.rsa))).kid is None


def test_certificate_pem_as_static_key(keys: Keys, validator: TokenValidator) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp signing")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(keys.rsa.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(keys.rsa, hashes.SHA256())
    )
    trust = TrustConfig(
        issuer=ISS,
        use_jwks=False,
        public_keys=(("k1", cert.public_bytes(serialization.Encoding.PEM).decode()),),
        audiences=(AUD,),
    )
    assert validator.validate(make_token(keys.rsa), trust).subject == "user-1"


def test_validator_uses_the_injected_clock(keys: Keys) -> None:
    now = [float(NOW)]
    validator = TokenValidator(KeySourceRegistry(), clock=lambda: now[0])
    trust, token = static_trust(("k1", keys.rsa)), make_token(keys.rsa)
    validator.validate(token, trust)
    now[0] += 301
    with pytest.raises(TokenError) as info:
        validator.validate(token, trust)
    assert info.value.code == ErrorCode.TOKEN_EXPIRED


def test_key_source_factory_failure_is_unavailable(keys: Keys) -> None:
    def broken(trust: TrustConfig) -> Any:
        raise RuntimeError("boom")

    with pytest.raises(TokenError) as info:
        TokenValidator(broken, clock=lambda: float(NOW)).validate(make_token(keys.rsa), static_trust(("k1", keys.rsa)))
    assert (info.value.code, info.value.reason) == (UNAVAILABLE, "key source unavailable: boom")


def test_unexpected_internal_errors_become_token_errors(keys: Keys) -> None:
    class Weird:
        def get_keys(self, kid: str | None) -> Any:
            raise KeyError("internal bug")

    validator = TokenValidator(lambda trust: Weird(), clock=lambda: float(NOW))
    with pytest.raises(TokenError) as info:
        validator.validate(make_token(keys.rsa), static_trust(("k1", keys.rsa)))
    assert (info.value.code, info.value.reason) == (TOKEN_INVALID, "token could not be validated")


def test_registry_shares_static_sources_per_profile(keys: Keys) -> None:
    registry = KeySourceRegistry()
    a, b = static_trust(("k1", keys.rsa)), static_trust(("k1", keys.rsa))
    assert a.cache_key == b.cache_key
    assert registry(a) is registry(b)
    assert registry(static_trust(("k1", keys.rsa_b))) is not registry(a)


# --- TrustConfig, normalize_issuer, peek_issuer -------------------------------------------------


def test_trust_config_cache_key_is_stable_and_sensitive(keys: Keys) -> None:
    base = TrustConfig(issuer=ISS, jwks_uri="https://idp.example.com/jwks")
    assert base.cache_key == TrustConfig(issuer=ISS, jwks_uri="https://idp.example.com/jwks").cache_key
    assert len(base.cache_key) == 64
    for change in (
        {"audiences": ("x",)},
        {"supported_algorithms": ("RS256",)},
        {"clock_skew_leeway": 5},
        {"jwks_ca_pem": "pem"},
        {"actor_claim": "act.client_id"},
        {"user_claim": "oid"},
        {"unique_id_claim": "uti"},
        {"jwt_type": "transaction_token"},
    ):
        assert TrustConfig(issuer=ISS, jwks_uri="https://idp.example.com/jwks", **change).cache_key != base.cache_key
    # lists are accepted and stored as tuples, so the config stays hashable
    listed = TrustConfig(issuer=ISS, jwks_uri="https://x/jwks", audiences=["a"])  # type: ignore[arg-type]
    assert listed.audiences == ("a",)
    hash(listed)
    assert TrustConfig(issuer=ISS, jwks_uri="https://x/jwks", jwks_ca_pem="").jwks_ca_pem is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"issuer": "", "jwks_uri": "https://x"},
        {"issuer": ISS},  # use_jwks defaults to true: jwks_uri required
        {"issuer": ISS, "use_jwks": False},
        {"issuer": ISS, "jwks_uri": "https://x", "jwt_type": "id_token"},
        {"issuer": ISS, "jwks_uri": "https://x", "clock_skew_leeway": -1},
        {"issuer": ISS, "jwks_uri": "https://x", "user_claim": ""},
    ],
)
def test_trust_config_refuses_meaningless_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TrustConfig(**kwargs)


def test_normalize_issuer() -> None:
    assert normalize_issuer("HTTPS://Tenant.Auth0.com/") == "https://tenant.auth0.com"
    assert normalize_issuer("https://idp.example.com") == "https://idp.example.com"


def test_peek_issuer_reads_without_verifying(keys: Keys) -> None:
    token = make_token(keys.rsa, claims(iss="https://Other.example/"), signature=b"garbage")
    assert peek_issuer(token) == "https://Other.example/"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("a" * 9000, "token exceeds 8192 bytes"),
        ("abc.def", "token is not a compact JWS"),
        ("a.b.c.d.e", "JWE (encrypted) tokens are not supported"),
        ("eyJ9.e30=.sig", "token is not a compact JWS"),
        ("eyJ9.!!!.sig", "token is not a compact JWS"),
        ("eyJ9.e.sig", "malformed payload: invalid base64url"),
        ("eyJ9.W10.sig", "malformed payload: not a JSON object"),  # []
        ("eyJ9.e30.sig", 'claim "iss" is required'),  # {}
        ("eyJ9.eyJpc3MiOjF9.sig", 'claim "iss" must be a non-empty string'),  # {"iss":1}
        ("eyJ9.eyJpc3MiOiJhIiwiaXNzIjoiYiJ9.sig", 'malformed payload: duplicate member "iss"'),
        ("eyJ9.eyJpc3MiOiJh.sig", "malformed payload: invalid JSON"),
    ],
)
def test_peek_issuer_refuses_malformed(token: str, reason: str) -> None:
    with pytest.raises(TokenError) as info:
        peek_issuer(token)
    assert (info.value.code, info.value.reason) == (TOKEN_INVALID, reason)


def test_peek_issuer_refuses_non_strings() -> None:
    with pytest.raises(TokenError) as info:
        peek_issuer(b"a.b.c")  # type: ignore[arg-type]
    assert info.value.reason == "token must be a string"


def test_public_pem_helper_round_trip(keys: Keys) -> None:
    assert "BEGIN PUBLIC KEY" in public_pem(keys.p256)
