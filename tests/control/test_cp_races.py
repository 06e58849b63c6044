"""Concurrent creates and updates from several threads, each on its own channel: nothing lost,
nothing duplicated, exactly one winner where there can be only one. SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from test_cp_support import SIMPLE_POLICY, C, Client, client, uniq

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb

THREADS = 8
Outcome = tuple[Any, Any]  # ("ok", response) or (status code, details)


def race(srv: Any, fn: Callable[[Client, int], Any], n: int = THREADS) -> list[Outcome]:
    """Run ``fn(client, i)`` in ``n`` threads, each with its own channel, released together."""
    barrier = threading.Barrier(n)
    results: list[Outcome] = [("unset", None)] * n

    def worker(i: int) -> None:
        with client(srv) as cl:
            cl.system.Status(pb.StatusRequest())  # connect before the start line
            barrier.wait()
            try:
                results[i] = ("ok", fn(cl, i))
            except grpc.RpcError as exc:
                results[i] = (exc.code(), exc.details())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(r[0] != "unset" for r in results), results
    return results


def winners(results: list[Outcome]) -> list[int]:
    return [i for i, r in enumerate(results) if r[0] == "ok"]


# ---------------------------------------------------------------- one name, one winner


def _profile(ns: str, name: str, iss: str) -> pb.CreateProfileRequest:
    return pb.CreateProfileRequest(
        profile=pb.OAuthResourceServerProfile(namespace=ns, profile_name=name, issuer_id=iss, jwks_uri=iss + "/jwks")
    )


def test_racing_entity_creates(srv: Any, c: Client) -> None:
    ns, name = uniq("ns"), uniq("ent")
    res = race(srv, lambda cl, i: cl.entity(name, namespace=ns))
    [w] = winners(res)
    for i, r in enumerate(res):
        if i != w:
            assert r == (C.ALREADY_EXISTS, f'entity "{name}" already exists in namespace "{ns}"')
    listed = c.entities.List(pb.ListRequest(namespace=ns)).entities
    assert [e.id for e in listed] == [res[w][1].id]


def test_racing_policy_creates(srv: Any, c: Client) -> None:
    ns, name = uniq("ns"), uniq("pol")
    res = race(srv, lambda cl, i: cl.policy(name, namespace=ns, text=SIMPLE_POLICY + f"# {i}\n"))
    [w] = winners(res)
    for i, r in enumerate(res):
        if i != w:
            assert r == (C.ALREADY_EXISTS, f'policy "{name}" already exists in namespace "{ns}"')
    got = c.policies.Read(pb.ReadPolicyRequest(namespace=ns, name=name)).policy
    assert got.policy == SIMPLE_POLICY + f"# {w}\n"
    assert sorted(p.name for p in c.policies.List(pb.ListRequest(namespace=ns)).policies) == sorted(
        [name, "default", "default-ceiling"]
    )


def test_racing_profile_creates_same_name(srv: Any, c: Client) -> None:
    ns, name = uniq("ns"), uniq("prof")
    res = race(srv, lambda cl, i: cl.profiles.Create(_profile(ns, name, f"https://idp-{i}.example.com")))
    [w] = winners(res)
    for i, r in enumerate(res):
        if i != w:
            assert r == (C.ALREADY_EXISTS, f'profile "{name}" already exists in namespace "{ns}"')
    assert len(c.profiles.List(pb.ListRequest(namespace=ns)).profiles) == 1


def test_racing_profile_creates_same_issuer_after_normalisation(srv: Any, c: Client) -> None:
    ns, host = uniq("ns"), uniq("idp")
    variants = [f"https://{host}.example.com", f"HTTPS://{host.upper()}.EXAMPLE.COM", f"https://{host}.example.com/"]

    def create(cl: Client, i: int) -> Any:
        return cl.profiles.Create(_profile(ns, f"p{i}", variants[i % 3]))

    res = race(srv, create)
    [w] = winners(res)
    for i, r in enumerate(res):
        if i != w:
            assert r == (C.ALREADY_EXISTS, f'duplicate issuer_id "{variants[i % 3]}" found in profile "p{w}"')
    assert [p.profile_name for p in c.profiles.List(pb.ListRequest(namespace=ns)).profiles] == [f"p{w}"]


def test_racing_registration_creates_same_display_name(srv: Any, c: Client) -> None:
    ns, name = uniq("ns"), uniq("agent")
    entities = [c.entity(namespace=ns) for _ in range(THREADS)]
    res = race(srv, lambda cl, i: cl.registration(entities[i].id, namespace=ns, display_name=name))
    [w] = winners(res)
    won = res[w][1]
    for i, r in enumerate(res):
        if i != w:
            assert r == (
                C.ALREADY_EXISTS,
                f'an agent registration named "{name}" already exists in namespace "{ns}" ({won.id})',
            )
    assert [r.id for r in c.registrations.List(pb.ListRequest(namespace=ns)).registrations] == [won.id]


def test_racing_registration_creates_same_entity(srv: Any, c: Client) -> None:
    ns = uniq("ns")
    ent = c.entity(namespace=ns)
    res = race(srv, lambda cl, i: cl.registration(ent.id, namespace=ns, display_name=f"agent-{i}"))
    [w] = winners(res)
    won = res[w][1]
    for i, r in enumerate(res):
        if i != w:
            assert r == (
                C.ALREADY_EXISTS,
                f'entity "{ent.id}" already has the agent registration "agent-{w}" ({won.id}); '
                "delete the existing registration first",
            )
    assert [r.id for r in c.registrations.List(pb.ListRequest(namespace=ns)).registrations] == [won.id]


def test_racing_alias_creates_same_issuer_and_external_id(srv: Any, c: Client) -> None:
    ns = uniq("ns")
    p = c.profile(namespace=ns).profile
    ents = [c.entity(namespace=ns) for _ in range(THREADS)]

    def create(cl: Client, i: int) -> Any:
        alias = pb.EntityAlias(
            namespace=ns, name=f"a{i}", canonical_id=ents[i].id, mount_accessor=p.mount_accessor, external_id="sub-1"
        )
        return cl.aliases.Create(pb.CreateAliasRequest(alias=alias)).alias

    res = race(srv, create)
    [w] = winners(res)
    won = res[w][1]
    iss = p.issuer_id.lower().rstrip("/")
    for i, r in enumerate(res):
        if i != w:
            assert r == (
                C.ALREADY_EXISTS,
                f'an alias for issuer "{iss}" with external_id "sub-1" already exists ({won.id})',
            )
    assert [a.id for a in c.aliases.List(pb.ListRequest(namespace=ns)).aliases] == [won.id]


# ---------------------------------------------------------------- many names, overlapping


def test_overlapping_entity_creates_lose_and_duplicate_nothing(srv: Any, c: Client) -> None:
    ns = uniq("ns")
    pool = [f"agent-{i:02d}" for i in range(40)]
    plans = [random.Random(seed).sample(pool, 20) for seed in range(THREADS)]
    gen = c.generation()

    def burst(cl: Client, i: int) -> list[Outcome]:
        out: list[Outcome] = []
        for name in plans[i]:
            try:
                resp = cl.entities.Create(pb.CreateEntityRequest(entity=pb.IdentityEntity(namespace=ns, name=name)))
                out.append(("ok", resp.generation))
            except grpc.RpcError as exc:
                out.append((exc.code(), exc.details()))
        return out

    res = race(srv, burst)
    assert all(r[0] == "ok" for r in res)
    created = Counter[str]()
    generations: list[int] = []
    for i, (_, outcomes) in enumerate(res):
        for name, outcome in zip(plans[i], outcomes, strict=True):
            if outcome[0] == "ok":
                created[name] += 1
                generations.append(outcome[1])
            else:
                assert outcome == (C.ALREADY_EXISTS, f'entity "{name}" already exists in namespace "{ns}"')
    wanted = {n for plan in plans for n in plan}
    assert created == Counter(dict.fromkeys(wanted, 1))
    listed = c.entities.List(pb.ListRequest(namespace=ns, page_size=1000)).entities
    assert sorted(e.name for e in listed) == sorted(wanted)
    assert len({e.id for e in listed}) == len(wanted)
    assert c.generation() == gen + len(wanted)
    # Each acknowledged write got its own generation: one step each, none shared, none skipped.
    assert sorted(generations) == list(range(gen + 1, gen + len(wanted) + 1))


# ---------------------------------------------------------------- updates


def _versioned_update(kind: str, c: Client, ns: str) -> tuple[str, Callable[[Client, int, int], Any]]:
    """Create one object of ``kind``; return its label in messages and an updater(client, i, version)."""
    if kind == "entity":
        e = c.entity(namespace=ns)
        return f'entity "{e.name}"', lambda cl, i, v: cl.entities.Update(
            pb.UpdateEntityRequest(
                entity=pb.IdentityEntity(namespace=ns, id=e.id, name=e.name, metadata={"by": str(i)}),
                expected_version=v,
            )
        )
    if kind == "policy":
        p = c.policy(namespace=ns)
        return f'policy "{p.name}"', lambda cl, i, v: cl.policies.Update(
            pb.UpdatePolicyRequest(
                policy=pb.Policy(namespace=ns, name=p.name, policy=SIMPLE_POLICY + f"# {i}\n"), expected_version=v
            )
        )
    if kind == "profile":
        pr = c.profile(namespace=ns).profile
        return f'profile "{pr.profile_name}"', lambda cl, i, v: cl.profiles.Update(
            pb.UpdateProfileRequest(
                profile=pb.OAuthResourceServerProfile(
                    namespace=ns,
                    profile_name=pr.profile_name,
                    issuer_id=pr.issuer_id,
                    jwks_uri=pr.jwks_uri,
                    audiences=[str(i)],
                ),
                expected_version=v,
            )
        )
    if kind == "registration":
        r = c.registration(namespace=ns)
        return f'agent registration "{r.display_name}"', lambda cl, i, v: cl.registrations.Update(
            pb.UpdateRegistrationRequest(
                registration=pb.AgentRegistration(
                    namespace=ns, id=r.id, display_name=r.display_name, entity_id=r.entity_id, owner=str(i)
                ),
                expected_version=v,
            )
        )
    pr = c.profile(namespace=ns).profile
    ent = c.entity(namespace=ns)
    a = c.aliases.Create(
        pb.CreateAliasRequest(
            alias=pb.EntityAlias(namespace=ns, name="a", canonical_id=ent.id, mount_accessor=pr.mount_accessor)
        )
    ).alias
    return f'entity alias "{a.id}"', lambda cl, i, v: cl.aliases.Update(
        pb.UpdateAliasRequest(
            alias=pb.EntityAlias(
                namespace=ns,
                id=a.id,
                name="a",
                canonical_id=ent.id,
                mount_accessor=pr.mount_accessor,
                custom_metadata={"by": str(i)},
            ),
            expected_version=v,
        )
    )


KINDS = ["entity", "policy", "profile", "registration", "alias"]


@pytest.mark.parametrize("kind", KINDS)
def test_versioned_updates_have_one_winner_per_version(srv: Any, c: Client, kind: str) -> None:
    ns = uniq("ns")
    label, update = _versioned_update(kind, c, ns)
    gen = c.generation()
    for version in range(1, 5):
        res = race(srv, lambda cl, i, v=version: update(cl, i, v))  # type: ignore[misc]
        [w] = winners(res)
        assert res[w][1].generation > gen
        for i, r in enumerate(res):
            if i != w:
                assert r in (
                    (
                        C.ABORTED,
                        f"{label} is at version {version + 1}, not {version}: it was changed since you read it",
                    ),
                    (C.ABORTED, f"{label} was changed concurrently; retry"),
                ), r
    assert c.generation() == gen + 4


@pytest.mark.parametrize("kind", KINDS)
def test_unversioned_concurrent_updates_all_apply(srv: Any, c: Client, kind: str) -> None:
    """Updates that name no version are last-writer-wins: none is refused, none is lost."""
    ns = uniq("ns")
    _, update = _versioned_update(kind, c, ns)
    gen = c.generation()

    def burst(cl: Client, i: int) -> list[Outcome]:
        out: list[Outcome] = []
        for _ in range(5):
            try:
                out.append(("ok", update(cl, i, 0).generation))
            except grpc.RpcError as exc:
                out.append((exc.code(), exc.details()))
        return out

    res = race(srv, burst)
    failed = [o for _, outs in res for o in outs if o[0] != "ok"]
    assert failed == []
    assert c.generation() == gen + THREADS * 5


# ---------------------------------------------------------------- referential races


def test_policy_delete_racing_a_registration_that_uses_it(srv: Any, c: Client) -> None:
    ns = uniq("ns")
    for _ in range(6):
        pol = c.policy(namespace=ns).name
        ent = c.entity(namespace=ns)
        name = uniq("agent")

        def step(cl: Client, i: int, pol: str = pol, ent_id: str = ent.id, name: str = name) -> Any:
            if i == 0:
                return cl.policies.Delete(pb.DeletePolicyRequest(namespace=ns, name=pol))
            return cl.registration(ent_id, namespace=ns, display_name=name, ceiling_policies=[pol])

        deleted, registered = race(srv, step, n=2)
        assert (deleted[0] == "ok") != (registered[0] == "ok"), (deleted, registered)
        if deleted[0] == "ok":
            assert registered == (
                C.INVALID_ARGUMENT,
                f'ceiling_policies[0]: ceiling policy "{pol}" does not exist in namespace "{ns}"',
            )
        else:
            assert deleted == (
                C.FAILED_PRECONDITION,
                f'policy "{pol}" is a ceiling policy of agent registrations: {name}; '
                "remove it from their ceiling_policies first",
            )
            reg = c.registrations.Read(pb.ReadRegistrationRequest(namespace=ns, display_name=name)).registration
            assert c.policies.Read(pb.ReadPolicyRequest(namespace=ns, name=pol)).policy.name == pol
            assert list(reg.ceiling_policies) == [pol, "default", "default-ceiling"]


def test_entity_delete_racing_its_registration(srv: Any, c: Client) -> None:
    ns = uniq("ns")
    for _ in range(6):
        ent = c.entity(namespace=ns)
        name = uniq("agent")

        def step(cl: Client, i: int, ent: pb.IdentityEntity = ent, name: str = name) -> Any:
            if i == 0:
                return cl.entities.Delete(pb.DeleteEntityRequest(namespace=ns, id=ent.id))
            return cl.registration(ent.id, namespace=ns, display_name=name)

        deleted, registered = race(srv, step, n=2)
        assert (deleted[0] == "ok") != (registered[0] == "ok"), (deleted, registered)
        if deleted[0] == "ok":
            assert registered == (
                C.INVALID_ARGUMENT,
                f'entity_id: entity "{ent.id}" does not exist in namespace "{ns}"',
            )
        else:
            reg = registered[1]
            assert deleted == (
                C.FAILED_PRECONDITION,
                f'entity "{ent.name}" has the agent registration "{name}" ({reg.id}); delete the registration first',
            )
            assert c.entities.Read(pb.ReadEntityRequest(namespace=ns, id=ent.id)).entity.id == ent.id
