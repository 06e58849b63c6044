"""Calls that never send their request, and streams held open, take no worker: the listeners are
grpc.aio servers whose handlers run in a pool only once a request has arrived. With grpc's
thread-per-call server, 32 such calls (no token needed) froze a listener until they closed; with a
limit of concurrent calls, 512 made every other call RESOURCE_EXHAUSTED."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_cp_support import settle, start_server

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb
from agentceiling._gen.agentceiling.v1 import control_plane_pb2_grpc as pbg

STALLED = 600  # well above the 32 workers of each pool, and above the old limit of concurrent calls (512)


def _stall(address: str, method: str, stop: threading.Event, n: int) -> list[tuple[grpc.Channel, Any]]:
    def never() -> Iterator[bytes]:
        stop.wait()
        return
        yield b""  # a generator that sends nothing until stopped

    calls = []
    channel = grpc.insecure_channel(address)
    for i in range(n):
        if i and i % 40 == 0:  # several connections, each with many calls
            channel = grpc.insecure_channel(address)
        call = channel.stream_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        calls.append((channel, call.future(never(), timeout=120)))
    return calls


def test_stalled_calls_and_open_streams_do_not_freeze_either_listener(tmp_path: Any) -> None:
    srv = settle(start_server(tmp_path / "data"))
    stop = threading.Event()
    held: list[tuple[grpc.Channel, Any]] = []
    try:
        for address in (srv.address, srv.authz_address):
            for method in ("/agentceiling.v1.System/Status", "/grpc.health.v1.Health/Check",
                           "/agentceiling.v1.Authorization/Authorize",
                           "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                           "/grpc.health.v1.Health/Watch"):
                held += _stall(address, method, stop, STALLED // 10)
        time.sleep(1.5)
        with grpc.insecure_channel(srv.address) as ch:
            start = time.monotonic()
            resp = pbg.SystemStub(ch).Status(pb.StatusRequest(), metadata=[("authorization", f"Bearer {srv.token}")],
                                             timeout=10)
            assert resp.generation >= 0 and time.monotonic() - start < 5
        for address in (srv.address, srv.authz_address):
            with grpc.insecure_channel(address) as ch:
                check = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert check.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        stop.set()
        for channel, future in held:
            future.cancel()
            channel.close()
        srv.stop()
