"""Shared fixtures: a throwaway PostgreSQL cluster, database URLs for both backends, and a real
`agentceiling serve` subprocess on loopback."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from agentceiling.dev_ports import free_port

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- PostgreSQL


@dataclass
class PgCluster:
    port: int
    socket_dir: Path

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, options: str = "") -> str:
        """A new, empty database; ``options`` go to CREATE DATABASE (e.g. a collation)."""
        import sqlalchemy as sa

        name = "ac_" + uuid.uuid4().hex[:12]
        engine = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" {options}')
        engine.dispose()
        return self.url(name)


def _postgres_missing_reason() -> str | None:
    for tool in ("initdb", "pg_ctl", "postgres"):
        if shutil.which(tool) is None:
            return f"PostgreSQL is not installed ({tool} not on PATH)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' system user to run PostgreSQL as"
    return None


@dataclass
class PgServer:
    """A throwaway PostgreSQL cluster in its own directory, which a test may stop and start."""

    base: Path
    port: int
    prefix: list[str]

    def ctl(self, *args: str) -> None:
        subprocess.run([*self.prefix, "pg_ctl", "-D", str(self.base / "data"), *args], check=True, capture_output=True)

    def start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.base / 'sock'} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self.ctl("-o", opts, "-l", str(self.base / "log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        self.ctl("-m", "fast", "-w", "stop")

    @property
    def cluster(self) -> PgCluster:
        return PgCluster(self.port, self.base / "sock")


@contextmanager
def throwaway_pg(prefix: str = "ac-pg-") -> Iterator[PgServer]:
    """A new cluster, started; stopped and removed afterwards. Skips (or, with
    AGENTCEILING_REQUIRE_POSTGRES=1, fails) where PostgreSQL is missing."""
    reason = _postgres_missing_reason()
    if reason:
        if os.environ.get("AGENTCEILING_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"AGENTCEILING_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix=prefix))
    data, sock = base / "data", base / "sock"
    data.mkdir()
    sock.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        for p in (base, data, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*run_as, "initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    server = PgServer(base, free_port(), run_as)
    server.start()
    try:
        yield server
    finally:
        subprocess.run([*run_as, "pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    with throwaway_pg() as server:
        yield server.cluster


@pytest.fixture
def own_pg() -> Iterator[PgServer]:
    """A cluster of the test's own, that it may stop and start without disturbing other tests."""
    with throwaway_pg("ac-pg-own-") as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'agentceiling.db'}"
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database()


# ---------------------------------------------------------------- a real server


@dataclass
class RunningServer:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    address: str
    authz_address: str
    database_url: str
    log_path: Path

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.token}")]

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def wait_healthy(
    address: str,
    timeout: float = 30,
    proc: subprocess.Popen[bytes] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> None:
    """Until ``address`` answers SERVING (over TLS with ``credentials``)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            channel = (
                grpc.insecure_channel(address) if credentials is None else grpc.secure_channel(address, credentials)
            )
            with channel as ch:
                resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"server at {address} not healthy: {last}")


def start_server(
    data_dir: Path,
    database_url: str = "",
    *,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    address: str | None = None,
    authz_address: str | None = None,
) -> RunningServer:
    data_dir.mkdir(parents=True, exist_ok=True)
    address = address or f"127.0.0.1:{free_port()}"
    authz_address = authz_address or f"127.0.0.1:{free_port()}"
    log_path = data_dir / f"server-{uuid.uuid4().hex[:6]}.log"
    cmd = [sys.executable, "-m", "agentceiling.cli", "serve", "--data-dir", str(data_dir)]
    cmd += ["--listen", address, "--authz-listen", authz_address]
    if database_url:
        cmd += ["--database-url", database_url]
    cmd += list(extra_args)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    server = RunningServer(proc, data_dir, address, authz_address, database_url, log_path)
    try:
        wait_healthy(address, proc=proc)
    except Exception:
        server.stop(signal.SIGKILL)
        raise RuntimeError(f"server failed to start:\n{server.log()}") from None
    return server


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    """A real `agentceiling serve` on SQLite and on PostgreSQL."""
    srv = start_server(tmp_path / "data", database_url)
    try:
        yield srv
    finally:
        srv.stop()
