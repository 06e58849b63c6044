"""Helpers for authorization tests: a real identity provider (keys + JWKS over HTTP on loopback),
a control-plane client, module-scoped real servers, and a per-test "world" (its own namespace, so
tests sharing a server never see each other's objects)."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import root_conftest

from agentceiling._gen.agentceiling.v1 import authorization_pb2 as apb
from agentceiling._gen.agentceiling.v1 import authorization_pb2_grpc as apbg
from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb
from agentceiling._gen.agentceiling.v1 import control_plane_pb2_grpc as pbg
from agentceiling.dev_idp import DevIdp

ALL_ALGS = ["ES256", "PS256", "EdDSA", "RS256"]
RAR_NO_MATCH_TEXT = "No valid authorization_details claim found matching this request."


_conftest = root_conftest.root
start_server: Callable[..., Any] = _conftest.start_server
wait_healthy: Callable[..., None] = _conftest.wait_healthy
free_port: Callable[[], int] = _conftest.free_port


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ---------------------------------------------------------------- the identity provider


#: Signing keys (RSA, EC P-256, Ed25519) and their JWKS served over HTTP on 127.0.0.1.
Idp = DevIdp


def path_access(path: str, *caps: str, **extra: Any) -> dict[str, Any]:
    return {"type": "vault:path_access", "path": path, "capabilities": list(caps), **extra}


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS with the given header and claims and an arbitrary signature."""
    h = b64url(json.dumps(header).encode())
    p = b64url(json.dumps(claims).encode())
    return f"{h}.{p}.{b64url(signature)}"


# ---------------------------------------------------------------- the control plane


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
        self.system = pbg.SystemStub(self.channel)

    def profile(self, idp: Idp, name: str = "idp", **kw: Any) -> pb.OAuthResourceServerProfile:
        kw.setdefault("jwks_uri", idp.jwks_uri)
        msg = pb.OAuthResourceServerProfile(namespace=self.namespace, profile_name=name, issuer_id=idp.issuer, **kw)
        return self.profiles.Create(pb.CreateProfileRequest(profile=msg), metadata=self.md).profile

    def update_profile(self, profile: pb.OAuthResourceServerProfile) -> pb.OAuthResourceServerProfile:
        return self.profiles.Update(pb.UpdateProfileRequest(profile=profile), metadata=self.md).profile

    def policy(self, name: str, text: str) -> int:
        p = pb.Policy(namespace=self.namespace, name=name, policy=text)
        try:
            return int(self.policies.Create(pb.CreatePolicyRequest(policy=p), metadata=self.md).generation)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
            return int(self.policies.Update(pb.UpdatePolicyRequest(policy=p), metadata=self.md).generation)

    def entity(
        self,
        name: str,
        policies: list[str] | None = None,
        disabled: bool = False,
        metadata: dict[str, str] | None = None,
    ) -> pb.IdentityEntity:
        e = pb.IdentityEntity(
            namespace=self.namespace, name=name, policies=policies or [], disabled=disabled, metadata=metadata or {}
        )
        return self.entities.Create(pb.CreateEntityRequest(entity=e), metadata=self.md).entity

    def update_entity(self, entity: pb.IdentityEntity) -> pb.IdentityEntity:
        return self.entities.Update(pb.UpdateEntityRequest(entity=entity), metadata=self.md).entity

    def set_disabled(self, entity: pb.IdentityEntity, disabled: bool) -> pb.IdentityEntity:
        current = self.entities.Read(
            pb.ReadEntityRequest(namespace=self.namespace, id=entity.id), metadata=self.md
        ).entity
        current.disabled = disabled
        return self.update_entity(current)

    def alias(self, entity: pb.IdentityEntity, idp: Idp, external_id: str) -> pb.EntityAlias:
        # The alias name is made unique: the store's unique (mount_accessor, name) constraint also
        # applies to issuer-only aliases (mount_accessor ""), across namespaces (reported).
        a = pb.EntityAlias(
            namespace=self.namespace,
            name=uniq(external_id),
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

    def update_registration(self, reg: pb.AgentRegistration, ceilings: list[str]) -> pb.AgentRegistration:
        r = pb.AgentRegistration()
        r.CopyFrom(reg)
        del r.ceiling_policies[:]
        r.ceiling_policies.extend(ceilings)
        return self.registrations.Update(pb.UpdateRegistrationRequest(registration=r), metadata=self.md).registration

    def delete_registration(self, reg: pb.AgentRegistration) -> int:
        return int(
            self.registrations.Delete(
                pb.DeleteRegistrationRequest(namespace=self.namespace, id=reg.id), metadata=self.md
            ).generation
        )


def authorize(
    address: str,
    token: str,
    path: str = "",
    operation: str = "",
    *,
    metadata: list[tuple[str, str]] | None = None,
    parameters: dict[str, Any] | None = None,
    **kw: Any,
) -> apb.AuthorizeResponse:
    req = apb.AuthorizeRequest(token=token, path=path, operation=operation, **kw)
    if parameters is not None:
        req.parameters.update(parameters)
    with grpc.insecure_channel(address) as ch:
        return apbg.AuthorizationStub(ch).Authorize(req, timeout=15, metadata=metadata)


def eventually(check: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02) -> float:
    """Seconds until ``check()`` first holds; raises AssertionError after ``timeout``."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


# ---------------------------------------------------------------- servers and worlds

CEILING = 'path "secret/data/ci/*" {\n  capabilities = ["read", "list"]\n}\n'
ACCESS = 'path "secret/data/*" {\n  capabilities = ["create", "read", "update", "delete", "list"]\n}\n'


def module_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Body of a module-scoped ``params=["sqlite", "postgresql"]`` fixture: one real server per
    database (both listeners healthy), shared by the module's tests."""
    kind = request.param
    base = tmp_path_factory.mktemp(f"authz-{kind}")
    url = ""
    if kind == "postgresql":
        url = str(request.getfixturevalue("pg_cluster").create_database())
    srv = start_server(base / "data", url)
    try:
        wait_healthy(srv.authz_address, proc=srv.proc)
        yield srv
    finally:
        rc = srv.stop()
        assert rc == 0, f"server exited with {rc}:\n{srv.log()[-4000:]}"


@dataclass
class World:
    """One test's slice of a shared server: its own namespace, profile and helpers."""

    server: Any
    idp: Idp
    cc: ControlClient
    profile: pb.OAuthResourceServerProfile | None = None

    @property
    def ns(self) -> str:
        return self.cc.namespace

    def authorize(self, token: str, path: str = "", operation: str = "", **kw: Any) -> apb.AuthorizeResponse:
        kw.setdefault("namespace", self.ns)
        return authorize(self.server.authz_address, token, path, operation, **kw)

    def agent(
        self,
        name: str,
        ceiling: str | None = CEILING,
        access: str | None = ACCESS,
        *,
        register: bool = True,
        disabled: bool = False,
        metadata: dict[str, str] | None = None,
        **reg: Any,
    ) -> tuple[pb.IdentityEntity, pb.AgentRegistration | None]:
        """An entity with an alias for ``name`` (the token's sub), its own access policy and,
        unless ``register=False``, an agent registration whose ceiling is ``ceiling``."""
        policies = []
        if access is not None:
            self.cc.policy(f"{name}-access", access)
            policies.append(f"{name}-access")
        ent = self.cc.entity(name, policies, disabled=disabled, metadata=metadata)
        self.cc.alias(ent, self.idp, name)
        registration = None
        if register:
            ceilings = []
            if ceiling is not None:
                self.cc.policy(f"{name}-ceiling", ceiling)
                ceilings.append(f"{name}-ceiling")
            registration = self.cc.register(ent, name, ceilings, **reg)
        return ent, registration


def make_world(server: Any, idp: Idp, *, profile: bool = True, **profile_kw: Any) -> World:
    cc = ControlClient(server.channel(), server.token, namespace=uniq("ns"))
    created = None
    if profile:
        profile_kw.setdefault("supported_algorithms", ALL_ALGS)
        profile_kw.setdefault("audiences", ["agentceiling"])
        created = cc.profile(idp, **profile_kw)
    return World(server, idp, cc, created)


def start_role(
    data_dir: Path, database_url: str, role: str, *, env: dict[str, str] | None = None, timeout: float = 60
) -> Any:
    """``agentceiling serve --role <role>`` and wait for the listener that role serves (the
    shared ``start_server`` waits for the control plane, which an authz-only replica lacks)."""
    import os
    import subprocess

    data_dir.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{free_port()}"
    authz_address = f"127.0.0.1:{free_port()}"
    log_path = data_dir / f"server-{role}-{uuid.uuid4().hex[:6]}.log"
    cmd = [sys.executable, "-m", "agentceiling.cli", "serve", "--data-dir", str(data_dir), "--role", role]
    cmd += ["--listen", address, "--authz-listen", authz_address]
    if database_url:
        cmd += ["--database-url", database_url]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    srv = _conftest.RunningServer(proc, data_dir, address, authz_address, database_url, log_path)
    try:
        wait_healthy(authz_address if role == "authz" else address, timeout=timeout, proc=proc)
        if role == "all":
            wait_healthy(authz_address, timeout=timeout, proc=proc)
    except Exception:
        srv.stop(9)
        raise RuntimeError(f"{role} server failed to start:\n{srv.log()}") from None
    return srv
