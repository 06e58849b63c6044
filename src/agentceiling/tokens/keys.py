"""Verification keys: loading (PEM, certificate, JWK), algorithm fit, and signature checks.

Signatures are checked with ``cryptography`` directly, so the only algorithms that exist here are the
asymmetric ones we allow (RFC 7518 §3.3-3.5, RFC 8037): there is no code path for ``none`` or HMAC at
all (RFC 8725 §2.1, §3.1). Each key carries the set of algorithms it may be used with, derived from
its type (RSA -> RS*/PS*, EC -> the one ES* of its curve, Ed25519 -> EdDSA) and narrowed by a JWK
``alg`` member when present ("each key MUST be used with exactly one algorithm", 8725bis).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .compact import b64url_decode

__all__ = [
    "MAX_RSA_BITS",
    "MIN_RSA_BITS",
    "SUPPORTED_ALGORITHMS",
    "PublicKey",
    "VerificationKey",
    "key_from_jwk",
    "load_pem_key",
    "verify_signature",
]

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

MIN_RSA_BITS = 2048
"""RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used with these algorithms"."""
MAX_RSA_BITS = 8192
"""Upper bound to cap verification CPU (standards-idp §2.3)."""

RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
# alg -> (JWK crv, cryptography curve name, coordinate size in bytes, group order n)
_EC_PARAMS: dict[str, tuple[str, str, int, int]] = {
    "ES256": (
        "P-256",
        "secp256r1",
        32,
        0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    ),
    "ES384": (
        "P-384",
        "secp384r1",
        48,
        0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973,
    ),
    "ES512": (
        "P-521",
        "secp521r1",
        66,
        int(
            "1FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
            "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
            16,
        ),
    ),
}
_ALG_BY_CURVE = {curve: alg for alg, (_, curve, _, _) in _EC_PARAMS.items()}
_CURVE_BY_CRV: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_CRV_BY_CURVE = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

SUPPORTED_ALGORITHMS: frozenset[str] = RSA_ALGORITHMS | frozenset(_EC_PARAMS) | {"EdDSA"}
"""Everything a profile may allow; an empty ``supported_algorithms`` means all of these."""


@dataclass(frozen=True, slots=True, eq=False)
class VerificationKey:
    """A parsed public key, ready to verify; ``algorithms`` are the only algs it may verify."""

    kid: str | None
    public_key: PublicKey
    algorithms: frozenset[str]
    description: str
    """e.g. ``RSA-2048``, ``EC P-384``, ``Ed25519`` (for error reasons and logs)."""


_P25519 = 2**255 - 19
_Y_ORDER_8 = int.from_bytes(bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little")
#: The y-coordinates of the eight Ed25519 points of small order (the identity, one point of order
#: 2, two of order 4, four of order 8; libsodium refuses the same). For such a public key A, the
#: signature R = identity, S = 0 passes RFC 8032's check [S]B = R + [k]A whenever [k]A is the
#: identity: for every message when A is the identity, for one message in 2, 4 or 8 otherwise.
#: Anyone could then sign tokens. RFC 8725 §3.4: validate all cryptographic inputs.
_SMALL_ORDER_Y = frozenset({0, 1, _P25519 - 1, _Y_ORDER_8, _P25519 - _Y_ORDER_8})


def _small_order_ed25519(raw: bytes) -> bool:
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)  # the top bit is the sign of x
    return y % _P25519 in _SMALL_ORDER_Y  # y >= p: a non-canonical spelling of y - p


def _primes_below(limit: int) -> list[int]:
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\x00\x00"
    for i in range(2, int(limit**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(range(i * i, limit, i)))
    return [i for i in range(limit) if sieve[i]]


#: The product of the primes below 10 000: an RSA modulus sharing one with it (an even one, say)
#: is factored at once, and then anyone can sign with the key. One gcd per key loaded.
_SMALL_PRIMES = math.prod(_primes_below(10_000))


def _describe_and_algorithms(public_key: object) -> tuple[PublicKey, str, frozenset[str]]:
    """Classify a public key; raise ``ValueError`` with a stable reason if we refuse it."""
    if isinstance(public_key, rsa.RSAPublicKey):
        bits = public_key.key_size
        if bits < MIN_RSA_BITS:
            raise ValueError(f"RSA key is {bits} bits; at least {MIN_RSA_BITS} are required")
        if bits > MAX_RSA_BITS:
            raise ValueError(f"RSA key is {bits} bits; at most {MAX_RSA_BITS} are accepted")
        if math.gcd(public_key.public_numbers().n, _SMALL_PRIMES) != 1:
            raise ValueError("RSA modulus has a small prime factor, so signatures can be forged")
        return public_key, f"RSA-{bits}", RSA_ALGORITHMS
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        alg = _ALG_BY_CURVE.get(public_key.curve.name)
        if alg is None:
            raise ValueError(f"EC curve {public_key.curve.name} is not supported")
        return public_key, f"EC {_CRV_BY_CURVE[public_key.curve.name]}", frozenset({alg})
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if _small_order_ed25519(raw):
            raise ValueError("Ed25519 key is a point of small order, for which signatures can be forged")
        return public_key, "Ed25519", frozenset({"EdDSA"})
    raise ValueError(f"{type(public_key).__name__.removeprefix('_')} keys are not supported")


def load_pem_key(pem: str | bytes, key_id: str | None = None) -> VerificationKey:
    """Load a PEM SubjectPublicKeyInfo public key or X.509 certificate (its public key).

    Private keys are refused outright: a profile must never hold signing material. Raises
    ``ValueError`` with a stable message; the control plane can call this to validate a profile.
    """
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    if b"PRIVATE KEY-----" in data:
        raise ValueError("private keys are not accepted; provide a public key or certificate")
    public_key: object
    if b"-----BEGIN CERTIFICATE-----" in data:
        try:
            public_key = x509.load_pem_x509_certificate(data).public_key()
        except ValueError:
            raise ValueError("invalid PEM certificate") from None
    else:
        try:
            public_key = serialization.load_pem_public_key(data)
        except Exception:  # ValueError, UnsupportedAlgorithm, ...
            raise ValueError("invalid PEM public key") from None
    key, description, algorithms = _describe_and_algorithms(public_key)
    return VerificationKey(key_id, key, algorithms, description)


def _b64_int(jwk: Mapping[str, Any], name: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f'member "{name}" is missing')
    try:
        return int.from_bytes(b64url_decode(value.rstrip("=")), "big")
    except ValueError:
        raise ValueError(f'member "{name}" is not base64url') from None


def _b64_fixed(jwk: Mapping[str, Any], name: str, size: int) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise ValueError(f'member "{name}" is missing')
    try:
        raw = b64url_decode(value.rstrip("="))
    except ValueError:
        raise ValueError(f'member "{name}" is not base64url') from None
    if len(raw) != size:
        raise ValueError(f'member "{name}" must be {size} bytes')
    return raw


_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


def key_from_jwk(jwk: object) -> VerificationKey:
    """Parse one JWKS entry (RFC 7517) into a verification key, or raise ``ValueError`` (skip it).

    Skipped: non-objects, unknown ``kty`` (RFC 7517 §5: ignore), ``oct`` (HMAC), entries carrying
    private members, ``use`` other than ``sig``, ``key_ops`` without ``verify``, an ``alg`` we do not
    support or that does not fit the key, RSA below 2048 bits, points not on their curve.
    """
    if not isinstance(jwk, Mapping):
        raise ValueError("key is not a JSON object")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValueError('member "kid" is not a string')
    kty = jwk.get("kty")
    if kty == "oct":
        raise ValueError("symmetric (oct) keys are never used")
    if any(member in jwk for member in _PRIVATE_MEMBERS):
        raise ValueError("key contains private members")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise ValueError(f"key use {use!r} is not sig")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise ValueError("key_ops does not include verify")
    public_key: object
    if kty == "RSA":
        n, e = _b64_int(jwk, "n"), _b64_int(jwk, "e")
        try:
            public_key = rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError:
            raise ValueError("invalid RSA public numbers") from None
    elif kty == "EC":
        crv = jwk.get("crv")
        curve = _CURVE_BY_CRV.get(crv) if isinstance(crv, str) else None
        if curve is None:
            raise ValueError(f"EC curve {crv!r} is not supported")
        size = math.ceil(curve.key_size / 8)
        x = int.from_bytes(_b64_fixed(jwk, "x", size), "big")
        y = int.from_bytes(_b64_fixed(jwk, "y", size), "big")
        try:
            public_key = ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
        except ValueError:
            raise ValueError("EC point is not on the curve") from None
    elif kty == "OKP":
        if jwk.get("crv") != "Ed25519":
            raise ValueError(f"OKP curve {jwk.get('crv')!r} is not supported")
        public_key = ed25519.Ed25519PublicKey.from_public_bytes(_b64_fixed(jwk, "x", 32))
    else:
        raise ValueError(f"kty {kty!r} is not supported")
    key, description, algorithms = _describe_and_algorithms(public_key)
    alg = jwk.get("alg")
    if alg is not None:
        if not isinstance(alg, str):
            raise ValueError('member "alg" is not a string')
        if alg not in algorithms:
            raise ValueError(f"alg {alg!r} does not fit a {description} key")
        algorithms = frozenset({alg})
    return VerificationKey(kid, key, algorithms, description)


# --- signature verification -------------------------------------------------------------------

_Verifier = Callable[[PublicKey, bytes, bytes], None]
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "256": hashes.SHA256(),
    "384": hashes.SHA384(),
    "512": hashes.SHA512(),
}
_PKCS1 = padding.PKCS1v15()


def _rsa_verifier(alg: str) -> _Verifier:
    digest = _HASHES[alg[2:]]
    # RFC 7518 §3.5: PSS with MGF1 over the same hash and a salt as long as the hash output.
    pad: padding.AsymmetricPadding = (
        padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size) if alg.startswith("PS") else _PKCS1
    )

    def verify(key: PublicKey, data: bytes, signature: bytes) -> None:
        if not isinstance(key, rsa.RSAPublicKey) or len(signature) != (key.key_size + 7) // 8:
            raise InvalidSignature
        key.verify(signature, data, pad, digest)

    return verify


def _ecdsa_verifier(alg: str) -> _Verifier:
    _, curve_name, size, order = _EC_PARAMS[alg]
    scheme = ec.ECDSA(_HASHES[alg[2:]])

    def verify(key: PublicKey, data: bytes, signature: bytes) -> None:
        # RFC 7518 §3.4: the signature is R || S, each exactly `size` octets (not DER). Both must
        # lie in [1, n-1]: this refuses the all-zero "psychic signature" (CVE-2022-21449) before
        # OpenSSL ever sees it.
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve_name or len(signature) != 2 * size:
            raise InvalidSignature
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        if not (0 < r < order and 0 < s < order):
            raise InvalidSignature
        key.verify(encode_dss_signature(r, s), data, scheme)

    return verify


def _eddsa_verify(key: PublicKey, data: bytes, signature: bytes) -> None:
    if not isinstance(key, ed25519.Ed25519PublicKey) or len(signature) != 64:
        raise InvalidSignature
    key.verify(signature, data)


_VERIFIERS: dict[str, _Verifier] = {
    **{alg: _rsa_verifier(alg) for alg in RSA_ALGORITHMS},
    **{alg: _ecdsa_verifier(alg) for alg in _EC_PARAMS},
    "EdDSA": _eddsa_verify,
}


def verify_signature(key: VerificationKey, alg: str, signing_input: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is valid for ``signing_input`` under ``key`` and ``alg``. Never raises."""
    if alg not in key.algorithms:
        return False
    verifier = _VERIFIERS.get(alg)
    if verifier is None:
        return False
    try:
        verifier(key.public_key, signing_input, signature)
    except Exception:  # InvalidSignature, and anything odd from the backend: refuse, never escape
        return False
    return True
