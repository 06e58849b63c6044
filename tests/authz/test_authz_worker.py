"""The authorization worker process, which decides and audits for the endpoint: one decision that
waits on I/O holds up no other, and its configuration (the database URL) never shows on its command
line or in its environment."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from authz_support import Idp, make_world, path_access, start_server
from process_support import audit_writer_pids


def _silent_server() -> tuple[socket.socket, str]:
    """A JWKS endpoint that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.listen(64)
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}/jwks"


def test_a_hanging_jwks_holds_up_no_other_agent(authz_server: Any, idp: Idp) -> None:
    """An issuer whose JWKS endpoint never answers: that agent's first call waits for the fetch's
    deadline (3 s) in one of the worker's threads, then is UNAVAILABLE. Meanwhile another agent's
    calls are answered at once, and their records are written (the group commits go on)."""
    listener, silent = _silent_server()
    other_idp = Idp(kid_prefix="hang")
    try:
        fast = make_world(authz_server, idp)
        fast.agent("quick")
        slow = make_world(authz_server, other_idp, jwks_uri=silent)
        slow.agent("stuck")
        answers: list[Any] = []
        waiting = threading.Thread(
            target=lambda: answers.append(
                slow.authorize(other_idp.token("stuck", [path_access("secret/data/ci/a", "read")]), "secret/data/ci/a",
                               "read")
            )
        )
        started = time.monotonic()
        waiting.start()
        time.sleep(0.3)  # its fetch is under way
        for i in range(10):
            t = time.monotonic()
            r = fast.authorize(idp.token("quick", [path_access("secret/data/ci/*", "read")]), f"secret/data/ci/{i}",
                               "read")
            assert r.code == "ALLOWED", r
            assert time.monotonic() - t < 1.5, "a call waited for another agent's JWKS fetch"
        assert waiting.is_alive(), "the hanging fetch should still be waiting"
        waiting.join(15)
        (stuck,) = answers
        assert stuck.code == "UNAVAILABLE" and stuck.decision_id, stuck
        assert time.monotonic() - started >= 2.5  # it did wait for the fetch's deadline
    finally:
        other_idp.close()
        listener.close()


def test_the_database_url_is_neither_on_the_command_line_nor_in_the_environment(authz_server: Any) -> None:
    (worker,) = audit_writer_pids(authz_server.proc.pid)
    cmdline = Path(f"/proc/{worker}/cmdline").read_bytes()
    environ = Path(f"/proc/{worker}/environ").read_bytes()
    assert b"agentceiling.api.authz_worker" in cmdline
    for secret in (b"sqlite://", b"postgresql://", authz_server.database_url.encode()):
        if secret:
            assert secret not in cmdline and secret not in environ


def test_the_database_url_from_the_environment_stays_out_of_the_workers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    srv = start_server(tmp_path / "data", env={"AGENTCEILING_DATABASE_URL": url, "VAULT_TOKEN": "s3cret-token"})
    try:
        (worker,) = audit_writer_pids(srv.proc.pid)
        environ = Path(f"/proc/{worker}/environ").read_bytes()
        assert url.encode() not in environ and b"s3cret-token" not in environ
        assert (tmp_path / "from-env.db").exists()  # the server did use it
    finally:
        assert srv.stop() == 0


def _decider(tmp_path: Path) -> tuple[Any, threading.Event]:
    from agentceiling.api.authz_worker import AuthzDecider, WorkerConfig
    from agentceiling.store import migrate
    from agentceiling.store.db import Database

    url = f"sqlite:///{tmp_path / 'd.db'}"
    db = Database(url)
    migrate.upgrade(db)
    db.dispose()
    woken = threading.Event()
    cfg = WorkerConfig(database_url=url, max_token_lifetime=3600, poll_interval=0.25, workers=2)
    return AuthzDecider(cfg, woken.set), woken


def test_a_malformed_decide_frame_fails_that_call_alone(tmp_path: Path) -> None:
    from agentceiling.api.authz_worker import encode_request

    decider, _ = _decider(tmp_path)
    try:
        done = decider.decide(1, b"short")
        assert done is not None and done.record is None and done.reply == b"I"
        ok = decider.decide(2, encode_request("0" * 36, b"", ""))  # no token: refused and audited
        assert ok is not None and ok.record is not None and b"TOKEN_INVALID" in ok.answer
    finally:
        decider.close()


def test_a_decision_abandoned_while_in_the_pool_is_dropped(tmp_path: Path, idp: Idp) -> None:
    """A decision that needed the database runs in the pool; the server gave up on it meanwhile
    (its call answered UNAVAILABLE): its record must not be written after all."""
    from agentceiling._gen.agentceiling.v1 import authorization_pb2 as apb
    from agentceiling.api.authz_worker import encode_request

    decider, woken = _decider(tmp_path)
    try:
        token = idp.token("nobody", [path_access("secret/data/ci/a", "read")])
        body = encode_request("1" * 36, apb.AuthorizeRequest(token=token).SerializeToString(), "")
        assert decider.decide(7, body) is None  # a cold directory: to the pool
        decider.abandon({7})
        assert woken.wait(10)
        assert decider.ready() == []
        woken.clear()
        # One not abandoned comes through, at once (the lookup is cached now) or from the pool.
        second = decider.decide(8, encode_request("2" * 36, apb.AuthorizeRequest(token=token).SerializeToString(), ""))
        if second is None:
            assert woken.wait(10)
            (second,) = decider.ready()
        assert second.ident == 8 and second.record is not None and b"ISSUER_UNKNOWN" in second.answer
    finally:
        decider.close()
