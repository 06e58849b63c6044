"""The gRPC surface as a whole: admin-token authentication, health and reflection, malformed and
oversized messages, the generation counter, versions. Real gRPC, SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import stat
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from test_cp_support import SIMPLE_POLICY, C, Client, db_dump, expect, rpc_error, uniq

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb

SERVICES = [
    "agentceiling.v1.OAuthResourceServerProfiles",
    "agentceiling.v1.AgentRegistrations",
    "agentceiling.v1.Policies",
    "agentceiling.v1.IdentityEntities",
    "agentceiling.v1.EntityAliases",
    "agentceiling.v1.System",
]
DENY = "a valid admin token is required: send `authorization: Bearer <token>` metadata"
MiB = 1024 * 1024


def all_methods() -> list[str]:
    return [f"/{s.full_name}/{m.name}" for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods]


def raw_call(channel: grpc.Channel, method: str, payload: bytes, metadata: Any = None) -> bytes:
    fn = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    return bytes(fn(payload, metadata=metadata, timeout=30))


# ---------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer acs.wrong-token",
        "Bearer ",
        "Bearer",
        "Basic {token}",
        "{token}",
        "Bearer {token}x",
    ],
)
def test_calls_without_a_valid_token_are_unauthenticated(srv: Any, header: str | None) -> None:
    md = None if header is None else [("authorization", header.format(token=srv.token))]
    with grpc.insecure_channel(srv.address) as ch:
        for method in all_methods():
            exc = rpc_error(raw_call, ch, method, b"", md)
            assert (exc.code(), exc.details()) == (C.UNAUTHENTICATED, DENY), method


def test_only_the_first_bearer_token_of_a_call_is_checked(srv: Any) -> None:
    """Each unknown token costs a database read: a call with many authorization headers gets one
    check, of its first bearer token."""
    with grpc.insecure_channel(srv.address) as ch:
        wrong_first = [("authorization", f"Bearer wrong-{i}") for i in range(20)] + [
            ("authorization", f"Bearer {srv.token}")
        ]
        exc = rpc_error(raw_call, ch, "/agentceiling.v1.System/Status", b"", wrong_first)
        assert (exc.code(), exc.details()) == (C.UNAUTHENTICATED, DENY)
        right_first = [("authorization", f"Basic {srv.token}"), ("authorization", f"Bearer {srv.token}"),
                       ("authorization", "Bearer wrong")]
        raw = raw_call(ch, "/agentceiling.v1.System/Status", b"", right_first)
        assert pb.StatusResponse.FromString(raw).database in ("sqlite", "postgresql")


def test_valid_token_works_with_any_scheme_case(srv: Any) -> None:
    with grpc.insecure_channel(srv.address) as ch:
        for scheme in ("Bearer", "bearer", "BEARER"):
            md = [("authorization", f"{scheme} {srv.token}")]
            raw = raw_call(ch, "/agentceiling.v1.System/Status", b"", md)
            assert pb.StatusResponse.FromString(raw).database in ("sqlite", "postgresql")


def test_unauthenticated_calls_write_nothing(srv: Any, c: Client) -> None:
    before = c.generation()
    name = uniq("ent")
    req = pb.CreateEntityRequest(entity=pb.IdentityEntity(name=name)).SerializeToString()
    with grpc.insecure_channel(srv.address) as ch:
        rpc_error(raw_call, ch, "/agentceiling.v1.IdentityEntities/Create", req, [("authorization", "Bearer nope")])
    assert c.generation() == before
    expect(
        C.NOT_FOUND,
        f'entity "{name}" not found in namespace "root"',
        c.entities.Read,
        pb.ReadEntityRequest(name=name),
    )


def test_health_and_reflection_need_no_token(srv: Any) -> None:
    with grpc.insecure_channel(srv.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ["", *SERVICES]:
            resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING, service
        services = ProtoReflectionDescriptorDatabase(ch).get_services()
    assert set(SERVICES) <= set(services)


def test_reflection_lists_the_services_like_grpcurl(srv: Any) -> None:
    with grpc.insecure_channel(srv.address) as ch:
        db = ProtoReflectionDescriptorDatabase(ch)
        services = sorted(db.get_services())
        assert services == sorted([*SERVICES, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"])
        file = db.FindFileContainingSymbol("agentceiling.v1.AgentRegistrations")
        assert file.package == "agentceiling.v1"
        assert {s.name for s in file.service} == {s.rsplit(".", 1)[1] for s in SERVICES}
        methods = {m.name for s in file.service if s.name == "Policies" for m in s.method}
        assert methods == {"Create", "Read", "Update", "Delete", "List"}


def test_token_file_is_private_and_only_its_hash_is_stored(srv: Any) -> None:
    token_file = srv.data_dir / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = srv.token
    assert len(token) >= 32
    dump = db_dump(srv)
    assert token.encode() not in dump
    assert token.split(".", 1)[-1].encode() not in dump
    assert hashlib.sha256(token.encode()).hexdigest().encode() in dump
    assert token not in srv.log()


# ---------------------------------------------------------------- malformed and oversized messages


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xff\xff\xff\xff", b"\x0a\x05ab", b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", bytes(range(256))],
)
def test_malformed_message_is_refused_and_the_server_keeps_serving(srv: Any, c: Client, payload: bytes) -> None:
    with grpc.insecure_channel(srv.address) as ch:
        for method in ("/agentceiling.v1.IdentityEntities/Create", "/agentceiling.v1.Policies/Update"):
            exc = rpc_error(raw_call, ch, method, payload, srv.metadata())
            assert exc.code() == C.INVALID_ARGUMENT, (exc.code(), exc.details())
            assert "is not a valid agentceiling.v1." in exc.details(), exc.details()
    assert srv.proc.poll() is None
    assert c.entity().version == 1
    assert "Exception deserializing" not in srv.log() and "Traceback" not in srv.log()


def test_unknown_method_is_unimplemented(srv: Any, c: Client) -> None:
    with grpc.insecure_channel(srv.address) as ch:
        exc = rpc_error(raw_call, ch, "/agentceiling.v1.Nope/Nothing", b"", srv.metadata())
        assert exc.code() == C.UNIMPLEMENTED
    assert c.generation() >= 0


def test_oversized_message_is_resource_exhausted_and_the_server_keeps_serving(srv: Any, c: Client) -> None:
    before = c.generation()
    big = SIMPLE_POLICY + "#" + "x" * (5 * MiB) + "\n"
    exc = rpc_error(c.policies.Create, pb.CreatePolicyRequest(policy=pb.Policy(name=uniq("big"), policy=big)))
    assert exc.code() == C.RESOURCE_EXHAUSTED, (exc.code(), exc.details())
    with grpc.insecure_channel(srv.address) as ch:
        exc = rpc_error(
            raw_call, ch, "/agentceiling.v1.IdentityEntities/Create", b"\x00" * (4 * MiB + 1), srv.metadata()
        )
        assert exc.code() == C.RESOURCE_EXHAUSTED, (exc.code(), exc.details())
    assert srv.proc.poll() is None
    assert c.generation() == before
    # A policy under the limit in characters but not in bytes is refused before anything is
    # written (it was stored, the Create answered RESOURCE_EXHAUSTED, and no Read could return it).
    wide = SIMPLE_POLICY + "#" + "\u00e9" * int(1.9 * MiB) + "\n"  # 3.8 MB, under 4 MiB
    exc = rpc_error(c.policies.Create, pb.CreatePolicyRequest(policy=pb.Policy(name=uniq("wide"), policy=wide)))
    assert exc.code() == C.INVALID_ARGUMENT and "bytes in UTF-8" in exc.details(), (exc.code(), exc.details())
    assert c.generation() == before
    # Just under the limit still works.
    fits = SIMPLE_POLICY + "#" + "y" * (3 * MiB) + "\n"
    req = pb.CreatePolicyRequest(policy=pb.Policy(namespace=uniq("fits"), name="fits", policy=fits))
    assert c.policies.Create(req).policy.version == 1


def test_a_write_that_fits_can_be_answered_and_read_back(c: Client) -> None:
    """A request just under the 4 MiB limit: the server either refuses it (INVALID_ARGUMENT, nothing
    written) or stores it and can send it back. Never a write the client is told failed but that
    was committed, and that no Read can ever return."""
    ns, name = uniq("edge"), "edge"
    base = pb.CreatePolicyRequest(policy=pb.Policy(namespace=ns, name=name, policy=SIMPLE_POLICY + "#\n"))
    text = SIMPLE_POLICY + "#" + "z" * (4 * MiB - 16 - base.ByteSize()) + "\n"
    req = pb.CreatePolicyRequest(policy=pb.Policy(namespace=ns, name=name, policy=text))
    assert req.ByteSize() < 4 * MiB
    gen = c.generation()
    try:
        resp = c.policies.Create(req)
    except grpc.RpcError as exc:
        assert exc.code() == C.INVALID_ARGUMENT, (exc.code(), exc.details())
        assert c.generation() == gen
        expect(
            C.NOT_FOUND,
            f'policy "{name}" not found in namespace "{ns}"',
            c.policies.Read,
            pb.ReadPolicyRequest(namespace=ns, name=name),
        )
    else:
        assert resp.policy.policy == text
        assert c.policies.Read(pb.ReadPolicyRequest(namespace=ns, name=name)).policy.policy == text


def test_listing_large_objects_pages_instead_of_failing(c: Client) -> None:
    """Two 2.1 MiB policies: a List with the default page size must still answer (a page that
    fits, then the rest through next_page_token), not RESOURCE_EXHAUSTED forever."""
    ns = uniq("big")
    for i in range(2):
        c.policy(f"big-{i}", namespace=ns, text=SIMPLE_POLICY + "#" + "x" * int(2.1 * MiB) + "\n")
    names: list[str] = []
    token = ""
    for _ in range(10):
        resp = c.policies.List(pb.ListRequest(namespace=ns, page_token=token))
        names += [p.name for p in resp.policies]
        token = resp.next_page_token
        if not token:
            break
    assert sorted(names) == ["big-0", "big-1", "default", "default-ceiling"]


# ---------------------------------------------------------------- generation counter


def _reads(c: Client) -> None:
    c.system.Status(pb.StatusRequest())
    c.system.ListActivationFlags(pb.ListActivationFlagsRequest())
    c.policies.Read(pb.ReadPolicyRequest(namespace=uniq("fresh"), name="default"))
    c.policies.List(pb.ListRequest(namespace=uniq("fresh")))
    c.profiles.List(pb.ListRequest())
    c.entities.List(pb.ListRequest())
    c.aliases.List(pb.ListRequest())
    c.registrations.List(pb.ListRequest())
    rpc_error(c.entities.Read, pb.ReadEntityRequest(id=str(uuid.uuid4())))


def test_every_write_bumps_the_generation_by_one_and_reads_do_not(c: Client) -> None:
    last = [c.generation()]

    def wrote(label: str, resp: Any) -> Any:
        assert resp.generation == last[0] + 1, label
        assert c.generation() == resp.generation, label
        _reads(c)
        assert c.generation() == resp.generation, f"a read after {label} changed the generation"
        last[0] = resp.generation
        return resp

    ns, iss = uniq("gen"), f"https://{uniq('idp')}.example.com"
    prof = pb.OAuthResourceServerProfile(namespace=ns, profile_name="p", issuer_id=iss, jwks_uri=iss)
    wrote(
        "policy.create",
        c.policies.Create(pb.CreatePolicyRequest(policy=pb.Policy(namespace=ns, name="pol", policy=SIMPLE_POLICY))),
    )
    wrote(
        "policy.update",
        c.policies.Update(
            pb.UpdatePolicyRequest(policy=pb.Policy(namespace=ns, name="pol", policy=SIMPLE_POLICY + "\n"))
        ),
    )
    wrote("profile.create", c.profiles.Create(pb.CreateProfileRequest(profile=prof)))
    prof.audiences.append("a")
    wrote("profile.update", c.profiles.Update(pb.UpdateProfileRequest(profile=prof)))
    ent = wrote(
        "entity.create", c.entities.Create(pb.CreateEntityRequest(entity=pb.IdentityEntity(namespace=ns, name="e")))
    ).entity
    wrote(
        "entity.update",
        c.entities.Update(pb.UpdateEntityRequest(entity=pb.IdentityEntity(namespace=ns, id=ent.id, name="e2"))),
    )
    alias = pb.EntityAlias(namespace=ns, name="a", canonical_id=ent.id, issuer=iss, external_id="x")
    alias.id = wrote("alias.create", c.aliases.Create(pb.CreateAliasRequest(alias=alias))).alias.id
    alias.name = "a2"
    wrote("alias.update", c.aliases.Update(pb.UpdateAliasRequest(alias=alias)))
    reg = pb.AgentRegistration(namespace=ns, display_name="r", entity_id=ent.id, ceiling_policies=["pol"])
    reg.id = wrote(
        "registration.create", c.registrations.Create(pb.CreateRegistrationRequest(registration=reg))
    ).registration.id
    reg.owner = "me"
    wrote("registration.update", c.registrations.Update(pb.UpdateRegistrationRequest(registration=reg)))
    wrote("feature.activate", c.system.ActivateFeature(pb.ActivateFeatureRequest(feature=uniq("feature"))))
    wrote("registration.delete", c.registrations.Delete(pb.DeleteRegistrationRequest(namespace=ns, id=reg.id)))
    wrote("alias.delete", c.aliases.Delete(pb.DeleteAliasRequest(namespace=ns, id=alias.id)))
    wrote("entity.delete", c.entities.Delete(pb.DeleteEntityRequest(namespace=ns, id=ent.id)))
    wrote("profile.delete", c.profiles.Delete(pb.DeleteProfileRequest(namespace=ns, profile_name="p")))
    wrote("policy.delete", c.policies.Delete(pb.DeletePolicyRequest(namespace=ns, name="pol")))


def test_failed_writes_do_not_bump_the_generation(c: Client) -> None:
    name = uniq("ent")
    ent = c.entity(name)
    registrant = c.entity()
    failing: list[tuple[grpc.StatusCode, Callable[[], Any]]] = [
        (C.ALREADY_EXISTS, lambda: c.entity(name)),
        (
            C.ABORTED,
            lambda: c.entities.Update(pb.UpdateEntityRequest(entity=pb.IdentityEntity(id=ent.id), expected_version=9)),
        ),
        (C.INVALID_ARGUMENT, lambda: c.policy(text="path {")),
        (C.FAILED_PRECONDITION, lambda: c.policies.Delete(pb.DeletePolicyRequest(name="default"))),
        (C.INVALID_ARGUMENT, lambda: c.registration(registrant.id, ceiling_policies=[uniq("missing")])),
        (C.NOT_FOUND, lambda: c.profiles.Delete(pb.DeleteProfileRequest(profile_name=uniq("ghost")))),
        (C.INVALID_ARGUMENT, lambda: c.system.ActivateFeature(pb.ActivateFeatureRequest(feature=""))),
    ]
    for code, fn in failing:
        before = c.generation()
        assert rpc_error(fn).code() == code
        assert c.generation() == before


def test_status_reports_the_database(srv: Any, c: Client) -> None:
    resp = c.system.Status(pb.StatusRequest())
    assert resp.database == ("sqlite" if srv.database_url.startswith("sqlite") else "postgresql")
    assert resp.version


def test_activation_flags(c: Client) -> None:
    feature = uniq("feature")
    flag = c.system.ActivateFeature(pb.ActivateFeatureRequest(feature=feature)).flag
    assert flag.feature == feature and flag.activated_time
    again = c.system.ActivateFeature(pb.ActivateFeatureRequest(feature=feature)).flag
    assert again == flag
    listed = c.system.ListActivationFlags(pb.ListActivationFlagsRequest()).activated
    assert [f for f in listed if f.feature == feature] == [flag]
    for bad in ("", " x", "a/b"):
        exc = rpc_error(c.system.ActivateFeature, pb.ActivateFeatureRequest(feature=bad))
        assert exc.code() == C.INVALID_ARGUMENT


# ---------------------------------------------------------------- paging arguments


def test_page_arguments_are_validated(c: Client) -> None:
    for lister in (c.profiles.List, c.registrations.List, c.policies.List, c.entities.List, c.aliases.List):
        exc = rpc_error(lister, pb.ListRequest(page_size=-1))
        assert (exc.code(), exc.details()) == (C.INVALID_ARGUMENT, "page_size: page_size cannot be negative")
        exc = rpc_error(lister, pb.ListRequest(page_token="%%%not-base64"))
        assert (exc.code(), exc.details()) == (C.INVALID_ARGUMENT, "page_token: invalid page_token")
