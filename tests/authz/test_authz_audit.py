"""The audit trail of the authorization endpoint: every decision recorded before the answer, with
Vault's metadata names, never the token (only its SHA-256); `agentceiling audit verify|tail`; and
UNAVAILABLE when the audit log cannot be written."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from authz_support import Idp, World, make_world, path_access, sha256_hex, start_server, wait_healthy
from grpc_health.v1 import health_pb2, health_pb2_grpc
from process_support import audit_writer_pids, process_gone

from agentceiling.store import audit_log

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}


def _log(w: World) -> Path:
    return Path(w.server.data_dir) / "audit" / "audit.log"


def _record(path: Path, decision_id: str) -> dict[str, Any]:
    for rec in audit_log.tail(path, 500):
        if rec["decision"].get("decision_id") == decision_id:  # rotation markers have none
            return dict(rec["decision"])
    raise AssertionError(f"decision {decision_id} is not in the audit log")


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentceiling.cli", *args], capture_output=True, text=True, env=ENV, timeout=timeout
    )


def test_every_decision_is_recorded_before_the_answer_with_vaults_metadata(world: World) -> None:
    w, idp = world, world.idp
    human, _ = w.agent("auditee", register=False)
    bot, reg = w.agent("audit-bot")
    assert reg is not None
    details = [path_access("secret/data/ci/app", "read")]
    tok = idp.token("auditee", details, act="audit-bot", extra={"txn": "txn-42", "aud": ["agentceiling", "x"]})
    claims = json.loads(base64.urlsafe_b64decode(tok.split(".")[1] + "=="))
    r = w.authorize(tok, "secret/data/ci/app", "read")
    assert r.code == "ALLOWED", r.reason
    # Read right after the answer: the record is already in the file.
    rec = _record(_log(w), r.decision_id)
    assert rec["code"] == "ALLOWED" and rec["allowed"] is True
    assert (rec["namespace"], rec["path"], rec["operation"]) == (w.ns, "secret/data/ci/app", "read")
    assert (rec["entity_id"], rec["actor_entity_id"], rec["registration_id"]) == (human.id, bot.id, reg.id)
    assert set(rec["granting_policies"]) == {"auditee-access", "audit-bot-ceiling"}
    assert rec["refusing_policies"] == []
    assert rec["token_sha256"] == sha256_hex(tok)
    assert rec["time"].endswith("Z") and rec["decision_id"] == r.decision_id
    assert rec["metadata"] == {
        "jwt_unique_id": claims["jti"],
        "jwt_issuer": idp.issuer,
        "jwt_audience_claim": ["agentceiling", "x"],
        "jwt_authorization_details": details,
        "jwt_transaction_claim": "txn-42",
        "actor_entity_id": bot.id,
        "actor_entity_name": "audit-bot",
    }

    # A refusal names the policies that refused it.
    r = w.authorize(idp.token("auditee", [path_access("secret/data/ci/x", "read")], act="audit-bot"), "nope", "read")
    assert r.code == "RAR_NO_MATCH"
    rec = _record(_log(w), r.decision_id)
    assert (rec["code"], rec["allowed"]) == ("RAR_NO_MATCH", False)
    r = w.authorize(idp.token("auditee", [path_access("secret/data/*", "read")], act="audit-bot"))
    rec = _record(_log(w), r.decision_id)
    assert rec["code"] == "CEILING_EXCEEDED" and "audit-bot-ceiling" in rec["refusing_policies"]


def test_invalid_tokens_are_recorded_and_no_token_is_ever_stored(world: World) -> None:
    w, idp = world, world.idp
    w.agent("secretive")
    good = idp.token("secretive", [path_access("secret/data/ci/app", "read")])
    forged = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
    other = Idp()
    try:
        unknown_issuer = other.token("secretive")
    finally:
        other.close()
    tokens = {
        good: "ALLOWED",
        forged: "TOKEN_INVALID",
        "not-a-token": "TOKEN_INVALID",
        unknown_issuer: "ISSUER_UNKNOWN",
        idp.token("secretive", lifetime=-100): "TOKEN_EXPIRED",
    }
    ids = {}
    for tok, code in tokens.items():
        r = w.authorize(tok, "secret/data/ci/app", "read")
        assert r.code == code, (code, r.reason)
        ids[tok] = r.decision_id
    # A token smuggled into the request path is redacted, and the decision is still recorded.
    r = w.authorize(good, f"secret/data/ci/{good}", "read")
    assert r.code == "RAR_NO_MATCH"
    smuggled = _record(_log(w), r.decision_id)
    assert "[redacted" in smuggled["path"]

    raw = _log(w).read_text()
    for tok, decision_id in ids.items():
        assert tok not in raw
        rec = _record(_log(w), decision_id)
        assert rec["token_sha256"] == sha256_hex(tok) and rec["code"] == tokens[tok]
    assert good.split(".")[2] not in raw  # not even the signature


def _signed(idp: Idp, header: bytes, claims: dict[str, Any]) -> str:
    """A token the IdP's EC key really signs, with a header spelled byte for byte as given."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{b64(header)}.{b64(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(idp.keys["ec"].sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def test_tokens_with_unusual_headers_are_never_stored(world: World) -> None:
    """Valid tokens whose header begins with whitespace or a non-ASCII member name (base64url
    ``IHsi...``, ``eyLD...``): the token presented is removed by its exact text wherever it appears."""
    w, idp = world, world.idp
    w.agent("odd-headers")
    claims = idp.claims("odd-headers", [path_access("secret/data/ci/*", "read")])
    header = {"alg": "ES256", "kid": idp.kids["ec"], "typ": "at+jwt"}
    spaced = _signed(idp, b" " + json.dumps(header).encode(), claims)
    accented = _signed(idp, json.dumps({"\u00e9": 1, **header}, ensure_ascii=False).encode(), claims)
    assert (spaced[:4], accented[:4]) == ("IHsi", "eyLD")
    for tok in (spaced, accented):
        r = w.authorize(tok, f"secret/data/ci/{tok}", "read")
        assert r.code == "ALLOWED", r.reason
        rec = _record(_log(w), r.decision_id)
        assert rec["path"] == "secret/data/ci/[redacted: looks like a JWT]"
        assert tok not in _log(w).read_text() and tok.split(".")[2] not in _log(w).read_text()


@pytest.mark.parametrize("path", ["secret/data/ci/\x1eyJhbGciOiJIUzI1.a.b", "secret/data/ci/\u00eeyJabcdefghijk.x.y"])
def test_a_path_whose_json_escape_spells_a_token_is_still_audited(world: World, path: str) -> None:
    """``\\u001e`` + ``yJ...`` reads as a token once escaped: the decision is recorded anyway (it
    used to be answered UNAVAILABLE with no record at all, by anyone, without a token)."""
    w = world
    before = audit_log.verify_chain(_log(w)).records
    for token in ("", w.idp.token("nobody")):
        r = w.authorize(token, path, "read")
        assert r.code in ("TOKEN_INVALID", "SUBJECT_UNKNOWN"), (r.code, r.reason)
        rec = _record(_log(w), r.decision_id)
        assert rec["code"] == r.code and "[redacted" in rec["path"]
    assert audit_log.verify_chain(_log(w)).records == before + 2


def test_audit_verify_detects_edits_removals_and_reordering(world: World, tmp_path: Path) -> None:
    w, idp = world, world.idp
    w.agent("verified")
    for i in range(4):
        w.authorize(idp.token("verified", [path_access(f"secret/data/ci/{i}", "read")]), f"secret/data/ci/{i}", "read")
    live = _log(w)
    ok = _cli("audit", "verify", "--data-dir", str(w.server.data_dir))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("ok: ")

    lines = live.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 4
    variants = {
        "edited": [*lines[:-2], lines[-2].replace(b'"allowed":true', b'"allowed":false'), lines[-1]],
        "removed": [*lines[:-3], *lines[-2:]],
        "reordered": [*lines[:-3], lines[-2], lines[-3], lines[-1]],
    }
    assert variants["edited"] != lines
    for name, content in variants.items():
        f = tmp_path / f"{name}.log"
        f.write_bytes(b"".join(content))
        res = _cli("audit", "verify", "--file", str(f))
        assert res.returncode == 1, (name, res.stdout, res.stderr)
        assert "FAILED at record" in res.stdout, name
        assert "Traceback" not in res.stderr
    missing = _cli("audit", "verify", "--file", str(tmp_path / "absent.log"))
    assert missing.returncode == 2 and "no audit log" in missing.stderr


def test_audit_tail(world: World) -> None:
    w, idp = world, world.idp
    w.agent("tailed")
    for _ in range(2):  # at least three records, whichever tests of the module ran before
        w.authorize(idp.token("tailed", [path_access("secret/data/ci/t", "read")]), "secret/data/ci/t", "read")
    r = w.authorize(idp.token("tailed", [path_access("secret/data/ci/t", "read")]), "secret/data/ci/t", "read")
    data_dir = str(w.server.data_dir)
    as_json = _cli("audit", "tail", "-n", "3", "--json", "--data-dir", data_dir)
    assert as_json.returncode == 0, as_json.stderr
    lines = as_json.stdout.splitlines()
    assert len(lines) == 3
    assert json.loads(lines[-1])["decision"]["decision_id"] == r.decision_id
    human = _cli("audit", "tail", "-n", "1", "--data-dir", data_dir)
    assert human.returncode == 0 and "ALLOWED" in human.stdout and r.decision_id in human.stdout

    cmd = [sys.executable, "-m", "agentceiling.cli", "audit", "tail", "-n", "1", "--follow", "--json"]
    follow = subprocess.Popen(
        [*cmd, "--data-dir", data_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert follow.stdout is not None
        # The last record printed means the follower has reached the end of the file (a fixed
        # sleep is not enough on a loaded machine); the next decision must then come through.
        assert json.loads(follow.stdout.readline())["decision"]["decision_id"] == r.decision_id
        r2 = w.authorize(idp.token("tailed", [path_access("secret/data/ci/u", "read")]), "secret/data/ci/u", "read")
        line = follow.stdout.readline()
        assert json.loads(line)["decision"]["decision_id"] == r2.decision_id
    finally:
        follow.send_signal(signal.SIGINT)
        try:
            follow.wait(10)
        except subprocess.TimeoutExpired:
            follow.kill()
            follow.wait()
    assert follow.returncode in (0, 130), follow.returncode


# ---------------------------------------------------------------- the audit log fails closed


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return ""
    return str(request.getfixturevalue("pg_cluster").create_database())


@pytest.fixture
def lone_idp() -> Iterator[Idp]:
    i = Idp()
    yield i
    i.close()


def test_unavailable_when_the_audit_log_is_dev_full(db_url: str, tmp_path: Path, lone_idp: Idp) -> None:
    data = tmp_path / "data"
    (data / "audit").mkdir(parents=True, mode=0o700)
    (data / "audit" / "audit.log").symlink_to("/dev/full")
    srv = start_server(data, db_url)
    try:
        wait_healthy(srv.authz_address, proc=srv.proc)
        w = make_world(srv, lone_idp)
        w.agent("unaudited")
        for _ in range(2):
            r = w.authorize(
                lone_idp.token("unaudited", [path_access("secret/data/ci/a", "read")]), "secret/data/ci/a", "read"
            )
            assert (r.allowed, r.code) == (False, "UNAVAILABLE"), r.reason
            assert "audit" in r.reason
    finally:
        srv.stop()


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as ch:
        return int(health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status)


def test_unavailable_once_the_audit_log_is_replaced_under_the_server(
    db_url: str, tmp_path: Path, lone_idp: Idp
) -> None:
    srv = start_server(tmp_path / "data", db_url)
    try:
        wait_healthy(srv.authz_address, proc=srv.proc)
        w = make_world(srv, lone_idp)
        w.agent("moved")

        def ask() -> Any:
            return w.authorize(
                lone_idp.token("moved", [path_access("secret/data/ci/a", "read")]), "secret/data/ci/a", "read"
            )

        assert ask().code == "ALLOWED"
        log = _log(w)
        shutil.move(log, log.with_name("audit.log.moved"))
        log.write_text("")
        for _ in range(3):
            r = ask()
            assert (r.allowed, r.code) == (False, "UNAVAILABLE"), r.reason
        assert "unavailable" in srv.log().lower()
        # Health says so on the authorization listener; the control plane is unaffected.
        assert _health(srv.authz_address) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert _health(srv.address) == health_pb2.HealthCheckResponse.SERVING
    finally:
        srv.stop()


def test_numbers_json_cannot_hold_are_audited_as_text_and_the_endpoint_keeps_serving(world: World) -> None:
    # "1e999" is valid JSON that Python reads as infinity, and an IdP signs whatever the client's
    # authorization request carried. Such a claim must be audited (as text), not take the audit
    # log -- and with it every other agent's decisions -- down.
    import jwt

    w, idp = world, world.idp
    w.agent("huge")

    def signed(details: list[Any]) -> str:
        payload = json.dumps(idp.claims("huge", details)).replace('"@INF@"', "1e999").replace('"@NINF@"', "-1e999")
        header = json.dumps({"alg": "RS256", "kid": idp.kids["rsa"], "typ": "at+jwt"})
        signing_input = f"{b64(header)}.{b64(payload)}"
        signature = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).sign(
            signing_input.encode(), idp.keys["rsa"]
        )
        return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"

    # In a vault:path_access entry it would reach the answer's honoured entries, which must be
    # JSON (no Infinity): such an entry is RAR_INVALID.
    for bad in ("@INF@", "@NINF@"):
        entry = path_access("secret/data/ci/app", "read", allowed_parameters={"ttl": [bad]})
        for path in ("secret/data/ci/app", ""):
            r = w.authorize(signed([entry]), path, "read" if path else "")
            assert r.code == "RAR_INVALID" and "finite" in r.reason, (r.code, r.reason)
    details = [path_access("secret/data/ci/app", "read"), {"type": "acme:thing", "n": "@INF@", "m": "@NINF@"}]
    tok = signed(details)
    for _ in range(2):  # the second time from the token cache
        r = w.authorize(tok, "secret/data/ci/app", "read")
        assert r.code == "ALLOWED", r.reason
        rec = _record(_log(w), r.decision_id)
        assert rec["metadata"]["jwt_authorization_details"][1] == {"type": "acme:thing", "n": "inf", "m": "-inf"}
    assert _health(w.server.authz_address) == health_pb2.HealthCheckResponse.SERVING
    assert audit_log.verify(_log(w)).ok


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


# ---------------------------------------------------------------- rotation


def _decide(w: World, idp: Idp, agent: str, i: int) -> str:
    r = w.authorize(idp.token(agent, [path_access(f"secret/data/ci/r{i}", "read")]), f"secret/data/ci/r{i}", "read")
    assert r.code == "ALLOWED", r.reason
    return str(r.decision_id)


def test_audit_rotate_through_the_running_server(world: World) -> None:
    w, idp = world, world.idp
    w.agent("rotated")
    data_dir = str(w.server.data_dir)
    before = [_decide(w, idp, "rotated", i) for i in range(3)]
    segments = audit_log.segment_paths(_log(w))
    res = _cli("audit", "rotate", "--data-dir", data_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    new = [p for p in audit_log.segment_paths(_log(w)) if p not in segments]
    assert len(new) == 1 and f"rotated: {new[0]}" in res.stdout
    assert before[-1] in new[0].read_text() and before[-1] not in _log(w).read_text()
    after = [_decide(w, idp, "rotated", i) for i in range(3, 5)]
    assert after[-1] in _log(w).read_text()
    ok = _cli("audit", "verify", "--data-dir", data_dir)
    assert ok.returncode == 0 and "hash chain intact" in ok.stdout, ok.stdout + ok.stderr
    assert f"in {len(segments) + 2} files" in ok.stdout
    # tail reads back across the rotation: the marker sits between the two groups of decisions.
    shown = _cli("audit", "tail", "-n", "6", "--json", "--data-dir", data_dir)
    recs = [json.loads(line) for line in shown.stdout.splitlines()]
    ids = [r["decision"].get("decision_id", r["decision"].get("event")) for r in recs]
    assert ids == [*before, audit_log.ROTATED_EVENT, *after]


def test_sighup_and_size_rotate_the_audit_log_and_the_server_keeps_serving(tmp_path: Path, lone_idp: Idp) -> None:
    data = tmp_path / "data"
    srv = start_server(data, "", extra_args=("--audit-rotate-bytes", "8K"))
    log = data / "audit" / "audit.log"
    try:
        wait_healthy(srv.authz_address, proc=srv.proc)
        w = make_world(srv, lone_idp)
        w.agent("sized")
        ids = [_decide(w, lone_idp, "sized", i) for i in range(16)]  # ~1.3 KiB a record
        by_size = audit_log.segment_paths(log)
        assert len(by_size) >= 2
        srv.proc.send_signal(signal.SIGHUP)  # used to terminate the process; now it rotates
        deadline = time.monotonic() + 10
        while len(audit_log.segment_paths(log)) == len(by_size) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(audit_log.segment_paths(log)) == len(by_size) + 1
        ids.append(_decide(w, lone_idp, "sized", 16))
        assert srv.proc.poll() is None and _health(srv.authz_address) == health_pb2.HealthCheckResponse.SERVING
    finally:
        srv.stop()
    # With no server holding the log, `audit rotate` rotates it itself; a restart continues the chain.
    res = _cli("audit", "rotate", "--data-dir", str(data))
    assert res.returncode == 0 and "rotated:" in res.stdout, res.stdout + res.stderr
    srv = start_server(data, "")
    try:
        wait_healthy(srv.authz_address, proc=srv.proc)
        again = make_world(srv, lone_idp)
        again.agent("again")
        ids.append(_decide(again, lone_idp, "again", 17))
    finally:
        srv.stop()
    chain = audit_log.verify_chain(log)
    assert chain.ok, chain.problem
    written = [r["decision"].get("decision_id") for f in chain.files for r in audit_log.iter_records(f)]
    assert all(i in written for i in ids)
    res = _cli("audit", "verify", "--data-dir", str(data))
    assert res.returncode == 0 and f"in {len(chain.files)} files" in res.stdout, res.stdout


def test_audit_anchor_and_verify_with_anchors(world: World) -> None:
    w, idp = world, world.idp
    w.agent("anchored")
    data_dir = str(w.server.data_dir)
    _decide(w, idp, "anchored", 0)
    res = _cli("audit", "anchor", "--data-dir", data_dir)
    assert res.returncode == 0, res.stderr
    anchor = res.stdout.strip()
    seq, digest = anchor.split(":")
    assert int(seq) >= 1 and len(digest) == 64
    _decide(w, idp, "anchored", 1)
    ok = _cli("audit", "verify", "--anchor", anchor, "--data-dir", data_dir)
    assert ok.returncode == 0 and "1 anchor found" in ok.stdout, ok.stdout + ok.stderr
    ahead = _cli("audit", "verify", "--anchor", f"{int(seq) + 10_000}:{digest}", "--data-dir", data_dir)
    assert ahead.returncode == 1 and "records were removed from the end" in ahead.stdout, ahead.stdout
    wrong = _cli("audit", "verify", "--anchor", f"{seq}:{'0' * 64}", "--data-dir", data_dir)
    assert wrong.returncode == 1 and "hash differs from the anchor" in wrong.stdout, wrong.stdout
    bad = _cli("audit", "verify", "--anchor", "seven:abc", "--data-dir", data_dir)
    assert bad.returncode == 2 and "not SEQ:HASH" in bad.stderr and "Traceback" not in bad.stderr


def test_a_dead_audit_writer_fails_closed_and_a_killed_server_leaves_no_writer(tmp_path: Path, lone_idp: Idp) -> None:
    data = tmp_path / "data"
    srv = start_server(data, "")
    try:
        wait_healthy(srv.authz_address, proc=srv.proc)
        w = make_world(srv, lone_idp)
        w.agent("writerless")

        def ask() -> Any:
            return w.authorize(
                lone_idp.token("writerless", [path_access("secret/data/ci/a", "read")]), "secret/data/ci/a", "read"
            )

        assert ask().code == "ALLOWED"
        (writer,) = audit_writer_pids(srv.proc.pid)
        os.kill(writer, signal.SIGKILL)
        ids = set()
        for _ in range(2):
            r = ask()
            assert (r.allowed, r.code) == (False, "UNAVAILABLE") and "audit" in r.reason, r
            ids.add(str(uuid.UUID(r.decision_id)))  # drawn by the endpoint, the worker being gone
        assert len(ids) == 2
        assert _health(srv.authz_address) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert _health(srv.address) == health_pb2.HealthCheckResponse.SERVING
        assert "the audit writer process was killed by SIGKILL" in srv.log(), srv.log()[-2000:]
    finally:
        assert srv.stop() == 0
    # A server killed outright: its writer sees the pipe close, writes what it has and exits, so
    # the next server can take the log.
    srv = start_server(data, "")
    try:
        wait_healthy(srv.authz_address, proc=srv.proc)
        (writer,) = audit_writer_pids(srv.proc.pid)
        srv.proc.kill()
        srv.proc.wait()
        assert process_gone(writer, 10)
    finally:
        srv.stop()
    srv = start_server(data, "")
    try:
        wait_healthy(srv.authz_address, proc=srv.proc)
    finally:
        assert srv.stop() == 0
    assert audit_log.verify_chain(data / "audit" / "audit.log").ok


def test_health_comes_back_when_a_hung_audit_disk_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record not durable in time makes its decision UNAVAILABLE and health NOT_SERVING; once
    records are durable again, health is SERVING again, with no restart."""
    from agentceiling._gen.agentceiling.v1 import authorization_pb2 as apb
    from agentceiling._gen.agentceiling.v1 import authorization_pb2_grpc as apbg
    from agentceiling.api.server import Server, ServerConfig
    from agentceiling.dev_ports import free_port
    from agentceiling.service import authz_bootstrap

    monkeypatch.setattr(authz_bootstrap, "AUDIT_TIMEOUT", 1.0)
    cfg = ServerConfig(
        data_dir=tmp_path / "data", listen=f"127.0.0.1:{free_port()}", authz_listen=f"127.0.0.1:{free_port()}"
    )
    server = Server(cfg, authz_bootstrap.build_authz)
    server.start()
    address = f"127.0.0.1:{server.ports['authz']}"
    try:
        server._serving()
        (writer,) = audit_writer_pids(os.getpid())

        def ask() -> apb.AuthorizeResponse:  # no token: refused, and audited like every decision
            with grpc.insecure_channel(address) as ch:
                return apbg.AuthorizationStub(ch).Authorize(apb.AuthorizeRequest(path="secret/x", operation="read"))

        assert ask().code == "TOKEN_INVALID" and _health(address) == health_pb2.HealthCheckResponse.SERVING
        os.kill(writer, signal.SIGSTOP)  # the disk hangs
        try:
            hung = ask()
            assert hung.code == "UNAVAILABLE" and uuid.UUID(hung.decision_id), hung
            assert _health(address) == health_pb2.HealthCheckResponse.NOT_SERVING
        finally:
            os.kill(writer, signal.SIGCONT)
        # SIGSTOP froze the whole worker, its directory's poller too (a disk that hangs holds up
        # only the thread that commits): until the poller's first read after the pause lands, a
        # decision may still find the directory unconfirmed (UNAVAILABLE), for a moment.
        deadline = time.monotonic() + 5
        while (again := ask()).code == "UNAVAILABLE" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert again.code == "TOKEN_INVALID", again
        deadline = time.monotonic() + 5
        while _health(address) != health_pb2.HealthCheckResponse.SERVING and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _health(address) == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop()
