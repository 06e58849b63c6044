"""Helpers for the control-plane tests (imported by the test_cp_* modules): authenticated stubs,
status assertions, key material, a module-scoped real server per database. No tests here; the
name only keeps the module importable without clashing with other directories' helpers."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import root_conftest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb
from agentceiling._gen.agentceiling.v1 import control_plane_pb2_grpc as pbg

C = grpc.StatusCode
SIMPLE_POLICY = 'path "secret/data/app/*" {\n  capabilities = ["read", "list"]\n}\n'


_conftest = root_conftest.root
start_server: Callable[..., Any] = _conftest.start_server
wait_healthy: Callable[..., None] = _conftest.wait_healthy
free_port: Callable[[], int] = _conftest.free_port


def settle(srv: Any) -> Any:
    """Wait until the whole server is up, not only the control plane that start_server waits for:
    the authorization listener too, and then a moment for the signal handlers to be installed."""
    wait_healthy(srv.authz_address, proc=srv.proc)
    time.sleep(0.5)
    return srv


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------- databases and servers


def fresh_database_url(request: pytest.FixtureRequest, kind: str, base: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{base / 'agentceiling.db'}"
    cluster = request.getfixturevalue("pg_cluster")
    return str(cluster.create_database())


def module_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Body of a module-scoped ``params=["sqlite", "postgresql"]`` fixture: one real server per
    database, shared by the module's tests (which use unique names so they do not interfere)."""
    kind = request.param
    base = tmp_path_factory.mktemp(f"cp-{kind}")
    url = fresh_database_url(request, kind, base)
    srv = start_server(base / "data", url)
    try:
        yield srv
    finally:
        rc = srv.stop()
        assert rc == 0, f"server exited with {rc}:\n{srv.log()[-4000:]}"


def sqlite_path(url: str) -> Path | None:
    u = sa.make_url(url)
    return Path(str(u.database)) if u.get_backend_name() == "sqlite" else None


def db_dump(srv: Any) -> bytes:
    """Everything the database holds, as bytes: the SQLite files (with the WAL), or every row of
    every PostgreSQL table as text."""
    path = sqlite_path(srv.database_url)
    if path is not None:
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    engine = sa.create_engine(srv.database_url)
    try:
        with engine.connect() as conn:
            tables = conn.exec_driver_sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").scalars()
            rows = [str(r[0]) for t in list(tables) for r in conn.exec_driver_sql(f'SELECT t::text FROM "{t}" t')]
    finally:
        engine.dispose()
    return "\n".join(rows).encode()


def check_consistency(url: str) -> None:
    """Straight from the database: foreign keys hold and every registration has its whole ceiling."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalars().all() == ["ok"]
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            orphans = conn.exec_driver_sql(
                "SELECT rc.registration_id, rc.policy_name FROM registration_ceilings rc "
                "LEFT JOIN policies p ON p.namespace = rc.namespace AND p.name = rc.policy_name "
                "WHERE p.name IS NULL"
            ).all()
            assert orphans == []
            no_entity = conn.exec_driver_sql(
                "SELECT r.id FROM registrations r LEFT JOIN entities e ON e.id = r.entity_id WHERE e.id IS NULL"
            ).all()
            assert no_entity == []
            counts = conn.exec_driver_sql(
                "SELECT r.id, r.no_default_ceiling_policy, COUNT(rc.position) FROM registrations r "
                "LEFT JOIN registration_ceilings rc ON rc.registration_id = r.id "
                "GROUP BY r.id, r.no_default_ceiling_policy"
            ).all()
            # Every registration of the burst asked for one policy: 1 + default + default-ceiling.
            assert counts and all(n == 3 for _, _, n in counts), counts
    finally:
        engine.dispose()


# ---------------------------------------------------------------- clients


class _Authed:
    """A stub whose methods send the admin token and a deadline by default."""

    def __init__(self, stub: Any, metadata: list[tuple[str, str]]) -> None:
        self._stub = stub
        self._metadata = metadata

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._stub, name)

        def call(request: Any, **kw: Any) -> Any:
            kw.setdefault("metadata", self._metadata)
            kw.setdefault("timeout", 60)
            return method(request, **kw)

        return call


class Client:
    def __init__(self, address: str, token: str | None) -> None:
        self.channel = grpc.insecure_channel(address)
        md = [("authorization", f"Bearer {token}")] if token is not None else []
        self.profiles = _Authed(pbg.OAuthResourceServerProfilesStub(self.channel), md)
        self.registrations = _Authed(pbg.AgentRegistrationsStub(self.channel), md)
        self.policies = _Authed(pbg.PoliciesStub(self.channel), md)
        self.entities = _Authed(pbg.IdentityEntitiesStub(self.channel), md)
        self.aliases = _Authed(pbg.EntityAliasesStub(self.channel), md)
        self.system = _Authed(pbg.SystemStub(self.channel), md)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- shortcuts

    def generation(self) -> int:
        return int(self.system.Status(pb.StatusRequest()).generation)

    def entity(self, name: str = "", namespace: str = "", **kw: Any) -> pb.IdentityEntity:
        req = pb.CreateEntityRequest(entity=pb.IdentityEntity(namespace=namespace, name=name or uniq("ent"), **kw))
        return self.entities.Create(req).entity

    def policy(self, name: str = "", namespace: str = "", text: str = SIMPLE_POLICY) -> pb.Policy:
        req = pb.CreatePolicyRequest(policy=pb.Policy(namespace=namespace, name=name or uniq("pol"), policy=text))
        return self.policies.Create(req).policy

    def profile(self, **kw: Any) -> pb.ProfileResponse:
        kw.setdefault("profile_name", uniq("prof"))
        kw.setdefault("issuer_id", f"https://{uniq('idp')}.example.com")
        if "jwks_uri" not in kw and "public_keys" not in kw and kw.get("use_jwks", True):
            kw["jwks_uri"] = f"{kw['issuer_id']}/.well-known/jwks.json"
        return self.profiles.Create(pb.CreateProfileRequest(profile=pb.OAuthResourceServerProfile(**kw)))

    def registration(self, entity_id: str = "", **kw: Any) -> pb.AgentRegistration:
        entity_id = entity_id or self.entity(namespace=kw.get("namespace", "")).id
        kw.setdefault("display_name", uniq("agent"))
        req = pb.CreateRegistrationRequest(registration=pb.AgentRegistration(entity_id=entity_id, **kw))
        return self.registrations.Create(req).registration


def client(srv: Any) -> Client:
    return Client(srv.address, srv.token)


# ---------------------------------------------------------------- status assertions


def rpc_error(fn: Callable[..., Any], *args: Any, **kw: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kw)
    exc = info.value
    details = exc.details() or ""
    assert "Traceback" not in details and 'File "' not in details, details
    return exc


def violations(exc: grpc.RpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(exc)
    assert status is not None, f"no rich status on {exc.code()}: {exc.details()}"
    out: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            out += [(v.field, v.description) for v in br.field_violations]
    return out


def expect(code: grpc.StatusCode, message: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> grpc.RpcError:
    """The call fails with exactly this status code and message."""
    exc = rpc_error(fn, *args, **kw)
    assert (exc.code(), exc.details()) == (code, message)
    return exc


def expect_invalid(expected: dict[str, str], fn: Callable[..., Any], *args: Any, **kw: Any) -> grpc.RpcError:
    """INVALID_ARGUMENT whose BadRequest carries exactly these field violations, one per field, and
    whose message lists the same violations."""
    exc = rpc_error(fn, *args, **kw)
    assert exc.code() == C.INVALID_ARGUMENT, (exc.code(), exc.details())
    got = violations(exc)
    fields = [f for f, _ in got]
    assert len(fields) == len(set(fields)), f"more than one violation for a field: {got}"
    assert dict(got) == expected
    assert exc.details() == "; ".join(f"{f}: {d}" for f, d in got)
    return exc


# ---------------------------------------------------------------- key material


def _pem_public(key: Any) -> str:
    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _pem_private(key: Any) -> str:
    return str(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    )


def self_signed_certificate(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    """A self-signed PEM certificate for ``key`` (tests only)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentceiling test")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


_EC = ec.generate_private_key(ec.SECP256R1())
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_ED = ed25519.Ed25519PrivateKey.generate()
EC_PUBLIC_PEM = _pem_public(_EC)
RSA_PUBLIC_PEM = _pem_public(_RSA)
ED_PUBLIC_PEM = _pem_public(_ED)
CERT_PEM = self_signed_certificate(_EC)
EC_PRIVATE_PEM = _pem_private(_EC)
RSA_PRIVATE_PEM = _pem_private(_RSA)
