"""Audit log append throughput: group commit vs. one fsync per record.

    .venv/bin/python bench/audit_append.py [--seconds 2] [--repeat 2] [--dir DIR] [--threads 1,16,64]

For each thread count, N threads call ``AuditLog.append`` (fsync on) in a loop for ``--seconds``;
the baseline, measured in the same run on the same filesystem, is the naive design: a mutex around
"build the chained record, os.write, os.fdatasync" per record.  Both produce the same file format.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentceiling.store.audit_log import GENESIS_HASH, AuditLog, verify

DECISION: dict[str, Any] = {
    "decision_id": "0b9f6c1e-6f1d-4c1e-9d1a-3e5f2a7b8c90",
    "code": "OK",
    "allowed": True,
    "namespace": "team-a/",
    "path": "secret/data/payments/stripe",
    "operation": "read",
    "entity_id": "5f0c2a1e-1111-2222-3333-444455556666",
    "actor_entity_id": "7a8b9c0d-aaaa-bbbb-cccc-ddddeeeeffff",
    "registration_id": "reg-agent-42",
    "policies": ["default", "agents-read-payments"],
    "token_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "metadata": {
        "jwt_unique_id": "jti-8c1d",
        "jwt_issuer": "https://idp.example.com",
        "jwt_audience_claim": ["vault"],
        "jwt_authorization_details": [{"type": "vault_secret", "paths": ["secret/data/payments/*"]}],
        "jwt_transaction_claim": "txn-77",
        "actor_entity_id": "7a8b9c0d-aaaa-bbbb-cccc-ddddeeeeffff",
        "actor_entity_name": "billing-agent",
    },
}


class NaiveLog:
    """One write + one fdatasync per record, serialized by a mutex."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._lock = threading.Lock()
        self._seq = 0
        self._hash = GENESIS_HASH

    def append(self, decision: dict[str, Any]) -> None:
        with self._lock:
            rec: dict[str, Any] = {
                "decision": decision,
                "prev_hash": self._hash,
                "seq": self._seq + 1,
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            body = json.dumps(rec, sort_keys=True, separators=(",", ":"))
            rec["hash"] = hashlib.sha256(body.encode()).hexdigest()
            os.write(self._fd, json.dumps(rec, sort_keys=True, separators=(",", ":")).encode() + b"\n")
            os.fdatasync(self._fd)
            self._seq += 1
            self._hash = rec["hash"]

    def close(self) -> None:
        os.close(self._fd)


def run(append: Callable[[dict[str, Any]], object], threads: int, seconds: float) -> float:
    counts = [0] * threads
    start_evt = threading.Event()
    deadline = 0.0

    def worker(i: int) -> None:
        start_evt.wait()
        n = 0
        while time.perf_counter() < deadline:
            append(DECISION)
            n += 1
        counts[i] = n

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    start_evt.set()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--dir", type=Path, default=None, help="directory on the filesystem to test")
    ap.add_argument("--threads", default="1,16,64")
    ap.add_argument("--repeat", type=int, default=2, help="runs per design (best is reported)")
    args = ap.parse_args()
    thread_counts = [int(x) for x in args.threads.split(",")]
    root = Path(tempfile.mkdtemp(prefix="audit-bench-", dir=args.dir))
    try:
        print(f"fsync on, best of {args.repeat} x {args.seconds:g}s runs, files in {root}")
        print(f"{'threads':>7} {'group commit/s':>15} {'avg batch':>9} {'1 fsync/record/s':>17} {'ratio':>6}")
        for n in thread_counts:
            group = base = 0.0
            batch = 0.0
            for r in range(args.repeat):  # alternate the two designs; keep each one's best run
                path = root / f"group-{n}-{r}" / "audit.log"
                with AuditLog.open(path, fsync=True) as alog:
                    rate = run(alog.append, n, args.seconds)
                    stats = alog.stats
                check = verify(path)
                assert check.ok, check
                if rate > group:
                    group, batch = rate, stats["records"] / max(1, stats["batches"])
                naive = NaiveLog(root / f"naive-{n}-{r}.log")
                try:
                    base = max(base, run(naive.append, n, args.seconds))
                finally:
                    naive.close()
            print(f"{n:>7} {group:>15,.0f} {batch:>9.1f} {base:>17,.0f} {group / base:>5.1f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
