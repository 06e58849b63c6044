"""standards-idp §6 attacks through the endpoint (the tokens package unit-tests each in detail),
and the JWKS client's behaviour seen from outside: bounded refreshes under a flood of unknown
kids, last-known-good keys while the IdP is down, UNAVAILABLE when no key was ever fetched."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest
from authz_support import (
    Idp,
    World,
    b64url,
    free_port,
    make_world,
    path_access,
    sha256_hex,
    start_role,
    unsigned,
)
from cryptography.hazmat.primitives.asymmetric import ec

from agentceiling.store import audit_log

READ = [path_access("secret/data/ci/app", "read")]


@pytest.fixture
def agent(world: World) -> World:
    world.agent("target")
    return world


def _refused(w: World, token: str, code: str = "TOKEN_INVALID") -> str:
    r = w.authorize(token, "secret/data/ci/app", "read")
    assert (r.allowed, r.code) == (False, code), r.reason
    assert r.entity_id == "" and r.registration_id == ""
    return r.reason


def test_the_good_token_is_allowed(agent: World) -> None:
    r = agent.authorize(agent.idp.token("target", READ), "secret/data/ci/app", "read")
    assert r.code == "ALLOWED", r.reason


def test_alg_none(agent: World) -> None:
    idp = agent.idp
    claims = idp.claims("target", READ)
    for alg in ("none", "None", "NONE"):
        reason = _refused(agent, unsigned({"alg": alg, "typ": "at+jwt", "kid": idp.kids["ec"]}, claims))
        assert "alg" in reason or "signature" in reason


def test_hs256_signed_with_the_rsa_public_key(agent: World) -> None:
    idp = agent.idp
    header = {"alg": "HS256", "typ": "at+jwt", "kid": idp.kids["rsa"]}
    h = b64url(json.dumps(header).encode())
    p = b64url(json.dumps(idp.claims("target", READ)).encode())
    sig = hmac.new(idp.public_pem("rsa").encode(), f"{h}.{p}".encode(), hashlib.sha256).digest()
    _refused(agent, f"{h}.{p}.{b64url(sig)}")


def test_embedded_jwk_header(agent: World) -> None:
    idp = agent.idp
    mine = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(mine.public_key()))
    claims = idp.claims("target", READ)
    for kid in (idp.kids["ec"], "attacker"):
        forged = jwt.encode(claims, mine, algorithm="ES256", headers={"typ": "at+jwt", "kid": kid, "jwk": jwk})
        _refused(agent, forged)
    # Signed by another key under the IdP's kid, no jwk header: the signature does not verify.
    forged = jwt.encode(claims, mine, algorithm="ES256", headers={"typ": "at+jwt", "kid": idp.kids["ec"]})
    assert "signature" in _refused(agent, forged)


def test_alg_that_does_not_fit_the_key(agent: World) -> None:
    idp = agent.idp
    # An RS256 token presented under the EC key's kid.
    claims = idp.claims("target", READ)
    tok = jwt.encode(claims, idp.keys["rsa"], algorithm="RS256", headers={"typ": "at+jwt", "kid": idp.kids["ec"]})
    _refused(agent, tok)


def test_token_over_8_kib_is_refused_and_audited(agent: World) -> None:
    idp = agent.idp
    big = idp.token("target", READ, extra={"padding": "x" * 9000})
    assert len(big) > 8192
    reason = _refused(agent, big)
    assert "8192" in reason
    log = Path(agent.server.data_dir) / "audit" / "audit.log"
    text = log.read_text()
    assert sha256_hex(big) in text and big not in text


def test_expired_token(agent: World) -> None:
    idp = agent.idp
    _refused(agent, idp.token("target", READ, lifetime=-5), "TOKEN_EXPIRED")
    # Once seen valid, a token is not honoured past its exp (the token cache checks exp too).
    exp = math.ceil(time.time() + 0.5)  # at least half a second to be seen valid once
    short = idp.token("target", READ, extra={"exp": exp})
    assert agent.authorize(short, "secret/data/ci/app", "read").code == "ALLOWED"
    time.sleep(max(0.0, exp + 0.05 - time.time()))
    _refused(agent, short, "TOKEN_EXPIRED")


def test_a_token_living_longer_than_the_cap_is_refused(agent: World) -> None:
    idp = agent.idp
    day = 86_400
    assert agent.authorize(idp.token("target", READ, lifetime=30 * day), "secret/data/ci/app", "read").code == "ALLOWED"
    reason = _refused(agent, idp.token("target", READ, lifetime=30 * day + 1))
    assert reason == "token lifetime (exp - iat) exceeds the maximum of 30d"
    # without iat, counted from now
    reason = _refused(agent, idp.token("target", READ, lifetime=40 * day, omit=("iat",)))
    assert reason == 'token expires later than 30d from now (and has no "iat")'


def test_serve_max_token_lifetime_tightens_the_cap(tmp_path: Path, idp: Idp) -> None:
    srv = start_role(tmp_path / "data", "", "all", env={"AGENTCEILING_MAX_TOKEN_LIFETIME": "1h"})
    try:
        w = make_world(srv, idp)
        w.agent("target")
        assert w.authorize(idp.token("target", READ, lifetime=3_600), "secret/data/ci/app", "read").code == "ALLOWED"
        reason = _refused(w, idp.token("target", READ, lifetime=3_601))
        assert reason == "token lifetime (exp - iat) exceeds the maximum of 1h"
    finally:
        assert srv.stop() == 0, srv.log()[-4000:]


def test_duplicate_claims_and_junk(agent: World) -> None:
    idp = agent.idp
    good = idp.token("target", READ)
    h, p, s = good.split(".")
    dup = b64url(b'{"sub":"target","sub":"admin"}')
    for junk in ("", "garbage", "a.b", f"{h}.{dup}.{s}", f"{h}.{p}.{s}.x.y", good + "=", good[:-4]):
        r = agent.authorize(junk, "secret/data/ci/app", "read")
        assert (r.allowed, r.code) == (False, "TOKEN_INVALID"), junk


# ---------------------------------------------------------------- the JWKS client, from outside


@pytest.fixture
def own_idp() -> Iterator[Idp]:
    i = Idp()
    yield i
    i.close()


def test_a_flood_of_unknown_kids_makes_a_bounded_number_of_idp_requests(authz_server: Any, own_idp: Idp) -> None:
    w = make_world(authz_server, own_idp)
    w.agent("flooded")
    claims = own_idp.claims("flooded", READ)
    bogus = [
        jwt.encode(claims, own_idp.keys["ec"], algorithm="ES256", headers={"typ": "at+jwt", "kid": f"bogus-{i}"})
        for i in range(120)
    ]
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda t: w.authorize(t, "secret/data/ci/app", "read").code, bogus))
    assert set(codes) == {"TOKEN_INVALID"}
    # The first contact fetches the key set; every later unknown kid waits for the rate limit
    # (one refresh per 10 s): 120 bogus kids cost at most 2 fetches.
    assert 1 <= own_idp.requests <= 2, own_idp.requests
    before = own_idp.requests
    assert w.authorize(own_idp.token("flooded", READ), "secret/data/ci/app", "read").code == "ALLOWED"
    assert own_idp.requests == before  # known kid: served from the cached key set


def test_last_known_good_keys_while_the_idp_is_down(authz_server: Any, own_idp: Idp) -> None:
    w = make_world(authz_server, own_idp)
    w.agent("resilient")
    assert w.authorize(own_idp.token("resilient", READ), "secret/data/ci/app", "read").code == "ALLOWED"
    own_idp.fail = True
    for alg in ("ES256", "RS256", "EdDSA"):
        r = w.authorize(own_idp.token("resilient", READ, alg=alg), "secret/data/ci/app", "read")
        assert r.code == "ALLOWED", (alg, r.reason)
    # An unknown kid while the IdP is down is an invalid token, not an outage.
    stray = own_idp.token("resilient", READ, kid="rotated-away")
    assert w.authorize(stray, "secret/data/ci/app", "read").code == "TOKEN_INVALID"


def test_unavailable_when_no_key_was_ever_fetched(authz_server: Any, own_idp: Idp) -> None:
    dead = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"
    w = make_world(authz_server, own_idp, jwks_uri=dead)
    _ent, _ = w.agent("stranded")
    tok = own_idp.token("stranded", READ)
    for _ in range(2):
        r = w.authorize(tok, "secret/data/ci/app", "read")
        assert (r.allowed, r.code) == (False, "UNAVAILABLE"), r.reason
    # The refusal is audited like any other.
    records = audit_log.tail(Path(w.server.data_dir) / "audit" / "audit.log", 50)
    mine = [x["decision"] for x in records if x["decision"].get("decision_id") == r.decision_id]
    assert mine and mine[0]["code"] == "UNAVAILABLE" and mine[0]["token_sha256"] == sha256_hex(tok)


def test_concurrent_first_requests_share_one_fetch(authz_server: Any, own_idp: Idp) -> None:
    w = make_world(authz_server, own_idp)
    w.agent("crowd")
    toks = [own_idp.token("crowd", READ) for _ in range(24)]
    barrier = threading.Barrier(8)

    def go(t: str) -> str:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        return str(w.authorize(t, "secret/data/ci/app", "read").code)

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(go, toks)) == {"ALLOWED"}
    assert own_idp.requests == 1
