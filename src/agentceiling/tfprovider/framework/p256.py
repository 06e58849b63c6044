"""Just enough ECDSA P-256 to make the plugin's ephemeral TLS server certificate.

Why not ``cryptography``: importing it costs 20-35 ms, and the provider process starts 3 to 5
times per terraform command; this module costs well under 1 ms to import and ~2 ms to run. What
it does is narrow: generate one key, sign one certificate (SHA-256), serialise the key for
OpenSSL. The key lives for one short process, stays in a 0700 directory and never leaves the
machine; OpenSSL (the ``ssl`` module) does all the TLS work with it. Python integers are not
constant-time, which matters little for a single signature by a throwaway key. The tests check
every output against ``cryptography``.
"""

from __future__ import annotations

import hashlib
import os

# Curve parameters (SEC 2 / FIPS 186-4, secp256r1).
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
A = P - 3
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5

_Jacobian = tuple[int, int, int]


def _double(pt: _Jacobian) -> _Jacobian:
    x, y, z = pt
    if y == 0 or z == 0:
        return (0, 1, 0)
    yy = y * y % P
    s = 4 * x * yy % P
    zz = z * z % P
    m = 3 * (x - zz) * (x + zz) % P  # a = -3
    x3 = (m * m - 2 * s) % P
    y3 = (m * (s - x3) - 8 * yy * yy) % P
    z3 = 2 * y * z % P
    return (x3, y3, z3)


def _add(p1: _Jacobian, p2: _Jacobian) -> _Jacobian:
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    if z1 == 0:
        return p2
    if z2 == 0:
        return p1
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    if u1 == u2:
        return _double(p1) if s1 == s2 else (0, 1, 0)
    h = (u2 - u1) % P
    hh = h * h % P
    hhh = h * hh % P
    r = (s2 - s1) % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    z3 = h * z1 * z2 % P
    return (x3, y3, z3)


def scalar_mult(k: int, x: int = GX, y: int = GY) -> tuple[int, int]:
    """k * (x, y) in affine coordinates (double-and-add over Jacobian coordinates)."""
    result: _Jacobian = (0, 1, 0)
    addend: _Jacobian = (x, y, 1)
    while k:
        if k & 1:
            result = _add(result, addend)
        addend = _double(addend)
        k >>= 1
    rx, ry, rz = result
    if rz == 0:
        raise ValueError("point at infinity")
    zinv = pow(rz, -1, P)
    zinv2 = zinv * zinv % P
    return rx * zinv2 % P, ry * zinv2 * zinv % P


class PrivateKey:
    def __init__(self, d: int) -> None:
        if not 1 <= d < N:
            raise ValueError("private scalar out of range")
        self.d = d
        self.x, self.y = scalar_mult(d)

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(_random_scalar())

    def public_point(self) -> bytes:
        """Uncompressed SEC1 point: 04 || X || Y."""
        return b"\x04" + self.x.to_bytes(32, "big") + self.y.to_bytes(32, "big")

    def sign_sha256(self, message: bytes) -> bytes:
        """ECDSA with SHA-256; the DER ``Ecdsa-Sig-Value``."""
        e = int.from_bytes(hashlib.sha256(message).digest(), "big")
        while True:
            k = _random_scalar()
            r = scalar_mult(k)[0] % N
            if r == 0:
                continue
            s = pow(k, -1, N) * (e + r * self.d) % N
            if s != 0:
                return der(0x30, der_int(r) + der_int(s))

    def spki_der(self) -> bytes:
        """SubjectPublicKeyInfo: id-ecPublicKey, prime256v1, the point."""
        return der(0x30, _ALGORITHM + der(0x03, b"\x00" + self.public_point()))

    def sec1_der(self) -> bytes:
        """RFC 5915 ECPrivateKey (``BEGIN EC PRIVATE KEY``), with the curve and the public key."""
        return der(
            0x30,
            b"\x02\x01\x01"
            + der(0x04, self.d.to_bytes(32, "big"))
            + der(0xA0, _OID_PRIME256V1)
            + der(0xA1, der(0x03, b"\x00" + self.public_point())),
        )

    def sec1_pem(self) -> bytes:
        import base64

        body = base64.encodebytes(self.sec1_der()).replace(b"\n", b"")
        lines = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
        return b"-----BEGIN EC PRIVATE KEY-----\n" + lines + b"\n-----END EC PRIVATE KEY-----\n"


def _random_scalar() -> int:
    """Uniform in [1, N-1] up to a 2**-64 bias (os.urandom; ``secrets`` costs more to import)."""
    return int.from_bytes(os.urandom(40), "big") % (N - 1) + 1


_OID_EC_PUBLIC_KEY = bytes.fromhex("06072a8648ce3d0201")
_OID_PRIME256V1 = bytes.fromhex("06082a8648ce3d030107")


def der(tag: int, content: bytes) -> bytes:
    """A DER TLV."""
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def der_int(v: int) -> bytes:
    """A non-negative DER INTEGER in its minimal encoding (strict parsers, Go's included, reject
    a redundant leading zero byte)."""
    raw = v.to_bytes((v.bit_length() + 8) // 8, "big")  # one spare bit keeps it positive
    return der(0x02, raw)


_ALGORITHM = der(0x30, _OID_EC_PUBLIC_KEY + _OID_PRIME256V1)
