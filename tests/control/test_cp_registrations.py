"""Agent registrations: display names, entities, ceiling policies and their defaults. Real gRPC,
SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from test_cp_support import C, Client, expect, expect_invalid, uniq

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb


def create_req(**kw: Any) -> pb.CreateRegistrationRequest:
    kw.setdefault("display_name", uniq("agent"))
    return pb.CreateRegistrationRequest(registration=pb.AgentRegistration(**kw))


def read_all_ways(c: Client, r: pb.AgentRegistration) -> list[pb.AgentRegistration]:
    ns = r.namespace
    return [
        c.registrations.Read(pb.ReadRegistrationRequest(namespace=ns, id=r.id)).registration,
        c.registrations.Read(pb.ReadRegistrationRequest(namespace=ns, display_name=r.display_name)).registration,
        c.registrations.Read(pb.ReadRegistrationRequest(namespace=ns, entity_id=r.entity_id)).registration,
    ]


# ---------------------------------------------------------------- create and read


def test_create_and_read_by_id_display_name_and_entity(c: Client) -> None:
    pol = c.policy().name
    ent = c.entity()
    resp = c.registrations.Create(
        create_req(
            entity_id=ent.id, ceiling_policies=[pol], description="d", owner="team", optional_authorization_details=True
        )
    )
    r = resp.registration
    assert resp.generation > 0 and list(resp.warnings) == []
    assert str(uuid.UUID(r.id)) == r.id
    assert (r.namespace, r.entity_id, r.description, r.owner) == ("root", ent.id, "d", "team")
    assert r.optional_authorization_details and not r.no_default_ceiling_policy
    assert list(r.ceiling_policies) == [pol, "default", "default-ceiling"]
    assert list(r.requested_ceiling_policies) == [pol]
    assert r.version == 1 and r.creation_time and r.last_updated_time == r.creation_time
    assert read_all_ways(c, r) == [r, r, r]


@pytest.mark.parametrize(
    ("requested", "no_default", "effective"),
    [
        ([], False, ["default", "default-ceiling"]),
        (["P1", "P2"], False, ["P1", "P2", "default", "default-ceiling"]),
        (["P2", "P1"], False, ["P2", "P1", "default", "default-ceiling"]),
        (["default"], False, ["default", "default-ceiling"]),
        (["default-ceiling", "P1"], False, ["default-ceiling", "P1", "default"]),
        (["P1", "default", "P2"], False, ["P1", "default", "P2", "default-ceiling"]),
        (["P1"], True, ["P1"]),
        ([], True, []),
        (["default-ceiling"], True, ["default-ceiling"]),
    ],
)
def test_default_ceiling_policies_appended_once(
    c: Client, requested: list[str], no_default: bool, effective: list[str]
) -> None:
    names = {"P1": c.policy().name, "P2": c.policy().name}
    sub = [names.get(n, n) for n in requested]
    r = c.registrations.Create(
        create_req(entity_id=c.entity().id, ceiling_policies=sub, no_default_ceiling_policy=no_default)
    ).registration
    want = [names.get(n, n) for n in effective]
    assert list(r.ceiling_policies) == want
    assert list(r.requested_ceiling_policies) == sub
    assert r.no_default_ceiling_policy is no_default
    for got in read_all_ways(c, r):
        assert list(got.ceiling_policies) == want
        assert list(got.requested_ceiling_policies) == sub


# ---------------------------------------------------------------- display_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", "is required and cannot be empty"),
        ("   ", "is required and cannot be empty"),
        (" padded ", "must not begin or end with whitespace"),
        ("new\nline", "must not contain control characters"),
    ],
)
def test_display_name_required(c: Client, name: str, expected: str) -> None:
    expect_invalid(
        {"display_name": expected}, c.registrations.Create, create_req(display_name=name, entity_id=c.entity().id)
    )


def test_display_name_unique_per_namespace(c: Client) -> None:
    first = c.registration()
    expect(
        C.ALREADY_EXISTS,
        f'an agent registration named "{first.display_name}" already exists in namespace "root" ({first.id})',
        c.registrations.Create,
        create_req(display_name=first.display_name, entity_id=c.entity().id),
    )
    # Renaming another registration onto it is refused too.
    other = c.registration()
    upd = pb.AgentRegistration(id=other.id, display_name=first.display_name, entity_id=other.entity_id)
    expect(
        C.ALREADY_EXISTS,
        f'an agent registration named "{first.display_name}" already exists in namespace "root" ({first.id})',
        c.registrations.Update,
        pb.UpdateRegistrationRequest(registration=upd),
    )


# ---------------------------------------------------------------- entity


def test_entity_required_and_must_exist_in_the_namespace(c: Client) -> None:
    expect_invalid({"entity_id": "entity_id is required"}, c.registrations.Create, create_req(entity_id=""))
    ghost = str(uuid.uuid4())
    expect_invalid(
        {"entity_id": f'entity "{ghost}" does not exist in namespace "root"'},
        c.registrations.Create,
        create_req(entity_id=ghost),
    )
    ns = uniq("ns")
    elsewhere = c.entity(namespace=ns)
    expect_invalid(
        {"entity_id": f'entity "{elsewhere.id}" does not exist in namespace "root"'},
        c.registrations.Create,
        create_req(entity_id=elsewhere.id),
    )
    # In its own namespace it works.
    r = c.registrations.Create(create_req(namespace=ns, entity_id=elsewhere.id)).registration
    assert (r.namespace, r.entity_id) == (ns, elsewhere.id)


def test_an_entity_has_at_most_one_registration(c: Client) -> None:
    first = c.registration()
    expect(
        C.ALREADY_EXISTS,
        f'entity "{first.entity_id}" already has the agent registration "{first.display_name}" ({first.id}); '
        "delete the existing registration first",
        c.registrations.Create,
        create_req(entity_id=first.entity_id),
    )
    other = c.registration()
    upd = pb.AgentRegistration(id=other.id, display_name=other.display_name, entity_id=first.entity_id)
    expect(
        C.ALREADY_EXISTS,
        f'entity "{first.entity_id}" already has the agent registration "{first.display_name}" ({first.id}); '
        "delete the existing registration first",
        c.registrations.Update,
        pb.UpdateRegistrationRequest(registration=upd),
    )


def test_entity_with_a_registration_cannot_be_deleted(c: Client) -> None:
    r = c.registration()
    ent = c.entities.Read(pb.ReadEntityRequest(id=r.entity_id)).entity
    expect(
        C.FAILED_PRECONDITION,
        f'entity "{ent.name}" has the agent registration "{r.display_name}" ({r.id}); delete the registration first',
        c.entities.Delete,
        pb.DeleteEntityRequest(id=r.entity_id),
    )
    assert c.entities.Read(pb.ReadEntityRequest(id=r.entity_id)).entity == ent
    c.registrations.Delete(pb.DeleteRegistrationRequest(id=r.id, expected_version=1))
    c.entities.Delete(pb.DeleteEntityRequest(id=r.entity_id))
    expect(
        C.NOT_FOUND,
        f'entity "{r.entity_id}" not found in namespace "root"',
        c.entities.Read,
        pb.ReadEntityRequest(id=r.entity_id),
    )


# ---------------------------------------------------------------- ceiling policies


def test_root_is_never_a_ceiling_policy(c: Client) -> None:
    pol = c.policy().name
    expect_invalid(
        {"ceiling_policies[1]": '"root" cannot be used as a ceiling policy'},
        c.registrations.Create,
        create_req(entity_id=c.entity().id, ceiling_policies=[pol, "root"]),
    )
    r = c.registration(ceiling_policies=[pol])
    upd = pb.AgentRegistration(id=r.id, display_name=r.display_name, entity_id=r.entity_id, ceiling_policies=["root"])
    expect_invalid(
        {"ceiling_policies[0]": '"root" cannot be used as a ceiling policy'},
        c.registrations.Update,
        pb.UpdateRegistrationRequest(registration=upd),
    )


def test_missing_ceiling_policy_is_named(c: Client) -> None:
    pol = c.policy().name
    missing = uniq("missing")
    ent = c.entity()
    expect_invalid(
        {"ceiling_policies[1]": f'ceiling policy "{missing}" does not exist in namespace "root"'},
        c.registrations.Create,
        create_req(entity_id=ent.id, ceiling_policies=[pol, missing]),
    )
    expect_invalid(
        {
            "ceiling_policies[0]": '"root" cannot be used as a ceiling policy',
            "ceiling_policies[1]": ("policy name cannot be empty"),
        },
        c.registrations.Create,
        create_req(entity_id=ent.id, ceiling_policies=["root", ""]),
    )
    # A policy of the same name in another namespace does not count.
    other_ns = c.policy(namespace=uniq("ns")).name
    expect_invalid(
        {"ceiling_policies[0]": f'ceiling policy "{other_ns}" does not exist in namespace "root"'},
        c.registrations.Create,
        create_req(entity_id=ent.id, ceiling_policies=[other_ns]),
    )
    expect(
        C.NOT_FOUND,
        f'agent registration "{ent.id}" not found in namespace "root"',
        c.registrations.Read,
        pb.ReadRegistrationRequest(entity_id=ent.id),
    )


def test_every_problem_reported_at_once(c: Client) -> None:
    ghost = str(uuid.uuid4())
    missing = uniq("missing")
    expect_invalid(
        {
            "entity_id": f'entity "{ghost}" does not exist in namespace "root"',
            "ceiling_policies[0]": f'ceiling policy "{missing}" does not exist in namespace "root"',
        },
        c.registrations.Create,
        create_req(entity_id=ghost, ceiling_policies=[missing]),
    )


# ---------------------------------------------------------------- update, read, delete


def test_update_records_the_request_and_moves_last_updated_time(c: Client) -> None:
    p1, p2 = c.policy().name, c.policy().name
    r = c.registration(ceiling_policies=[p1], owner="a")
    time.sleep(0.002)
    upd = pb.AgentRegistration(
        id=r.id,
        display_name=r.display_name,
        entity_id=r.entity_id,
        ceiling_policies=[p2, p1],
        no_default_ceiling_policy=True,
        owner="b",
    )
    new = c.registrations.Update(pb.UpdateRegistrationRequest(registration=upd, expected_version=1)).registration
    assert list(new.ceiling_policies) == [p2, p1]
    assert list(new.requested_ceiling_policies) == [p2, p1]
    assert (new.version, new.owner, new.creation_time) == (2, "b", r.creation_time)
    assert new.last_updated_time > r.last_updated_time
    assert read_all_ways(c, new) == [new, new, new]
    # Updating again, immediately, still moves the time forward.
    again = c.registrations.Update(pb.UpdateRegistrationRequest(registration=upd)).registration
    assert again.last_updated_time > new.last_updated_time and again.version == 3
    expect(
        C.ABORTED,
        f'agent registration "{r.display_name}" is at version 3, not 2: it was changed since you read it',
        c.registrations.Update,
        pb.UpdateRegistrationRequest(registration=upd, expected_version=2),
    )
    expect(
        C.ABORTED,
        f'agent registration "{r.display_name}" is at version 3, not 1: it was changed since you read it',
        c.registrations.Delete,
        pb.DeleteRegistrationRequest(id=r.id, expected_version=1),
    )


def test_read_errors(c: Client) -> None:
    expect_invalid(
        {"id": "id, display_name or entity_id is required"}, c.registrations.Read, pb.ReadRegistrationRequest()
    )
    ghost = str(uuid.uuid4())
    for req in (
        pb.ReadRegistrationRequest(id=ghost),
        pb.ReadRegistrationRequest(display_name=ghost),
        pb.ReadRegistrationRequest(entity_id=ghost),
    ):
        expect(C.NOT_FOUND, f'agent registration "{ghost}" not found in namespace "root"', c.registrations.Read, req)
    upd = pb.AgentRegistration(id=ghost, display_name="x", entity_id=c.entity().id)
    expect(
        C.NOT_FOUND,
        f'agent registration "{ghost}" not found in namespace "root"',
        c.registrations.Update,
        pb.UpdateRegistrationRequest(registration=upd),
    )
    expect(
        C.NOT_FOUND,
        f'agent registration "{ghost}" not found in namespace "root"',
        c.registrations.Delete,
        pb.DeleteRegistrationRequest(id=ghost),
    )


def test_delete_frees_name_and_entity(c: Client) -> None:
    r = c.registration()
    c.registrations.Delete(pb.DeleteRegistrationRequest(id=r.id))
    again = c.registrations.Create(create_req(display_name=r.display_name, entity_id=r.entity_id)).registration
    assert again.id != r.id


def test_list_pages(c: Client) -> None:
    ns = uniq("ns")
    made = sorted(c.registration(namespace=ns).id for _ in range(5))
    seen: list[str] = []
    token = ""
    while True:
        resp = c.registrations.List(pb.ListRequest(namespace=ns, page_size=2, page_token=token))
        seen += [r.id for r in resp.registrations]
        token = resp.next_page_token
        if not token:
            break
    assert seen == made
