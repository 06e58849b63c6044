"""Key loading (PEM, certificates, JWK) and the signature primitives."""

from __future__ import annotations

import secrets

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x25519
from test_tokens_support import Keys, b64, jwk, public_pem, sign

from agentceiling.tokens import key_from_jwk, load_pem_key
from agentceiling.tokens.keys import _EC_PARAMS, verify_signature


def _pem(public_key: object) -> str:
    assert hasattr(public_key, "public_bytes")
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.mark.parametrize(
    ("attr", "description", "algorithms"),
    [
        ("rsa", "RSA-2048", {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
        ("p256", "EC P-256", {"ES256"}),
        ("p384", "EC P-384", {"ES384"}),
        ("p521", "EC P-521", {"ES512"}),
        ("ed25519", "Ed25519", {"EdDSA"}),
    ],
)
def test_load_pem_key_classifies(keys: Keys, attr: str, description: str, algorithms: set[str]) -> None:
    key = load_pem_key(public_pem(getattr(keys, attr)), "kid-x")
    assert (key.kid, key.description, set(key.algorithms)) == ("kid-x", description, algorithms)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda k: public_pem(k.rsa1024), "RSA key is 1024 bits; at least 2048 are required"),
        (
            lambda k: _pem(rsa.RSAPublicNumbers(65537, (1 << 8999) | secrets.randbits(8000) | 1).public_key()),
            "RSA key is 9000 bits; at most 8192 are accepted",
        ),
        (
            lambda k: _pem(rsa.RSAPublicNumbers(65537, (1 << 2047) | secrets.randbits(2046) << 1).public_key()),
            "RSA modulus has a small prime factor, so signatures can be forged",  # even
        ),
        (
            lambda k: _pem(rsa.RSAPublicNumbers(65537, 9973 * (((1 << 2048) - 1) // 9973 | 1)).public_key()),
            "RSA modulus has a small prime factor, so signatures can be forged",
        ),
        (lambda k: _pem(ec.generate_private_key(ec.SECP256K1()).public_key()), "EC curve secp256k1 is not supported"),
        (lambda k: _pem(ed448.Ed448PrivateKey.generate().public_key()), "Ed448PublicKey keys are not supported"),
        (lambda k: _pem(x25519.X25519PrivateKey.generate().public_key()), "X25519PublicKey keys are not supported"),
        (lambda k: _pem(dsa.generate_private_key(2048).public_key()), "DSAPublicKey keys are not supported"),
        (lambda k: "not a pem", "invalid PEM public key"),
        (lambda k: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "invalid PEM certificate"),
        (
            lambda k: k.p256.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ).decode(),
            "private keys are not accepted; provide a public key or certificate",
        ),
    ],
)
def test_load_pem_key_refuses(keys: Keys, make: object, message: str) -> None:
    pem = make(keys)  # type: ignore[operator]
    with pytest.raises(ValueError) as info:
        load_pem_key(pem)
    assert str(info.value).endswith(message)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kty": "RSA", "kid": "x", "e": "AQAB"}, 'member "n" is missing'),
        ({"kty": "RSA", "kid": "x", "n": "!!", "e": "AQAB"}, 'member "n" is not base64url'),
        ({"kty": "EC", "crv": "P-256", "x": b64(b"\x01" * 32), "y": b64(b"\x02" * 32)}, "EC point is not on the curve"),
        ({"kty": "EC", "crv": "P-256", "x": b64(b"\x01" * 31), "y": b64(b"\x02" * 32)}, 'member "x" must be 32 bytes'),
        ({"kty": "EC", "crv": "secp256k1", "x": "", "y": ""}, "EC curve 'secp256k1' is not supported"),
        ({"kty": "OKP", "crv": "Ed448", "x": b64(b"\x00" * 57)}, "OKP curve 'Ed448' is not supported"),
        ({"kty": "OKP", "crv": "X25519", "x": b64(b"\x00" * 32)}, "OKP curve 'X25519' is not supported"),
        ({"kid": 5, "kty": "RSA"}, 'member "kid" is not a string'),
        ({"kid": "x"}, "kty None is not supported"),
        (["kty", "RSA"], "key is not a JSON object"),
    ],
)
def test_key_from_jwk_refuses(entry: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        key_from_jwk(entry)
    assert str(info.value) == message


@pytest.mark.parametrize("attr", ["rsa", "p256", "p384", "p521", "ed25519"])
def test_jwk_and_pem_agree(keys: Keys, attr: str) -> None:
    from_jwk, from_pem = key_from_jwk(jwk(getattr(keys, attr))), load_pem_key(public_pem(getattr(keys, attr)))
    assert from_jwk.algorithms == from_pem.algorithms and from_jwk.description == from_pem.description
    assert from_jwk.kid == "k1"


def test_jwk_padding_is_tolerated_in_key_members(keys: Keys) -> None:
    entry = jwk(keys.rsa)
    entry["n"] += "=" * (-len(entry["n"]) % 4)
    assert key_from_jwk(entry).description == "RSA-2048"


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_curve_order_constants(keys: Keys, alg: str) -> None:
    # (r, n - s) verifies iff n is the true group order; (r, n + s') would be out of range.
    key = {"ES256": keys.p256, "ES384": keys.p384, "ES512": keys.p521}[alg]
    _, _, size, order = _EC_PARAMS[alg]
    verifier = load_pem_key(public_pem(key))
    data = b"signing input"
    sig = sign(alg, key, data)
    r, s = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
    assert verify_signature(verifier, alg, data, sig)
    assert verify_signature(verifier, alg, data, r.to_bytes(size, "big") + (order - s).to_bytes(size, "big"))
    assert not verify_signature(verifier, alg, data, r.to_bytes(size, "big") + order.to_bytes(size, "big"))
    assert not verify_signature(verifier, alg, data, bytes(2 * size))
    assert not verify_signature(verifier, alg, data, sig[:-1])


def test_verify_signature_never_raises_on_wrong_pairs(keys: Keys) -> None:
    rsa_key = load_pem_key(public_pem(keys.rsa))
    assert not verify_signature(rsa_key, "ES256", b"x", b"\x00" * 64)
    assert not verify_signature(rsa_key, "HS256", b"x", b"")
    assert not verify_signature(rsa_key, "RS256", b"x", b"")
    assert verify_signature(rsa_key, "PS256", b"x", sign("PS256", keys.rsa, b"x"))
    assert not verify_signature(rsa_key, "PS384", b"x", sign("PS256", keys.rsa, b"x"))


# --- Ed25519 keys of small order (standards-idp §6: weak keys; RFC 8725 §3.4) -----------------

_P = 2**255 - 19
_Y8 = int.from_bytes(bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little")


def _small_order_encodings() -> list[bytes]:
    """Every 32-byte spelling of the eight small-order points: both signs of x, and y >= p."""
    ys = [0, 1, _P - 1, _Y8, _P - _Y8]
    ys += [y + _P for y in ys if y + _P < 1 << 255]  # non-canonical y
    return [(y | sign << 255).to_bytes(32, "little") for y in ys for sign in (0, 1)]


def _edwards_small_order(raw: bytes) -> bool:
    """[8]A is the identity, computed with the curve's own arithmetic (independent of the code)."""
    d = -121665 * pow(121666, -1, _P) % _P
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    y %= _P
    u, v = (y * y - 1) % _P, (d * y * y + 1) % _P
    x2 = u * pow(v, -1, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    assert (x * x - x2) % _P == 0

    def add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        t = d * a[0] * b[0] * a[1] * b[1] % _P
        sum_x = (a[0] * b[1] + b[0] * a[1]) * pow(1 + t, -1, _P) % _P
        return sum_x, (a[1] * b[1] + a[0] * b[0]) * pow(1 - t, -1, _P) % _P

    point = (x, y)
    for _ in range(3):
        point = add(point, point)
    return point == (0, 1)


@pytest.mark.parametrize("raw", _small_order_encodings(), ids=lambda r: r.hex()[:8] + ".." + r.hex()[-4:])
def test_ed25519_keys_of_small_order_are_refused(raw: bytes) -> None:
    assert _edwards_small_order(raw)
    message = "Ed25519 key is a point of small order, for which signatures can be forged"
    with pytest.raises(ValueError, match=message):
        key_from_jwk({"kty": "OKP", "crv": "Ed25519", "x": b64(raw)})
    try:
        public = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        return  # OpenSSL will not even load this spelling
    with pytest.raises(ValueError, match=message):
        load_pem_key(_pem(public))
    # Why: R = the identity, S = 0 is a valid signature for such a key, for every message (the
    # identity) or one in 2, 4 or 8 of them: anyone could mint tokens.
    forged = (1).to_bytes(32, "little") + bytes(32)
    forgeries = 0
    for i in range(200):  # (7/8)**200: no forgery by chance is out of the question
        try:
            public.verify(forged, b"header.payload-%d" % i)
            forgeries += 1
        except InvalidSignature:
            pass
    assert forgeries > 0


def test_ed25519_keys_of_full_order_still_load(keys: Keys) -> None:
    for _ in range(50):
        raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        assert not _edwards_small_order(raw)
        assert key_from_jwk({"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}).description == "Ed25519"
