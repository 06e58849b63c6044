"""Lists under concurrent writes: one snapshot per read, and page cursors no update can move."""

from __future__ import annotations

from typing import Any

from test_cp_support import Client, uniq

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb
from agentceiling.store import migrate, repo
from agentceiling.store.db import Database


def test_a_read_sees_one_snapshot_while_writes_commit(database_url: str) -> None:
    """A read of several queries (a list page, then the built-in policies it lacks) must not see a
    write commit between two of them: on PostgreSQL that gave an empty policy list once."""
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        with db.read() as conn:
            before = repo.generation(conn)
            committed = db.write(repo.bump_generation)
            assert committed == before + 1
            assert repo.generation(conn) == before  # still the snapshot the read began with
        with db.read() as conn:
            assert repo.generation(conn) == committed
    finally:
        db.dispose()


def _pages(lister: Any, field: str, ns: str, token: str = "") -> list[Any]:
    """Everything ``lister`` lists from ``token`` on, two at a time."""
    out: list[Any] = []
    while True:
        resp = lister(pb.ListRequest(namespace=ns, page_size=2, page_token=token))
        out += list(getattr(resp, field))
        token = resp.next_page_token
        if not token:
            return out


def test_an_entity_renamed_between_pages_is_listed_exactly_once(c: Client) -> None:
    ns = uniq("ns")
    made = [c.entity(namespace=ns, name=f"a{i}") for i in range(1, 5)]
    first = c.entities.List(pb.ListRequest(namespace=ns, page_size=2))
    assert len(first.entities) == 2 and first.next_page_token
    for e in made:  # every one not listed yet now sorts first by name
        if e.id not in {x.id for x in first.entities}:
            renamed = pb.IdentityEntity(namespace=ns, id=e.id, name="0" + e.name)
            c.entities.Update(pb.UpdateEntityRequest(entity=renamed))
    rest = _pages(c.entities.List, "entities", ns, first.next_page_token)
    ids = [e.id for e in [*first.entities, *rest]]
    assert sorted(ids) == sorted(e.id for e in made), ids


def test_a_registration_renamed_between_pages_is_listed_exactly_once(c: Client) -> None:
    ns = uniq("ns")
    made = [c.registration(namespace=ns, display_name=f"r{i}") for i in range(1, 5)]
    first = c.registrations.List(pb.ListRequest(namespace=ns, page_size=2))
    assert len(first.registrations) == 2 and first.next_page_token
    for r in first.registrations:  # every one listed already now sorts last by display name
        renamed = pb.AgentRegistration()
        renamed.CopyFrom(r)
        renamed.display_name = "z" + r.display_name
        c.registrations.Update(pb.UpdateRegistrationRequest(registration=renamed))
    rest = _pages(c.registrations.List, "registrations", ns, first.next_page_token)
    ids = [r.id for r in [*first.registrations, *rest]]
    assert sorted(ids) == sorted(r.id for r in made), ids


def test_entities_and_registrations_page_through_everything_in_id_order(c: Client) -> None:
    ns = uniq("ns")
    regs = [c.registration(namespace=ns) for _ in range(5)]  # and their 5 entities
    entity_ids = [e.id for e in _pages(c.entities.List, "entities", ns)]
    assert entity_ids == sorted(r.entity_id for r in regs)
    assert [r.id for r in _pages(c.registrations.List, "registrations", ns)] == sorted(r.id for r in regs)
