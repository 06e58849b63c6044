"""`agentceiling authorize`: the decision as JSON on stdout; exit 0 allowed, 1 refused, 2 error
(unreachable endpoint, unreadable token file), never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from authz_support import World, free_port, path_access

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}


def _authorize(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentceiling.cli", "authorize", *args],
        capture_output=True,
        text=True,
        env=ENV,
        input=stdin,
        timeout=60,
    )


def test_allowed_and_refused(world: World, tmp_path: Path) -> None:
    w, idp = world, world.idp
    w.agent("cli-agent")
    tok = tmp_path / "token"
    tok.write_text(idp.token("cli-agent", [path_access("secret/data/ci/app", "read")]) + "\n")
    common = ["--token-file", str(tok), "--address", w.server.authz_address, "--namespace", w.ns]

    ok = _authorize(*common, "--path", "secret/data/ci/app", "--operation", "read")
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout)
    assert (out["allowed"], out["code"]) == (True, "ALLOWED")
    assert out["decision_id"] and out["entity_id"] and out["registration_id"]
    assert out["authorization_details"] == [path_access("secret/data/ci/app", "read")]

    no = _authorize(*common, "--path", "secret/data/ci/other", "--operation", "read")
    assert no.returncode == 1, no.stderr
    out = json.loads(no.stdout)
    assert (out["allowed"], out["code"]) == (False, "RAR_NO_MATCH")

    # Token on stdin, token-only check (no path).
    only = _authorize(
        "--token-file", "-", "--address", w.server.authz_address, "--namespace", w.ns, stdin=tok.read_text()
    )
    assert only.returncode == 0 and json.loads(only.stdout)["code"] == "ALLOWED"

    bad = _authorize(*common, "--path", "secret/data/ci/app", "--operation", "fly")
    assert bad.returncode == 2 and "INVALID_ARGUMENT" in bad.stderr and "Traceback" not in bad.stderr


def test_errors_exit_2_without_a_traceback(tmp_path: Path) -> None:
    tok = tmp_path / "token"
    tok.write_text("eyJhbGciOiJub25lIn0.e30.")
    dead = f"127.0.0.1:{free_port()}"
    down = _authorize("--token-file", str(tok), "--path", "x", "--operation", "read", "--address", dead)
    assert down.returncode == 2, (down.stdout, down.stderr)
    assert "UNAVAILABLE" in down.stderr and "Traceback" not in down.stderr and down.stdout == ""

    missing = _authorize("--token-file", str(tmp_path / "absent"), "--path", "x", "--operation", "read")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr

    params = _authorize("--token-file", str(tok), "--parameters", "[1]", "--address", dead)
    assert params.returncode == 2 and "JSON object" in params.stderr
