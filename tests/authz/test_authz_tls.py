"""The authorization listener with TLS (``serve --tls-cert/--tls-key`` applies to both listeners):
agents and the ``agentceiling authorize`` CLI connect with the CA, plaintext is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from authz_support import (
    ALL_ALGS,
    ControlClient,
    Idp,
    World,
    _conftest,
    free_port,
    path_access,
    uniq,
    wait_healthy,
)
from tls_support import self_signed

from agentceiling._gen.agentceiling.v1 import authorization_pb2 as apb
from agentceiling._gen.agentceiling.v1 import authorization_pb2_grpc as apbg

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def idp() -> Iterator[Idp]:
    idp = Idp()
    yield idp
    idp.close()


def test_authorize_over_tls(tmp_path: Path, idp: Idp) -> None:
    cert, key = self_signed(tmp_path / "tls")
    creds = grpc.ssl_channel_credentials(cert.read_bytes())
    data = tmp_path / "data"
    data.mkdir()
    address, authz = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    log_path = data / f"server-{uuid.uuid4().hex[:6]}.log"
    cmd = [sys.executable, "-m", "agentceiling.cli", "serve", "--data-dir", str(data)]
    cmd += ["--listen", address, "--authz-listen", authz, "--tls-cert", str(cert), "--tls-key", str(key)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    srv = _conftest.RunningServer(proc, data, address, authz, "", log_path)
    try:
        wait_healthy(address, 60, proc, creds)
        wait_healthy(authz, 60, proc, creds)
        with grpc.secure_channel(address, creds) as control:
            cc = ControlClient(control, srv.token, namespace=uniq("ns"))
            world = World(srv, idp, cc, cc.profile(idp, supported_algorithms=ALL_ALGS, audiences=["agentceiling"]))
            world.agent("tls-bot")
        tok = idp.token("tls-bot", [path_access("secret/data/ci/app", "read")])
        req = apb.AuthorizeRequest(token=tok, namespace=world.ns, path="secret/data/ci/app", operation="read")
        with grpc.secure_channel(authz, creds) as ch:
            r = apbg.AuthorizationStub(ch).Authorize(req, timeout=15)
        assert (r.allowed, r.code) == (True, "ALLOWED"), r.reason

        # Plaintext to the TLS listener gets no answer.
        with grpc.insecure_channel(authz) as ch, pytest.raises(grpc.RpcError) as err:
            apbg.AuthorizationStub(ch).Authorize(req, timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE

        # The CLI scripts use: --ca-cert.
        token_file = tmp_path / "token"
        token_file.write_text(tok)
        args = ["authorize", "--address", authz, "--token-file", str(token_file), "--namespace", world.ns]
        args += ["--operation", "read", "--ca-cert", str(cert)]
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}

        def cli(path: str) -> subprocess.CompletedProcess[str]:
            cmd = [sys.executable, "-m", "agentceiling.cli", *args, "--path", path]
            return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)

        run = cli("secret/data/ci/app")
        assert run.returncode == 0, run.stdout + run.stderr
        assert '"ALLOWED"' in run.stdout
        run = cli("secret/data/other")
        assert run.returncode == 1, run.stdout + run.stderr
    finally:
        rc = srv.stop()
    assert rc == 0, srv.log()[-3000:]
