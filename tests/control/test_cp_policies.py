"""ACL policies: parsed and validated at write time, built-ins in every namespace, `root` reserved,
a policy that caps an agent cannot be deleted. Real gRPC, SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from test_cp_support import SIMPLE_POLICY, C, Client, expect, expect_invalid, uniq

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb
from agentceiling.policy import builtin_policies

BUILTINS = builtin_policies()


def create_req(name: str, text: str, namespace: str = "") -> pb.CreatePolicyRequest:
    return pb.CreatePolicyRequest(policy=pb.Policy(namespace=namespace, name=name, policy=text))


def read(c: Client, name: str, namespace: str = "") -> pb.Policy:
    return c.policies.Read(pb.ReadPolicyRequest(namespace=namespace, name=name)).policy


def not_found(c: Client, name: str, namespace: str = "root") -> None:
    expect(
        C.NOT_FOUND,
        f'policy "{name}" not found in namespace "{namespace}"',
        c.policies.Read,
        pb.ReadPolicyRequest(namespace=namespace, name=name),
    )


def list_all(c: Client, namespace: str, page_size: int) -> list[pb.Policy]:
    out: list[pb.Policy] = []
    token = ""
    while True:
        resp = c.policies.List(pb.ListRequest(namespace=namespace, page_size=page_size, page_token=token))
        out += list(resp.policies)
        token = resp.next_page_token
        if not token:
            return out


# ---------------------------------------------------------------- write-time parsing


def test_create_and_read_back_exactly(c: Client) -> None:
    name = uniq("pol")
    text = '# comment\npath "secret/data/{{identity.entity.name}}/*" {\n  capabilities = ["read"]\n}\n'
    resp = c.policies.Create(create_req(name, text))
    p = resp.policy
    assert (p.namespace, p.name, p.policy, p.builtin, p.version) == ("root", name, text, False, 1)
    assert p.creation_time and p.last_updated_time == p.creation_time
    assert resp.generation > 0
    assert read(c, name) == p


def test_json_policy_accepted(c: Client) -> None:
    name = uniq("pol")
    text = '{"path": {"secret/*": {"capabilities": ["read", "list"]}}}'
    assert c.policies.Create(create_req(name, text)).policy.policy == text


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ('path "a" {\n  capabilities = ["read"\n}\n', "line 3, column 1: expected ',' or ']', found '}'"),
        (
            'path "a" {\n  capabilities = ["read"]\n}\npath "b" {\n  capabilities = ["fly"]\n}\n',
            'line 4, column 1: path "b": unknown capability "fly" (at line 5, column 19)',
        ),
        (
            '{"path": {"a": {"capabilities": ["read"],}}}',
            "line 1, column 42: invalid JSON: Expecting property name enclosed in double quotes",
        ),
        ('pth "x" {}', "line 1, column 1: unknown top-level key 'pth' (expected path)"),
    ],
)
def test_syntax_error_refused_with_line_and_column(c: Client, text: str, detail: str) -> None:
    name = uniq("pol")
    expect_invalid({"policy": f"policy {name}: {detail}"}, c.policies.Create, create_req(name, text))
    not_found(c, name)


def test_empty_policy_refused(c: Client) -> None:
    for text in ("", "  \n\t"):
        expect_invalid({"policy": "policy text cannot be empty"}, c.policies.Create, create_req(uniq("pol"), text))


def test_duplicated_path_blocks_are_accepted(c: Client) -> None:
    name = uniq("pol")
    text = 'path "secret/a" {\n  capabilities = ["read"]\n}\npath "secret/a" {\n  capabilities = ["list"]\n}\n'
    assert c.policies.Create(create_req(name, text)).policy.policy == text
    assert read(c, name).policy == text


def test_update_validates_too_and_keeps_the_old_text(c: Client) -> None:
    name = uniq("pol")
    first = c.policies.Create(create_req(name, SIMPLE_POLICY)).policy
    bad = pb.UpdatePolicyRequest(policy=pb.Policy(name=name, policy='path "x" {\n  capabilities = "read"\n}'))
    expect_invalid(
        {
            "policy": f'policy {name}: line 1, column 1: path "x": capabilities must be a list of strings '
            "(at line 2, column 18)"
        },
        c.policies.Update,
        bad,
    )
    assert read(c, name) == first
    new_text = 'path "secret/*" {\n  capabilities = ["deny"]\n}\n'
    upd = c.policies.Update(pb.UpdatePolicyRequest(policy=pb.Policy(name=name, policy=new_text), expected_version=1))
    assert (upd.policy.policy, upd.policy.version, upd.policy.creation_time) == (new_text, 2, first.creation_time)
    expect(
        C.ABORTED,
        f'policy "{name}" is at version 2, not 1: it was changed since you read it',
        c.policies.Update,
        pb.UpdatePolicyRequest(policy=pb.Policy(name=name, policy=SIMPLE_POLICY), expected_version=1),
    )
    expect(
        C.NOT_FOUND,
        'policy "nope-never" not found in namespace "root"',
        c.policies.Update,
        pb.UpdatePolicyRequest(policy=pb.Policy(name="nope-never", policy=SIMPLE_POLICY)),
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", "is required and cannot be empty"),
        (" ", "is required and cannot be empty"),
        (" lead", "must not begin or end with whitespace"),
        ("x" * 513, "must be at most 512 characters"),
        ("tab\tin", "must not contain control characters"),
    ],
)
def test_policy_name_rules(c: Client, name: str, expected: str) -> None:
    expect_invalid({"name": expected}, c.policies.Create, create_req(name, SIMPLE_POLICY))


def test_policy_name_unique_per_namespace(c: Client) -> None:
    name = uniq("pol")
    c.policy(name)
    expect(
        C.ALREADY_EXISTS,
        f'policy "{name}" already exists in namespace "root"',
        c.policies.Create,
        create_req(name, SIMPLE_POLICY),
    )


# ---------------------------------------------------------------- built-ins and root


@pytest.mark.parametrize("fresh", [True, False])
def test_builtins_exist_in_every_namespace(c: Client, fresh: bool) -> None:
    ns = uniq("ns")
    if not fresh:
        c.policy(namespace=ns)
    for name in ("default", "default-ceiling"):
        p = read(c, name, ns)
        assert (p.namespace, p.name, p.builtin, p.policy) == (ns, name, True, BUILTINS[name])
    listed = list_all(c, ns, page_size=1)
    builtins = [(p.name, p.builtin) for p in listed if p.builtin]
    assert builtins == [("default", True), ("default-ceiling", True)]
    assert len(listed) == (2 if fresh else 3)


def test_builtins_cannot_be_deleted(c: Client) -> None:
    for ns in ("root", uniq("ns")):
        for name in ("default", "default-ceiling"):
            expect(
                C.FAILED_PRECONDITION,
                f"cannot delete {name} policy",
                c.policies.Delete,
                pb.DeletePolicyRequest(namespace=ns, name=name),
            )
            assert read(c, name, ns).builtin


def test_builtins_cannot_be_created_again(c: Client) -> None:
    for ns in ("root", uniq("ns")):
        expect(
            C.ALREADY_EXISTS,
            f'policy "default" already exists in namespace "{ns}"',
            c.policies.Create,
            create_req("default", SIMPLE_POLICY, ns),
        )


def test_default_policy_can_be_edited_and_stays_builtin(c: Client) -> None:
    ns = uniq("ns")
    text = BUILTINS["default"] + '\npath "secret/extra" {\n  capabilities = ["read"]\n}\n'
    p = c.policies.Update(pb.UpdatePolicyRequest(policy=pb.Policy(namespace=ns, name="default", policy=text))).policy
    assert (p.builtin, p.policy, p.version) == (True, text, 2)
    assert read(c, "default", ns) == p
    assert read(c, "default", "root").policy == BUILTINS["default"]


def test_root_is_reserved(c: Client) -> None:
    reserved = {"name": '"root" is a reserved policy name'}
    expect_invalid(reserved, c.policies.Create, create_req("root", SIMPLE_POLICY))
    expect_invalid(
        reserved, c.policies.Update, pb.UpdatePolicyRequest(policy=pb.Policy(name="root", policy=SIMPLE_POLICY))
    )
    expect_invalid(reserved, c.policies.Delete, pb.DeletePolicyRequest(name="root"))


# ---------------------------------------------------------------- delete


def test_delete_and_stale_delete(c: Client) -> None:
    name = uniq("pol")
    c.policy(name)
    expect(
        C.ABORTED,
        f'policy "{name}" is at version 1, not 3: it was changed since you read it',
        c.policies.Delete,
        pb.DeletePolicyRequest(name=name, expected_version=3),
    )
    c.policies.Delete(pb.DeletePolicyRequest(name=name, expected_version=1))
    not_found(c, name)
    expect(
        C.NOT_FOUND,
        f'policy "{name}" not found in namespace "root"',
        c.policies.Delete,
        pb.DeletePolicyRequest(name=name),
    )


def test_ceiling_policy_in_use_cannot_be_deleted(c: Client) -> None:
    pol = c.policy().name
    reg_b = c.registration(display_name=uniq("b-agent"), ceiling_policies=[pol])
    reg_a = c.registration(display_name=uniq("a-agent"), ceiling_policies=["default", pol])
    expect(
        C.FAILED_PRECONDITION,
        f'policy "{pol}" is a ceiling policy of agent registrations: {reg_a.display_name}, {reg_b.display_name}; '
        "remove it from their ceiling_policies first",
        c.policies.Delete,
        pb.DeletePolicyRequest(name=pol),
    )
    # Take it out of one registration: the error names only the other.
    upd = pb.AgentRegistration(id=reg_a.id, display_name=reg_a.display_name, entity_id=reg_a.entity_id)
    c.registrations.Update(pb.UpdateRegistrationRequest(registration=upd))
    expect(
        C.FAILED_PRECONDITION,
        f'policy "{pol}" is a ceiling policy of agent registrations: {reg_b.display_name}; '
        "remove it from their ceiling_policies first",
        c.policies.Delete,
        pb.DeletePolicyRequest(name=pol),
    )
    assert read(c, pol).name == pol
    c.registrations.Delete(pb.DeleteRegistrationRequest(id=reg_b.id))
    c.policies.Delete(pb.DeletePolicyRequest(name=pol))
    not_found(c, pol)


def test_policy_in_another_namespace_does_not_count(c: Client) -> None:
    ns = uniq("ns")
    pol = c.policy(namespace=ns).name
    c.policy(pol)  # same name in root
    c.registration(ceiling_policies=[pol])  # uses root's
    c.policies.Delete(pb.DeletePolicyRequest(namespace=ns, name=pol))
    not_found(c, pol, ns)


def test_list_pages_through_everything_once(c: Client) -> None:
    ns = uniq("ns")
    names = sorted(c.policy(namespace=ns, name=f"p{i:02d}-{uniq('x')}").name for i in range(7))
    for size in (1, 2, 3, 100):
        listed = [p.name for p in list_all(c, ns, page_size=size)]
        assert listed == sorted([*names, "default", "default-ceiling"])
