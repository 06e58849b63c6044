"""Helpers for authorization tests: a real identity provider (keys + JWKS over HTTP on loopback)
and a control-plane set-up of profile, entity, alias, ceiling policy and registration."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from agentceiling._gen.agentceiling.v1 import authorization_pb2 as apb
from agentceiling._gen.agentceiling.v1 import authorization_pb2_grpc as apbg
from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb
from agentceiling._gen.agentceiling.v1 import control_plane_pb2_grpc as pbg

ALGS = {"RS256": "rsa", "PS256": "rsa", "ES256": "ec", "EdDSA": "ed25519"}


class Idp:
    """Signing keys (RSA, EC P-256, Ed25519) and their JWKS served over HTTP on 127.0.0.1."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {
            "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ec": ec.generate_private_key(ec.SECP256R1()),
            "ed25519": ed25519.Ed25519PrivateKey.generate(),
        }
        self.kids = {kind: f"{kind}-{uuid.uuid4().hex[:6]}" for kind in self.keys}
        self.requests = 0
        self.fail = False
        idp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
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
        self.issuer = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.jwks_uri = f"{self.issuer}.well-known/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def jwks(self) -> dict[str, Any]:
        out = []
        for kind, key in self.keys.items():
            pub = key.public_key()
            if kind == "rsa":
                jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(pub))
            elif kind == "ec":
                jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(pub))
            else:
                jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(pub))
            jwk.update({"kid": self.kids[kind], "use": "sig"})
            out.append(jwk)
        return {"keys": out}

    def rotate(self, kind: str) -> None:
        if kind == "ec":
            self.keys[kind] = ec.generate_private_key(ec.SECP256R1())
        self.kids[kind] = f"{kind}-{uuid.uuid4().hex[:6]}"

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
        typ: str = "at+jwt",
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": "agentceiling",
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
        kind = ALGS[alg]
        return jwt.encode(claims, self.keys[kind], algorithm=alg, headers={"kid": self.kids[kind], "typ": typ})

    def close(self) -> None:
        self.httpd.shutdown()


def path_access(path: str, *caps: str) -> dict[str, Any]:
    return {"type": "vault:path_access", "path": path, "capabilities": list(caps)}


@dataclass
class ControlClient:
    channel: grpc.Channel
    token: str
    namespace: str = "root"
    md: list[tuple[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        self.md = [("authorization", f"Bearer {self.token}")]
        self.profiles = pbg.OAuthResourceServerProfilesStub(self.channel)
        self.entities = pbg.IdentityEntitiesStub(self.channel)
        self.aliases = pbg.EntityAliasesStub(self.channel)
        self.policies = pbg.PoliciesStub(self.channel)
        self.registrations = pbg.AgentRegistrationsStub(self.channel)

    def profile(self, idp: Idp, name: str = "idp", **kw: Any) -> pb.OAuthResourceServerProfile:
        msg = pb.OAuthResourceServerProfile(
            namespace=self.namespace, profile_name=name, issuer_id=idp.issuer, jwks_uri=idp.jwks_uri, **kw
        )
        return self.profiles.Create(pb.CreateProfileRequest(profile=msg), metadata=self.md).profile

    def policy(self, name: str, text: str) -> None:
        p = pb.Policy(namespace=self.namespace, name=name, policy=text)
        try:
            self.policies.Create(pb.CreatePolicyRequest(policy=p), metadata=self.md)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
            self.policies.Update(pb.UpdatePolicyRequest(policy=p), metadata=self.md)

    def entity(self, name: str, policies: list[str] | None = None, disabled: bool = False) -> pb.IdentityEntity:
        e = pb.IdentityEntity(namespace=self.namespace, name=name, policies=policies or [], disabled=disabled)
        return self.entities.Create(pb.CreateEntityRequest(entity=e), metadata=self.md).entity

    def alias(self, entity: pb.IdentityEntity, idp: Idp, external_id: str) -> pb.EntityAlias:
        a = pb.EntityAlias(
            namespace=self.namespace,
            name=external_id,
            canonical_id=entity.id,
            issuer=idp.issuer,
            external_id=external_id,
        )
        return self.aliases.Create(pb.CreateAliasRequest(alias=a), metadata=self.md).alias

    def register(self, entity: pb.IdentityEntity, name: str, ceilings: list[str], **kw: Any) -> pb.AgentRegistration:
        r = pb.AgentRegistration(
            namespace=self.namespace, display_name=name, entity_id=entity.id, ceiling_policies=ceilings, **kw
        )
        return self.registrations.Create(pb.CreateRegistrationRequest(registration=r), metadata=self.md).registration


def authorize(address: str, token: str, path: str = "", operation: str = "", **kw: Any) -> apb.AuthorizeResponse:
    with grpc.insecure_channel(address) as ch:
        return apbg.AuthorizationStub(ch).Authorize(
            apb.AuthorizeRequest(token=token, path=path, operation=operation, **kw), timeout=10
        )
