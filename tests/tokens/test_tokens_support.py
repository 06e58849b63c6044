"""Helpers for the tokens tests (imported by conftest and the test modules): real keys, a hand-rolled
JWS signer, a real loopback JWKS server. No tests here; the name only keeps the module importable
without clashing with other packages' helpers."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from agentceiling.tokens import TrustConfig

NOW = 1_800_000_000
ISS = "https://idp.example.com"
AUD = "https://rs.example.com"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
DROP: Any = object()  # header/claim override meaning "remove this member"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj).encode())


_HASH = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}


def sign(alg: str, key: PrivateKey, data: bytes) -> bytes:
    """Sign exactly as RFC 7518 says (R||S for ECDSA), so attack tokens can be built by hand."""
    if alg == "EdDSA":
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        return key.sign(data)
    digest = _HASH[alg[2:]]
    if alg.startswith("RS"):
        assert isinstance(key, rsa.RSAPrivateKey)
        return key.sign(data, padding.PKCS1v15(), digest)
    if alg.startswith("PS"):
        assert isinstance(key, rsa.RSAPrivateKey)
        return key.sign(data, padding.PSS(padding.MGF1(digest), digest.digest_size), digest)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def claims(now: int = NOW, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "sub": "user-1",
        "client_id": "agent-1",
        "iat": now - 10,
        "exp": now + 300,
        "jti": "jti-1",
        "authorization_details": [{"type": "vault:path_access", "path": "secret/data/x", "capabilities": ["read"]}],
    }
    for name, value in overrides.items():
        if value is DROP:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def make_token(
    key: PrivateKey,
    payload: dict[str, Any] | bytes | None = None,
    *,
    alg: str = "RS256",
    kid: str | None = "k1",
    typ: str | None = "at+jwt",
    header: dict[str, Any] | None = None,
    raw_header: bytes | None = None,
    signature: bytes | None = None,
) -> str:
    """Build a compact JWS by hand. ``raw_header``/bytes payload allow duplicate members etc."""
    hdr: dict[str, Any] = {"alg": alg}
    if typ is not None:
        hdr["typ"] = typ
    if kid is not None:
        hdr["kid"] = kid
    for name, value in (header or {}).items():
        if value is DROP:
            hdr.pop(name, None)
        else:
            hdr[name] = value
    h64 = b64(raw_header) if raw_header is not None else b64json(hdr)
    if payload is None:
        payload = claims()
    p64 = b64(payload) if isinstance(payload, bytes) else b64json(payload)
    signing_input = f"{h64}.{p64}".encode()
    sig = signature if signature is not None else sign(alg, key, signing_input)
    return f"{h64}.{p64}.{b64(sig)}"


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _int_b64(value: int, size: int | None = None) -> str:
    length = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return b64(value.to_bytes(length, "big"))


def jwk(key: PrivateKey, kid: str | None = "k1", **extra: Any) -> dict[str, Any]:
    """The public JWK for a private key (plus arbitrary extra members)."""
    out: dict[str, Any]
    if isinstance(key, rsa.RSAPrivateKey):
        nums = key.public_key().public_numbers()
        out = {"kty": "RSA", "n": _int_b64(nums.n), "e": _int_b64(nums.e)}
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        pub = key.public_key().public_numbers()
        size = (key.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[key.curve.name]
        out = {"kty": "EC", "crv": crv, "x": _int_b64(pub.x, size), "y": _int_b64(pub.y, size)}
    else:
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        out = {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
    if kid is not None:
        out["kid"] = kid
    out.update(extra)
    return out


RsaKey = rsa.RSAPrivateKey


@dataclass(frozen=True)
class Keys:
    rsa: RsaKey
    rsa_b: RsaKey
    rsa1024: RsaKey
    p256: ec.EllipticCurvePrivateKey
    p384: ec.EllipticCurvePrivateKey
    p521: ec.EllipticCurvePrivateKey
    ed25519: ed25519.Ed25519PrivateKey


def static_trust(*pairs: tuple[str, PrivateKey], **overrides: Any) -> TrustConfig:
    fields: dict[str, Any] = {
        "issuer": ISS,
        "use_jwks": False,
        "public_keys": tuple((kid, public_pem(k)) for kid, k in pairs),
        "audiences": (AUD,),
    }
    fields.update(overrides)
    return TrustConfig(**fields)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- JWKS server ----------------------------------------------------------------------------------


class JwksServer:
    """A real HTTP(S) server on 127.0.0.1 serving a controllable JWKS at /jwks."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.jwks: Any = {"keys": []}
        self.status = 200
        self.body: bytes | None = None  # raw body override
        self.send_length = True
        self.delay = 0.0  # "hang": sleep this long before answering (released on close)
        self.requests = 0
        self.lock = threading.Lock()
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server.lock:
                    server.requests += 1
                    status, body, delay, send_length = server.status, server.body, server.delay, server.send_length
                    jwks = server.jwks
                if delay:
                    server._release.wait(delay)
                if body is None:
                    body = json.dumps(jwks).encode() if status == 200 else b"<html>error</html>"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    if send_length:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}/jwks"

    def serve(self, *entries: Any) -> None:
        with self.lock:
            self.jwks = {"keys": list(entries)}

    def wait_requests(self, n: int, timeout: float = 3.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.requests >= n:
                return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass(frozen=True)
class TlsMaterial:
    ca_pem: str
    other_ca_pem: str
    server_context: ssl.SSLContext


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def jwks_trust(url: str, **overrides: Any) -> TrustConfig:
    fields: dict[str, Any] = {"issuer": ISS, "jwks_uri": url, "audiences": (AUD,)}
    fields.update(overrides)
    return TrustConfig(**fields)


def build_tls_material(directory: Path) -> TlsMaterial:
    """A test CA, an unrelated CA, and a server context for 127.0.0.1 signed by the first."""
    ca_key, ca_cert = _ca("agentceiling test CA")
    _, other_cert = _ca("some other CA")
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return TlsMaterial(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM).decode(),
        other_ca_pem=other_cert.public_bytes(serialization.Encoding.PEM).decode(),
        server_context=context,
    )


def generate_keys() -> Keys:
    return Keys(
        rsa=rsa.generate_private_key(65537, 2048),
        rsa_b=rsa.generate_private_key(65537, 2048),
        rsa1024=rsa.generate_private_key(65537, 1024),
        p256=ec.generate_private_key(ec.SECP256R1()),
        p384=ec.generate_private_key(ec.SECP384R1()),
        p521=ec.generate_private_key(ec.SECP521R1()),
        ed25519=ed25519.Ed25519PrivateKey.generate(),
    )
