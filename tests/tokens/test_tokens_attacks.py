"""One test per attack / bad input of standards-idp §6, each asserting the exact code and reason."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_tokens_support import (
    DROP,
    ISS,
    NOW,
    Keys,
    b64,
    b64json,
    claims,
    jwk,
    make_token,
    public_pem,
    sign,
    static_trust,
)

from agentceiling.tokens import (
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    KeySourceRegistry,
    TokenError,
    TokenValidator,
    TrustConfig,
)


def refused(validator: TokenValidator, token: Any, trust: TrustConfig) -> tuple[str, str]:
    with pytest.raises(TokenError) as info:
        validator.validate(token, trust)
    return info.value.code, info.value.reason


def invalid(reason: str) -> tuple[str, str]:
    return (TOKEN_INVALID, reason)


# --- §6 #1 alg none, #3 HMAC confusion, alg allow-list ------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_in_any_case(keys: Keys, validator: TokenValidator, alg: str) -> None:
    token = make_token(keys.rsa, alg="RS256", header={"alg": alg}, signature=b"")
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(f'alg "{alg}" is not allowed')


def test_hs256_keyed_with_the_rsa_public_key(keys: Keys, validator: TokenValidator) -> None:
    pem = public_pem(keys.rsa).encode()
    h64, p64 = b64json({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}), b64json(claims())
    mac = hmac.new(pem, f"{h64}.{p64}".encode(), hashlib.sha256).digest()
    token = f"{h64}.{p64}.{b64(mac)}"
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid('alg "HS256" is not allowed')
    # Even a profile that (wrongly) lists HS256 never accepts it.
    trust = static_trust(("k1", keys.rsa), supported_algorithms=("RS256", "HS256"))
    assert refused(validator, token, trust) == invalid('alg "HS256" is not allowed')


@pytest.mark.parametrize("alg", ["RS256", "ES256K", "Ed25519", "rs256", "HS512"])
def test_alg_outside_the_allow_list(keys: Keys, validator: TokenValidator, alg: str) -> None:
    token = make_token(keys.rsa, header={"alg": alg}, signature=b"\x01" * 256)
    trust = static_trust(("k1", keys.rsa), supported_algorithms=("PS256",))
    assert refused(validator, token, trust) == invalid(f'alg "{alg}" is not allowed')


def test_alg_missing_or_not_a_string(keys: Keys, validator: TokenValidator) -> None:
    trust = static_trust(("k1", keys.rsa))
    assert refused(validator, make_token(keys.rsa, header={"alg": DROP}), trust) == invalid('header "alg" is required')
    token = make_token(keys.rsa, header={"alg": ["RS256"]})
    assert refused(validator, token, trust) == invalid('header "alg" must be a string')


# --- §6 #4/#5 embedded keys and key URLs ----------------------------------------------------------


@pytest.mark.parametrize("name", ["jwk", "jku", "x5u", "x5c"])
def test_embedded_key_headers(keys: Keys, validator: TokenValidator, name: str) -> None:
    values = {
        "jwk": jwk(keys.rsa_b, kid=None),  # the attacker's own key, and the token is signed with it
        "jku": "https://attacker.example/jwks",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": ["MIIB..."],
    }
    token = make_token(keys.rsa_b, header={name: values[name]})
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(f'header "{name}" is not allowed')


@pytest.mark.parametrize("name", ["zip", "enc", "cty"])
def test_compression_jwe_and_nested_headers(keys: Keys, validator: TokenValidator, name: str) -> None:
    value = {"zip": "DEF", "enc": "A256GCM", "cty": "JWT"}[name]
    token = make_token(keys.rsa, header={name: value})
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(f'header "{name}" is not allowed')


# --- §6 #7 crit, #8 b64, #9 JWE -----------------------------------------------------------------


def test_unknown_crit(keys: Keys, validator: TokenValidator) -> None:
    token = make_token(keys.rsa, header={"crit": ["http://example.invalid/ext"], "http://example.invalid/ext": 1})
    trust = static_trust(("k1", keys.rsa))
    assert refused(validator, token, trust) == invalid('crit extension "http://example.invalid/ext" is not supported')


@pytest.mark.parametrize("crit", [[], "b64", [1], None])
def test_malformed_crit(keys: Keys, validator: TokenValidator, crit: Any) -> None:
    token = make_token(keys.rsa, header={"crit": crit})
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid('header "crit" is malformed')


def test_b64_false(keys: Keys, validator: TokenValidator) -> None:
    trust = static_trust(("k1", keys.rsa))
    token = make_token(keys.rsa, header={"b64": False, "crit": ["b64"]})
    assert refused(validator, token, trust) == invalid('crit extension "b64" is not supported')
    token = make_token(keys.rsa, header={"b64": False})
    assert refused(validator, token, trust) == invalid("unencoded payload (b64=false) is not supported")


def test_jwe_compact_serialisation(keys: Keys, validator: TokenValidator) -> None:
    h = b64json({"alg": "RSA-OAEP-256", "enc": "A256GCM", "typ": "at+jwt"})
    token = ".".join([h, b64(b"k" * 256), b64(b"iv" * 6), b64(b"ciphertext"), b64(b"t" * 16)])
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(
        "JWE (encrypted) tokens are not supported"
    )


def test_json_serialisation_is_not_a_compact_jws(keys: Keys, validator: TokenValidator) -> None:
    token = json.dumps({"payload": b64json(claims()), "signatures": []})
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid("token is not a compact JWS")


# --- §6 #10 duplicate members, #11 size, #24 encoding ------------------------------------------


def test_duplicate_payload_member(keys: Keys, validator: TokenValidator) -> None:
    body = json.dumps(claims()).replace('"sub": "user-1"', '"sub": "admin", "sub": "user-1"').encode()
    token = make_token(keys.rsa, body)
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(
        'malformed payload: duplicate member "sub"'
    )


def test_duplicate_nested_member(keys: Keys, validator: TokenValidator) -> None:
    body = json.dumps(claims(act={"sub": "a"})).replace('{"sub": "a"}', '{"sub": "a", "sub": "b"}').encode()
    token = make_token(keys.rsa, body)
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(
        'malformed payload: duplicate member "sub"'
    )


def test_duplicate_header_member(keys: Keys, validator: TokenValidator) -> None:
    raw = b'{"alg":"none","alg":"RS256","typ":"at+jwt","kid":"k1"}'
    token = make_token(keys.rsa, raw_header=raw)
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(
        'malformed header: duplicate member "alg"'
    )


def test_token_over_8_kib(keys: Keys, validator: TokenValidator) -> None:
    token = make_token(keys.rsa, claims(padding="x" * 8000))
    assert len(token) > 8192
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid("token exceeds 8192 bytes")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + "=",  # padding
        lambda t: t.replace(".", "=.", 1),
        lambda t: t + ".",
        lambda t: " " + t,
        lambda t: t.replace("-", "+").replace("_", "/") if ("-" in t or "_" in t) else t + "+",
        lambda t: t.split(".", 1)[1],
    ],
)
def test_non_compact_encodings(keys: Keys, validator: TokenValidator, mangle: Any) -> None:
    token = mangle(make_token(keys.rsa))
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid("token is not a compact JWS")


def test_non_canonical_signature_encoding(keys: Keys, validator: TokenValidator) -> None:
    token = make_token(keys.rsa)
    last = token[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # 256-byte RSA signature -> 342 chars, 2 unused bits in the last char: set one of them.
    mangled = token[:-1] + alphabet[alphabet.index(last) | 1]
    assert mangled != token
    assert refused(validator, mangled, static_trust(("k1", keys.rsa))) == invalid("signature verification failed")


def test_non_object_header_and_payload(keys: Keys, validator: TokenValidator) -> None:
    trust = static_trust(("k1", keys.rsa))
    token = make_token(keys.rsa, raw_header=b'["alg","RS256"]')
    assert refused(validator, token, trust) == invalid("malformed header: not a JSON object")
    assert refused(validator, make_token(keys.rsa, b'"hello"'), trust) == invalid(
        "malformed payload: not a JSON object"
    )
    assert refused(validator, make_token(keys.rsa, b"\xff\xfe{}"), trust) == invalid("malformed payload: invalid JSON")


def test_non_string_token(keys: Keys, validator: TokenValidator) -> None:
    token = make_token(keys.rsa).encode()
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid("token must be a string")


# --- §6 #12-16 NumericDate types ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [str(NOW + 300), f" {NOW + 300} ", NOW + 300.5, float(NOW + 300), True, None, [1], 2**40, -1]
)
@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
def test_numeric_dates_must_be_integers(keys: Keys, validator: TokenValidator, name: str, value: Any) -> None:
    token = make_token(keys.rsa, claims(**{name: value}))
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(
        f'claim "{name}" must be an integer NumericDate'
    )


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals(keys: Keys, validator: TokenValidator, literal: str) -> None:
    body = json.dumps(claims()).replace(f'"exp": {NOW + 300}', f'"exp": {literal}').encode()
    token = make_token(keys.rsa, body)
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(
        f"malformed payload: {literal} is not valid JSON"
    )


def test_exp_overflowing_to_infinity(keys: Keys, validator: TokenValidator) -> None:
    body = json.dumps(claims()).replace(f'"exp": {NOW + 300}', '"exp": 1e400').encode()
    token = make_token(keys.rsa, body)
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(
        'claim "exp" must be an integer NumericDate'
    )


def test_missing_exp(keys: Keys, validator: TokenValidator) -> None:
    token = make_token(keys.rsa, claims(exp=DROP))
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid('claim "exp" is required')


# --- time: exp / nbf / iat and leeway -----------------------------------------------------------


def test_expired(keys: Keys, validator: TokenValidator) -> None:
    token = make_token(keys.rsa, claims(exp=NOW, iat=NOW - 300))
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == (TOKEN_EXPIRED, "token expired")


def test_nbf_in_the_future(keys: Keys, validator: TokenValidator) -> None:
    token = make_token(keys.rsa, claims(nbf=NOW + 1))
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid("token is not yet valid (nbf)")


def test_iat_in_the_future(keys: Keys, validator: TokenValidator) -> None:
    token = make_token(keys.rsa, claims(iat=NOW + 1))
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid('claim "iat" is in the future')


def test_leeway_honoured_both_ways(keys: Keys, validator: TokenValidator) -> None:
    strict = static_trust(("k1", keys.rsa))
    lenient = static_trust(("k1", keys.rsa), clock_skew_leeway=30)
    expired_a_bit = make_token(keys.rsa, claims(exp=NOW - 29, iat=NOW - 300))
    early = make_token(keys.rsa, claims(nbf=NOW + 29, iat=NOW + 29))
    for token in (expired_a_bit, early):
        assert validator.validate(token, lenient).subject == "user-1"
    assert refused(validator, expired_a_bit, strict) == (TOKEN_EXPIRED, "token expired")
    assert refused(validator, early, strict) == invalid("token is not yet valid (nbf)")
    # ... and leeway is a bound, not a waiver
    assert refused(validator, make_token(keys.rsa, claims(exp=NOW - 30)), lenient) == (TOKEN_EXPIRED, "token expired")
    assert refused(validator, make_token(keys.rsa, claims(iat=NOW + 31)), lenient) == invalid(
        'claim "iat" is in the future'
    )
    assert refused(validator, make_token(keys.rsa, claims(nbf=NOW + 31)), lenient) == invalid(
        "token is not yet valid (nbf)"
    )


# --- §6 #15 a far-off exp: the lifetime cap ------------------------------------------------------


def test_default_lifetime_cap_is_30_days(keys: Keys, validator: TokenValidator) -> None:
    trust = static_trust(("k1", keys.rsa))
    month = 30 * 86_400
    assert validator.validate(make_token(keys.rsa, claims(iat=NOW - 10, exp=NOW - 10 + month)), trust)
    assert refused(validator, make_token(keys.rsa, claims(iat=NOW - 10, exp=NOW - 9 + month)), trust) == invalid(
        "token lifetime (exp - iat) exceeds the maximum of 30d"
    )
    # a hundred years ahead (well under the 2**40 bound of NumericDate)
    assert refused(validator, make_token(keys.rsa, claims(iat=NOW, exp=NOW + 100 * 365 * 86_400)), trust) == invalid(
        "token lifetime (exp - iat) exceeds the maximum of 30d"
    )


def test_lifetime_cap_without_iat_counts_from_now_with_the_leeway(keys: Keys) -> None:
    validator = TokenValidator(KeySourceRegistry(), clock=lambda: float(NOW), max_lifetime=3_600)
    trust = static_trust(("k1", keys.rsa), clock_skew_leeway=30)
    assert validator.validate(make_token(keys.rsa, claims(iat=DROP, exp=NOW + 3_630)), trust)
    assert refused(validator, make_token(keys.rsa, claims(iat=DROP, exp=NOW + 3_631)), trust) == invalid(
        'token expires later than 1h from now (and has no "iat")'
    )
    # with iat, the issuer's own lifetime counts, wherever "now" is within the token's life
    assert validator.validate(make_token(keys.rsa, claims(iat=NOW - 1_000, exp=NOW + 2_600)), trust)
    assert refused(validator, make_token(keys.rsa, claims(iat=NOW - 1_000, exp=NOW + 2_601)), trust) == invalid(
        "token lifetime (exp - iat) exceeds the maximum of 1h"
    )


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_lifetime_cap_must_be_positive_seconds(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_lifetime"):
        TokenValidator(KeySourceRegistry(), max_lifetime=bad)


# --- iss / aud / required string claims ---------------------------------------------------------


@pytest.mark.parametrize(
    "iss", ["https://idp.example.com.evil", "https://evil.example/https://idp.example.com", "https://idp.example"]
)
def test_wrong_issuer(keys: Keys, validator: TokenValidator, iss: str) -> None:
    token = make_token(keys.rsa, claims(iss=iss))
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(
        'claim "iss" does not match the profile issuer'
    )


def test_missing_or_non_string_issuer(keys: Keys, validator: TokenValidator) -> None:
    trust = static_trust(("k1", keys.rsa))
    assert refused(validator, make_token(keys.rsa, claims(iss=DROP)), trust) == invalid('claim "iss" is required')
    assert refused(validator, make_token(keys.rsa, claims(iss=[ISS])), trust) == invalid(
        'claim "iss" must be a non-empty string'
    )


@pytest.mark.parametrize("aud", ["https://other.example", ["a", "b"], "https://rs.example.com/"])
def test_wrong_audience(keys: Keys, validator: TokenValidator, aud: Any) -> None:
    token = make_token(keys.rsa, claims(aud=aud))
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(
        'claim "aud" does not contain an accepted audience'
    )


def test_missing_audience_when_configured(keys: Keys, validator: TokenValidator) -> None:
    token = make_token(keys.rsa, claims(aud=DROP))
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid('claim "aud" is required')


@pytest.mark.parametrize("aud", [[], [""], ["https://rs.example.com", 7], 7, "", None])
def test_malformed_audience(keys: Keys, validator: TokenValidator, aud: Any) -> None:
    token = make_token(keys.rsa, claims(aud=aud))
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(
        'claim "aud" must be a string or an array of strings'
    )


@pytest.mark.parametrize("name", ["jti", "sub"])
def test_missing_unique_id_or_subject(keys: Keys, validator: TokenValidator, name: str) -> None:
    token = make_token(keys.rsa, claims(**{name: DROP}))
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(f'claim "{name}" is required')


@pytest.mark.parametrize("value", ["", 42, None, ["x"], {"id": "x"}])
@pytest.mark.parametrize("name", ["jti", "sub"])
def test_unique_id_and_subject_must_be_non_empty_strings(
    keys: Keys, validator: TokenValidator, name: str, value: Any
) -> None:
    token = make_token(keys.rsa, claims(**{name: value}))
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(
        f'claim "{name}" must be a non-empty string'
    )


@pytest.mark.parametrize(
    ("act", "reason"),
    [
        ({"sub": 5}, 'claim "act.sub" must be a non-empty string'),
        ({"sub": ""}, 'claim "act.sub" must be a non-empty string'),
        ({"sub": None}, 'claim "act.sub" must be a non-empty string'),
        ("agent-7", 'claim "act" must be an object'),
        (["agent-7"], 'claim "act" must be an object'),
    ],
)
def test_malformed_actor(keys: Keys, validator: TokenValidator, act: Any, reason: str) -> None:
    token = make_token(keys.rsa, claims(act=act))
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(reason)


@pytest.mark.parametrize("act", [{}, {"client_id": "c"}, {"act": {"sub": "older-agent"}}])
def test_actor_object_without_sub_fails_closed(keys: Keys, validator: TokenValidator, act: Any) -> None:
    """Delegation named without its actor is refused (vault-semantics §3.1 step 5: OBO fails
    closed); it used to be taken as a direct call by the subject."""
    token = make_token(keys.rsa, claims(act=act))
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(
        'claim "act.sub" is required when "act" is present'
    )
    # A custom actor path: the same once its first member is there.
    trust = static_trust(("k1", keys.rsa), actor_claim="delegation.agent.id")
    for present in ({}, {"agent": {}}):
        token = make_token(keys.rsa, claims(delegation=present))
        assert refused(validator, token, trust) == invalid(
            'claim "delegation.agent.id" is required when "delegation" is present'
        )
    assert validator.validate(make_token(keys.rsa, claims()), trust).actor_subject is None


def test_non_string_txn(keys: Keys, validator: TokenValidator) -> None:
    token = make_token(keys.rsa, claims(txn=5))
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(
        'claim "txn" must be a non-empty string'
    )


# --- typ (§6 #25) ---------------------------------------------------------------------------------


@pytest.mark.parametrize("typ", ["dpop+jwt", "id_token", "application/json", "secevent+jwt", "txn+jwt", "at+jwt "])
def test_wrong_typ(keys: Keys, validator: TokenValidator, typ: str) -> None:
    token = make_token(keys.rsa, typ=typ)
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid(f'typ "{typ}" is not allowed')


def test_missing_or_non_string_typ(keys: Keys, validator: TokenValidator) -> None:
    trust = static_trust(("k1", keys.rsa))
    assert refused(validator, make_token(keys.rsa, typ=None), trust) == invalid('header "typ" is required')
    assert refused(validator, make_token(keys.rsa, header={"typ": 1}), trust) == invalid(
        'header "typ" must be a string'
    )


# --- keys: kid confusion, key/alg fit, weak keys (§6 #6, #21, #22) ------------------------------


def test_unknown_kid(keys: Keys, validator: TokenValidator) -> None:
    token = make_token(keys.rsa, kid="../../etc/passwd")
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid('kid "../../etc/passwd" not found')


@pytest.mark.parametrize("kid", [7, "", "k" * 257, ["k1"], None])
def test_malformed_kid(keys: Keys, validator: TokenValidator, kid: Any) -> None:
    token = make_token(keys.rsa, header={"kid": kid})
    trust = static_trust(("k1", keys.rsa))
    if kid is None:  # "kid": null is treated like an absent kid: single key -> used
        assert validator.validate(token, trust).kid is None
        return
    assert refused(validator, token, trust) == invalid(
        'header "kid" must be a non-empty string of at most 256 characters'
    )


def test_kid_naming_another_key(keys: Keys, validator: TokenValidator) -> None:
    # Signed with key B but claims to be key A: the signature check uses A and fails.
    token = make_token(keys.rsa_b, kid="a")
    trust = static_trust(("a", keys.rsa), ("b", keys.rsa_b))
    assert refused(validator, token, trust) == invalid("signature verification failed")
    assert validator.validate(make_token(keys.rsa_b, kid="b"), trust).kid == "b"


def test_no_kid_with_several_keys(keys: Keys, validator: TokenValidator) -> None:
    token = make_token(keys.rsa, kid=None)
    trust = static_trust(("a", keys.rsa), ("b", keys.rsa_b))
    assert refused(validator, token, trust) == invalid('header "kid" is required: the profile has 2 keys')


@pytest.mark.parametrize(
    ("alg", "key_attr", "desc"),
    [
        ("ES256", "rsa", "RSA-2048"),
        ("RS256", "p256", "EC P-256"),
        ("ES256", "p384", "EC P-384"),
        ("ES384", "p256", "EC P-256"),
        ("ES512", "p384", "EC P-384"),
        ("EdDSA", "p256", "EC P-256"),
        ("PS256", "ed25519", "Ed25519"),
    ],
)
def test_alg_must_fit_the_key(keys: Keys, validator: TokenValidator, alg: str, key_attr: str, desc: str) -> None:
    key = getattr(keys, key_attr)
    token = make_token(key, header={"alg": alg}, alg=_signing_alg(key_attr))
    assert refused(validator, token, static_trust(("k1", key))) == invalid(
        f'alg "{alg}" does not fit key "k1" ({desc})'
    )


def _signing_alg(key_attr: str) -> str:
    return {"rsa": "RS256", "p256": "ES256", "p384": "ES384", "ed25519": "EdDSA"}[key_attr]


def test_rsa_key_under_2048_bits(keys: Keys, validator: TokenValidator) -> None:
    token = make_token(keys.rsa1024)
    assert refused(validator, token, static_trust(("k1", keys.rsa1024))) == invalid(
        'key "k1" is unusable: RSA key is 1024 bits; at least 2048 are required'
    )


def test_private_key_pem_in_profile_is_refused(keys: Keys, validator: TokenValidator) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = keys.rsa.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    trust = TrustConfig(issuer=ISS, use_jwks=False, public_keys=(("k1", pem),))
    assert refused(validator, make_token(keys.rsa), trust) == invalid(
        'key "k1" is unusable: private keys are not accepted; provide a public key or certificate'
    )


# --- signatures (§6 #23) ------------------------------------------------------------------------


def _ec_token_with_signature(keys: Keys, signature: bytes) -> str:
    return make_token(keys.p256, alg="ES256", signature=signature)


def test_ecdsa_all_zero_signature(keys: Keys, validator: TokenValidator) -> None:
    token = _ec_token_with_signature(keys, b"\x00" * 64)
    assert refused(validator, token, static_trust(("k1", keys.p256))) == invalid("signature verification failed")


P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.mark.parametrize("r_s", [(P256_ORDER, P256_ORDER), (0, 1), (1, 0), (2**256 - 1, 2**256 - 1)])
def test_ecdsa_out_of_range_signature(keys: Keys, validator: TokenValidator, r_s: tuple[int, int]) -> None:
    r, s = r_s
    token = _ec_token_with_signature(keys, r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    assert refused(validator, token, static_trust(("k1", keys.p256))) == invalid("signature verification failed")


def test_ecdsa_der_signature_is_refused(keys: Keys, validator: TokenValidator) -> None:
    h64, p64 = b64json({"alg": "ES256", "typ": "at+jwt", "kid": "k1"}), b64json(claims())
    der = keys.p256.sign(f"{h64}.{p64}".encode(), ec.ECDSA(hashes.SHA256()))
    decode_dss_signature(der)  # it is a genuine signature, just DER-encoded
    token = f"{h64}.{p64}.{b64(der)}"
    assert refused(validator, token, static_trust(("k1", keys.p256))) == invalid("signature verification failed")


def test_ecdsa_high_s_twin_is_valid_proving_the_order_constant(keys: Keys, validator: TokenValidator) -> None:
    # (r, n - s) is also a valid ECDSA signature; accepting it shows our range check uses the right n.
    h64, p64 = b64json({"alg": "ES256", "typ": "at+jwt", "kid": "k1"}), b64json(claims())
    sig = sign("ES256", keys.p256, f"{h64}.{p64}".encode())
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    twin = r.to_bytes(32, "big") + (P256_ORDER - s).to_bytes(32, "big")
    assert validator.validate(f"{h64}.{p64}.{b64(twin)}", static_trust(("k1", keys.p256))).alg == "ES256"


@pytest.mark.parametrize("mutate", ["payload", "signature", "empty", "truncated", "pkcs1-as-pss"])
def test_tampering(keys: Keys, validator: TokenValidator, mutate: str) -> None:
    token = make_token(keys.rsa)
    h64, p64, s64 = token.split(".")
    if mutate == "payload":
        token = f"{h64}.{b64json(claims(sub='admin'))}.{s64}"
    elif mutate == "signature":
        token = f"{h64}.{p64}.{b64(bytes(256))}"
    elif mutate == "empty":
        token = f"{h64}.{p64}."
    elif mutate == "truncated":
        token = f"{h64}.{p64}.{s64[:-4]}"
    else:  # RS256 signature relabelled as PS256
        h_ps = b64json({"alg": "PS256", "typ": "at+jwt", "kid": "k1"})
        token = f"{h_ps}.{p64}.{b64(sign('RS256', keys.rsa, f'{h_ps}.{p64}'.encode()))}"
    assert refused(validator, token, static_trust(("k1", keys.rsa))) == invalid("signature verification failed")


# --- robustness: nothing but TokenError ever escapes ---------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_tokens_only_raise_token_error(keys: Keys, data: st.DataObject) -> None:
    validator = TokenValidator(KeySourceRegistry(), clock=lambda: float(NOW))
    trust = static_trust(("k1", keys.p256))
    token = make_token(keys.p256, alg="ES256")
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.text(min_size=0, max_size=3))
    mutated = token[:position] + replacement + token[position + 1 :]
    try:
        validator.validate(mutated, trust)
    except TokenError as exc:
        assert exc.code == TOKEN_INVALID
    else:
        assert mutated == token  # only a no-op edit may pass


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b64(b) + "." + b64(b) + ".")))
def test_arbitrary_input_only_raises_token_error(text: str) -> None:
    from agentceiling.tokens import peek_issuer

    try:
        peek_issuer(text)
    except TokenError as exc:
        assert exc.code == TOKEN_INVALID
