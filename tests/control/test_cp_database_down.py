"""PostgreSQL stopped under a running server: every call says UNAVAILABLE (with a clear message)
instead of INTERNAL, or UNKNOWN "Error in service handler!" from the admin-token check, and the
server recovers by itself once the database is back. Uses a throwaway cluster of its own, so it
can be stopped without disturbing the other tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
from test_cp_support import C, Client, client, rpc_error, start_server, uniq

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb

UNAVAILABLE = "the database is unavailable; retry later (incident "


def unavailable(exc: grpc.RpcError) -> None:
    assert (exc.code(), (exc.details() or "")[: len(UNAVAILABLE)]) == (C.UNAVAILABLE, UNAVAILABLE), (
        exc.code(),
        exc.details(),
    )


def test_a_stopped_database_is_unavailable_then_recovers(own_pg: Any, tmp_path: Path) -> None:
    cluster = own_pg
    srv = start_server(tmp_path / "data", cluster.cluster.create_database())
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
