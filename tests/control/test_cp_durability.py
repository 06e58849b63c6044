"""Durability: SIGKILL the server in the middle of a burst of concurrent writes, restart it on the
same data directory and database, and check that every acknowledged write is there and the
database is consistent. SQLite and PostgreSQL."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from test_cp_support import (
    SIMPLE_POLICY,
    C,
    Client,
    check_consistency,
    client,
    fresh_database_url,
    settle,
    sqlite_path,
    start_server,
)

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb

THREADS = 6
TARGET_ACKS = 240


class Burst:
    """Threads that each create policy -> entity -> registration (capped by that policy) in a loop
    and record every write the server acknowledged."""

    def __init__(self, srv: Any) -> None:
        self.srv = srv
        self.lock = threading.Lock()
        self.acked: list[tuple[str, str, str]] = []  # (kind, name, id)
        self.failures: list[tuple[Any, str]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(t,)) for t in range(THREADS)]

    def _ack(self, kind: str, name: str, ident: str = "") -> None:
        with self.lock:
            self.acked.append((kind, name, ident))

    def _run(self, t: int) -> None:
        with client(self.srv) as cl:
            i = 0
            while not self.stop.is_set():
                i += 1
                pol, ent, reg = f"pol-{t}-{i}", f"ent-{t}-{i}", f"agent-{t}-{i}"
                try:
                    cl.policy(pol, text=SIMPLE_POLICY + f"# {pol}\n")
                    self._ack("policy", pol)
                    e = cl.entity(ent, metadata={"n": str(i)})
                    self._ack("entity", ent, e.id)
                    r = cl.registration(e.id, display_name=reg, ceiling_policies=[pol])
                    self._ack("registration", reg, r.id)
                except grpc.RpcError as exc:
                    with self.lock:
                        self.failures.append((exc.code(), exc.details() or ""))
                    return

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_acknowledged_writes_survive_sigkill(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    url = fresh_database_url(request, kind, tmp_path)
    data = tmp_path / "data"
    srv = start_server(data, url)
    token = srv.token
    burst = Burst(srv)
    try:
        burst.start()
        deadline = time.monotonic() + 60
        while burst.count() < TARGET_ACKS and time.monotonic() < deadline:
            time.sleep(0.005)
        assert burst.count() >= TARGET_ACKS, f"only {burst.count()} writes acknowledged:\n{srv.log()[-3000:]}"
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(30)
    finally:
        srv.stop(signal.SIGKILL)
        burst.join()
    assert srv.proc.returncode == -signal.SIGKILL
    # The kill interrupted writes in flight: their clients saw the connection go, nothing else.
    assert {code for code, _ in burst.failures} <= {C.UNAVAILABLE, C.CANCELLED, C.UNKNOWN, C.INTERNAL}, burst.failures
    acked = list(burst.acked)

    again = settle(start_server(data, url))
    try:
        assert again.token == token
        with client(again) as cl:
            check_acknowledged(cl, acked)
            assert cl.generation() >= len(acked)
            check_registrations_reference_policies(cl)
            cl.entity()  # and it takes writes again
    finally:
        assert again.stop() == 0
    if kind == "sqlite":
        path = sqlite_path(url)
        assert path is not None and path.exists()
    check_consistency(url)


def check_acknowledged(cl: Client, acked: list[tuple[str, str, str]]) -> None:
    policies = {name for kind, name, _ in acked if kind == "policy"}
    for kind, name, ident in acked:
        if kind == "policy":
            p = cl.policies.Read(pb.ReadPolicyRequest(name=name)).policy
            assert p.policy == SIMPLE_POLICY + f"# {name}\n"
        elif kind == "entity":
            assert cl.entities.Read(pb.ReadEntityRequest(name=name)).entity.id == ident
        else:
            r = cl.registrations.Read(pb.ReadRegistrationRequest(id=ident)).registration
            assert r.display_name == name
            pol = "pol-" + name.removeprefix("agent-")
            assert pol in policies
            assert list(r.ceiling_policies) == [pol, "default", "default-ceiling"]


def check_registrations_reference_policies(cl: Client) -> None:
    token = ""
    regs: list[pb.AgentRegistration] = []
    while True:
        resp = cl.registrations.List(pb.ListRequest(page_size=500, page_token=token))
        regs += list(resp.registrations)
        token = resp.next_page_token
        if not token:
            break
    assert regs
    for r in regs:
        for name in r.ceiling_policies:
            cl.policies.Read(pb.ReadPolicyRequest(name=name))
        cl.entities.Read(pb.ReadEntityRequest(id=r.entity_id))
