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


def test_pages_cut_to_fit_a_reply_continue_in_id_order(c: Client) -> None:
    """A page too big for one reply is cut short; its token must be the last listed item's id, the
    key entities and registrations page by (it was the name: objects were skipped, or the same
    page came back for ever)."""
    ns = uniq("ns")
    meta = {f"k{j:03d}" + "k" * 200: "v" * 4096 for j in range(64)}  # ~275 KB per entity
    pols = [c.policy(namespace=ns, name=f"pol{j:03d}-" + "x" * 490).name for j in range(256)]
    made = []
    for i in range(16):  # names sort against ids both ways: "a..." before, "z..." after
        e = c.entity(namespace=ns, name=f"{'az'[i % 2]}-ent-{i:02d}", metadata=meta)
        r = c.registration(e.id, namespace=ns, display_name=f"{'za'[i % 2]}-agent-{i:02d}", ceiling_policies=pols,
                           description="d" * 16000, owner="o" * 16000)
        made.append((e.id, r.id))
    for lister, field, want in (
        (c.entities.List, "entities", sorted(e for e, _ in made)),
        (c.registrations.List, "registrations", sorted(r for _, r in made)),
    ):
        listed: list[str] = []
        token, pages = "", 0
        while True:
            resp = lister(pb.ListRequest(namespace=ns, page_token=token))
            listed += [x.id for x in getattr(resp, field)]
            pages += 1
            token = resp.next_page_token
            if not token or pages > 40:
                break
        assert pages > 1, f"{field}: the reply budget should have cut the page"
        assert listed == want, (field, pages, len(listed))


def test_name_pages_on_a_postgresql_database_with_a_locale_collation(pg_cluster: Any) -> None:
    """Policies and profiles page by name. On a database whose collation is a locale's (ICU
    en-US: "a" < "B" < "c"), pages must still follow code-point order, as the tokens do (a page
    re-sorted in Python ended elsewhere than the database's next page began: names were repeated
    and skipped)."""
    from agentceiling.domain.models import PolicyDoc
    from agentceiling.service.control import ControlPlane

    url = pg_cluster.create_database("TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'")
    db = Database(url)
    try:
        migrate.upgrade(db)
        cp = ControlPlane(db)
        names = ["a", "B", "c", "D", "e", "Zed", "zed"]
        for name in names:
            cp.create_policy(PolicyDoc("coll", name, 'path "a/*" { capabilities = ["read"] }'))
        want = sorted([*names, "default", "default-ceiling"])
        for size in (1, 2, 3):
            listed: list[str] = []
            token = ""
            while True:
                page = cp.list_policies("coll", size, token)
                listed += [p.name for p in page.items]
                token = page.next_page_token
                if not token or len(listed) > 3 * len(want):
                    break
            assert listed == want, (size, listed)
    finally:
        db.dispose()
