"""Identity entities, entity aliases and namespaces. Real gRPC, SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from typing import Any

import grpc
import pytest
from test_cp_support import C, Client, expect, expect_invalid, rpc_error, uniq, violations

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb


def alias_req(**kw: Any) -> pb.CreateAliasRequest:
    kw.setdefault("name", uniq("alias"))
    return pb.CreateAliasRequest(alias=pb.EntityAlias(**kw))


def mk_alias(c: Client, **kw: Any) -> pb.EntityAlias:
    return c.aliases.Create(alias_req(**kw)).alias


# ---------------------------------------------------------------- entities


def test_entity_create_read_and_generated_name(c: Client) -> None:
    e = c.entities.Create(
        pb.CreateEntityRequest(entity=pb.IdentityEntity(policies=["p1"], metadata={"team": "x"}, disabled=True))
    ).entity
    assert re.fullmatch(r"entity_[0-9a-f]{8}", e.name), e.name
    assert e.name == f"entity_{e.id[:8]}"
    assert (list(e.policies), dict(e.metadata), e.disabled, e.version, e.namespace) == (
        ["p1"],
        {"team": "x"},
        True,
        1,
        "root",
    )
    assert c.entities.Read(pb.ReadEntityRequest(id=e.id)).entity == e
    assert c.entities.Read(pb.ReadEntityRequest(name=e.name)).entity == e


def test_entity_name_unique_per_namespace(c: Client) -> None:
    name = uniq("ent")
    c.entity(name)
    expect(
        C.ALREADY_EXISTS,
        f'entity "{name}" already exists in namespace "root"',
        c.entities.Create,
        pb.CreateEntityRequest(entity=pb.IdentityEntity(name=name)),
    )
    other = c.entity()
    expect(
        C.ALREADY_EXISTS,
        f'entity "{name}" already exists in namespace "root"',
        c.entities.Update,
        pb.UpdateEntityRequest(entity=pb.IdentityEntity(id=other.id, name=name)),
    )


def test_entity_rules(c: Client) -> None:
    expect_invalid(
        {
            "name": "must not begin or end with whitespace",
            "policies[0]": '"root" cannot be attached to an entity',
            "policies[1]": "policy name cannot be empty",
        },
        c.entities.Create,
        pb.CreateEntityRequest(entity=pb.IdentityEntity(name=" x", policies=["root", ""])),
    )


def test_entity_update_delete_and_versions(c: Client) -> None:
    e = c.entity(metadata={"a": "1"})
    upd = c.entities.Update(
        pb.UpdateEntityRequest(entity=pb.IdentityEntity(id=e.id, name=e.name, policies=["x"]), expected_version=1)
    ).entity
    assert (upd.version, list(upd.policies), dict(upd.metadata), upd.creation_time) == (2, ["x"], {}, e.creation_time)
    # Leaving the name out keeps it.
    kept = c.entities.Update(pb.UpdateEntityRequest(entity=pb.IdentityEntity(id=e.id))).entity
    assert kept.name == e.name and kept.version == 3
    expect(
        C.ABORTED,
        f'entity "{e.name}" is at version 3, not 2: it was changed since you read it',
        c.entities.Update,
        pb.UpdateEntityRequest(entity=pb.IdentityEntity(id=e.id, name=e.name), expected_version=2),
    )
    expect(
        C.ABORTED,
        f'entity "{e.name}" is at version 3, not 1: it was changed since you read it',
        c.entities.Delete,
        pb.DeleteEntityRequest(id=e.id, expected_version=1),
    )
    c.entities.Delete(pb.DeleteEntityRequest(id=e.id, expected_version=3))
    for req in (pb.ReadEntityRequest(id=e.id), pb.ReadEntityRequest(name=e.name)):
        key = req.id or req.name
        expect(C.NOT_FOUND, f'entity "{key}" not found in namespace "root"', c.entities.Read, req)
    expect_invalid({"id": "id or name is required"}, c.entities.Read, pb.ReadEntityRequest())


# ---------------------------------------------------------------- aliases


def test_alias_needs_an_accessor_or_an_issuer(c: Client) -> None:
    ent = c.entity()
    expect_invalid(
        {"mount_accessor": "an alias needs a mount_accessor, an issuer, or both"},
        c.aliases.Create,
        alias_req(canonical_id=ent.id),
    )
    expect_invalid(
        {"name": "is required and cannot be empty", "canonical_id": "canonical_id is required"},
        c.aliases.Create,
        alias_req(name="", issuer="https://x.example.com"),
    )


def test_alias_by_issuer_by_accessor_or_both(c: Client) -> None:
    p = c.profile().profile
    ent = c.entity()
    by_issuer = mk_alias(c, canonical_id=ent.id, issuer=p.issuer_id, external_id=uniq("sub"))
    by_accessor = mk_alias(c, canonical_id=ent.id, mount_accessor=p.mount_accessor, external_id=uniq("sub"))
    both = mk_alias(c, canonical_id=ent.id, issuer=p.issuer_id, mount_accessor=p.mount_accessor)
    # The issuer as sent; an issuer-only alias answers with its profile's accessor (Vault generates one).
    assert (by_issuer.issuer, by_issuer.mount_accessor) == (p.issuer_id, p.mount_accessor)
    assert (by_accessor.issuer, by_accessor.mount_accessor) == ("", p.mount_accessor)
    assert (both.issuer, both.mount_accessor) == (p.issuer_id, p.mount_accessor)
    for a in (by_issuer, by_accessor, both):
        assert str(uuid.UUID(a.id)) == a.id and a.version == 1 and a.namespace == "root"
        assert c.aliases.Read(pb.ReadAliasRequest(id=a.id)).alias == a


def test_issuer_and_accessor_must_agree(c: Client) -> None:
    a, b = c.profile().profile, c.profile().profile
    ent = c.entity()
    expect_invalid(
        {
            "mount_accessor": f'mount_accessor "{b.mount_accessor}" does not match the profile of issuer '
            f'"{a.issuer_id}" ("{a.profile_name}", mount_accessor "{a.mount_accessor}")'
        },
        c.aliases.Create,
        alias_req(canonical_id=ent.id, issuer=a.issuer_id, mount_accessor=b.mount_accessor),
    )


def test_accessor_must_belong_to_a_profile(c: Client) -> None:
    ent = c.entity()
    for acc in ("auth_jwt_1234", f"oauth-resource-server_root_{uuid.uuid4()}", "oauth-resource-server_root_"):
        expect_invalid(
            {
                "mount_accessor": f'mount_accessor "{acc}" does not belong to any OAuth resource-server profile '
                'in namespace "root"'
            },
            c.aliases.Create,
            alias_req(canonical_id=ent.id, mount_accessor=acc),
        )


def test_issuer_must_match_a_profile_after_normalisation(c: Client) -> None:
    host = uniq("idp")
    p = c.profile(issuer_id=f"https://{host}.example.com", jwks_uri="https://k.example.com/jwks").profile
    ent = c.entity()
    sent = f"HTTPS://{host.upper()}.EXAMPLE.COM/"
    a = mk_alias(c, canonical_id=ent.id, issuer=sent, mount_accessor=p.mount_accessor, external_id="s1")
    assert a.issuer == sent
    assert c.aliases.Read(pb.ReadAliasRequest(id=a.id)).alias.issuer == sent
    missing = f"https://{uniq('nobody')}.example.com"
    expect_invalid(
        {"issuer": f"oauth config not found for {missing}"},
        c.aliases.Create,
        alias_req(canonical_id=ent.id, issuer=missing),
    )
    expect_invalid(
        {"issuer": "issuer 'not a url' must be an absolute http or https URL"},
        c.aliases.Create,
        alias_req(canonical_id=ent.id, issuer="not a url"),
    )


def test_canonical_id_must_exist(c: Client) -> None:
    p = c.profile().profile
    ghost = str(uuid.uuid4())
    expect_invalid(
        {"canonical_id": f'entity "{ghost}" does not exist in namespace "root"'},
        c.aliases.Create,
        alias_req(canonical_id=ghost, issuer=p.issuer_id),
    )


def test_issuer_external_id_unique_per_namespace(c: Client) -> None:
    host = uniq("idp")
    p = c.profile(issuer_id=f"https://{host}.example.com", jwks_uri="https://k.example.com/jwks").profile
    first = mk_alias(c, canonical_id=c.entity().id, issuer=p.issuer_id, external_id="agent-7")
    variant = f"https://{host.upper()}.example.com/"
    expect(
        C.ALREADY_EXISTS,
        f'an alias for issuer "{variant}" with external_id "agent-7" already exists ({first.id})',
        c.aliases.Create,
        alias_req(canonical_id=c.entity().id, issuer=variant, external_id="agent-7"),
    )
    # Naming the profile by its accessor is the same issuer.
    expect(
        C.ALREADY_EXISTS,
        f'an alias for issuer "https://{host}.example.com" with external_id "agent-7" already exists ({first.id})',
        c.aliases.Create,
        alias_req(canonical_id=c.entity().id, mount_accessor=p.mount_accessor, external_id="agent-7"),
    )
    # Another external_id, or another issuer, is fine.
    mk_alias(c, canonical_id=c.entity().id, issuer=p.issuer_id, external_id="agent-8")
    q = c.profile().profile
    mk_alias(c, canonical_id=c.entity().id, issuer=q.issuer_id, external_id="agent-7")


def test_issuer_only_aliases_may_share_a_name(c: Client) -> None:
    """Alias names are unique per mount (profile): two issuers, two aliases called "ci-agent"."""
    name = uniq("ci-agent")
    for _ in range(2):
        p = c.profile().profile
        a = mk_alias(c, name=name, canonical_id=c.entity().id, issuer=p.issuer_id, external_id=uniq("sub"))
        assert a.name == name


def test_alias_name_unique_per_accessor(c: Client) -> None:
    p = c.profile().profile
    first = mk_alias(c, canonical_id=c.entity().id, mount_accessor=p.mount_accessor)
    expect(
        C.ALREADY_EXISTS,
        f'an alias named "{first.name}" already exists for mount_accessor "{p.mount_accessor}" ({first.id})',
        c.aliases.Create,
        alias_req(name=first.name, canonical_id=c.entity().id, mount_accessor=p.mount_accessor),
    )


def test_alias_update_rules(c: Client) -> None:
    p = c.profile().profile
    ent = c.entity()
    a = mk_alias(c, canonical_id=ent.id, issuer=p.issuer_id, external_id="e1", custom_metadata={"k": "v"})
    q = c.profile().profile
    bad = pb.EntityAlias(id=a.id, name=a.name, canonical_id=ent.id, issuer=q.issuer_id, external_id="e2")
    expect_invalid(
        {
            "issuer": "issuer cannot be changed after creation",
            "external_id": "external_id cannot be changed after creation",
        },
        c.aliases.Update,
        pb.UpdateAliasRequest(alias=bad),
    )
    ok = pb.EntityAlias(id=a.id, name="renamed", canonical_id=ent.id, issuer=p.issuer_id, external_id="e1")
    new = c.aliases.Update(pb.UpdateAliasRequest(alias=ok, expected_version=1)).alias
    assert (new.name, new.version, dict(new.custom_metadata), new.creation_time) == ("renamed", 2, {}, a.creation_time)
    expect(
        C.ABORTED,
        f'entity alias "{a.id}" is at version 2, not 1: it was changed since you read it',
        c.aliases.Update,
        pb.UpdateAliasRequest(alias=ok, expected_version=1),
    )
    expect(
        C.ABORTED,
        f'entity alias "{a.id}" is at version 2, not 1: it was changed since you read it',
        c.aliases.Delete,
        pb.DeleteAliasRequest(id=a.id, expected_version=1),
    )
    c.aliases.Delete(pb.DeleteAliasRequest(id=a.id, expected_version=2))
    expect(
        C.NOT_FOUND,
        f'entity alias "{a.id}" not found in namespace "root"',
        c.aliases.Read,
        pb.ReadAliasRequest(id=a.id),
    )


def test_deleting_an_entity_deletes_its_aliases(c: Client) -> None:
    p = c.profile().profile
    ent = c.entity()
    a = mk_alias(c, canonical_id=ent.id, issuer=p.issuer_id, external_id="x")
    c.entities.Delete(pb.DeleteEntityRequest(id=ent.id))
    expect(
        C.NOT_FOUND,
        f'entity alias "{a.id}" not found in namespace "root"',
        c.aliases.Read,
        pb.ReadAliasRequest(id=a.id),
    )
    # Its (issuer, external_id) is free again.
    mk_alias(c, canonical_id=c.entity().id, issuer=p.issuer_id, external_id="x")


# ---------------------------------------------------------------- namespaces


def test_namespaces_are_independent(c: Client) -> None:
    ns_a, ns_b = uniq("team-a"), uniq("team-b") + "/child"
    name, iss = uniq("same"), f"https://{uniq('idp')}.example.com"
    made: dict[str, dict[str, Any]] = {}
    for ns in (ns_a, ns_b):
        prof = c.profile(namespace=ns, profile_name=name, issuer_id=iss, jwks_uri=iss + "/jwks").profile
        assert prof.mount_accessor == f"oauth-resource-server_{ns}_{prof.config_id}"
        pol = c.policy(name, namespace=ns)
        ent = c.entity(name, namespace=ns)
        reg = c.registration(entity_id=ent.id, namespace=ns, display_name=name, ceiling_policies=[name])
        alias = mk_alias(
            c,
            namespace=ns,
            name=name,
            canonical_id=ent.id,
            issuer=iss,
            mount_accessor=prof.mount_accessor,
            external_id="agent-1",
        )
        made[ns] = {"prof": prof, "pol": pol, "ent": ent, "reg": reg, "alias": alias}
    a, b = made[ns_a], made[ns_b]
    assert a["prof"].config_id != b["prof"].config_id and a["ent"].id != b["ent"].id
    # Reads are scoped: an id from one namespace is not found in the other.
    expect(
        C.NOT_FOUND,
        f'profile "{b["prof"].config_id}" not found in namespace "{ns_a}"',
        c.profiles.Read,
        pb.ReadProfileRequest(namespace=ns_a, config_id=b["prof"].config_id),
    )
    expect(
        C.NOT_FOUND,
        f'entity "{b["ent"].id}" not found in namespace "{ns_a}"',
        c.entities.Read,
        pb.ReadEntityRequest(namespace=ns_a, id=b["ent"].id),
    )
    expect(
        C.NOT_FOUND,
        f'entity alias "{b["alias"].id}" not found in namespace "{ns_a}"',
        c.aliases.Read,
        pb.ReadAliasRequest(namespace=ns_a, id=b["alias"].id),
    )
    # Deleting in one namespace leaves the other alone.
    c.registrations.Delete(pb.DeleteRegistrationRequest(namespace=ns_a, id=a["reg"].id))
    c.policies.Delete(pb.DeletePolicyRequest(namespace=ns_a, name=name))
    c.aliases.Delete(pb.DeleteAliasRequest(namespace=ns_a, id=a["alias"].id))
    c.profiles.Delete(pb.DeleteProfileRequest(namespace=ns_a, profile_name=name))
    assert c.policies.Read(pb.ReadPolicyRequest(namespace=ns_b, name=name)).policy == b["pol"]
    assert c.profiles.Read(pb.ReadProfileRequest(namespace=ns_b, profile_name=name)).profile == b["prof"]
    assert c.registrations.Read(pb.ReadRegistrationRequest(namespace=ns_b, id=b["reg"].id)).registration == b["reg"]
    # The default namespace is "root".
    assert c.entity(name).namespace == "root"


def test_issuer_only_aliases_with_one_name_in_two_namespaces(c: Client) -> None:
    name, iss = uniq("agent"), f"https://{uniq('idp')}.example.com"
    for ns in (uniq("ns"), uniq("ns")):
        c.profile(namespace=ns, issuer_id=iss, jwks_uri=iss + "/jwks")
        ent = c.entity(namespace=ns)
        a = mk_alias(c, namespace=ns, name=name, canonical_id=ent.id, issuer=iss, external_id="agent-1")
        assert (a.namespace, a.name) == (ns, name)


@pytest.mark.parametrize(
    ("ns", "expected"),
    [
        ("/team", 'value /team contains leading/trailing "/"'),
        ("team/", 'value team/ contains leading/trailing "/"'),
        ("a//b", "invalid Vault path"),
        ("a b", "invalid Vault path"),
    ],
)
def test_invalid_namespace(c: Client, ns: str, expected: str) -> None:
    want = {"namespace": expected}
    expect_invalid(want, c.entities.Create, pb.CreateEntityRequest(entity=pb.IdentityEntity(namespace=ns, name="x")))
    expect_invalid(want, c.policies.Read, pb.ReadPolicyRequest(namespace=ns, name="default"))
    expect_invalid(want, c.profiles.List, pb.ListRequest(namespace=ns))
    expect_invalid(
        want,
        c.profiles.Create,
        pb.CreateProfileRequest(
            profile=pb.OAuthResourceServerProfile(
                namespace=ns, profile_name="x", issuer_id="https://x.example.com", jwks_uri="https://x.example.com/jwks"
            )
        ),
    )


def _overlong(c: Client, what: str) -> None:
    if what == "namespace":
        c.entities.Create(pb.CreateEntityRequest(entity=pb.IdentityEntity(namespace="n" * 300, name="x")))
    elif what == "issuer_id":
        c.profile(issuer_id="https://" + "h" * 1100 + ".example.com", jwks_uri="https://k.example.com/jwks")
    else:
        p = c.profile().profile
        c.aliases.Create(alias_req(canonical_id=c.entity().id, issuer=p.issuer_id, external_id="e" * 1100))


@pytest.mark.parametrize("what", ["namespace", "issuer_id", "external_id"])
def test_overlong_values_are_refused_alike_on_every_database(c: Client, what: str) -> None:
    """Values longer than the columns that hold them (namespace 255, issuer 1024, external_id 1024)
    are INVALID_ARGUMENT on SQLite and PostgreSQL alike: never stored on one and INTERNAL on the other."""
    exc = rpc_error(_overlong, c, what)
    assert exc.code() == C.INVALID_ARGUMENT, (exc.code(), exc.details())
    assert [f for f, _ in violations(exc)] == [what]


def _with_nul(c: Client, what: str) -> None:
    if what == "entity.metadata":
        c.entity(metadata={"k": "a\x00b"})
    elif what == "registration.description":
        c.registration(description="a\x00b")
    elif what == "policy.policy":
        c.policy(text='path "a\x00" {\n  capabilities = ["read"]\n}\n')
    elif what == "alias.external_id":
        p = c.profile().profile
        c.aliases.Create(alias_req(canonical_id=c.entity().id, issuer=p.issuer_id, external_id="a\x00b"))
    else:
        c.profile(audiences=["a\x00b"])


@pytest.mark.parametrize(
    "what", ["entity.metadata", "registration.description", "policy.policy", "alias.external_id", "profile.audiences"]
)
def test_nul_characters_never_cause_internal_errors(c: Client, what: str) -> None:
    """A NUL character is stored (SQLite can) or refused as INVALID_ARGUMENT, never INTERNAL."""
    try:
        _with_nul(c, what)
    except grpc.RpcError as exc:
        assert exc.code() == C.INVALID_ARGUMENT, (exc.code(), exc.details())
