"""Graceful shutdown: SIGTERM while calls are in flight lets them finish, refuses new ones, exits 0
and leaves nothing half-written. The calls are held in flight deterministically by holding the
database's write lock from outside (SQLite ``BEGIN IMMEDIATE``, PostgreSQL ``LOCK TABLE meta``)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from process_support import audit_writer_pids, process_gone
from test_cp_support import (
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

IN_FLIGHT = 6


@contextmanager
def write_lock(url: str) -> Iterator[Callable[[], int]]:
    """Hold the database's write lock; yield a function counting server transactions waiting on it
    (PostgreSQL only; SQLite cannot tell, it returns -1)."""
    path = sqlite_path(url)
    if path is not None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield lambda: -1
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    holder = engine.connect()
    watcher = engine.connect()
    holder.exec_driver_sql("BEGIN")
    holder.exec_driver_sql("LOCK TABLE meta IN EXCLUSIVE MODE")

    def waiting() -> int:
        return int(
            watcher.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).scalar()
            or 0
        )

    try:
        yield waiting
    finally:
        holder.exec_driver_sql("ROLLBACK")
        holder.close()
        watcher.close()
        engine.dispose()


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def refused(srv: Any) -> bool:
    with Client(srv.address, srv.token) as cl:
        try:
            cl.system.Status(pb.StatusRequest(), timeout=2)
        except grpc.RpcError as exc:
            return bool(exc.code() == C.UNAVAILABLE)
    return False


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_sigterm_lets_in_flight_calls_finish(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    url = fresh_database_url(request, kind, tmp_path)
    data = tmp_path / "data"
    srv = start_server(data, url)
    pol = "ceiling-pol"
    ents: list[pb.IdentityEntity] = []
    with client(srv) as cl:
        cl.policy(pol)
        ents = [cl.entity(f"agent-{i}") for i in range(IN_FLIGHT)]
    results: list[Any] = [None] * IN_FLIGHT
    calling = [threading.Event() for _ in range(IN_FLIGHT)]

    def call(i: int) -> None:
        with client(srv) as cl:
            cl.system.Status(pb.StatusRequest())
            calling[i].set()
            try:
                if i % 2:
                    results[i] = cl.registration(ents[i].id, display_name=f"agent-{i}", ceiling_policies=[pol])
                else:
                    results[i] = cl.entity(f"late-{i}", metadata={"i": str(i)})
            except grpc.RpcError as exc:
                results[i] = (exc.code(), exc.details())

    threads = [threading.Thread(target=call, args=(i,)) for i in range(IN_FLIGHT)]
    try:
        with write_lock(url) as waiting:
            for t in threads:
                t.start()
            wait_for(lambda: all(e.is_set() for e in calling), "the clients to send their writes")
            if kind == "postgresql":
                wait_for(lambda: waiting() >= IN_FLIGHT, "the writes to wait on the lock")
            else:
                time.sleep(1.0)  # sent on a connected loopback channel: at the server within milliseconds
            assert all(r is None for r in results), results
            srv.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: "received SIGTERM" in srv.log(), "the server to log the signal")
            wait_for(lambda: refused(srv), "new calls to be refused")
            time.sleep(0.3)
            assert srv.proc.poll() is None, "the server exited with calls in flight"
        for t in threads:
            t.join(60)
        rc = srv.proc.wait(30)
    finally:
        srv.stop(signal.SIGKILL)
    assert rc == 0, srv.log()[-3000:]
    assert "Traceback" not in srv.log()
    failed = [r for r in results if isinstance(r, tuple)]
    assert failed == [], failed

    again = settle(start_server(data, url))
    try:
        with client(again) as cl:
            for i, r in enumerate(results):
                if i % 2:
                    got = cl.registrations.Read(pb.ReadRegistrationRequest(id=r.id)).registration
                    assert list(got.ceiling_policies) == [pol, "default", "default-ceiling"]
                else:
                    assert cl.entities.Read(pb.ReadEntityRequest(name=f"late-{i}")).entity == r
    finally:
        assert again.stop() == 0
    check_consistency(url)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_idle_server_stops_cleanly(tmp_path: Path, sig: int) -> None:
    srv = settle(start_server(tmp_path / "data"))
    with client(srv) as cl:
        cl.entity()
    start = time.monotonic()
    assert srv.stop(sig) == 0, srv.log()[-3000:]
    assert time.monotonic() - start < 10
    assert "Traceback" not in srv.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_delivered_to_another_thread_still_stops_the_server(tmp_path: Path, sig: int) -> None:
    """The kernel may hand a process-directed signal to any thread, gRPC's included: the server must
    still stop (its main thread used to wait without a timeout, never to run the handler)."""
    import ctypes
    import os

    srv = settle(start_server(tmp_path / "data"))
    pid = srv.proc.pid
    others = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    assert others, "the server has no threads besides the main one"
    tgkill = ctypes.CDLL(None, use_errno=True).tgkill
    assert tgkill(pid, others[-1], int(sig)) == 0, os.strerror(ctypes.get_errno())
    with suppress(subprocess.TimeoutExpired):
        srv.proc.wait(10)
    rc = srv.stop(signal.SIGKILL, timeout=5)  # only if it is still running after 10 s
    assert rc == 0, srv.log()[-3000:]
    assert "shutting down" in srv.log() and "Traceback" not in srv.log()


def test_sigterm_right_after_the_control_plane_is_healthy_is_graceful(tmp_path: Path) -> None:
    """A supervisor may stop the server as soon as its health check passes: that SIGTERM must take
    the graceful path too (exit 0), not kill the process half-started."""
    srv = start_server(tmp_path / "data")
    rc = srv.stop(signal.SIGTERM)
    assert rc == 0, srv.log()[-3000:]


def test_a_stop_racing_the_switch_to_serving_never_breaks_either(tmp_path: Path) -> None:
    """SIGTERM right after start runs stop() in another thread while the main thread marks the
    listeners SERVING on the event loop; stop() closed the loop under it (AttributeError, exit 1)."""
    import threading

    from agentceiling.api.server import Server, ServerConfig
    from agentceiling.dev_ports import free_port
    from agentceiling.service.authz_bootstrap import build_authz

    for i in range(8):
        cfg = ServerConfig(
            data_dir=tmp_path / "data", listen=f"127.0.0.1:{free_port()}", authz_listen=f"127.0.0.1:{free_port()}"
        )
        server = Server(cfg, build_authz)
        server.start()
        stopper = threading.Thread(target=server.stop)
        errors: list[BaseException] = []
        if i % 2:
            stopper.start()
        try:
            server._serving()
        except BaseException as exc:
            errors.append(exc)
        if not i % 2:
            stopper.start()
        stopper.join(30)
        assert not stopper.is_alive() and not errors, errors


def test_an_audit_writer_that_dies_before_serving_leaves_health_not_serving(tmp_path: Path) -> None:
    """The endpoint's audit writer dies between the server's start and its switch to SERVING: the
    switch must not report SERVING over it (every decision would be UNAVAILABLE)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from agentceiling.api.server import Server, ServerConfig
    from agentceiling.dev_ports import free_port
    from agentceiling.service.authz_bootstrap import build_authz

    cfg = ServerConfig(
        data_dir=tmp_path / "data", listen=f"127.0.0.1:{free_port()}", authz_listen=f"127.0.0.1:{free_port()}"
    )
    server = Server(cfg, build_authz)
    server.start()
    try:
        writers = audit_writer_pids(os.getpid())
        assert len(writers) == 1
        os.kill(writers[0], signal.SIGKILL)
        assert process_gone(writers[0], 10)  # dead: its pipe is closed
        deadline = time.monotonic() + 20
        while not server._unhealthy.is_set():  # the event loop sees the pipe close (a loaded CI takes a while)
            assert time.monotonic() < deadline, "the writer's death was not noticed"
            time.sleep(0.05)
        server._serving()

        def health(address: str) -> int:
            with grpc.insecure_channel(address) as ch:
                return int(health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status)

        assert health(f"127.0.0.1:{server.ports['authz']}") == health_pb2.HealthCheckResponse.NOT_SERVING
        assert health(f"127.0.0.1:{server.ports['control']}") == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop()


def test_health_watch_streams_end_at_a_stop_instead_of_holding_it(tmp_path: Path) -> None:
    """gRPC's client-side health checking keeps a Watch stream open per channel: a stop tells each
    NOT_SERVING and ends it, rather than waiting out the grace period (15 s) for every one."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    srv = settle(start_server(tmp_path / "data"))
    streams: list[tuple[grpc.Channel, Any]] = []
    seen: list[list[int]] = []
    try:
        for address in (srv.address, srv.authz_address):
            for service in ("", "grpc.health.v1.Health"):
                ch = grpc.insecure_channel(address)
                stream = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=service))
                streams.append((ch, stream))
        for _ch, stream in streams:
            first = next(stream)
            seen.append([first.status])
        received: list[BaseException | None] = []

        def drain(stream: Any, statuses: list[int]) -> None:
            try:
                for resp in stream:
                    statuses.append(resp.status)
                received.append(None)
            except grpc.RpcError as exc:
                received.append(exc)

        readers = [
            threading.Thread(target=drain, args=(s, st)) for (_c, s), st in zip(streams, seen, strict=True)
        ]
        for r in readers:
            r.start()
        start = time.monotonic()
        assert srv.stop(signal.SIGTERM) == 0, srv.log()[-3000:]
        assert time.monotonic() - start < 8, "the stop waited for the Watch streams"
        for r in readers:
            r.join(10)
        SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        # "" is every listener's overall health; the Health service itself is not registered by name.
        assert [st[0] for st in seen] == [SERVING, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN] * 2
        assert all(st[-1] == NOT_SERVING for st in seen[::2]), seen
        assert received == [None] * 4, received  # each ended normally (status OK)
    finally:
        for ch, _s in streams:
            ch.close()
        srv.stop(signal.SIGKILL)
