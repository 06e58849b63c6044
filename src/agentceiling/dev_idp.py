"""A development identity provider: signing keys, their JWKS served over HTTP on 127.0.0.1, tokens.

What `make run` (scripts/demo.py), bench/authorize.py and the tests use to play the IdP an agent's
tokens come from. Keys live in memory for the life of the object; nothing here is fit for
production. Not imported by the server or the provider.

    idp = DevIdp()                      # RSA 2048, EC P-256 and Ed25519 keys; JWKS at idp.jwks_uri
    token = idp.token("ci-agent", [{"type": "vault:path_access", "path": "secret/data/ci/app",
                                    "capabilities": ["read"]}], alg="ES256")
    idp.close()
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

__all__ = ["ALG_KIND", "KINDS", "DevIdp"]

KINDS = ("rsa", "ec", "ed25519")
#: Which key kind signs each algorithm.
ALG_KIND = {
    **{f"{p}{n}": "rsa" for p in ("RS", "PS") for n in (256, 384, 512)},
    "ES256": "ec",
    "EdDSA": "ed25519",
}


def _generate(kind: str) -> Any:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key kind {kind!r}; one of {', '.join(KINDS)}")


def _jwk(kind: str, public_key: Any) -> dict[str, Any]:
    algorithm: Any = {"rsa": jwt.algorithms.RSAAlgorithm, "ec": jwt.algorithms.ECAlgorithm}.get(
        kind, jwt.algorithms.OKPAlgorithm
    )
    return dict(json.loads(algorithm.to_jwk(public_key)))


class DevIdp:
    """Keys of the given kinds and their JWKS on ``jwks_uri`` (any path of the server answers it).

    ``fail = True`` makes the server answer 500; ``requests`` counts the JWKS fetches."""

    def __init__(self, kinds: Iterable[str] = KINDS, *, kid_prefix: str = "", audience: str = "agentceiling") -> None:
        self.keys: dict[str, Any] = {kind: _generate(kind) for kind in kinds}
        self.kids = {kind: f"{kid_prefix or kind}-{uuid.uuid4().hex[:8]}" for kind in self.keys}
        self.audience = audience
        self.requests = 0
        self.fail = False
        self._count_lock = threading.Lock()
        idp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with idp._count_lock:
                    idp.requests += 1
                if idp.fail:
                    self.send_error(500)
                    return
                body = json.dumps(idp.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self.issuer = f"http://127.0.0.1:{self.port}/"
        self.jwks_uri = f"{self.issuer}.well-known/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    # ---------------------------------------------------------------- keys

    def jwks(self) -> dict[str, Any]:
        out = []
        for kind, key in self.keys.items():
            jwk = _jwk(kind, key.public_key())
            jwk.update({"kid": self.kids[kind], "use": "sig"})
            out.append(jwk)
        return {"keys": out}

    def public_pem(self, kind: str) -> str:
        return (
            self.keys[kind]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def private_pem(self, kind: str) -> bytes:
        """The signing key (PKCS#8 PEM), e.g. for processes that mint tokens in parallel."""
        return bytes(
            self.keys[kind].private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    def rotate(self, kind: str) -> None:
        """A new kid for ``kind`` (and, for EC, a new key: quick to make, unlike RSA's)."""
        if kind == "ec":
            self.keys[kind] = _generate("ec")
        self.kids[kind] = f"{kind}-{uuid.uuid4().hex[:8]}"

    # ---------------------------------------------------------------- tokens

    def claims(
        self,
        sub: str,
        details: Any = None,
        *,
        act: str | None = None,
        lifetime: int = 300,
        extra: dict[str, Any] | None = None,
        omit: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": self.audience,
            "iat": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
        }
        if details is not None:
            claims["authorization_details"] = details
        if act is not None:
            claims["act"] = {"sub": act}
        claims.update(extra or {})
        for name in omit:
            claims.pop(name, None)
        return claims

    def token(
        self,
        sub: str,
        details: Any = None,
        *,
        alg: str = "ES256",
        act: str | None = None,
        lifetime: int = 300,
        extra: dict[str, Any] | None = None,
        omit: tuple[str, ...] = (),
        typ: str | None = "at+jwt",
        kid: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """A signed access token for ``sub``; ``details`` becomes ``authorization_details``."""
        claims = self.claims(sub, details, act=act, lifetime=lifetime, extra=extra, omit=omit)
        kind = ALG_KIND[alg]
        hdr: dict[str, Any] = {"kid": kid or self.kids[kind], "typ": typ}  # typ None: PyJWT omits it
        hdr.update(headers or {})
        return jwt.encode(claims, self.keys[kind], algorithm=alg, headers=hdr)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
