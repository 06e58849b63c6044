"""Looking at other processes through Linux /proc: whether one has exited, and a server's audit
writer (src/agentceiling/store/audit_writer.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from agentceiling.store.audit_writer import runs_a_writer


def process_gone(pid: int, timeout: float = 0.0) -> bool:
    """Whether ``pid`` has exited (gone, or a zombie nobody reaped yet), waiting up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/{pid}/status") as f:
                if "\nState:\tZ" in f.read():
                    return True
        except (FileNotFoundError, ProcessLookupError):  # gone, perhaps reaped while being read
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def audit_writer_pids(parent: int, timeout: float = 10.0) -> list[int]:
    """The audit writer processes started by ``parent``, as soon as there is one (waiting up to
    ``timeout``; [] if none came)."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue  # it ended meanwhile
            if ppid == parent and runs_a_writer(cmdline):
                found.append(int(entry))
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)
