"""The decision pipeline end to end: a real server, real keys, a real JWKS endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from authz_support import ControlClient, Idp, authorize, path_access

from agentceiling.store import audit_log

CEILING = """
path "secret/data/ci/*" {
  capabilities = ["read", "list"]
}
"""
ACCESS = """
path "secret/data/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
"""


@pytest.fixture
def idp() -> Iterator[Idp]:
    i = Idp()
    yield i
    i.close()


@pytest.fixture
def agent(server, idp: Idp) -> ControlClient:  # type: ignore[no-untyped-def]
    cc = ControlClient(server.channel(), server.token)
    cc.profile(idp, supported_algorithms=["ES256", "PS256", "EdDSA", "RS256"], audiences=["agentceiling"])
    cc.policy("ci-ceiling", CEILING)
    cc.policy("ci-access", ACCESS)
    ent = cc.entity("ci-agent", ["ci-access"])
    cc.alias(ent, idp, "ci-agent")
    cc.register(ent, "ci-agent", ["ci-ceiling"])
    return cc


def test_allowed_inside_the_ceiling_and_refused_beyond(server, idp: Idp, agent: ControlClient) -> None:  # type: ignore[no-untyped-def]
    ok = authorize(
        server.authz_address,
        idp.token("ci-agent", [path_access("secret/data/ci/app", "read")]),
        "secret/data/ci/app",
        "read",
    )
    assert (ok.allowed, ok.code) == (True, "ALLOWED"), ok.reason
    assert ok.entity_id and ok.registration_id and ok.decision_id

    wide = authorize(
        server.authz_address,
        idp.token("ci-agent", [path_access("secret/data/*", "read")]),
        "secret/data/prod/db",
        "read",
    )
    assert (wide.allowed, wide.code) == (False, "CEILING_EXCEEDED")
    assert "secret/data/*" in wide.reason

    nomatch = authorize(
        server.authz_address,
        idp.token("ci-agent", [path_access("secret/data/ci/app", "read")]),
        "secret/data/ci/other",
        "read",
    )
    assert (nomatch.allowed, nomatch.code) == (False, "RAR_NO_MATCH")
    assert "No valid authorization_details claim found matching this request." in nomatch.reason

    missing = authorize(server.authz_address, idp.token("ci-agent"), "secret/data/ci/app", "read")
    assert missing.code == "RAR_REQUIRED"

    unknown = authorize(
        server.authz_address,
        idp.token("stranger", [path_access("secret/data/ci/app", "read")]),
        "secret/data/ci/app",
        "read",
    )
    assert unknown.code == "SUBJECT_UNKNOWN"

    for alg in ("PS256", "EdDSA", "RS256"):
        r = authorize(
            server.authz_address,
            idp.token("ci-agent", [path_access("secret/data/ci/x", "read")], alg=alg),
            "secret/data/ci/x",
            "read",
        )
        assert r.code == "ALLOWED", (alg, r.reason)

    records = audit_log.tail(Path(server.data_dir) / "audit" / "audit.log", 100)
    codes = [r["decision"]["code"] for r in records]
    assert codes.count("ALLOWED") >= 4 and "CEILING_EXCEEDED" in codes
    assert audit_log.verify(Path(server.data_dir) / "audit" / "audit.log").ok
