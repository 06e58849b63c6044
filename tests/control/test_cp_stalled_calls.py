"""Calls that never send their request, and streams held open, take no worker: the listeners are
grpc.aio servers whose handlers run in a pool only once a request has arrived. With grpc's
thread-per-call server, 32 such calls (no token needed) froze a listener until they closed; with a
limit of concurrent calls, 512 made every other call RESOURCE_EXHAUSTED."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_cp_support import settle, start_server

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb
from agentceiling._gen.agentceiling.v1 import control_plane_pb2_grpc as pbg

STALLED = 2000  # far above the 32 workers of each pool, and above the old limit of concurrent calls (512)

METHODS = (
    "/agentceiling.v1.System/Status",
    "/grpc.health.v1.Health/Check",
    "/agentceiling.v1.Authorization/Authorize",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/grpc.health.v1.Health/Watch",
)

# The held calls come from a process of their own with grpc.aio's client: grpc's blocking client
# spends a thread per streaming call, and with ~800 of them the test's own calls starved.
HOLDER = """
import asyncio, sys, grpc

async def main():
    addresses, methods, per = sys.argv[1].split(","), sys.argv[2].split(","), int(sys.argv[3])
    stop = asyncio.Event()

    async def never():
        await stop.wait()
        if False:
            yield b""

    calls, channel, i = [], None, 0
    for address in addresses:
        for method in methods:
            for _ in range(per):
                if i % 40 == 0:  # several connections, each with many calls
                    channel = grpc.aio.insecure_channel(address)
                i += 1
                call = channel.stream_unary(method, request_serializer=bytes, response_deserializer=bytes)
                calls.append(call(never(), timeout=300))
    await asyncio.sleep(1.5)  # every call's headers have reached the server
    print(len(calls), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the test is done

asyncio.run(main())
"""


def test_stalled_calls_and_open_streams_do_not_freeze_either_listener(tmp_path: Any) -> None:
    srv = settle(start_server(tmp_path / "data"))
    per = STALLED // (2 * len(METHODS))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, f"{srv.address},{srv.authz_address}", ",".join(METHODS), str(per)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert int(holder.stdout.readline()) == STALLED
        assert holder.poll() is None
        with grpc.insecure_channel(srv.address) as ch:
            start = time.monotonic()
            resp = pbg.SystemStub(ch).Status(
                pb.StatusRequest(), metadata=[("authorization", f"Bearer {srv.token}")], timeout=10
            )
            assert resp.generation >= 0 and time.monotonic() - start < 5
        for address in (srv.address, srv.authz_address):
            with grpc.insecure_channel(address) as ch:
                check = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert check.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        holder.kill()
        holder.wait()
        srv.stop()
