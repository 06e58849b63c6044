"""PostgreSQL stopped under a running server: every call says UNAVAILABLE (with a clear message)
instead of INTERNAL, or UNKNOWN "Error in service handler!" from the admin-token check, and the
server recovers by itself once the database is back. Uses a throwaway cluster of its own, so it
can be stopped without disturbing the other tests."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import root_conftest
from test_cp_support import C, Client, client, free_port, rpc_error, start_server, uniq

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb

UNAVAILABLE = "the database is unavailable; retry later (incident "


@dataclass
class Cluster:
    base: Path
    port: int
    prefix: list[str]

    def ctl(self, *args: str) -> None:
        subprocess.run([*self.prefix, "pg_ctl", "-D", str(self.base / "data"), *args], check=True, capture_output=True)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.base / 'sock'} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.ctl("-o", opts, "-l", str(self.base / "log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        self.ctl("-m", "fast", "-w", "stop")

    def url(self) -> str:
        return str(root_conftest.root.PgCluster(self.port, self.base / "sock").create_database())


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    reason = root_conftest.root._postgres_missing_reason()
    if reason:
        if os.environ.get("AGENTCEILING_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"AGENTCEILING_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="ac-pg-down-"))
    for sub in ("data", "sock"):
        (base / sub).mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        for p in (base, base / "data", base / "sock"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*prefix, "initdb", "-D", str(base / "data"), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    c = Cluster(base, free_port(), prefix)
    c.start()
    try:
        yield c
    finally:
        subprocess.run(
            [*prefix, "pg_ctl", "-D", str(base / "data"), "-m", "immediate", "stop"], capture_output=True, check=False
        )
        shutil.rmtree(base, ignore_errors=True)


def unavailable(exc: grpc.RpcError) -> None:
    assert (exc.code(), (exc.details() or "")[: len(UNAVAILABLE)]) == (C.UNAVAILABLE, UNAVAILABLE), (
        exc.code(),
        exc.details(),
    )


def test_a_stopped_database_is_unavailable_then_recovers(cluster: Cluster, tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", cluster.url())
    try:
        with client(srv) as c, Client(srv.address, "acs.not-a-known-token") as stranger:
            kept = c.entity(uniq("ent"))
            cluster.stop()
            for _ in range(2):  # the first call may find a pooled connection that just died
                unavailable(rpc_error(c.system.Status, pb.StatusRequest()))
                unavailable(rpc_error(c.entity))
                unavailable(rpc_error(c.entities.Read, pb.ReadEntityRequest(id=kept.id)))
                unavailable(rpc_error(c.profiles.List, pb.ListRequest()))
                # A token that is not cached is looked up in the database.
                unavailable(rpc_error(stranger.system.Status, pb.StatusRequest()))
            assert "Traceback" not in srv.log()

            cluster.start()
            deadline = time.monotonic() + 30
            while True:
                try:
                    c.system.Status(pb.StatusRequest())
                    break
                except grpc.RpcError as exc:
                    unavailable(exc)
                    assert time.monotonic() < deadline, "the server did not recover"
                    time.sleep(0.2)
            assert c.entities.Read(pb.ReadEntityRequest(id=kept.id)).entity == kept
            assert rpc_error(stranger.system.Status, pb.StatusRequest()).code() == C.UNAUTHENTICATED
    finally:
        srv.stop()
