"""Provider configuration against a real `agentceiling serve`: plaintext and TLS addresses, the
token fallbacks, and one clear diagnostic for every way the connection can fail."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tls_support import self_signed

from agentceiling.dev_ports import free_port
from agentceiling.tfprovider.framework.types import Diagnostics
from agentceiling.tfprovider.provider import build_provider


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    address: str
    data_dir: Path

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()


def _start(data_dir: Path, extra: list[str]) -> Server:
    address = f"127.0.0.1:{free_port()}"
    data_dir.mkdir(parents=True)
    log = open(data_dir.parent / f"{data_dir.name}.log", "wb")  # noqa: SIM115
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCEILING_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentceiling.cli", "serve", "--data-dir", str(data_dir), "--listen", address,
         "--authz-listen", f"127.0.0.1:{free_port()}", *extra],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    deadline = time.monotonic() + 60
    while not (data_dir / "admin-token").exists() or not _listening(address):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError((data_dir.parent / f"{data_dir.name}.log").read_text())
        time.sleep(0.1)
    return Server(proc, address, data_dir)


def _listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(server: Server) -> None:
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(20)
    except subprocess.TimeoutExpired:
        server.proc.kill()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server, Path]]:
    root = tmp_path_factory.mktemp("configure")
    cert, key = self_signed(root)
    plain = _start(root / "plain", [])
    try:
        tls = _start(root / "tls", ["--tls-cert", str(cert), "--tls-key", str(key)])
    except Exception:
        _stop(plain)
        raise
    try:
        yield plain, tls, cert
    finally:
        _stop(plain)
        _stop(tls)


def _configure(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], **config: Any) -> tuple[Any, Diagnostics]:
    for name in ("VAULT_ADDR", "VAULT_TOKEN", "VAULT_NAMESPACE", "VAULT_CACERT", "VAULT_SKIP_VERIFY",
                 "AGENTCEILING_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    provider = build_provider()
    values: dict[str, Any] = {a.name: None for a in provider.schema.attributes}
    values.update({b.name: [] for b in provider.schema.blocks})
    values.update(config)
    diags = Diagnostics()
    start = time.monotonic()
    client = provider.configure(values, diags)
    assert time.monotonic() - start < 15, "configure must not hang"
    return client, diags


def _only_error(diags: Diagnostics) -> str:
    errors = [d for d in diags.items if d.severity == "error"]
    assert len(errors) == 1, diags.items
    return f"{errors[0].summary}\n{errors[0].detail}"


def test_plaintext_from_env_and_from_data_dir(servers: tuple[Server, Server, Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    plain, _, _ = servers
    client, diags = _configure(monkeypatch, {"VAULT_ADDR": f"http://{plain.address}", "VAULT_TOKEN": plain.token})
    assert client is not None and not diags.items
    client.close()
    # No token anywhere but the local server's data directory.
    client, diags = _configure(monkeypatch, {"AGENTCEILING_DATA_DIR": str(plain.data_dir)}, address=plain.address)
    assert client is not None and not diags.items
    client.close()


def test_tls_with_ca_and_with_skip_verify(servers: tuple[Server, Server, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _, tls, cert = servers
    client, diags = _configure(monkeypatch, {"VAULT_TOKEN": tls.token}, address=f"https://{tls.address}",
                               ca_cert_file=str(cert))
    assert client is not None and not diags.items, diags.items
    client.close()
    client, diags = _configure(monkeypatch, {"VAULT_TOKEN": tls.token, "VAULT_SKIP_VERIFY": "true"},
                               address=f"https://{tls.address}")
    assert client is not None and not diags.items, diags.items
    client.close()
    # Without the CA the server's certificate is not trusted: one diagnostic, naming the address.
    client, diags = _configure(monkeypatch, {"VAULT_TOKEN": tls.token}, address=f"https://{tls.address}")
    assert client is None
    assert tls.address in _only_error(diags)


def test_an_empty_or_garbage_ca_bundle_is_refused_not_widened(servers: tuple[Server, Server, Path],
                                                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """gRPC takes an empty bundle for "trust the default roots": a wider trust than the one named."""
    _, tls, _ = servers
    (tmp_path / "empty.pem").write_bytes(b"")
    (tmp_path / "garbage.pem").write_bytes(b"not a certificate\n")
    (tmp_path / "cas").mkdir()
    for kw, attr, says in (
        ({"ca_cert_file": str(tmp_path / "empty.pem")}, "ca_cert_file", "no CA certificate to trust"),
        ({"ca_cert_file": str(tmp_path / "garbage.pem")}, "ca_cert_file", "not a PEM certificate bundle"),
        ({"ca_cert_dir": str(tmp_path / "cas")}, "ca_cert_dir", "no CA certificate to trust"),
    ):
        client, diags = _configure(monkeypatch, {"VAULT_TOKEN": tls.token}, address=f"https://{tls.address}", **kw)
        assert client is None
        assert says in _only_error(diags) and diags.items[0].path == (attr,), diags.items


def test_failures_are_one_diagnostic_each(servers: tuple[Server, Server, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    plain, tls, _ = servers
    refused = f"127.0.0.1:{free_port()}"
    _, diags = _configure(monkeypatch, {"VAULT_TOKEN": "x"}, address=refused)
    text = _only_error(diags)
    assert "Cannot reach the agentceiling control plane" in text and refused in text and "connection refused" in text
    assert diags.items[0].path == ("address",)

    _, diags = _configure(monkeypatch, {"VAULT_ADDR": plain.address, "VAULT_TOKEN": "wrong"})
    text = _only_error(diags)
    assert "refused the token" in text and "VAULT_TOKEN" in text

    _, diags = _configure(monkeypatch, {"VAULT_TOKEN": tls.token}, address=f"http://{tls.address}")
    assert tls.address in _only_error(diags)

    _, diags = _configure(monkeypatch, {"AGENTCEILING_DATA_DIR": "/nonexistent"}, address=plain.address)
    assert "No token" in _only_error(diags)

    _, diags = _configure(monkeypatch, {"VAULT_TOKEN": "x"}, address="ftp://nowhere")
    assert "unsupported scheme" in _only_error(diags)


def test_token_whitespace_and_headers_that_cannot_be_sent(servers: tuple[Server, Server, Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    plain, _, _ = servers
    # A trailing newline (`VAULT_TOKEN=$(cat file)` keeps none, `echo` into a variable can) is trimmed.
    client, diags = _configure(monkeypatch, {"VAULT_ADDR": plain.address, "VAULT_TOKEN": plain.token + "\n"})
    assert client is not None and not diags.items, diags.items
    client.close()
    # Mixed-case header names are sent lower-cased (gRPC metadata keys are).
    client, diags = _configure(monkeypatch, {"VAULT_ADDR": plain.address, "VAULT_TOKEN": plain.token},
                               headers=[{"name": "X-Team", "value": "ops"}])
    assert client is not None and not diags.items, diags.items
    client.close()
    _, diags = _configure(monkeypatch, {"VAULT_ADDR": plain.address}, token="ab\ncd")
    assert "Invalid token" in _only_error(diags) and diags.items[0].path == ("token",)
    _, diags = _configure(monkeypatch, {"VAULT_ADDR": plain.address, "VAULT_TOKEN": plain.token},
                          headers=[{"name": "x-ok", "value": "1"}, {"name": "x-team", "value": "ops\nx"}])
    assert "Invalid header value" in _only_error(diags) and diags.items[0].path == ("headers", 1, "value")
    _, diags = _configure(monkeypatch, {"VAULT_ADDR": plain.address, "VAULT_TOKEN": plain.token},
                          headers=[{"name": "x team", "value": "ops"}])
    assert "Invalid header name" in _only_error(diags) and diags.items[0].path == ("headers", 0, "name")


def test_auth_login_token_file(servers: tuple[Server, Server, Path], monkeypatch: pytest.MonkeyPatch,
                               tmp_path: Path) -> None:
    plain, _, _ = servers
    good = tmp_path / "token"
    good.write_text(plain.token + "\n")  # one line, as HCP Terraform writes it
    good.chmod(0o600)

    def login(filename: Any, **extra: Any) -> list[dict[str, Any]]:
        return [{"filename": filename, "namespace": None, "use_root_namespace": None, **extra}]

    # The file's token wins over the token argument and VAULT_TOKEN, as in terraform-provider-vault.
    client, diags = _configure(monkeypatch, {"VAULT_TOKEN": "wrong"}, address=plain.address, token="wrong-too",
                               auth_login_token_file=login(str(good), namespace="ns1", use_root_namespace=True))
    assert client is not None and not diags.items, diags.items
    client.close()

    path = ("auth_login_token_file", 0, "filename")
    _, diags = _configure(monkeypatch, {}, address=plain.address, auth_login_token_file=login(str(tmp_path / "nope")))
    assert "Cannot read the token file" in _only_error(diags) and "No such file" in _only_error(diags)
    assert diags.items[0].path == path

    for content, why in (("", "it is empty"), ("two\nlines\n", "single line")):
        bad = tmp_path / "bad"
        bad.write_text(content)
        bad.chmod(0o600)
        _, diags = _configure(monkeypatch, {}, address=plain.address, auth_login_token_file=login(str(bad)))
        assert why in _only_error(diags) and diags.items[0].path == path

    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-admin-token\n")
    wrong.chmod(0o600)
    _, diags = _configure(monkeypatch, {}, address=plain.address, auth_login_token_file=login(str(wrong)))
    text = _only_error(diags)
    assert "refused the token from" in text and str(wrong) in text and diags.items[0].path == path


def test_auth_login_token_file_from_the_environment_and_only_private(
    servers: tuple[Server, Server, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As terraform-provider-vault: `filename` defaults to TERRAFORM_VAULT_TOKEN_FILENAME, and the
    file must be a regular file that only its owner can read."""
    plain, _, _ = servers
    path = ("auth_login_token_file", 0, "filename")
    token = tmp_path / "token"
    token.write_text(plain.token + "\n")
    token.chmod(0o600)
    empty_block = [{"filename": None, "namespace": None, "use_root_namespace": None}]
    client, diags = _configure(monkeypatch, {"TERRAFORM_VAULT_TOKEN_FILENAME": str(token)}, address=plain.address,
                               auth_login_token_file=empty_block)
    assert client is not None and not diags.items, diags.items
    client.close()

    monkeypatch.delenv("TERRAFORM_VAULT_TOKEN_FILENAME")
    _, diags = _configure(monkeypatch, {}, address=plain.address, auth_login_token_file=empty_block)
    assert "TERRAFORM_VAULT_TOKEN_FILENAME" in _only_error(diags) and diags.items[0].path == path

    for mode in (0o644, 0o640, 0o604):
        token.chmod(mode)
        _, diags = _configure(monkeypatch, {"TERRAFORM_VAULT_TOKEN_FILENAME": str(token)}, address=plain.address,
                              auth_login_token_file=empty_block)
        text = _only_error(diags)
        assert f'token path "{token}" has an invalid mode' in text and "chmod 600" in text, text
        assert diags.items[0].path == path

    _, diags = _configure(monkeypatch, {}, address=plain.address,
                          auth_login_token_file=[{**empty_block[0], "filename": str(tmp_path)}])
    assert f'token path "{tmp_path}" is not regular file' in _only_error(diags)


def test_provider_namespace_slashes_are_ignored(servers: tuple[Server, Server, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`namespace = "admin/"` in the provider block is accepted, as upstream and as VAULT_NAMESPACE."""
    plain, _, _ = servers
    provider = build_provider()
    for ns in ("admin/", "/admin"):
        values: dict[str, Any] = {a.name: None for a in provider.schema.attributes}
        values.update({b.name: [] for b in provider.schema.blocks})
        values.update(namespace=ns, address=plain.address)
        diags = Diagnostics()
        provider.validate(values, diags)
        assert not diags.items, diags.items
        client, diags = _configure(monkeypatch, {"VAULT_TOKEN": plain.token}, address=plain.address, namespace=ns)
        assert client is not None and not diags.items, diags.items
        assert client.namespace(None) == "admin" and client.namespace("team") == "admin/team"
        client.close()
