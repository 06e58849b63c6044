"""OAuth resource-server profiles: every rule of the issue, through real gRPC, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from test_cp_support import (
    CERT_PEM,
    EC_PRIVATE_PEM,
    EC_PUBLIC_PEM,
    ED_PUBLIC_PEM,
    RSA_PRIVATE_PEM,
    RSA_PUBLIC_PEM,
    C,
    Client,
    db_dump,
    expect,
    expect_invalid,
    uniq,
)

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb

ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
SUPPORTED = "supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA"
WARN_HTTP = "JWKS URI uses HTTP instead of HTTPS. This is insecure and should only be used in development."
WARN_DISABLED = "Creating a disabled profile. Enable it with enabled=true when ready."
WARN_ONE_FAMILY = "profile supports only one algorithm family - consider supporting multiple families for flexibility"


def warn_rs(alg: str) -> str:
    return f'algorithm "{alg}" is functional but consider using PS{alg[2:]} (RSA-PSS) for better security'


def issuer() -> str:
    return f"https://{uniq('idp')}.example.com"


def msg(**kw: Any) -> pb.OAuthResourceServerProfile:
    """A profile message; only profile_name and issuer_id are filled in for you."""
    kw.setdefault("profile_name", uniq("prof"))
    kw.setdefault("issuer_id", issuer())
    return pb.OAuthResourceServerProfile(**kw)


def create(c: Client, **kw: Any) -> Any:
    return lambda: c.profiles.Create(pb.CreateProfileRequest(profile=msg(**kw)))


def keys(*pems: str) -> list[pb.PublicKey]:
    return [pb.PublicKey(key_id=f"k{i}", pem=p) for i, p in enumerate(pems)]


# ---------------------------------------------------------------- defaults and identity


def test_defaults_identity_and_reads(c: Client) -> None:
    name, iss = uniq("prof"), issuer()
    resp = c.profiles.Create(
        pb.CreateProfileRequest(profile=pb.OAuthResourceServerProfile(profile_name=name, issuer_id=iss, jwks_uri=iss))
    )
    p = resp.profile
    assert list(resp.warnings) == []
    assert resp.generation > 0
    assert (p.namespace, p.profile_name, p.issuer_id) == ("root", name, iss)
    assert p.use_jwks is True and p.HasField("use_jwks")
    assert (p.user_claim, p.jwt_type, p.enabled) == ("sub", "access_token", True)
    assert (p.unique_id_claim, p.actor_claim, p.clock_skew_leeway) == ("jti", "act.sub", 0)
    assert list(p.supported_algorithms) == [] and list(p.audiences) == [] and list(p.public_keys) == []
    assert not p.no_default_policy and not p.optional_authorization_details
    assert str(uuid.UUID(p.config_id)) == p.config_id
    assert p.mount_accessor == f"oauth-resource-server_root_{p.config_id}"
    assert p.version == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", p.creation_time)
    assert p.last_updated_time == p.creation_time

    by_name = c.profiles.Read(pb.ReadProfileRequest(profile_name=name)).profile
    by_id = c.profiles.Read(pb.ReadProfileRequest(namespace="root", config_id=p.config_id)).profile
    assert by_name == p
    assert by_id == p


def test_read_needs_a_key_and_reports_missing(c: Client) -> None:
    expect_invalid({"profile_name": "profile_name or config_id is required"}, c.profiles.Read, pb.ReadProfileRequest())
    expect(
        C.NOT_FOUND,
        'profile "no-such-profile" not found in namespace "root"',
        c.profiles.Read,
        pb.ReadProfileRequest(profile_name="no-such-profile"),
    )
    cid = str(uuid.uuid4())
    expect(
        C.NOT_FOUND,
        f'profile "{cid}" not found in namespace "root"',
        c.profiles.Read,
        pb.ReadProfileRequest(config_id=cid),
    )


def test_config_id_stable_and_version_bumps_across_updates(c: Client) -> None:
    first = c.profile(audiences=["a"]).profile
    seen = {first.config_id}
    prev = first
    for i in range(3):
        upd = msg(
            profile_name=first.profile_name, issuer_id=first.issuer_id, jwks_uri=first.jwks_uri, audiences=[f"aud-{i}"]
        )
        p = c.profiles.Update(pb.UpdateProfileRequest(profile=upd, expected_version=prev.version)).profile
        seen.add(p.config_id)
        assert p.version == prev.version + 1
        assert p.creation_time == first.creation_time
        assert p.last_updated_time >= prev.last_updated_time
        assert p.mount_accessor == first.mount_accessor
        assert list(p.audiences) == [f"aud-{i}"]
        prev = p
    assert seen == {first.config_id}
    assert c.profiles.Read(pb.ReadProfileRequest(config_id=first.config_id)).profile == prev


def test_update_replaces_the_whole_object(c: Client) -> None:
    first = c.profile(audiences=["x", "y"], user_claim="email", clock_skew_leeway=30, enabled=False).profile
    upd = msg(profile_name=first.profile_name, issuer_id=first.issuer_id, jwks_uri=first.jwks_uri)
    p = c.profiles.Update(pb.UpdateProfileRequest(profile=upd)).profile
    assert list(p.audiences) == []
    assert (p.user_claim, p.clock_skew_leeway, p.enabled) == ("sub", 0, True)


def test_update_and_delete_of_a_missing_profile(c: Client) -> None:
    expect(
        C.NOT_FOUND,
        'profile "ghost" not found in namespace "root"',
        c.profiles.Update,
        pb.UpdateProfileRequest(profile=msg(profile_name="ghost", jwks_uri="https://x.example.com/jwks")),
    )
    expect(
        C.NOT_FOUND,
        'profile "ghost" not found in namespace "root"',
        c.profiles.Delete,
        pb.DeleteProfileRequest(profile_name="ghost"),
    )


def test_profile_name_unique_per_namespace(c: Client) -> None:
    name = uniq("prof")
    c.profile(profile_name=name)
    expect(
        C.ALREADY_EXISTS,
        f'profile "{name}" already exists in namespace "root"',
        c.profile,
        profile_name=name,
    )


# ---------------------------------------------------------------- issuer_id


def test_issuer_required(c: Client) -> None:
    expect_invalid(
        {"issuer_id": "issuer_id is required"}, create(c, issuer_id="", jwks_uri="https://k.example.com/jwks")
    )


@pytest.mark.parametrize(
    "bad", ["idp.example.com", "/relative/path", "ftp://idp.example.com", "https://", "mailto:agent@example.com"]
)
def test_issuer_must_be_absolute_http_url(c: Client, bad: str) -> None:
    expect_invalid(
        {"issuer_id": f"issuer_id {bad!r} must be an absolute http or https URL"},
        create(c, issuer_id=bad, jwks_uri="https://k.example.com/jwks"),
    )


def test_issuer_immutable_after_create(c: Client) -> None:
    p = c.profile().profile
    for changed in (issuer(), p.issuer_id.upper(), p.issuer_id + "/"):
        upd = msg(profile_name=p.profile_name, issuer_id=changed, jwks_uri=p.jwks_uri)
        expect_invalid(
            {"issuer_id": f"issuer_id cannot be changed after creation (currently {p.issuer_id!r})"},
            c.profiles.Update,
            pb.UpdateProfileRequest(profile=upd),
        )
    assert c.profiles.Read(pb.ReadProfileRequest(profile_name=p.profile_name)).profile == p


def test_issuer_unique_after_normalisation_and_stored_as_sent(c: Client) -> None:
    host = uniq("Idp")
    sent = f"HTTPS://{host}.Example.COM/"
    first = c.profile(issuer_id=sent, jwks_uri="https://k.example.com/jwks").profile
    assert first.issuer_id == sent
    assert c.profiles.Read(pb.ReadProfileRequest(profile_name=first.profile_name)).profile.issuer_id == sent
    for variant in (f"https://{host.lower()}.example.com", f"https://{host}.example.com/", sent):
        expect(
            C.ALREADY_EXISTS,
            f'duplicate issuer_id "{variant}" found in profile "{first.profile_name}"',
            c.profile,
            issuer_id=variant,
            jwks_uri="https://k.example.com/jwks",
        )
    # A different path is a different issuer.
    other = c.profile(issuer_id=f"https://{host.lower()}.example.com/tenant-2", jwks_uri="https://k.example.com/j")
    assert other.profile.issuer_id.endswith("/tenant-2")


def test_deleting_a_profile_frees_its_issuer(c: Client) -> None:
    p = c.profile().profile
    expect(
        C.ABORTED,
        f'profile "{p.profile_name}" is at version 1, not 7: it was changed since you read it',
        c.profiles.Delete,
        pb.DeleteProfileRequest(profile_name=p.profile_name, expected_version=7),
    )
    c.profiles.Delete(pb.DeleteProfileRequest(profile_name=p.profile_name, expected_version=1))
    expect(
        C.NOT_FOUND,
        f'profile "{p.profile_name}" not found in namespace "root"',
        c.profiles.Read,
        pb.ReadProfileRequest(profile_name=p.profile_name),
    )
    again = c.profile(issuer_id=p.issuer_id.upper()).profile
    assert again.config_id != p.config_id


# ---------------------------------------------------------------- key source: Vault's four errors


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"jwks_uri": "jwks_uri is required when use_jwks=true"}),
        ({"use_jwks": True}, {"jwks_uri": "jwks_uri is required when use_jwks=true"}),
        ({"public_keys": "ec"}, {"jwks_uri": "jwks_uri is required when use_jwks=true"}),
        ({"use_jwks": False}, {"public_keys": "public_keys is required when use_jwks=false"}),
        (
            {"use_jwks": False, "jwks_uri": "https://k.example.com/jwks"},
            {"public_keys": "public_keys is required when use_jwks=false"},
        ),
        (
            {"use_jwks": True, "jwks_uri": "https://k.example.com/jwks", "public_keys": "ec"},
            {"public_keys": "cannot specify both use_jwks=true and public_keys"},
        ),
        (
            {"jwks_uri": "https://k.example.com/jwks", "public_keys": "ec"},
            {"public_keys": "cannot specify both use_jwks=true and public_keys"},
        ),
        (
            {"use_jwks": False, "jwks_uri": "https://k.example.com/jwks", "public_keys": "ec"},
            {"jwks_uri": "cannot specify both use_jwks=false and jwks_uri"},
        ),
    ],
)
def test_key_source_conflicts(c: Client, fields: dict[str, Any], expected: dict[str, str]) -> None:
    if fields.get("public_keys") == "ec":
        fields = {**fields, "public_keys": keys(EC_PUBLIC_PEM)}
    name = uniq("prof")
    expect_invalid(expected, create(c, profile_name=name, **fields))
    expect(
        C.NOT_FOUND,
        f'profile "{name}" not found in namespace "root"',
        c.profiles.Read,
        pb.ReadProfileRequest(profile_name=name),
    )


def test_switching_between_jwks_and_static_keys(c: Client) -> None:
    p = c.profile().profile
    static = msg(profile_name=p.profile_name, issuer_id=p.issuer_id, use_jwks=False, public_keys=keys(EC_PUBLIC_PEM))
    s = c.profiles.Update(pb.UpdateProfileRequest(profile=static)).profile
    assert (s.use_jwks, s.jwks_uri, [k.pem for k in s.public_keys]) == (False, "", [EC_PUBLIC_PEM])
    back = msg(profile_name=p.profile_name, issuer_id=p.issuer_id, jwks_uri=p.jwks_uri)
    b = c.profiles.Update(pb.UpdateProfileRequest(profile=back)).profile
    assert (b.use_jwks, b.jwks_uri, list(b.public_keys)) == (True, p.jwks_uri, [])


def test_jwks_uri_must_be_a_url(c: Client) -> None:
    expect_invalid(
        {"jwks_uri": "jwks_uri 'keys.json' must be an absolute http or https URL"}, create(c, jwks_uri="keys.json")
    )


def test_jwks_uri_breaking_two_rules_is_reported_once(c: Client) -> None:
    """A field breaking two rules still gets one violation (the key-source conflict comes first)."""
    expect_invalid(
        {"jwks_uri": "cannot specify both use_jwks=false and jwks_uri"},
        create(c, use_jwks=False, jwks_uri="not-a-url", public_keys=keys(EC_PUBLIC_PEM)),
    )


def test_jwks_ca_pem_breaking_two_rules_is_reported_once(c: Client) -> None:
    expect_invalid(
        {"jwks_ca_pem": "jwks_ca_pem can only be used with use_jwks=true"},
        create(c, use_jwks=False, jwks_ca_pem="garbage", public_keys=keys(EC_PUBLIC_PEM)),
    )


def test_jwks_ca_pem(c: Client) -> None:
    ok = c.profile(jwks_ca_pem=CERT_PEM).profile
    assert ok.jwks_ca_pem == CERT_PEM
    expect_invalid(
        {"jwks_ca_pem": "jwks_ca_pem must contain one or more PEM certificates"},
        create(c, jwks_uri="https://k.example.com/jwks", jwks_ca_pem=EC_PUBLIC_PEM),
    )


# ---------------------------------------------------------------- public keys


def test_static_public_keys_and_certificates_accepted_as_sent(c: Client) -> None:
    pems = [EC_PUBLIC_PEM, RSA_PUBLIC_PEM, ED_PUBLIC_PEM, CERT_PEM, "\n" + EC_PUBLIC_PEM + "\n"]
    p = c.profile(use_jwks=False, public_keys=keys(*pems)).profile
    assert [(k.key_id, k.pem) for k in p.public_keys] == [(f"k{i}", pem) for i, pem in enumerate(pems)]
    read = c.profiles.Read(pb.ReadProfileRequest(profile_name=p.profile_name)).profile
    assert read == p


def test_key_id_unique_within_a_profile(c: Client) -> None:
    dup = [pb.PublicKey(key_id="kid-1", pem=EC_PUBLIC_PEM), pb.PublicKey(key_id="kid-1", pem=RSA_PUBLIC_PEM)]
    expect_invalid({"public_keys[1].key_id": 'duplicate key_id "kid-1"'}, create(c, use_jwks=False, public_keys=dup))
    # The same key_id in two different profiles is fine.
    one = [pb.PublicKey(key_id="kid-1", pem=EC_PUBLIC_PEM)]
    c.profile(use_jwks=False, public_keys=one)
    c.profile(use_jwks=False, public_keys=one)


def test_key_fields_required(c: Client) -> None:
    expect_invalid(
        {"public_keys[0].key_id": "key_id is required", "public_keys[1].pem": "pem is required"},
        create(
            c,
            use_jwks=False,
            public_keys=[pb.PublicKey(key_id="", pem=EC_PUBLIC_PEM), pb.PublicKey(key_id="b", pem="  ")],
        ),
    )


@pytest.mark.parametrize(
    "pem",
    [
        "not a pem",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        EC_PUBLIC_PEM.replace("PUBLIC KEY", "SOMETHING"),
    ],
)
def test_pem_must_parse(c: Client, pem: str) -> None:
    expect_invalid(
        {"public_keys[0].pem": "pem must be a PEM-encoded public key or certificate"},
        create(c, use_jwks=False, public_keys=keys(pem)),
    )


@pytest.mark.parametrize("private", [EC_PRIVATE_PEM, RSA_PRIVATE_PEM])
def test_private_key_refused_and_never_stored(c: Client, srv: Any, private: str) -> None:
    marker = private.splitlines()[2]  # a line of the key's base64 body
    name = uniq("prof")
    exc = expect_invalid(
        {"public_keys[1].pem": "pem is a private key; only public keys or certificates are accepted"},
        create(c, profile_name=name, use_jwks=False, public_keys=keys(EC_PUBLIC_PEM, private)),
    )
    assert marker not in (exc.details() or "")
    expect(
        C.NOT_FOUND,
        f'profile "{name}" not found in namespace "root"',
        c.profiles.Read,
        pb.ReadProfileRequest(profile_name=name),
    )
    # Not through an update either.
    p = c.profile(use_jwks=False, public_keys=keys(EC_PUBLIC_PEM)).profile
    upd = msg(profile_name=p.profile_name, issuer_id=p.issuer_id, use_jwks=False, public_keys=keys(private))
    expect_invalid(
        {"public_keys[0].pem": "pem is a private key; only public keys or certificates are accepted"},
        c.profiles.Update,
        pb.UpdateProfileRequest(profile=upd),
    )
    assert c.profiles.Read(pb.ReadProfileRequest(profile_name=p.profile_name)).profile == p
    assert marker.encode() not in db_dump(srv)
    assert marker not in srv.log()


# ---------------------------------------------------------------- algorithms, jwt_type, leeway, claims


def test_every_supported_algorithm_accepted(c: Client) -> None:
    resp = c.profile(supported_algorithms=ALGS)
    assert list(resp.profile.supported_algorithms) == ALGS
    assert list(resp.warnings) == []


@pytest.mark.parametrize("bad", ["HS256", "none", "rs256", "RS1024", "EDDSA", ""])
def test_unsupported_algorithm(c: Client, bad: str) -> None:
    expect_invalid(
        {"supported_algorithms[1]": f'unsupported algorithm "{bad}"; {SUPPORTED}'},
        create(c, jwks_uri="https://k.example.com/jwks", supported_algorithms=["ES256", bad]),
    )


def test_duplicate_algorithm(c: Client) -> None:
    expect_invalid(
        {"supported_algorithms[2]": 'duplicate algorithm "ES256"'},
        create(c, jwks_uri="https://k.example.com/jwks", supported_algorithms=["ES256", "PS256", "ES256"]),
    )


def test_jwt_type(c: Client) -> None:
    assert c.profile(jwt_type="transaction_token").profile.jwt_type == "transaction_token"
    assert c.profile(jwt_type="access_token").profile.jwt_type == "access_token"
    for bad in ("id_token", "", "Access_Token"):
        expect_invalid(
            {"jwt_type": f'jwt_type must be one of "access_token", "transaction_token", got "{bad}"'},
            create(c, jwks_uri="https://k.example.com/jwks", jwt_type=bad),
        )


def test_clock_skew_leeway_at_least_zero(c: Client) -> None:
    assert c.profile(clock_skew_leeway=0).profile.clock_skew_leeway == 0
    assert c.profile(clock_skew_leeway=60).profile.clock_skew_leeway == 60
    for bad in (-1, -(2**40)):
        expect_invalid(
            {"clock_skew_leeway": "clock_skew_leeway must be at least 0"},
            create(c, jwks_uri="https://k.example.com/jwks", clock_skew_leeway=bad),
        )


def test_unique_id_claim_immutable(c: Client) -> None:
    p = c.profile(unique_id_claim="token_id").profile
    assert p.unique_id_claim == "token_id"
    upd = msg(profile_name=p.profile_name, issuer_id=p.issuer_id, jwks_uri=p.jwks_uri, unique_id_claim="jti")
    expect_invalid(
        {"unique_id_claim": "unique_id_claim cannot be changed after creation"},
        c.profiles.Update,
        pb.UpdateProfileRequest(profile=upd),
    )


def test_claims_cannot_be_empty(c: Client) -> None:
    expect_invalid(
        {
            "user_claim": "user_claim cannot be empty",
            "unique_id_claim": "unique_id_claim cannot be empty",
            "actor_claim": "actor_claim must be a claim name or a dotted path such as act.sub",
        },
        create(c, jwks_uri="https://k.example.com/jwks", user_claim="", unique_id_claim="", actor_claim="act..sub"),
    )


def test_every_problem_reported_at_once(c: Client) -> None:
    expect_invalid(
        {
            "profile_name": "is required and cannot be empty",
            "issuer_id": "issuer_id is required",
            "jwks_uri": "jwks_uri is required when use_jwks=true",
            "audiences[1]": "audience cannot be empty",
            "supported_algorithms[0]": f'unsupported algorithm "HS256"; {SUPPORTED}',
            "jwt_type": 'jwt_type must be one of "access_token", "transaction_token", got "jwt"',
            "clock_skew_leeway": "clock_skew_leeway must be at least 0",
        },
        create(
            c,
            profile_name="",
            issuer_id="",
            audiences=["ok", ""],
            supported_algorithms=["HS256"],
            jwt_type="jwt",
            clock_skew_leeway=-5,
        ),
    )


# ---------------------------------------------------------------- Vault's advisory warnings


@pytest.mark.parametrize(
    ("algs", "expected"),
    [
        (["RS256"], [warn_rs("RS256"), WARN_ONE_FAMILY]),
        (["RS256", "PS256"], [WARN_ONE_FAMILY]),
        (["RS256", "ES256"], [warn_rs("RS256")]),
        (["RS384", "RS512", "EdDSA"], [warn_rs("RS384"), warn_rs("RS512")]),
        (["RS256", "PS384", "ES256"], [warn_rs("RS256")]),
        (["ES256"], [WARN_ONE_FAMILY]),
        (["ES256", "ES384", "ES512"], [WARN_ONE_FAMILY]),
        (["EdDSA"], [WARN_ONE_FAMILY]),
        (["PS256", "ES256"], []),
        ([], []),
    ],
)
def test_algorithm_warnings(c: Client, algs: list[str], expected: list[str]) -> None:
    resp = c.profile(supported_algorithms=algs)
    assert sorted(resp.warnings) == sorted(expected)


def test_http_jwks_warning(c: Client) -> None:
    resp = c.profile(jwks_uri="http://keys.internal:8080/jwks")
    assert list(resp.warnings) == [WARN_HTTP]
    assert list(c.profile(jwks_uri="https://keys.internal/jwks").warnings) == []


def test_disabled_profile_warning(c: Client) -> None:
    resp = c.profile(enabled=False)
    assert list(resp.warnings) == [WARN_DISABLED]
    assert resp.profile.enabled is False


def test_warnings_combine_and_come_back_on_update(c: Client) -> None:
    resp = c.profile(jwks_uri="http://k.example.com/jwks", enabled=False, supported_algorithms=["RS512"])
    assert sorted(resp.warnings) == sorted([WARN_HTTP, WARN_DISABLED, warn_rs("RS512"), WARN_ONE_FAMILY])
    p = resp.profile
    upd = msg(profile_name=p.profile_name, issuer_id=p.issuer_id, jwks_uri=p.jwks_uri, supported_algorithms=["RS256"])
    again = c.profiles.Update(pb.UpdateProfileRequest(profile=upd))
    assert sorted(again.warnings) == sorted([WARN_HTTP, warn_rs("RS256"), WARN_ONE_FAMILY])
    # Reads carry no warnings.
    assert list(c.profiles.Read(pb.ReadProfileRequest(profile_name=p.profile_name)).warnings) == []


def test_non_standard_user_claim_warning(c: Client) -> None:
    resp = c.profile(user_claim="agent_id")
    assert list(resp.warnings) == [
        'user_claim "agent_id" is not a standard JWT claim - ensure this claim exists in your JWTs'
    ]


def test_a_public_key_that_fits_no_supported_algorithm_is_a_warning(c: Client) -> None:
    resp = c.profile(
        use_jwks=False,
        jwks_uri="",
        public_keys=keys(EC_PUBLIC_PEM, RSA_PUBLIC_PEM),
        supported_algorithms=["RS256", "PS256"],
    )
    (warning,) = [w for w in resp.warnings if "fits none" in w]  # the EC key only, not the RSA one
    assert warning.startswith('public key "k0" (') and "fits none of supported_algorithms (RS256, PS256)" in warning
    assert "ES256" in warning  # what it would need
    fitting = c.profile(use_jwks=False, jwks_uri="", public_keys=keys(ED_PUBLIC_PEM), supported_algorithms=["EdDSA"])
    assert not [w for w in fitting.warnings if "fits none" in w]
