"""The decision pipeline end to end: a real server (SQLite and PostgreSQL), real keys, a real JWKS
endpoint. Each test works in its own namespace (the ``world`` fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from authz_support import RAR_NO_MATCH_TEXT, Idp, World, eventually, make_world, path_access, uniq

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb
from agentceiling.store import audit_log


def test_allowed_inside_the_ceiling_and_refused_beyond(world: World) -> None:
    w, idp = world, world.idp
    ent, reg = w.agent("ci-agent")
    assert reg is not None
    ok = w.authorize(idp.token("ci-agent", [path_access("secret/data/ci/app", "read")]), "secret/data/ci/app", "read")
    assert (ok.allowed, ok.code) == (True, "ALLOWED"), ok.reason
    assert (ok.entity_id, ok.registration_id, ok.actor_entity_id) == (ent.id, reg.id, "")
    assert ok.decision_id
    assert json.loads(ok.authorization_details) == [path_access("secret/data/ci/app", "read")]

    wide = w.authorize(idp.token("ci-agent", [path_access("secret/data/*", "read")]), "secret/data/prod/db", "read")
    assert (wide.allowed, wide.code) == (False, "CEILING_EXCEEDED")
    assert "secret/data/*" in wide.reason and "ci-agent" in wide.reason
    assert wide.entity_id == ent.id and wide.registration_id == reg.id

    nomatch = w.authorize(
        idp.token("ci-agent", [path_access("secret/data/ci/app", "read")]), "secret/data/ci/other", "read"
    )
    assert (nomatch.allowed, nomatch.code) == (False, "RAR_NO_MATCH")
    assert RAR_NO_MATCH_TEXT in nomatch.reason

    wrong_cap = w.authorize(
        idp.token("ci-agent", [path_access("secret/data/ci/app", "read")]), "secret/data/ci/app", "update"
    )
    assert wrong_cap.code == "RAR_NO_MATCH"

    missing = w.authorize(idp.token("ci-agent"), "secret/data/ci/app", "read")
    assert (missing.allowed, missing.code) == (False, "RAR_REQUIRED")

    unknown = w.authorize(
        idp.token("stranger", [path_access("secret/data/ci/app", "read")]), "secret/data/ci/app", "read"
    )
    assert (unknown.code, unknown.entity_id) == ("SUBJECT_UNKNOWN", "")

    for alg in ("PS256", "EdDSA", "RS256", "ES256"):
        r = w.authorize(
            idp.token("ci-agent", [path_access("secret/data/ci/x", "read")], alg=alg), "secret/data/ci/x", "read"
        )
        assert r.code == "ALLOWED", (alg, r.reason)

    records = audit_log.tail(Path(w.server.data_dir) / "audit" / "audit.log", 200)
    mine = [r["decision"] for r in records if r["decision"]["namespace"] == w.ns]
    codes = [d["code"] for d in mine]
    assert codes.count("ALLOWED") == 5 and "CEILING_EXCEEDED" in codes and "SUBJECT_UNKNOWN" in codes


def test_the_ceiling_applies_in_direct_calls_even_where_the_acl_allows(world: World) -> None:
    """The deliberate difference from Vault: a direct call is capped by the agent's own ceiling."""
    w, idp = world, world.idp
    w.agent("direct", optional_authorization_details=True)
    # The entity's own ACL grants secret/data/* (ACCESS); the ceiling only secret/data/ci/*.
    beyond = w.authorize(idp.token("direct"), "secret/data/prod/db", "read")
    assert (beyond.allowed, beyond.code) == (False, "CEILING_EXCEEDED")
    assert "secret/data/prod/db" in beyond.reason
    inside = w.authorize(idp.token("direct"), "secret/data/ci/db", "read")
    assert inside.code == "ALLOWED", inside.reason
    # The ceiling grants read/list only, the ACL also update.
    assert w.authorize(idp.token("direct"), "secret/data/ci/db", "update").code == "CEILING_EXCEEDED"


def test_permission_denied_when_the_subject_acl_does_not_allow(world: World) -> None:
    w, idp = world, world.idp
    w.agent("no-access", access='path "secret/data/ci/public" {\n  capabilities = ["read"]\n}\n')
    tok = idp.token("no-access", [path_access("secret/data/ci/*", "read")])
    denied = w.authorize(tok, "secret/data/ci/private", "read")
    assert (denied.allowed, denied.code) == (False, "PERMISSION_DENIED")
    assert "permission denied" in denied.reason
    assert w.authorize(tok, "secret/data/ci/public", "read").code == "ALLOWED"


def test_deny_rules_and_globs_in_the_ceiling(world: World) -> None:
    w, idp = world, world.idp
    ceiling = (
        'path "secret/data/ci/*" {\n  capabilities = ["read", "list"]\n}\n'
        'path "secret/data/ci/admin" {\n  capabilities = ["deny"]\n}\n'
        'path "secret/data/team/+/config" {\n  capabilities = ["read"]\n}\n'
    )
    w.agent("globber", ceiling=ceiling)

    def check(details: list[dict[str, object]], path: str = "", op: str = "") -> tuple[str, str]:
        r = w.authorize(idp.token("globber", details), path, op)
        return r.code, r.reason

    # A glob entry is honoured only if every path it can match is granted: ci/* reaches ci/admin.
    code, reason = check([path_access("secret/data/ci/*", "read")])
    assert code == "CEILING_EXCEEDED" and "secret/data/ci/*" in reason and "secret/data/ci/admin" in reason
    assert check([path_access("secret/data/ci/app-*", "read")])[0] == "ALLOWED"
    assert check([path_access("secret/data/ci/app", "read", "list")])[0] == "ALLOWED"
    assert check([path_access("secret/data/ci/app", "update")])[0] == "CEILING_EXCEEDED"
    assert check([path_access("secret/data/ci/admin", "read")])[0] == "CEILING_EXCEEDED"
    assert check([path_access("secret/data/team/+/config", "read")])[0] == "ALLOWED"
    assert check([path_access("secret/data/team/+/+", "read")])[0] == "CEILING_EXCEEDED"
    # One bad entry refuses the whole token, naming the entry.
    code, reason = check(
        [path_access("secret/data/ci/app", "read"), path_access("secret/data/prod/*", "read")],
        "secret/data/ci/app",
        "read",
    )
    assert code == "CEILING_EXCEEDED" and "secret/data/prod/*" in reason
    # The deny applies to the operation too (an exact-path entry inside the ceiling's glob).
    assert check([path_access("secret/data/ci/app-*", "read")], "secret/data/ci/app-1", "read")[0] == "ALLOWED"


def test_a_list_path_gets_its_trailing_slash_before_any_policy_sees_it(world: World) -> None:
    """Vault's HTTP layer ends every LIST path with "/": with or without it, one answer. Without
    that, "kv1/private" slipped past a deny on "kv1/private/*" through "kv1/+"."""
    w, idp = world, world.idp
    access = (
        'path "kv1/+" {\n  capabilities = ["list"]\n}\n'
        'path "kv1/private/*" {\n  capabilities = ["deny"]\n}\n'
        'path "secret/metadata/app/*" {\n  capabilities = ["list"]\n}\n'
    )
    ceiling = (
        'path "kv1/*" {\n  capabilities = ["list"]\n}\n'
        'path "secret/metadata/app/*" {\n  capabilities = ["list"]\n}\n'
    )
    w.agent("lister", ceiling=ceiling, access=access)
    tok = idp.token("lister", [path_access("kv1/*", "list"), path_access("secret/metadata/app", "list")])
    for path in ("kv1/private", "kv1/private/"):
        r = w.authorize(tok, path, "list")
        assert r.code == "PERMISSION_DENIED", (path, r.code, r.reason)
    assert w.authorize(tok, "kv1/public", "list").code == "ALLOWED"
    # the RAR entry without the slash covers the listing it names, and the ceiling holds it
    for path in ("secret/metadata/app", "secret/metadata/app/"):
        r = w.authorize(tok, path, "list")
        assert r.code == "ALLOWED", (path, r.code, r.reason)
        rec = next(x["decision"] for x in audit_log.tail(Path(w.server.data_dir) / "audit" / "audit.log", 50)
                   if x["decision"].get("decision_id") == r.decision_id)
        assert rec["path"] == "secret/metadata/app/"  # audited as decided


def test_empty_path_checks_the_token_and_lists_what_is_honoured(world: World) -> None:
    w, idp = world, world.idp
    ent, _ = w.agent("lister", ceiling='path "secret/data/agents/*" {\n  capabilities = ["read"]\n}\n')
    details = [
        path_access("secret/data/agents/{{identity.entity.name}}/db", "read"),
        {"type": "payment_initiation", "instructedAmount": {"currency": "EUR", "amount": "12"}},
        path_access("secret/data/agents/{{identity.entity.metadata.missing}}/x", "read"),
    ]
    r = w.authorize(idp.token("lister", details))
    assert (r.allowed, r.code) == (True, "ALLOWED"), r.reason
    assert json.loads(r.authorization_details) == [path_access("secret/data/agents/lister/db", "read")]
    assert r.entity_id == ent.id
    # The same token against a request: the foreign type and the unrenderable entry grant nothing.
    assert w.authorize(idp.token("lister", details), "secret/data/agents/lister/db", "read").code == "ALLOWED"
    assert w.authorize(idp.token("lister", details[1:]), "secret/data/agents/lister/db", "read").code == (
        "RAR_NO_MATCH"
    )
    beyond = w.authorize(idp.token("lister", [path_access("secret/data/other", "read")]))
    assert (beyond.allowed, beyond.code) == (False, "CEILING_EXCEEDED")
    # Leading slashes go as a request's do; a dot or empty segment is a bad entry, never honoured.
    for path, code in (
        ("//*", "CEILING_EXCEEDED"),
        ("//secret/data/other", "CEILING_EXCEEDED"),
        ("//secret/data/agents/lister/db", "ALLOWED"),
        ("secret/data/agents/../other", "RAR_INVALID"),
        ("secret/data/agents//x", "RAR_INVALID"),
    ):
        r = w.authorize(idp.token("lister", [path_access(path, "read")]))
        assert r.code == code, (path, r.code, r.reason)
        if code == "ALLOWED":
            assert json.loads(r.authorization_details) == [path_access(path.lstrip("/"), "read")]


def test_identity_templates_in_rar_paths(world: World) -> None:
    w, idp = world, world.idp
    ceiling = 'path "secret/data/agents/*" {\n  capabilities = ["read"]\n}\n'
    ent, _ = w.agent("templ", ceiling=ceiling, metadata={"team": "blue"})
    assert w.profile is not None
    accessor = w.profile.mount_accessor
    alias = w.cc.aliases.List(pb.ListRequest(namespace=w.ns), metadata=w.cc.md).aliases[0]
    for template, rendered in (
        ("secret/data/agents/{{identity.entity.id}}", f"secret/data/agents/{ent.id}"),
        ("secret/data/agents/{{identity.entity.name}}", "secret/data/agents/templ"),
        ("secret/data/agents/{{identity.entity.metadata.team}}", "secret/data/agents/blue"),
        (f"secret/data/agents/{{{{identity.entity.aliases.{accessor}.name}}}}", f"secret/data/agents/{alias.name}"),
    ):
        tok = idp.token("templ", [path_access(template, "read")])
        r = w.authorize(tok, rendered, "read")
        assert r.code == "ALLOWED", (template, r.reason)
        assert json.loads(r.authorization_details)[0]["path"] == rendered
        assert w.authorize(tok, "secret/data/agents/someone-else", "read").code == "RAR_NO_MATCH"


def test_default_policy_and_its_opt_outs(world: World, idp: Idp) -> None:
    """default (subject ACL) and default + default-ceiling (ceiling) unless opted out; the default
    policy's templated path is rendered for the subject and for the agent."""
    w = world
    ent, _ = w.agent("defaulted", ceiling=None, access=None)
    path = f"identity/entity/id/{ent.id}"
    tok = idp.token("defaulted", [path_access("identity/entity/id/{{identity.entity.id}}", "read")])
    assert w.authorize(tok, path, "read").code == "ALLOWED"
    other = w.authorize(idp.token("defaulted", [path_access("identity/entity/id/other", "read")]), "x", "read")
    assert other.code == "CEILING_EXCEEDED"

    ent2, _ = w.agent("no-default-ceiling", ceiling=None, access=None, no_default_ceiling_policy=True)
    tok2 = idp.token("no-default-ceiling", [path_access("identity/entity/id/{{identity.entity.id}}", "read")])
    assert w.authorize(tok2, f"identity/entity/id/{ent2.id}", "read").code == "CEILING_EXCEEDED"

    w2 = make_world(w.server, idp, no_default_policy=True)
    ent3, _ = w2.agent("no-default", ceiling=None, access=None)
    tok3 = idp.token("no-default", [path_access("identity/entity/id/{{identity.entity.id}}", "read")])
    r = w2.authorize(tok3, f"identity/entity/id/{ent3.id}", "read")
    assert r.code == "PERMISSION_DENIED", r.reason


def test_rar_optional_by_profile_or_registration_but_always_enforced_when_present(world: World, idp: Idp) -> None:
    w = world
    w.agent("req-rar")
    w.agent("opt-rar", optional_authorization_details=True)
    assert w.authorize(idp.token("req-rar"), "secret/data/ci/a", "read").code == "RAR_REQUIRED"
    assert w.authorize(idp.token("req-rar")).code == "RAR_REQUIRED"
    assert w.authorize(idp.token("opt-rar"), "secret/data/ci/a", "read").code == "ALLOWED"
    # Present although optional: enforced.
    tok = idp.token("opt-rar", [path_access("secret/data/ci/b", "read")])
    assert w.authorize(tok, "secret/data/ci/a", "read").code == "RAR_NO_MATCH"

    w2 = make_world(w.server, idp, optional_authorization_details=True)
    w2.agent("req-rar")
    assert w2.authorize(idp.token("req-rar"), "secret/data/ci/a", "read").code == "ALLOWED"
    assert w2.authorize(idp.token("req-rar", []), "secret/data/ci/a", "read").code == "RAR_NO_MATCH"
    # A claim that is present is enforced even when it is null (which is not an array): refused as
    # malformed, never taken for an absent claim, whether RAR is optional or required.
    for world_, agent in ((w, "req-rar"), (w, "opt-rar"), (w2, "req-rar")):
        r = world_.authorize(idp.token(agent, extra={"authorization_details": None}), "secret/data/ci/a", "read")
        assert (r.allowed, r.code) == (False, "RAR_INVALID"), (agent, r.code, r.reason)


@pytest.mark.parametrize(
    "details",
    [
        {"type": "vault:path_access", "path": "secret/data/ci/a", "capabilities": ["read"]},  # not an array
        [{"type": "vault:path_access", "path": "secret/data/ci/a", "capabilities": ["read"], "extra": 1}],
        [{"type": "vault:path_access", "path": "secret/data/ci/a", "capabilities": ["fly"]}],
        [{"type": "vault:path_access", "path": "secret/data/ci/a", "capabilities": []}],
        [{"type": "vault:path_access", "capabilities": ["read"]}],
        [{"type": "vault:path_access", "path": "secret/*/x", "capabilities": ["read"]}],
        [{"path": "secret/data/ci/a", "capabilities": ["read"]}],
        ["secret/data/ci/a"],
    ],
    ids=["object", "unknown-member", "bad-capability", "no-capability", "no-path", "star-inside", "no-type", "string"],
)
def test_malformed_authorization_details_are_refused(world: World, details: object) -> None:
    w, idp = world, world.idp
    w.agent("strict")
    r = w.authorize(idp.token("strict", details), "secret/data/ci/a", "read")
    assert (r.allowed, r.code) == (False, "RAR_INVALID"), r.reason


def test_on_behalf_of(world: World) -> None:
    """Subject ACL + the ACTOR's ceiling; the actor's own policies are ignored; the actor must be
    registered; disabled subject or actor refused."""
    w, idp = world, world.idp
    human, _ = w.agent("alice", access='path "secret/data/*" {\n  capabilities = ["read"]\n}\n', register=False)
    actor, reg = w.agent(
        "helper-bot",
        ceiling='path "secret/data/ci/*" {\n  capabilities = ["read"]\n}\n'
        'path "secret/data/bot-only/*" {\n  capabilities = ["read"]\n}\n',
        access='path "secret/data/bot-only/*" {\n  capabilities = ["read"]\n}\n',
    )
    assert reg is not None

    def obo(path: str, entry: str | None = None, *, sub: str = "alice", act: str = "helper-bot") -> object:
        return w.authorize(idp.token(sub, [path_access(entry or path, "read")], act=act), path, "read")

    ok = obo("secret/data/ci/app")
    assert (ok.allowed, ok.code) == (True, "ALLOWED"), ok.reason
    assert (ok.entity_id, ok.actor_entity_id, ok.registration_id) == (human.id, actor.id, reg.id)
    # Beyond the actor's ceiling, though the human could.
    assert obo("secret/data/prod/db").code == "CEILING_EXCEEDED"
    # Narrow the human's policy: now only the actor's own policy grants bot-only, and it is ignored.
    w.cc.policy("alice-access", 'path "secret/data/ci/*" {\n  capabilities = ["read"]\n}\n')
    eventually(lambda: obo("secret/data/bot-only/x").code == "PERMISSION_DENIED")

    # The actor needs its own registration; the subject's registration does not count.
    w.agent("registered-human", register=True)
    w.agent("unregistered-bot", register=False)
    r = obo("secret/data/ci/app", sub="registered-human", act="unregistered-bot")
    assert r.code == "AGENT_NOT_REGISTERED" and "actor" in r.reason
    assert obo("secret/data/ci/app", act="nobody").code == "SUBJECT_UNKNOWN"

    # The subject needs no registration in OBO; in a direct call it does.
    direct = w.authorize(idp.token("alice", [path_access("secret/data/ci/app", "read")]), "secret/data/ci/app", "read")
    assert direct.code == "AGENT_NOT_REGISTERED"

    w.cc.set_disabled(actor, True)
    eventually(lambda: obo("secret/data/ci/app").code == "ENTITY_DISABLED")
    w.cc.set_disabled(actor, False)
    w.cc.set_disabled(human, True)
    eventually(lambda: "alice" in obo("secret/data/ci/app").reason)
    r = obo("secret/data/ci/app")
    assert (r.code, r.entity_id) == ("ENTITY_DISABLED", human.id), r.reason


def test_parameters_through_the_struct(world: World) -> None:
    w, idp = world, world.idp
    ceiling = (
        'path "db/creds/*" {\n  capabilities = ["update"]\n'
        '  allowed_parameters = { "ttl" = [], "role" = ["reader", "writer"] }\n'
        '  denied_parameters = { "role" = ["writer"] }\n}\n'
    )
    access = 'path "db/creds/*" {\n  capabilities = ["update"]\n  required_parameters = ["ttl"]\n}\n'
    w.agent("params", ceiling=ceiling, access=access)
    # The ceiling's denied value must be denied by the entry too, or left out of its allowed ones.
    entry = path_access(
        "db/creds/app",
        "update",
        allowed_parameters={"ttl": [], "role": ["reader"]},
        denied_parameters={"role": ["writer"]},
    )
    tok = idp.token("params", [entry])
    ok = w.authorize(tok, "db/creds/app", "update", parameters={"ttl": 60, "role": "reader"})
    assert ok.code == "ALLOWED", ok.reason
    reader_only = path_access("db/creds/app", "update", allowed_parameters={"ttl": [], "role": ["reader"]})
    lean = idp.token("params", [reader_only])
    assert w.authorize(lean).code == "ALLOWED"
    r = w.authorize(lean, "db/creds/app", "update", parameters={"ttl": 60, "role": "reader"})
    assert r.code == "ALLOWED", r.reason
    wide = path_access("db/creds/app", "update", allowed_parameters={"ttl": [], "role": ["reader", "writer"]})
    assert w.authorize(idp.token("params", [wide])).code == "CEILING_EXCEEDED"
    # Required by the subject's ACL.
    assert w.authorize(tok, "db/creds/app", "update", parameters={"role": "reader"}).code == "PERMISSION_DENIED"
    # Not allowed by the RAR entry (and denied by the ceiling); not mentioned by the entry.
    assert w.authorize(tok, "db/creds/app", "update", parameters={"ttl": 1, "role": "writer"}).code == ("RAR_NO_MATCH")
    assert w.authorize(tok, "db/creds/app", "update", parameters={"ttl": 1, "x": "y"}).code == "RAR_NO_MATCH"
    # Parameters over 64 KiB are decided in a worker thread, not on the event loop: same answers.
    big = "r" * (100 * 1024)
    assert w.authorize(tok, "db/creds/app", "update", parameters={"ttl": 60, "role": "reader", "note": big}).code == (
        "RAR_NO_MATCH"
    )
    r = w.authorize(tok, "db/creds/app", "update", parameters={"ttl": 60, "role": big})
    assert r.code == "RAR_NO_MATCH", r.reason
    # Without a RAR (optional for this agent): the ACL allows, the ceiling's denied value refuses.
    w.agent("params-norar", ceiling=ceiling, access=access, optional_authorization_details=True)
    bare = idp.token("params-norar")
    assert w.authorize(bare, "db/creds/app", "update", parameters={"ttl": 1, "role": "reader"}).code == "ALLOWED"
    r = w.authorize(bare, "db/creds/app", "update", parameters={"ttl": 1, "role": "writer"})
    assert r.code == "CEILING_EXCEEDED", r.reason
    r = w.authorize(bare, "db/creds/app", "update", parameters={"ttl": "t" * 100_000, "role": "reader"})
    assert r.code == "ALLOWED", r.reason
    # An unrestricted entry under a restricting ceiling is not contained.
    loose = idp.token("params", [path_access("db/creds/app", "update")])
    assert w.authorize(loose, "db/creds/app", "update", parameters={"ttl": 1}).code == "CEILING_EXCEEDED"


def test_ceiling_verdicts_do_not_confuse_true_with_1(world: World) -> None:
    """The ceiling's verdict on an entry is cached per entry: ``[true]`` and ``[1]`` are different
    parameter constraints (in Python ``True == 1``), so one must not answer for the other."""
    w, idp = world, world.idp
    ceiling = 'path "secret/data/x" {\n  capabilities = ["update"]\n  allowed_parameters = { "force" = [true] }\n}\n'
    w.agent("typed", ceiling=ceiling, access='path "secret/data/*" {\n  capabilities = ["update"]\n}\n')
    within = idp.token("typed", [path_access("secret/data/x", "update", allowed_parameters={"force": [True]})])
    beyond = idp.token("typed", [path_access("secret/data/x", "update", allowed_parameters={"force": [1]})])
    assert w.authorize(within, "secret/data/x", "update", parameters={"force": True}).code == "ALLOWED"
    r = w.authorize(beyond, "secret/data/x", "update")
    assert (r.allowed, r.code) == (False, "CEILING_EXCEEDED"), r.reason


def test_issuer_profile_and_claims(authz_server: object, idp: Idp) -> None:
    w = make_world(authz_server, idp, clock_skew_leeway=30, user_claim="client_id")
    ent, _ = w.agent("claimer", optional_authorization_details=True)
    good = idp.token("ignored", extra={"client_id": "claimer"})
    assert w.authorize(good, "secret/data/ci/a", "read").entity_id == ent.id
    assert w.authorize(good, "secret/data/ci/a", "read").code == "ALLOWED"
    # Within the leeway, expired 10 s ago; beyond it.
    assert w.authorize(
        idp.token("x", extra={"client_id": "claimer"}, lifetime=-10), "secret/data/ci/a", "read"
    ).code == ("ALLOWED")
    assert w.authorize(
        idp.token("x", extra={"client_id": "claimer"}, lifetime=-60), "secret/data/ci/a", "read"
    ).code == ("TOKEN_EXPIRED")
    for typ in ("JWT", "application/at+jwt", "AT+JWT"):
        r = w.authorize(idp.token("x", extra={"client_id": "claimer"}, typ=typ), "secret/data/ci/a", "read")
        assert r.code == "ALLOWED", (typ, r.reason)
    for typ in ("id+jwt", "dpop+jwt", None):
        r = w.authorize(idp.token("x", extra={"client_id": "claimer"}, typ=typ), "secret/data/ci/a", "read")
        assert r.code == "TOKEN_INVALID", typ
    cases = {
        "no jti": idp.token("x", extra={"client_id": "claimer"}, omit=("jti",)),
        "no exp": idp.token("x", extra={"client_id": "claimer"}, omit=("exp",)),
        "no user claim": idp.token("claimer"),
        "other audience": idp.token("x", extra={"client_id": "claimer", "aud": ["someone-else"]}),
        "nbf beyond leeway": idp.token("x", extra={"client_id": "claimer", "nbf": 2**31}),
    }
    for name, tok in cases.items():
        r = w.authorize(tok, "secret/data/ci/a", "read")
        assert (r.allowed, r.code) == (False, "TOKEN_INVALID"), name
    # A token for an issuer with no profile here; a disabled profile.
    other = Idp()
    try:
        assert w.authorize(other.token("claimer"), "secret/data/ci/a", "read").code == "ISSUER_UNKNOWN"
    finally:
        other.close()
    prof = w.cc.profiles.Read(pb.ReadProfileRequest(namespace=w.ns, profile_name="idp"), metadata=w.cc.md).profile
    prof.enabled = False
    w.cc.update_profile(prof)
    eventually(lambda: w.authorize(good, "secret/data/ci/a", "read").code == "ISSUER_UNKNOWN")


def test_static_public_keys_by_kid(authz_server: object, idp: Idp) -> None:
    keys = [pb.PublicKey(key_id=idp.kids["rsa"], pem=idp.public_pem("rsa"))]
    w = make_world(authz_server, idp, use_jwks=False, jwks_uri="", public_keys=keys, supported_algorithms=["RS256"])
    w.agent("static", optional_authorization_details=True)
    requests_before = idp.requests
    assert w.authorize(idp.token("static", alg="RS256"), "secret/data/ci/a", "read").code == "ALLOWED"
    assert w.authorize(idp.token("static", alg="RS256", kid="unknown"), "secret/data/ci/a", "read").code == (
        "TOKEN_INVALID"
    )
    # ES256 is not in this profile's allow-list (nor is there an EC key).
    assert w.authorize(idp.token("static", alg="ES256"), "secret/data/ci/a", "read").code == "TOKEN_INVALID"
    assert idp.requests == requests_before  # no JWKS fetch in static mode


def test_bearer_metadata_and_malformed_requests(world: World) -> None:
    w, idp = world, world.idp
    w.agent("bearer")
    tok = idp.token("bearer", [path_access("secret/data/ci/a", "read")])
    r = w.authorize("", "secret/data/ci/a", "read", metadata=[("authorization", f"Bearer {tok}")])
    assert r.code == "ALLOWED", r.reason
    assert w.authorize("", "secret/data/ci/a", "read").code == "TOKEN_INVALID"
    for path, op in (("secret/data/ci/a", "fly"), ("secret/data/ci/a", ""), ("", "fly"), ("x" * 9000, "read")):
        with pytest.raises(grpc.RpcError) as err:
            w.authorize(tok, path, op)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        w.authorize("a" * 70_000, "secret/data/ci/a", "read")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Parameters JSON cannot hold (NaN, infinity), nested deeper than protobuf decodes, or bytes
    # that are no AuthorizeRequest at all: INVALID_ARGUMENT naming the field, never INTERNAL.
    nested: dict[str, object] = {}
    for _ in range(200):
        nested = {"a": nested}
    for params in ({"n": float("nan")}, {"n": float("inf")}, nested):
        with pytest.raises(grpc.RpcError) as err:
            w.authorize(tok, "secret/data/ci/a", "read", parameters=params)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
        assert "parameters" in (err.value.details() or ""), err.value
    with grpc.insecure_channel(w.server.authz_address) as ch:
        raw = ch.unary_unary("/agentceiling.v1.Authorization/Authorize")
        with pytest.raises(grpc.RpcError) as err:
            raw(b"\xff\xff\xff", timeout=15)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value


def test_dot_segments_are_malformed_and_namespace_slashes_are_vaults(world: World) -> None:
    """"secret/data/ci/../prod/db" used to match the ci/* grants and come back ALLOWED, though it
    names prod/db once cleaned: a path with "."/".." or an empty segment is INVALID_ARGUMENT. And
    "ns/" or "/ns" is the namespace "ns", as in Vault (they were ISSUER_UNKNOWN)."""
    w, idp = world, world.idp
    w.agent("dotty", access='path "secret/*" {\n  capabilities = ["read", "list"]\n}\n')
    tok = idp.token("dotty", [path_access("secret/data/ci/*", "read", "list")])
    for path in ("secret/data/ci/../prod/db", "secret/data/ci/./x", "secret/data/ci//x", "secret/data/ci/..",
                 "../secret/data/ci/x"):
        with pytest.raises(grpc.RpcError) as err:
            w.authorize(tok, path, "read")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "path" in (err.value.details() or ""), path
    # A path of slashes names nothing (leading slashes are dropped): LIST on "/" passed the
    # empty-path answer's check of an entry like "+" that the ceiling does not grant there.
    for path in ("/", "//", "///"):
        for op in ("list", "read"):
            with pytest.raises(grpc.RpcError) as err:
                w.authorize(tok, path, op)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "path" in (err.value.details() or ""), path
    for path in ("secret/data/ci/app..v2", "secret/data/ci/.hidden", "/secret/data/ci/x"):
        assert w.authorize(tok, path, "read").code == "ALLOWED", path
    assert w.authorize(tok, "secret/data/ci/", "list").code == "ALLOWED"
    for ns in (f"{w.ns}/", f"/{w.ns}", f"/{w.ns}/"):
        r = w.authorize(tok, "secret/data/ci/x", "read", namespace=ns)
        assert r.code == "ALLOWED", (ns, r.code, r.reason)
    with pytest.raises(grpc.RpcError) as err:
        w.authorize(tok, "secret/data/ci/x", "read", namespace=f"a//{w.ns}")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "namespace" in (err.value.details() or "")


def test_names_are_unique_per_namespace(authz_server: object, idp: Idp) -> None:
    """The same agent name in two namespaces: each namespace's objects decide its requests."""
    a = make_world(authz_server, idp)
    b = make_world(authz_server, idp)
    name = uniq("twin")
    a.agent(name)
    b.agent(name, ceiling='path "secret/data/other/*" {\n  capabilities = ["read"]\n}\n')
    tok = idp.token(name, [path_access("secret/data/ci/a", "read")])
    for _ in range(3):  # seen, then cached: the cache must not carry it into the other namespace
        assert a.authorize(tok, "secret/data/ci/a", "read").code == "ALLOWED"
    for _ in range(2):
        assert b.authorize(tok, "secret/data/ci/a", "read").code == "CEILING_EXCEEDED"
    assert a.authorize(tok, "secret/data/ci/a", "read").code == "ALLOWED"


def test_nul_in_an_issuer_subject_actor_or_namespace(world: World) -> None:
    """No stored name holds NUL, and PostgreSQL refuses it in a query: an unsigned token whose iss
    holds one, or a signed one whose sub or act.sub does, used to be UNAVAILABLE ("the directory is
    unavailable", logged as an error) on PostgreSQL and ISSUER_UNKNOWN on SQLite. Now both answer
    what a name that matches nothing gets; a namespace with a control character is malformed."""
    w, idp = world, world.idp
    w.agent("nul-bot")
    entry = [path_access("secret/data/ci/*", "read")]

    def b64(obj: object) -> str:
        import base64

        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    unsigned = b64({"alg": "ES256", "typ": "at+jwt"}) + "." + b64({"iss": idp.issuer + "\x00x", "sub": "x"}) + ".AAAA"
    cases = [
        (unsigned, "ISSUER_UNKNOWN"),
        (idp.token("nul-bot\x00"), "SUBJECT_UNKNOWN"),
        (idp.token("nul-bot", entry, act="nul-bot\x00"), "SUBJECT_UNKNOWN"),
    ]
    for token, code in cases:
        r = w.authorize(token, "secret/data/ci/app", "read")
        assert (r.allowed, r.code) == (False, code), r.reason
    assert w.authorize(idp.token("nul-bot", entry), "secret/data/ci/app", "read").code == "ALLOWED"
    for ns in (f"{w.ns}\x00", f"{w.ns}\x01", f"{w.ns}\x7f"):
        with pytest.raises(grpc.RpcError) as err:
            w.authorize(idp.token("nul-bot", entry), "secret/data/ci/app", "read", namespace=ns)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "namespace" in (err.value.details() or "")
    assert "database is unavailable" not in w.server.log()
