"""Caches never outlive a control-plane change by more than a second: a tightened ceiling, a
deleted registration or a disabled entity is enforced for a token already seen (and cached), in
the all-in-one server and across separately deployed replicas (`--role control` plus two
`--role authz` processes sharing one database)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from authz_support import (
    ACCESS,
    CEILING,
    ControlClient,
    Idp,
    World,
    authorize,
    eventually,
    path_access,
    start_role,
    uniq,
    wait_healthy,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

BOUND = 1.0  # seconds: the freshness requirement
PATH = "secret/data/ci/app"
NARROW = 'path "secret/data/ci/other" {\n  capabilities = ["read"]\n}\n'


def _timed(change: Callable[[], object], check: Callable[[], bool]) -> float:
    """Seconds from the moment the control-plane call returned until ``check()`` holds."""
    change()
    return eventually(check, timeout=10, interval=0.01)


def test_revocations_reach_a_cached_token_within_a_second(world: World) -> None:
    w, idp = world, world.idp
    ent, reg = w.agent("revocable")
    assert reg is not None
    tok = idp.token("revocable", [path_access(PATH, "read")])

    def code() -> str:
        return str(w.authorize(tok, PATH, "read").code)

    for _ in range(3):  # seen and cached
        assert code() == "ALLOWED"

    elapsed = _timed(lambda: w.cc.policy("revocable-ceiling", NARROW), lambda: code() == "CEILING_EXCEEDED")
    assert elapsed < BOUND, elapsed
    w.cc.policy("revocable-ceiling", CEILING)
    eventually(lambda: code() == "ALLOWED")

    elapsed = _timed(lambda: w.cc.set_disabled(ent, True), lambda: code() == "ENTITY_DISABLED")
    assert elapsed < BOUND, elapsed
    w.cc.set_disabled(ent, False)
    eventually(lambda: code() == "ALLOWED")

    # The subject's own ACL narrowed.
    elapsed = _timed(
        lambda: w.cc.policy("revocable-access", 'path "secret/data/ci/other" {\n  capabilities = ["read"]\n}\n'),
        lambda: code() == "PERMISSION_DENIED",
    )
    assert elapsed < BOUND, elapsed
    w.cc.policy("revocable-access", ACCESS)
    eventually(lambda: code() == "ALLOWED")

    elapsed = _timed(lambda: w.cc.delete_registration(reg), lambda: code() == "AGENT_NOT_REGISTERED")
    assert elapsed < BOUND, elapsed


def test_a_counter_taken_back_by_a_restore_revives_no_cached_decision(world: World) -> None:
    """A database restored from a backup (or a failover to a standby that lost the last commits)
    takes the generation counter back; new writes then reach numbers the server cached decisions
    under, with other contents: a ceiling tightened after the restore is enforced all the same."""
    import sqlalchemy as sa

    from agentceiling.store import repo
    from agentceiling.store.db import Database, sqlite_url

    w, idp = world, world.idp
    w.agent("restored")
    tok = idp.token("restored", [path_access(PATH, "read")])
    time.sleep(2 * BOUND)  # the server has seen the last write: what it caches now is tagged with it
    for _ in range(3):  # seen and cached
        assert w.authorize(tok, PATH, "read").code == "ALLOWED"
    db = Database(w.server.database_url or sqlite_url(w.server.data_dir))

    def counter() -> int:
        with db.read() as conn:
            return repo.generation(conn)

    def set_counter(n: int) -> None:
        gen = repo.meta.c.key == repo.GENERATION
        db.write(lambda conn: conn.execute(sa.update(repo.meta).where(gen).values(value=n)))

    cached = counter()
    try:
        set_counter(cached - 3)  # the restore
        time.sleep(2 * BOUND)  # the server has seen it
        w.cc.policy("restored-ceiling", NARROW)
        assert counter() == cached - 2
        set_counter(cached)  # two more writes, elsewhere
        time.sleep(2 * BOUND)
        r = w.authorize(tok, PATH, "read")
        assert r.code == "CEILING_EXCEEDED", r.reason
    finally:
        set_counter(max(counter(), cached) + 1)  # onwards, for the module's other tests
        db.dispose()


# ---------------------------------------------------------------- separately deployed replicas


class Cluster:
    def __init__(self, control: Any, replicas: list[Any]) -> None:
        self.control = control
        self.replicas = replicas


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp(f"replicas-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{base / 'shared.db'}"
    else:
        url = str(request.getfixturevalue("pg_cluster").create_database())
    started: list[Any] = []
    try:
        started.append(start_role(base / "control", url, "control"))
        for i in range(2):
            started.append(start_role(base / f"authz-{i}", url, "authz"))
        yield Cluster(started[0], started[1:])
    finally:
        for srv in started:
            rc = srv.stop()
            assert rc == 0, f"exited with {rc}:\n{srv.log()[-3000:]}"


@pytest.fixture(scope="module")
def cluster_idp() -> Iterator[Idp]:
    i = Idp()
    yield i
    i.close()


def _health(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as ch:
        return int(
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status
        )


def test_each_role_serves_only_its_listener(cluster: Cluster) -> None:
    for replica in cluster.replicas:
        assert _health(replica.authz_address, "agentceiling.v1.Authorization") == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as err:
            _health(replica.address)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not (replica.data_dir / "admin-token").exists()
    wait_healthy(cluster.control.address)
    with pytest.raises(grpc.RpcError) as err:
        _health(cluster.control.authz_address)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def _setup(cluster: Cluster, idp: Idp) -> tuple[ControlClient, Any, Any, str]:
    cc = ControlClient(cluster.control.channel(), cluster.control.token, namespace=uniq("ns"))
    cc.profile(idp, supported_algorithms=["ES256"], audiences=["agentceiling"])
    name = uniq("replicated")
    cc.policy(f"{name}-ceiling", CEILING)
    cc.policy(f"{name}-access", ACCESS)
    ent = cc.entity(name, [f"{name}-access"])
    cc.alias(ent, idp, name)
    reg = cc.register(ent, name, [f"{name}-ceiling"])
    return cc, ent, reg, name


def _race(cluster: Cluster, token: str, namespace: str, want: str, change: Callable[[], object]) -> list[float]:
    """Make the change, then poll every replica in parallel; seconds until each answers ``want``."""
    times: list[float] = [float("inf")] * len(cluster.replicas)
    start = threading.Event()
    t0 = [0.0]

    def poll(i: int, address: str) -> None:
        start.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if authorize(address, token, PATH, "read", namespace=namespace).code == want:
                times[i] = time.monotonic() - t0[0]
                return
            time.sleep(0.01)

    threads = [threading.Thread(target=poll, args=(i, r.authz_address)) for i, r in enumerate(cluster.replicas)]
    for t in threads:
        t.start()
    change()
    t0[0] = time.monotonic()
    start.set()
    for t in threads:
        t.join()
    return times


def test_a_tightened_ceiling_is_enforced_by_every_replica_within_a_second(cluster: Cluster, cluster_idp: Idp) -> None:
    cc, _ent, _reg, name = _setup(cluster, cluster_idp)
    tok = cluster_idp.token(name, [path_access(PATH, "read")])
    for replica in cluster.replicas:
        for _ in range(2):
            r = authorize(replica.authz_address, tok, PATH, "read", namespace=cc.namespace)
            assert r.code == "ALLOWED", r.reason
    times = _race(cluster, tok, cc.namespace, "CEILING_EXCEEDED", lambda: cc.policy(f"{name}-ceiling", NARROW))
    assert max(times) < BOUND, times


def test_revocations_are_enforced_by_every_replica_within_a_second(cluster: Cluster, cluster_idp: Idp) -> None:
    cc, ent, reg, name = _setup(cluster, cluster_idp)
    tok = cluster_idp.token(name, [path_access(PATH, "read")])
    for replica in cluster.replicas:
        assert authorize(replica.authz_address, tok, PATH, "read", namespace=cc.namespace).code == "ALLOWED"
    times = _race(cluster, tok, cc.namespace, "ENTITY_DISABLED", lambda: cc.set_disabled(ent, True))
    assert max(times) < BOUND, times
    times = _race(
        cluster,
        tok,
        cc.namespace,
        "AGENT_NOT_REGISTERED",
        lambda: (cc.set_disabled(ent, False), cc.delete_registration(reg)),
    )
    assert max(times) < BOUND, times


@dataclass
class _Agent:
    """An all-in-one server on a database of its own, with one registered agent."""

    srv: Any
    cc: ControlClient
    name: str
    token: str

    def code(self) -> str:
        return str(authorize(self.srv.authz_address, self.token, PATH, "read", namespace=self.cc.namespace).code)

    def answer(self) -> Any:
        return authorize(self.srv.authz_address, self.token, PATH, "read", namespace=self.cc.namespace)


@contextmanager
def _one_agent(url: str, tmp_path: Any) -> Iterator[_Agent]:
    srv = start_role(tmp_path / "all", url, "all")
    idp = Idp()
    try:
        cc, _ent, _reg, name = _setup(Cluster(srv, [srv]), idp)
        agent = _Agent(srv, cc, name, idp.token(name, [path_access(PATH, "read")]))
        assert agent.code() == "ALLOWED" and agent.code() == "ALLOWED"  # the second from the caches
        yield agent
    finally:
        srv.stop()
        idp.close()


def test_a_server_cut_off_from_its_database_refuses_instead_of_trusting_its_cache(own_pg: Any, tmp_path: Any) -> None:
    """The cache is only as good as the last read of the generation counter: with the database
    gone, a cached ALLOWED turns into UNAVAILABLE within about a second (a revocation made through
    another replica meanwhile would otherwise be missed), and decisions resume once it is back."""
    with _one_agent(own_pg.cluster.create_database(), tmp_path) as agent:
        own_pg.stop()
        waited = eventually(lambda: agent.code() == "UNAVAILABLE", timeout=10, interval=0.05)
        assert waited < BOUND + 1.0, waited  # the staleness bound (1 s), plus a failing poll
        r = agent.answer()
        assert (r.allowed, r.code) == (False, "UNAVAILABLE") and "database" in r.reason, r.reason
        eventually(lambda: _health(agent.srv.authz_address) == health_pb2.HealthCheckResponse.NOT_SERVING, timeout=5)
        own_pg.start()
        eventually(lambda: _health(agent.srv.authz_address) == health_pb2.HealthCheckResponse.SERVING, timeout=30)
        eventually(lambda: agent.code() == "ALLOWED", timeout=30, interval=0.2)
        assert "Traceback" not in agent.srv.log()


def test_a_stuck_writer_holding_the_generation_row_neither_hangs_writes_nor_starves_decisions(
    own_pg: Any, tmp_path: Any
) -> None:
    """Every write ends by updating the one generation row. A transaction left open on it (its
    client cut off mid-write) used to stop every write of every replica for good, and, once the
    blocked writes held all the pooled connections of an all-in-one server, its decisions too.
    Writes now fail within the lock timeout, the server ends such sessions of its own, and the
    authorization endpoint reads through connections of its own."""
    import sqlalchemy as sa

    from agentceiling.store.db import LOCK_TIMEOUT_MS, Database

    url = own_pg.cluster.create_database()
    holder = sa.create_engine(url)  # a plain client, without the server's settings
    try:
        with _one_agent(url, tmp_path) as agent:
            cc, name, code = agent.cc, agent.name, agent.code
            ours = Database(url)
            with ours.read() as conn:
                names = ("lock_timeout", "idle_in_transaction_session_timeout")
                settings = {k: conn.execute(sa.text(f"SHOW {k}")).scalar() for k in names}
            ours.dispose()
            assert settings == {"lock_timeout": "10s", "idle_in_transaction_session_timeout": "1min"}, settings
            # Set after connecting (PgBouncer refuses an `options` startup parameter), but not over
            # what the URL's own `options` set.
            theirs = Database(url + "?options=-c%20lock_timeout%3D2s")
            with theirs.read() as conn:
                settings = {k: conn.execute(sa.text(f"SHOW {k}")).scalar() for k in names}
            theirs.dispose()
            assert settings == {"lock_timeout": "2s", "idle_in_transaction_session_timeout": "1min"}, settings

            with holder.connect() as stuck:
                stuck.begin()
                stuck.execute(sa.text("UPDATE meta SET value = value + 1 WHERE key = 'generation'"))
                results: list[tuple[str, float]] = []

                def write(i: int) -> None:
                    t = time.monotonic()
                    try:
                        cc.policy(f"{name}-extra-{i}", ACCESS)
                        results.append(("OK", time.monotonic() - t))
                    except grpc.RpcError as exc:
                        results.append((exc.code().name, time.monotonic() - t))

                writers = [threading.Thread(target=write, args=(i,)) for i in range(30)]
                for t in writers:
                    t.start()
                time.sleep(2)  # the writes are all waiting for the row: the decisions go on
                assert [code() for _ in range(5)] == ["ALLOWED"] * 5
                for t in writers:
                    t.join(timeout=60)
                assert len(results) == 30
                # Each write fails once it has waited the lock timeout, after waiting for a pooled
                # connection (20 per server) behind the writes ahead of it, or for 30 s at most.
                limit = max(3 * LOCK_TIMEOUT_MS / 1000, 30) + 10
                slowest = sorted(results, key=lambda r: -r[1])[:3]
                assert all(c == "UNAVAILABLE" and s < limit for c, s in results), slowest
                stuck.rollback()
            cc.policy(f"{name}-after", ACCESS)  # writes work again at once
            assert code() == "ALLOWED"
            assert "Traceback" not in agent.srv.log()
    finally:
        holder.dispose()


class _Blackhole:
    """A TCP proxy on loopback whose existing connections can be made to swallow everything: the
    sockets stay open and acknowledged, nothing gets through (what a middlebox that lost the flow,
    or a hung server, looks like). Connections made afterwards pass."""

    def __init__(self, port: int) -> None:
        import socket

        self._target = ("127.0.0.1", port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._flows: list[dict[str, Any]] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while not self._stopped:
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(self._target)
            except OSError:
                return
            flow = {"hole": False, "socks": (client, server)}
            with self._lock:
                self._flows.append(flow)
            threading.Thread(target=self._pump, args=(flow,), daemon=True).start()

    def _pump(self, flow: dict[str, Any]) -> None:
        import select

        client, server = flow["socks"]
        watch = [client, server]
        try:
            while watch and not self._stopped:
                ready, _, _ = select.select(watch, [], [], 0.2)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        if flow["hole"]:
                            watch.remove(src)
                            continue
                        return
                    if not flow["hole"]:
                        (server if src is client else client).sendall(data)
        except OSError:
            return

    def swallow_existing(self) -> int:
        with self._lock:
            for flow in self._flows:
                flow["hole"] = True
            return len(self._flows)

    def close(self) -> None:
        self._stopped = True
        self._listener.close()
        with self._lock:
            for flow in self._flows:
                for sock in flow["socks"]:
                    sock.close()


def test_a_counter_read_that_never_answers_does_not_stop_decisions_for_good(own_pg: Any, tmp_path: Any) -> None:
    """Every connection the server has goes silent (requests taken, never answered), while new ones
    work. The counter read under way would wait for the kernel to give up (minutes), and every
    decision meanwhile was UNAVAILABLE, with no end: a read left waiting STUCK_READ_SECONDS no
    longer holds up the next one, which uses new connections."""
    from urllib.parse import urlsplit, urlunsplit

    from agentceiling.service.directory import STUCK_READ_SECONDS

    direct = own_pg.cluster.create_database()
    proxy = _Blackhole(own_pg.port)
    parts = urlsplit(direct)
    via = urlunsplit(parts._replace(netloc=f"postgres@127.0.0.1:{proxy.port}"))
    try:
        with _one_agent(via, tmp_path) as agent:
            srv, code = agent.srv, agent.code
            assert proxy.swallow_existing() > 0
            eventually(lambda: code() == "UNAVAILABLE", timeout=10, interval=0.05)
            # Health says so (load balancers send agents elsewhere), and comes back with no agent's
            # call to drive it.
            eventually(lambda: _health(srv.authz_address) == health_pb2.HealthCheckResponse.NOT_SERVING, timeout=5)
            assert _health(srv.address) == health_pb2.HealthCheckResponse.SERVING  # the control plane's
            serving = health_pb2.HealthCheckResponse.SERVING
            back = eventually(
                lambda: _health(srv.authz_address) == serving, timeout=STUCK_READ_SECONDS + 20, interval=0.2
            )
            assert back < STUCK_READ_SECONDS + 15, back
            assert code() == "ALLOWED"
            assert "trying new connections" in srv.log()
    finally:
        proxy.close()
