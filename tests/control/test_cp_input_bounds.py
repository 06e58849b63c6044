"""Bad input at the edges of the control plane: lookup keys (NUL, length, empty), page tokens,
values that grow when normalised, error statuses that must fit gRPC's trailer limit, keys and URLs
that would only fail at authorization time, invisible characters in names, duplicate policy names,
aliases that would outlive their profile. Real gRPC, SQLite and PostgreSQL: each must answer
INVALID_ARGUMENT (or the precise status) the same way, never INTERNAL or RESOURCE_EXHAUSTED."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa, x25519
from google.rpc import error_details_pb2, status_pb2
from test_cp_support import (
    EC_PUBLIC_PEM,
    C,
    Client,
    expect,
    expect_invalid,
    rpc_error,
    self_signed_certificate,
    uniq,
    violations,
)

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb
from agentceiling.api.errors import DETAILS_BUDGET, MESSAGE_BUDGET, bound_message, bound_violations, to_status
from agentceiling.domain.errors import FieldViolation, InvalidArgument, NotFound

NUL = "must not contain NUL characters"
POLICY_TEXT = 'path "secret/data/x" {\n  capabilities = ["read"]\n}\n'


def profile_req(**kw: Any) -> pb.CreateProfileRequest:
    kw.setdefault("profile_name", uniq("prof"))
    kw.setdefault("issuer_id", f"https://{uniq('idp')}.example.com")
    if "public_keys" not in kw and "jwks_uri" not in kw:
        kw["jwks_uri"] = kw["issuer_id"] + "/jwks"
    return pb.CreateProfileRequest(profile=pb.OAuthResourceServerProfile(**kw))


def alias_with_profile(c: Client, namespace: str = "") -> tuple[pb.OAuthResourceServerProfile, pb.EntityAlias]:
    prof = c.profile(namespace=namespace).profile
    ent = c.entity(namespace=namespace)
    alias = c.aliases.Create(
        pb.CreateAliasRequest(
            alias=pb.EntityAlias(
                namespace=namespace,
                name=uniq("alias"),
                canonical_id=ent.id,
                issuer=prof.issuer_id,
                external_id=uniq("sub"),
            )
        )
    ).alias
    return prof, alias


# ---------------------------------------------------------------- H4: lookup keys


LOOKUPS: list[tuple[str, str, Callable[[Client, str], Any]]] = [
    ("profile read by name", "profile_name", lambda c, k: c.profiles.Read(pb.ReadProfileRequest(profile_name=k))),
    ("profile read by config_id", "config_id", lambda c, k: c.profiles.Read(pb.ReadProfileRequest(config_id=k))),
    (
        "profile update",
        "profile_name",
        lambda c, k: c.profiles.Update(
            pb.UpdateProfileRequest(
                profile=pb.OAuthResourceServerProfile(
                    profile_name=k, issuer_id="https://x.example.com", jwks_uri="https://x.example.com/jwks"
                )
            )
        ),
    ),
    ("profile delete", "profile_name", lambda c, k: c.profiles.Delete(pb.DeleteProfileRequest(profile_name=k))),
    ("policy read", "name", lambda c, k: c.policies.Read(pb.ReadPolicyRequest(name=k))),
    (
        "policy update",
        "name",
        lambda c, k: c.policies.Update(pb.UpdatePolicyRequest(policy=pb.Policy(name=k, policy=POLICY_TEXT))),
    ),
    ("policy delete", "name", lambda c, k: c.policies.Delete(pb.DeletePolicyRequest(name=k))),
    ("entity read by id", "id", lambda c, k: c.entities.Read(pb.ReadEntityRequest(id=k))),
    ("entity read by name", "name", lambda c, k: c.entities.Read(pb.ReadEntityRequest(name=k))),
    ("entity update", "id", lambda c, k: c.entities.Update(pb.UpdateEntityRequest(entity=pb.IdentityEntity(id=k)))),
    ("entity delete", "id", lambda c, k: c.entities.Delete(pb.DeleteEntityRequest(id=k))),
    ("alias read", "id", lambda c, k: c.aliases.Read(pb.ReadAliasRequest(id=k))),
    (
        "alias update",
        "id",
        lambda c, k: c.aliases.Update(
            pb.UpdateAliasRequest(
                alias=pb.EntityAlias(id=k, name="x", canonical_id="y", issuer="https://x.example.com")
            )
        ),
    ),
    ("alias delete", "id", lambda c, k: c.aliases.Delete(pb.DeleteAliasRequest(id=k))),
    ("registration read by id", "id", lambda c, k: c.registrations.Read(pb.ReadRegistrationRequest(id=k))),
    (
        "registration read by display_name",
        "display_name",
        lambda c, k: c.registrations.Read(pb.ReadRegistrationRequest(display_name=k)),
    ),
    (
        "registration read by entity_id",
        "entity_id",
        lambda c, k: c.registrations.Read(pb.ReadRegistrationRequest(entity_id=k)),
    ),
    (
        "registration update",
        "id",
        lambda c, k: c.registrations.Update(
            pb.UpdateRegistrationRequest(registration=pb.AgentRegistration(id=k, display_name="d", entity_id="e"))
        ),
    ),
    ("registration delete", "id", lambda c, k: c.registrations.Delete(pb.DeleteRegistrationRequest(id=k))),
]
IDS = {"id", "config_id", "entity_id"}


@pytest.mark.parametrize(("what", "field", "call"), LOOKUPS, ids=[x[0] for x in LOOKUPS])
def test_nul_in_a_lookup_key_names_the_field(c: Client, what: str, field: str, call: Callable[..., Any]) -> None:
    before = c.generation()
    expect_invalid({field: NUL}, call, c, "a\x00b")
    assert c.generation() == before


@pytest.mark.parametrize(("what", "field", "call"), LOOKUPS, ids=[x[0] for x in LOOKUPS])
def test_overlong_lookup_key_names_the_field(c: Client, what: str, field: str, call: Callable[..., Any]) -> None:
    limit = 36 if field in IDS else 512
    expect_invalid({field: f"must be at most {limit} characters"}, call, c, "k" * (limit + 1))


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.entities.Update(pb.UpdateEntityRequest(entity=pb.IdentityEntity(name="x"))), "id"),
        (lambda c: c.entities.Delete(pb.DeleteEntityRequest()), "id"),
        (
            lambda c: c.aliases.Update(
                pb.UpdateAliasRequest(alias=pb.EntityAlias(name="x", canonical_id="y", issuer="https://x.example.com"))
            ),
            "id",
        ),
        (lambda c: c.aliases.Delete(pb.DeleteAliasRequest()), "id"),
        (
            lambda c: c.registrations.Update(
                pb.UpdateRegistrationRequest(registration=pb.AgentRegistration(display_name="d", entity_id="e"))
            ),
            "id",
        ),
        (lambda c: c.registrations.Delete(pb.DeleteRegistrationRequest()), "id"),
        (lambda c: c.profiles.Delete(pb.DeleteProfileRequest()), "profile_name"),
        (lambda c: c.policies.Delete(pb.DeletePolicyRequest()), "name"),
        (lambda c: c.policies.Update(pb.UpdatePolicyRequest(policy=pb.Policy(policy=POLICY_TEXT))), "name"),
    ],
)
def test_update_or_delete_without_a_key_names_the_field(c: Client, call: Callable[..., Any], field: str) -> None:
    expect_invalid({field: f"{field} is required"}, call, c)


@pytest.mark.parametrize("token", ["AA==", "!!!", "YWJj\n", "YW Jj", "+/8=", "YWJ", "YQ", "wA=="])
def test_a_page_token_the_server_did_not_issue_is_refused(c: Client, token: str) -> None:
    for lister in (c.profiles.List, c.registrations.List, c.policies.List, c.entities.List, c.aliases.List):
        expect_invalid({"page_token": "invalid page_token"}, lister, pb.ListRequest(page_token=token))


def test_issued_page_tokens_still_page_through_everything(c: Client) -> None:
    ns = uniq("ns")
    ids = sorted(c.entity(namespace=ns, name=f"é-{i}-{uniq('e')}").id for i in range(5))
    seen: list[str] = []
    token = ""
    while True:
        resp = c.entities.List(pb.ListRequest(namespace=ns, page_size=2, page_token=token))
        seen += [e.id for e in resp.entities]
        token = resp.next_page_token
        if not token:
            break
    assert seen == ids


# ---------------------------------------------------------------- H5: normalised issuer


def test_an_issuer_that_grows_when_lower_cased_is_refused(c: Client) -> None:
    bad = "https://x.example/" + "\u0130" * 1000  # within 1024 characters; ~2000 once lower-cased
    expect_invalid(
        {
            "issuer_id": "issuer_id must be at most 1024 characters and 1024 UTF-8 bytes once normalised "
            '(lower-cased, trailing "/" removed)'
        },
        c.profiles.Create,
        profile_req(issuer_id=bad, jwks_uri="https://k.example.com/jwks"),
    )


def test_keys_of_unique_indexes_are_bounded_in_bytes(c: Client) -> None:
    """PostgreSQL cannot index an entry over ~2.7 kB whatever the column's character limit."""
    wide = "\U00020000"  # four bytes in UTF-8
    expect_invalid(
        {"name": "must be at most 1024 bytes in UTF-8"},
        c.entities.Create,
        pb.CreateEntityRequest(entity=pb.IdentityEntity(name=wide * 512)),
    )
    expect_invalid(
        {"namespace": "must be at most 510 bytes in UTF-8"},
        c.entities.Create,
        pb.CreateEntityRequest(entity=pb.IdentityEntity(namespace=wide * 255, name="x")),
    )
    # The widest keys that pass are stored on both databases.
    ns = "é" * 255
    ent = c.entity(namespace=ns, name="é" * 512)
    assert c.entities.Read(pb.ReadEntityRequest(namespace=ns, name="é" * 512)).entity == ent


# ---------------------------------------------------------------- H6: statuses fit the trailers


def fits(exc: grpc.RpcError) -> None:
    """The real status arrived (not RESOURCE_EXHAUSTED) and is small."""
    assert exc.code() != C.RESOURCE_EXHAUSTED, exc.details()
    assert len((exc.details() or "").encode()) <= 4 * MESSAGE_BUDGET


def test_many_long_missing_ceiling_policies(c: Client) -> None:
    missing = [f"{i:03d}-" + "m" * 150 for i in range(256)]
    ent = c.entity()
    req = pb.CreateRegistrationRequest(
        registration=pb.AgentRegistration(display_name=uniq("agent"), entity_id=ent.id, ceiling_policies=missing)
    )
    for _ in range(5):  # the clients' limit is enforced at random between the soft and hard limits
        exc = rpc_error(c.registrations.Create, req)
        fits(exc)
        assert exc.code() == C.INVALID_ARGUMENT
        got = violations(exc)
        assert got[0][0] == "ceiling_policies[0]"
        assert got[0][1].startswith('ceiling policy "000-mmm')
        assert got[-1][1].endswith("more violations not shown"), got[-1]
        assert len(got) > 5


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"supported_algorithms": ["x" * 20000]},
            {
                "supported_algorithms[0]": f'unsupported algorithm "{"x" * 64}…"; supported: RS256, RS384, RS512, '
                "PS256, PS384, PS512, ES256, ES384, ES512, EdDSA"
            },
        ),
        (
            {"supported_algorithms": ["bad"] * 10001},
            {"supported_algorithms": "must have at most 10 entries (each supported algorithm once)"},
        ),
        (
            {"jwt_type": "x" * 20000},
            {"jwt_type": f'jwt_type must be one of "access_token", "transaction_token", got "{"x" * 64}…"'},
        ),
    ],
)
def test_huge_profile_values_get_their_real_error(c: Client, fields: dict[str, Any], expected: dict[str, str]) -> None:
    for _ in range(3):
        fits(expect_invalid(expected, c.profiles.Create, profile_req(**fields)))


def test_huge_feature_and_lookup_values_get_their_real_error(c: Client) -> None:
    for _ in range(3):
        fits(
            expect_invalid(
                {"feature": "must be at most 255 characters"},
                c.system.ActivateFeature,
                pb.ActivateFeatureRequest(feature="x" * 20000),
            )
        )
        fits(
            expect_invalid(
                {"profile_name": "must be at most 512 characters"},
                c.profiles.Read,
                pb.ReadProfileRequest(profile_name="a" * 3_000_000),
            )
        )


def test_not_found_messages_repeat_at_most_the_start_of_a_key(c: Client) -> None:
    wide = "\u4e00" * 512  # a valid name that percent-encodes to 4.5 kB
    exc = expect(
        C.NOT_FOUND,
        f'policy "{wide[:100]}…" not found in namespace "root"',
        c.policies.Read,
        pb.ReadPolicyRequest(name=wide),
    )
    fits(exc)


def test_status_bounds_unit() -> None:
    """The safety net for every status: whatever a service raises fits in the trailers."""
    many = InvalidArgument(FieldViolation(f"field[{i}]" + "f" * 500, "d" * 5000) for i in range(1000))
    st = to_status(many)
    details = dict(st.trailing_metadata)["grpc-status-details-bin"]
    assert len(details) <= DETAILS_BUDGET + MESSAGE_BUDGET + 64
    kept = bound_violations(many.violations)
    assert kept[0].field.startswith("field[0]") and len(kept) > 3
    assert kept[-1].description.endswith("more violations not shown")
    assert len(st.details.encode()) <= MESSAGE_BUDGET
    full = status_pb2.Status.FromString(details)
    parsed = error_details_pb2.BadRequest()
    assert full.details[0].Unpack(parsed)
    assert [v.field for v in parsed.field_violations] == [v.field for v in kept]
    # Few violations: kept as they are, message unchanged.
    few = InvalidArgument([FieldViolation("a", "x"), FieldViolation("b", "y")])
    assert bound_violations(few.violations) == list(few.violations)
    assert to_status(few).details == "a: x; b: y"
    # Any message: cut by its size on the wire (non-ASCII is percent-encoded, three bytes a byte).
    cut = bound_message("\u4e00" * 100_000)
    assert cut.endswith("…") and len(cut.encode()) * 3 <= MESSAGE_BUDGET
    assert to_status(NotFound("n" * 100_000)).details == bound_message("n" * 100_000)


# ---------------------------------------------------------------- M3: keys and URLs


def _spki(key: Any) -> str:
    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _spki_public(key: Any) -> str:
    return str(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())


def _rsa_512() -> str:
    """cryptography no longer generates such keys; the numbers make one (only its size matters)."""
    key = rsa.RSAPublicNumbers(65537, (1 << 511) + 0x2F).public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _rsa_1024_certificate() -> str:
    return self_signed_certificate(rsa.generate_private_key(public_exponent=65537, key_size=1024))


RULES = "accepted: RSA of 2048 to 8192 bits, EC P-256, P-384 or P-521, Ed25519"
UNUSABLE = [
    ("rsa-512", _rsa_512,
     "RSA key is 512 bits; at least 2048 are required"),
    ("rsa-1024 certificate", _rsa_1024_certificate, "RSA key is 1024 bits; at least 2048 are required"),
    ("dsa", lambda: _spki(dsa.generate_private_key(key_size=2048)), "DSAPublicKey keys are not supported"),
    ("x25519", lambda: _spki(x25519.X25519PrivateKey.generate()), "X25519PublicKey keys are not supported"),
    ("secp256k1", lambda: _spki(ec.generate_private_key(ec.SECP256K1())), "EC curve secp256k1 is not supported"),
    ("ed25519 identity point", lambda: _spki_public(ed25519.Ed25519PublicKey.from_public_bytes(b"\x01" + bytes(31))),
     "Ed25519 key is a point of small order, for which signatures can be forged"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "make", "reason"), UNUSABLE, ids=[u[0] for u in UNUSABLE])
def test_keys_the_token_validator_refuses_are_refused_at_create(
    c: Client, kind: str, make: Callable[[], str], reason: str
) -> None:
    pem = make()
    expect_invalid(
        {"public_keys[1].pem": f"pem holds a key that cannot verify tokens: {reason} ({RULES})"},
        c.profiles.Create,
        profile_req(
            use_jwks=False,
            public_keys=[pb.PublicKey(key_id="good", pem=EC_PUBLIC_PEM), pb.PublicKey(key_id="bad", pem=pem)],
        ),
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://h.example:abc/", "has an invalid port: it must be a number from 1 to 65535"),
        ("http://h.example:99999/", "has an invalid port: it must be a number from 1 to 65535"),
        ("https://h.example:0/", "has an invalid port: it must be a number from 1 to 65535"),
        ("https://h.example/\n", "must not contain whitespace or control characters (found U+000A)"),
        ("https://h.example/a\tb", "must not contain whitespace or control characters (found U+0009)"),
        ("https://h.example/\x7f", "must not contain whitespace or control characters (found U+007F)"),
        ("https://h.example/\u200b", "must not contain whitespace or control characters (found U+200B)"),
    ],
)
def test_issuer_and_jwks_uri_must_be_usable_urls(c: Client, url: str, problem: str) -> None:
    expect_invalid(
        {"issuer_id": f"issuer_id {url!r} {problem}"},
        c.profiles.Create,
        profile_req(issuer_id=url, jwks_uri="https://k.example.com/jwks"),
    )
    expect_invalid({"jwks_uri": f"jwks_uri {url!r} {problem}"}, c.profiles.Create, profile_req(jwks_uri=url))


def test_jwks_uri_must_be_sendable_as_is(c: Client) -> None:
    expect_invalid(
        {"jwks_uri": "jwks_uri 'https://k.example.com/schlüssel' must contain only ASCII characters; "
         "percent-encode U+00FC"},
        c.profiles.Create,
        profile_req(jwks_uri="https://k.example.com/schlüssel"),
    )  # fmt: skip
    expect_invalid(
        {"jwks_uri": "jwks_uri 'https://u:p@k.example.com/jwks' must not carry credentials (user:password@)"},
        c.profiles.Create,
        profile_req(jwks_uri="https://u:p@k.example.com/jwks"),
    )
    # A port given explicitly, an empty port and an IPv6 literal are fine.
    for ok in ("https://k.example.com:8443/jwks", "https://k.example.com:/jwks", "http://[::1]:8080/jwks"):
        assert c.profiles.Create(profile_req(jwks_uri=ok)).profile.jwks_uri == ok


# ---------------------------------------------------------------- M4: aliases of a deleted profile


def test_a_profile_with_aliases_cannot_be_deleted(c: Client) -> None:
    ns = uniq("ns")
    prof, alias = alias_with_profile(c, ns)
    before = c.generation()
    expect(
        C.FAILED_PRECONDITION,
        f'profile "{prof.profile_name}" is used by entity aliases: "{alias.name}" ({alias.id}); '
        "delete those aliases first",
        c.profiles.Delete,
        pb.DeleteProfileRequest(namespace=ns, profile_name=prof.profile_name),
    )
    assert c.generation() == before
    assert c.profiles.Read(pb.ReadProfileRequest(namespace=ns, profile_name=prof.profile_name)).profile == prof
    # Terraform's order (the alias references the profile, so it goes first) works.
    c.aliases.Delete(pb.DeleteAliasRequest(namespace=ns, id=alias.id))
    c.profiles.Delete(pb.DeleteProfileRequest(namespace=ns, profile_name=prof.profile_name))
    # Re-creating both, with the same issuer and external_id, works: nothing was left behind.
    again = c.profiles.Create(
        profile_req(namespace=ns, profile_name=prof.profile_name, issuer_id=prof.issuer_id, jwks_uri=prof.jwks_uri)
    ).profile
    ent = c.entity(namespace=ns)
    made = c.aliases.Create(
        pb.CreateAliasRequest(
            alias=pb.EntityAlias(
                namespace=ns,
                name=alias.name,
                canonical_id=ent.id,
                issuer=again.issuer_id,
                external_id=alias.external_id,
            )
        )
    ).alias
    assert made.id != alias.id


def test_the_refusal_names_a_few_aliases_and_counts_the_rest(c: Client) -> None:
    ns = uniq("ns")
    prof = c.profile(namespace=ns).profile
    ent = c.entity(namespace=ns)
    for i in range(12):
        c.aliases.Create(
            pb.CreateAliasRequest(
                alias=pb.EntityAlias(
                    namespace=ns, name=f"a{i:02d}", canonical_id=ent.id, issuer=prof.issuer_id, external_id=f"s{i}"
                )
            )
        )
    exc = rpc_error(c.profiles.Delete, pb.DeleteProfileRequest(namespace=ns, profile_name=prof.profile_name))
    assert exc.code() == C.FAILED_PRECONDITION
    assert '"a00" (' in exc.details() and '"a09" (' in exc.details() and '"a10"' not in exc.details()
    assert "and 2 more; delete those aliases first" in exc.details()
    # Deleting the entity takes its aliases with it; then the profile can go.
    c.entities.Delete(pb.DeleteEntityRequest(namespace=ns, id=ent.id))
    c.profiles.Delete(pb.DeleteProfileRequest(namespace=ns, profile_name=prof.profile_name))


# ---------------------------------------------------------------- low: characters, duplicates, keys


INVISIBLE = [
    ("\x7f", "must not contain control characters"),
    ("\x01", "must not contain control characters"),
    ("\x85", "must not contain control characters"),
    ("\x9b", "must not contain control characters"),
    ("\u200b", "must not contain invisible formatting or separator characters (found U+200B)"),
    ("\u202e", "must not contain invisible formatting or separator characters (found U+202E)"),
    ("\u2028", "must not contain invisible formatting or separator characters (found U+2028)"),
    ("\u2029", "must not contain invisible formatting or separator characters (found U+2029)"),
    ("\ufeff", "must not contain invisible formatting or separator characters (found U+FEFF)"),
]


@pytest.mark.parametrize(("char", "expected"), INVISIBLE, ids=[f"U+{ord(ch):04X}" for ch, _ in INVISIBLE])
def test_names_refuse_invisible_characters(c: Client, char: str, expected: str) -> None:
    name = f"a{char}b"
    expect_invalid({"profile_name": expected}, c.profiles.Create, profile_req(profile_name=name))
    expect_invalid(
        {"name": expected}, c.policies.Create, pb.CreatePolicyRequest(policy=pb.Policy(name=name, policy=POLICY_TEXT))
    )
    expect_invalid({"name": expected}, c.entities.Create, pb.CreateEntityRequest(entity=pb.IdentityEntity(name=name)))
    expect_invalid(
        {"display_name": expected},
        c.registrations.Create,
        pb.CreateRegistrationRequest(registration=pb.AgentRegistration(display_name=name, entity_id=c.entity().id)),
    )
    expect_invalid(
        {"name": expected},
        c.aliases.Create,
        pb.CreateAliasRequest(
            alias=pb.EntityAlias(name=name, canonical_id=c.entity().id, issuer="https://x.example.com")
        ),
    )
    expect_invalid(
        {"namespace": expected}, c.entities.Create, pb.CreateEntityRequest(entity=pb.IdentityEntity(namespace=name))
    )
    expect_invalid({"feature": expected}, c.system.ActivateFeature, pb.ActivateFeatureRequest(feature=name))


def test_visible_unicode_names_still_work(c: Client) -> None:
    for name in (uniq("agent ü"), uniq("代理"), uniq("a-b_c.d")):
        assert c.entity(name).name == name
        assert c.system.ActivateFeature(pb.ActivateFeatureRequest(feature=name)).flag.feature == name


def test_entity_policies_must_be_policy_names_each_once(c: Client) -> None:
    expect_invalid(
        {
            "policies[0]": 'invalid policy name " a b "',
            "policies[2]": 'duplicate policy "p"',
            "policies[3]": "must not contain control characters",
        },
        c.entities.Create,
        pb.CreateEntityRequest(entity=pb.IdentityEntity(policies=[" a b ", "p", "p", "q\x7f"])),
    )


def test_registration_ceiling_policies_each_once(c: Client) -> None:
    pol = c.policy().name
    expect_invalid(
        {"ceiling_policies[1]": f'duplicate policy "{pol}"', "ceiling_policies[3]": 'duplicate policy "default"'},
        c.registrations.Create,
        pb.CreateRegistrationRequest(
            registration=pb.AgentRegistration(
                display_name=uniq("agent"), entity_id=c.entity().id, ceiling_policies=[pol, pol, "default", "default"]
            )
        ),
    )


def test_a_bad_metadata_key_is_named(c: Client) -> None:
    expect_invalid(
        {"metadata[bad\\x00key]": "key must not contain NUL characters"},
        c.entities.Create,
        pb.CreateEntityRequest(entity=pb.IdentityEntity(metadata={"fine": "1", "bad\x00key": "2"})),
    )
    long_key = "k" * 300
    expect_invalid(
        {f"custom_metadata[{'k' * 64}…]": "key must be at most 256 characters"},
        c.aliases.Create,
        pb.CreateAliasRequest(
            alias=pb.EntityAlias(
                name="x", canonical_id=c.entity().id, issuer="https://x.example.com", custom_metadata={long_key: "v"}
            )
        ),
    )
