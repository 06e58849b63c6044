"""Tests for the file audit log (real files, real threads, real processes, real I/O errors)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import jwt
import pytest

from agentceiling.store.audit_log import (
    GENESIS_HASH,
    ROTATED_EVENT,
    AuditLog,
    AuditLogCorrupt,
    AuditLogLocked,
    AuditReceipt,
    AuditUnavailable,
    format_record,
    iter_records,
    segment_paths,
    tail,
    verify,
    verify_chain,
)

pytestmark = pytest.mark.timeout(60)

TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def decision(i: int = 0, **overrides: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "decision_id": f"dec-{i}",
        "code": "OK" if i % 3 else "PERMISSION_DENIED",
        "allowed": bool(i % 3),
        "namespace": "team-a/",
        "path": f"secret/data/app/{i}",
        "operation": "read",
        "entity_id": "ent-1",
        "actor_entity_id": "ent-agent",
        "registration_id": "reg-1",
        "policies": ["default", "agents"],
        "token_sha256": hashlib.sha256(f"tok{i}".encode()).hexdigest(),
        "metadata": {
            "jwt_unique_id": f"jti-{i}",
            "jwt_issuer": "https://idp.example.com",
            "jwt_audience_claim": ["vault"],
            "jwt_authorization_details": [{"type": "vault_secret", "paths": ["secret/data/app/*"]}],
            "jwt_transaction_claim": "txn-1",
            "actor_entity_id": "ent-agent",
            "actor_entity_name": "billing-agent",
        },
    }
    d.update(overrides)
    return d


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def make_log(path: Path, n: int) -> list[AuditReceipt]:
    with AuditLog.open(path) as alog:
        return [alog.append(decision(i)) for i in range(n)]


def records(path: Path) -> list[dict[str, Any]]:
    return list(iter_records(path))


def run_threads(n: int, target: Any) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "thread hung"


# --------------------------------------------------------------------------------------------------
# Format, durability, permissions
# --------------------------------------------------------------------------------------------------


def test_record_format_is_canonical_and_chained(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    receipts = make_log(path, 3)
    raw = lines(path)
    assert len(raw) == 3
    prev = GENESIS_HASH
    for i, line in enumerate(raw):
        rec = json.loads(line)
        assert set(rec) == {"decision", "hash", "prev_hash", "seq", "time"}
        assert line == (canonical(rec) + "\n").encode()  # independent oracle for the format
        assert rec["seq"] == i + 1
        assert TIME_RE.fullmatch(rec["time"])
        assert rec["prev_hash"] == prev
        body = {k: v for k, v in rec.items() if k != "hash"}
        assert rec["hash"] == hashlib.sha256(canonical(body).encode()).hexdigest()
        assert rec["decision"] == decision(i)
        assert receipts[i] == AuditReceipt(rec["seq"], rec["hash"])
        prev = rec["hash"]


def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    first = make_log(path, 3)
    with AuditLog.open(path) as alog:
        assert alog.recovered_torn_bytes == 0
        assert (alog.last_seq, alog.last_hash) == (3, first[-1].hash)
        r4 = alog.append(decision(4))
    assert r4.seq == 4
    assert records(path)[3]["prev_hash"] == first[-1].hash
    assert verify(path).ok and verify(path).records == 4


def test_permissions_and_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "audit" / "audit.log"
    with AuditLog.open(path) as alog:
        alog.append(decision())
        assert (tmp_path / "data" / "audit" / "audit.log.lock").read_text().strip() == str(os.getpid())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.with_name("audit.log.lock").stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    path.chmod(0o644)
    AuditLog.open(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --------------------------------------------------------------------------------------------------
# Concurrency / group commit / close
# --------------------------------------------------------------------------------------------------


def test_concurrent_appends_are_contiguous_and_group_committed(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    n_threads, per_thread = 32, 200
    got: list[list[AuditReceipt]] = [[] for _ in range(n_threads)]
    barrier = threading.Barrier(n_threads)
    with AuditLog.open(path) as alog:

        def worker(t: int) -> None:
            barrier.wait()
            for i in range(per_thread):
                got[t].append(alog.append(decision(t * per_thread + i)))

        run_threads(n_threads, worker)
        stats = alog.stats
    receipts = [r for rs in got for r in rs]
    total = n_threads * per_thread
    assert len(set(receipts)) == total
    assert sorted(r.seq for r in receipts) == list(range(1, total + 1))
    for rs in got:  # each thread's own appends are ordered
        assert [r.seq for r in rs] == sorted(r.seq for r in rs)
    by_seq = {rec["seq"]: rec for rec in records(path)}
    assert all(by_seq[r.seq]["hash"] == r.hash for r in receipts)
    assert sorted(rec["decision"]["decision_id"] for rec in by_seq.values()) == sorted(
        f"dec-{i}" for i in range(total)
    )
    result = verify(path)
    assert (result.ok, result.records, result.first_bad_seq, result.problem) == (True, total, None, "")
    assert (result.first_seq, result.last_hash) == (1, by_seq[total]["hash"])
    assert stats["records"] == total
    assert stats["batches"] < total / 4, stats  # group commit actually grouped


def test_submit_futures_and_close_drains(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    alog = AuditLog.open(path)
    futures: list[Future[AuditReceipt]] = [alog.submit(decision(i)) for i in range(300)]
    alog.close()
    assert [f.result(0).seq for f in futures] == list(range(1, 301))
    alog.close()  # idempotent
    with pytest.raises(AuditUnavailable) as exc:
        alog.append(decision())
    assert exc.value.code == "UNAVAILABLE"
    assert verify(path).records == 300


def test_context_manager_and_no_fsync_mode(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path, fsync=False, max_batch=7, max_delay=0) as alog:
        futures = [alog.submit(decision(i)) for i in range(50)]
        assert [f.result(10).seq for f in futures] == list(range(1, 51))
    assert alog.closed
    assert verify(path).ok


# --------------------------------------------------------------------------------------------------
# Torn tail recovery
# --------------------------------------------------------------------------------------------------


def test_torn_last_line_is_truncated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    receipts = make_log(path, 5)
    good = path.read_bytes()
    partial = lines(path)[2][:57]  # a crash in the middle of writing record 6
    with path.open("ab") as f:
        f.write(partial)
    assert not verify(path).ok
    with AuditLog.open(path) as alog:
        assert alog.recovered_torn_bytes == len(partial)
        assert path.read_bytes() == good
        assert (alog.last_seq, alog.last_hash) == (5, receipts[-1].hash)
        assert alog.append(decision(6)).seq == 6
    assert verify(path).ok and verify(path).records == 6


def test_unparsable_newline_terminated_last_line_is_torn(tmp_path: Path) -> None:
    # e.g. the data blocks of an extended file read back as zeros after a power loss
    path = tmp_path / "audit.log"
    make_log(path, 2)
    garbage = b"\x00" * 300 + b"\n" + b"\x00" * 100
    with path.open("ab") as f:
        f.write(garbage)
    with AuditLog.open(path) as alog:
        assert alog.recovered_torn_bytes == len(garbage)
        assert alog.append(decision()).seq == 3
    assert verify(path).ok


def test_torn_only_line_recovers_to_empty(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(b'{"decision":{"allo')
    with AuditLog.open(path) as alog:
        assert alog.recovered_torn_bytes == 18
        assert alog.append(decision()).seq == 1
    assert records(path)[0]["prev_hash"] == GENESIS_HASH


def test_a_complete_last_line_that_is_not_json_is_corruption_not_a_torn_write(tmp_path: Path) -> None:
    # A crash leaves an incomplete line (or NUL blocks); a whole newline-terminated line of text was
    # written on purpose: truncating it would destroy data.
    path = tmp_path / "audit.log"
    make_log(path, 3)
    with path.open("ab") as f:
        f.write(b"an operator's note\n")
    path.chmod(0o640)
    before = path.read_bytes()
    with pytest.raises(AuditLogCorrupt, match=r"line 4 \(offset \d+\) is not a record \(not JSON\)"):
        AuditLog.open(path)
    assert path.read_bytes() == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize(
    "content",
    [b"shopping list\n- milk\n", b"no newline at all", b"\n", b"# notes\n" + b"x" * 100_000, b'{"a": 1}\n'],
)
def test_a_file_that_is_not_an_audit_log_is_refused_before_anything_changes(tmp_path: Path, content: bytes) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(content)
    notes.chmod(0o644)
    with pytest.raises(AuditLogCorrupt, match=r"notes\.txt.*refusing to open it"):
        AuditLog.open(notes)
    assert notes.read_bytes() == content
    assert stat.S_IMODE(notes.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # no lock file left behind


def test_an_incomplete_last_line_that_is_not_the_start_of_a_record_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    make_log(path, 2)
    with path.open("ab") as f:
        f.write(b"appended by hand")
    before = path.read_bytes()
    with pytest.raises(AuditLogCorrupt, match=r"line 3 .*incomplete, and not the start of one"):
        AuditLog.open(path)
    assert path.read_bytes() == before


def test_a_failed_open_keeps_a_lock_file_that_was_there(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    make_log(path, 1)
    lock = path.with_name("audit.log.lock")
    assert lock.exists()
    with path.open("ab") as f:
        f.write(b"not json\n")
    with pytest.raises(AuditLogCorrupt):
        AuditLog.open(path)
    assert lock.exists()


def test_corrupt_last_record_refuses_to_open_and_leaves_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    make_log(path, 3)
    raw = lines(path)
    raw[-1] = raw[-1].replace(b'"read"', b'"write"')  # edited, still valid JSON
    path.write_bytes(b"".join(raw))
    before = path.read_bytes()
    with pytest.raises(AuditLogCorrupt, match="hash mismatch"):
        AuditLog.open(path)
    assert path.read_bytes() == before
    AuditLog.open(tmp_path / "other.log").close()  # the lock was released despite the error
    with pytest.raises(AuditLogCorrupt):
        AuditLog.open(path)


def _nest(line: bytes, depth: int) -> bytes:
    """``line`` with its decision's path replaced by arrays nested ``depth`` deep: still JSON."""
    nested = b"[" * depth + b"]" * depth
    return re.sub(rb'"path":"[^"]*"', lambda _: b'"path":' + nested, line, count=1)


#: JSON nested deeper than json.loads can parse; just within what it can parse (but not always what
#: json.dumps or repr can then handle); far deeper than any record, yet easy to parse.
DEPTHS = [200_000, sys.getrecursionlimit() - 30, 300]


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("where", ["last line", "first line", "before NUL debris"])
def test_a_deeply_nested_line_is_a_damaged_log_not_a_crash_on_open(tmp_path: Path, where: str, depth: int) -> None:
    path = tmp_path / "audit.log"
    make_log(path, 3)
    raw = lines(path)
    if where == "last line":
        raw[-1] = _nest(raw[-1], depth)
        expected = r"line 3 \(offset \d+\) is not a record \(not JSON\)"
    elif where == "first line":
        raw[0] = _nest(raw[0], depth)
        expected = "the first line is not a record"
    else:
        raw[-1] = _nest(raw[-1], depth)
        raw.append(b"\x00" * 50 + b"\n")
        expected = "the last two lines are not JSON"
    path.write_bytes(b"".join(raw))
    before = path.read_bytes()
    with pytest.raises(AuditLogCorrupt, match=expected):
        AuditLog.open(path)
    assert path.read_bytes() == before


# --------------------------------------------------------------------------------------------------
# verify()
# --------------------------------------------------------------------------------------------------


def _tamper(tmp_path: Path, edit: Any) -> tuple[bool, int | None, int, str]:
    path = tmp_path / "audit.log"
    if not path.exists():
        make_log(path, 10)
    raw = lines(path)
    out = tmp_path / "tampered.log"
    out.write_bytes(b"".join(edit(list(raw))))
    res = verify(out)
    return res.ok, res.first_bad_seq, res.records, res.problem


def _rehash(line: bytes, **changes: Any) -> bytes:
    rec = json.loads(line)
    rec.update(changes)
    rec.pop("hash")
    rec["hash"] = hashlib.sha256(canonical(rec).encode()).hexdigest()
    return (canonical(rec) + "\n").encode()


def test_verify_ok_and_empty(tmp_path: Path) -> None:
    assert _tamper(tmp_path, lambda r: r) == (True, None, 10, "")
    (tmp_path / "empty.log").write_bytes(b"")
    assert verify(tmp_path / "empty.log").ok


def test_verify_detects_edit(tmp_path: Path) -> None:
    def edit(r: list[bytes]) -> list[bytes]:
        r[4] = r[4].replace(b'"allowed":true', b'"allowed":false')
        assert r[4] != lines(tmp_path / "audit.log")[4]
        return r

    ok, bad, good, problem = _tamper(tmp_path, edit)
    assert (ok, bad, good) == (False, 5, 4) and "hash mismatch" in problem

    # an editor who also recomputes the edited record's hash breaks the next link
    ok, bad, _, problem = _tamper(tmp_path, lambda r: [*r[:4], _rehash(r[4], allowed=True), *r[5:]])
    assert (ok, bad) == (False, 6) and "prev_hash" in problem

    # reformatting without changing content is an edit of the bytes
    ok, bad, _, problem = _tamper(tmp_path, lambda r: [*r[:2], r[2].replace(b'"seq":', b'"seq": '), *r[3:]])
    assert (ok, bad) == (False, 3) and "canonical" in problem


def test_verify_detects_removal(tmp_path: Path) -> None:
    ok, bad, good, problem = _tamper(tmp_path, lambda r: r[:4] + r[5:])
    assert (ok, bad, good) == (False, 5, 4) and "removed" in problem
    ok, bad, good, problem = _tamper(tmp_path, lambda r: r[1:])
    assert (ok, bad, good) == (False, 1, 0) and "first record" in problem
    # removal hidden by renumbering: the renumbered records' hashes no longer match
    ok, bad, _, _ = _tamper(tmp_path, lambda r: [*r[:4], *(_rehash(x, seq=i + 5) for i, x in enumerate(r[5:]))])
    assert (ok, bad) == (False, 5)
    # Dropping records from the *end* leaves a valid, shorter chain: only an external anchor
    # (a kept receipt) can show it.
    assert _tamper(tmp_path, lambda r: r[:7])[:3] == (True, None, 7)


def test_verify_detects_reorder_and_insertion(tmp_path: Path) -> None:
    ok, bad, _, problem = _tamper(tmp_path, lambda r: [*r[:3], r[4], r[3], *r[5:]])
    assert (ok, bad) == (False, 4) and "seq jumps" in problem
    ok, bad, _, problem = _tamper(tmp_path, lambda r: [*r[:3], r[2], *r[3:]])  # duplicated
    assert (ok, bad) == (False, 4) and "reordered or inserted" in problem
    # a forged record with a correct hash and link, inserted before the real seq 4
    forged = _rehash(lines(tmp_path / "audit.log")[3], decision=decision(99, allowed=True))
    ok, bad, _, problem = _tamper(tmp_path, lambda r: [*r[:3], forged, *r[3:]])
    assert (ok, bad) == (False, 5) and "reordered or inserted" in problem


def test_verify_detects_torn_lines_and_bad_first_record(tmp_path: Path) -> None:
    ok, bad, _, problem = _tamper(tmp_path, lambda r: [*r[:5], r[5][:40] + b"\n", *r[6:]])
    assert (ok, bad) == (False, 6) and "not valid JSON" in problem
    ok, bad, _, problem = _tamper(tmp_path, lambda r: [*r[:9], r[9][:-20]])
    assert (ok, bad) == (False, 10) and "torn" in problem
    ok, bad, _, problem = _tamper(tmp_path, lambda r: [_rehash(r[0], prev_hash="ab" * 32), *r[1:]])
    assert (ok, bad) == (False, 1) and "zeros" in problem
    ok, bad, _, problem = _tamper(tmp_path, lambda r: [b'{"seq":1}\n', *r[1:]])
    assert (ok, bad) == (False, 1) and "missing" in problem


@pytest.mark.parametrize("depth", DEPTHS)
def test_a_deeply_nested_line_is_reported_as_invalid_json_by_every_reader(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "audit.log"
    make_log(path, 4)
    raw = lines(path)
    path.write_bytes(b"".join([raw[0], _nest(raw[1], depth), *raw[2:]]))
    result = verify(path)
    assert (result.ok, result.first_bad_seq) == (False, 2) and "not valid JSON" in result.problem
    chain = verify_chain(path)
    assert not chain.ok and chain.records == 1 and "not valid JSON" in chain.problem
    it = iter_records(path)
    assert next(it)["seq"] == 1
    with pytest.raises(AuditLogCorrupt, match=r"line at offset \d+ is not valid JSON"):
        next(it)
    with pytest.raises(AuditLogCorrupt, match="not valid JSON"):
        tail(path, 4)

    cli = [sys.executable, "-m", "agentceiling.cli", "audit"]
    checked = subprocess.run([*cli, "verify", "--file", str(path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 1 and "Traceback" not in checked.stderr, checked.stderr[-2000:]
    assert checked.stdout.startswith("FAILED at record 2: audit.log: line 2 (offset ")
    assert "not valid JSON" in checked.stdout
    for args in (["-n", "4"], ["--json", "-n", "4"]):
        shown = subprocess.run([*cli, "tail", *args, "--file", str(path)], capture_output=True, text=True, timeout=60)
        assert shown.returncode == 1 and "Traceback" not in shown.stderr, shown.stderr[-2000:]
        assert shown.stderr.startswith(f"agentceiling: {path}: line at offset ") and "not valid JSON" in shown.stderr


# --------------------------------------------------------------------------------------------------
# Failures: real I/O errors -> AuditUnavailable for every waiter, no hang
# --------------------------------------------------------------------------------------------------


def test_dev_full_makes_every_append_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.symlink_to("/dev/full")  # every write fails with ENOSPC
    alog = AuditLog.open(path)
    errors: list[BaseException | None] = [None] * 32
    barrier = threading.Barrier(32)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            alog.append(decision(i))
        except BaseException as exc:
            errors[i] = exc

    run_threads(32, worker)
    assert all(isinstance(e, AuditUnavailable) for e in errors), errors
    assert "No space left on device" in str(errors[0])
    assert alog.failed and alog.last_seq == 0
    with pytest.raises(AuditUnavailable):
        alog.append(decision())
    fut = alog.submit(decision())
    assert isinstance(fut.exception(5), AuditUnavailable)
    alog.close()
    alog.close()


def test_write_failure_mid_stream_keeps_only_acknowledged_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    alog = AuditLog.open(path)
    acked = [alog.append(decision(i)) for i in range(10)]
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, alog._fd)  # the disk "fills up" underneath the open log
    finally:
        os.close(full)
    futures = [alog.submit(decision(i)) for i in range(100)]
    for f in futures:
        assert isinstance(f.exception(10), AuditUnavailable)
    with pytest.raises(AuditUnavailable) as exc:
        alog.append(decision())
    assert exc.value.code == "UNAVAILABLE"
    alog.close()
    assert verify(path).records == 10 and verify(path).ok
    assert [r["hash"] for r in records(path)] == [r.hash for r in acked]
    with AuditLog.open(path) as again:
        assert again.append(decision()).seq == 11


def test_deleted_log_file_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path) as alog:
        alog.append(decision())
        path.unlink()
        with pytest.raises(AuditUnavailable, match="deleted"):
            alog.append(decision())
        assert alog.failed


# --------------------------------------------------------------------------------------------------
# Payload checks
# --------------------------------------------------------------------------------------------------

TOKEN = jwt.encode({"sub": "agent", "jti": "x"}, "k" * 32, algorithm="HS256")
UNSECURED = ".".join(  # alg "none": empty signature part
    [base64.urlsafe_b64encode(p).rstrip(b"=").decode() for p in (b'{"alg":"none"}', b'{"sub":"agent"}')] + [""]
)


@pytest.mark.parametrize(
    "payload",
    [
        decision(token=TOKEN),
        decision(metadata={"jwt_unique_id": "a", "nested": [{"x": f"Bearer {TOKEN}"}]}),
        decision(policies=["default", UNSECURED]),
        decision(metadata={TOKEN: "as a key"}),
    ],
    ids=["top", "nested-bearer", "unsecured-in-list", "key"],
)
def test_refuses_raw_tokens(tmp_path: Path, payload: dict[str, Any]) -> None:
    with AuditLog.open(tmp_path / "audit.log") as alog:
        with pytest.raises(ValueError, match="JWT") as exc:
            alog.append(payload)
        assert TOKEN not in str(exc.value) and UNSECURED not in str(exc.value)
        assert alog.last_seq == 0
        ok = decision(path="eyJ/monkeyJar.v1.2", metadata={"x": "a.b.c", "y": "eyJhbGciOiJIUzI1NiJ9"})
        assert alog.append(ok).seq == 1


def test_rejects_non_json_payloads(tmp_path: Path) -> None:
    with AuditLog.open(tmp_path / "audit.log") as alog:
        with pytest.raises(TypeError):
            alog.append(decision(metadata={1: "int key"}))
        with pytest.raises(ValueError):
            alog.append(decision(score=float("nan")))
        with pytest.raises(TypeError):
            alog.append(decision(when=object()))
        with pytest.raises(TypeError):
            alog.append(["not", "a", "dict"])  # type: ignore[arg-type]
        assert alog.append(decision()).seq == 1


# --------------------------------------------------------------------------------------------------
# Locking (a second process)
# --------------------------------------------------------------------------------------------------

OPEN_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from agentceiling.store.audit_log import AuditLog, AuditLogLocked
    try:
        AuditLog.open(Path(sys.argv[1])).close()
    except AuditLogLocked as exc:
        print(exc)
        sys.exit(3)
    """
)


def test_second_process_cannot_open(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path):
        child = subprocess.run([sys.executable, "-c", OPEN_CHILD, str(path)], capture_output=True, text=True,
                               timeout=30)
        assert child.returncode == 3, child.stderr
        assert child.stdout.strip() == f"audit log {path} is in use by another process (pid {os.getpid()})"
        with pytest.raises(AuditLogLocked, match="already open in this process"):
            AuditLog.open(path)
    child = subprocess.run([sys.executable, "-c", OPEN_CHILD, str(path)], capture_output=True, text=True,
                           timeout=30)
    assert child.returncode == 0, child.stdout + child.stderr


# --------------------------------------------------------------------------------------------------
# Crash: SIGKILL a writer process mid-burst; every acknowledged record must survive
# --------------------------------------------------------------------------------------------------

WRITER_CHILD = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from agentceiling.store.audit_log import AuditLog
    alog = AuditLog.open(Path(sys.argv[1]), rotate_bytes=int(sys.argv[2]))
    out = threading.Lock()
    def work(t):
        i = 0
        while True:
            r = alog.append({"decision_id": f"{t}-{i}", "code": "OK", "allowed": True, "path": "p" * 300})
            with out:
                sys.stdout.write(f"{r.seq} {r.hash}\\n")
                sys.stdout.flush()
            i += 1
    for t in range(16):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()
    """
)


@pytest.mark.parametrize("rotate_bytes", [0, 64 * 1024], ids=["one-file", "rotating"])
def test_sigkill_mid_burst_keeps_every_acknowledged_record(tmp_path: Path, rotate_bytes: int) -> None:
    path = tmp_path / "audit.log"
    make_log(path, 5)  # the child continues an existing chain
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER_CHILD, str(path), str(rotate_bytes)], stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    out: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while len(out) < 1500 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            out.append(line)
    finally:
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    out += rest.splitlines(keepends=True)
    acked = dict(
        (int(seq), h) for seq, h in (ln.decode().split() for ln in out if ln.endswith(b"\n"))
    )
    assert len(acked) >= 1000
    with AuditLog.open(path) as alog:  # the dead child's lock is gone; tail recovery runs
        assert alog.recovered_torn_bytes >= 0
        last = alog.last_seq
    assert last >= max(acked)
    chain = verify_chain(path)
    assert chain.ok and chain.first_seq == 1 and chain.records == last, chain
    assert (len(chain.files) > 5) == bool(rotate_bytes)  # ~400 bytes a record: a segment per ~160
    on_disk = {rec["seq"]: rec["hash"] for f in chain.files for rec in records(f)}
    missing = {seq: h for seq, h in acked.items() if on_disk.get(seq) != h}
    assert not missing


# --------------------------------------------------------------------------------------------------
# Reading: tail, follow, format
# --------------------------------------------------------------------------------------------------


def test_tail_seeks_from_the_end(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.touch()
    assert tail(path) == []
    make_log(path, 10)
    assert [r["seq"] for r in tail(path, 3)] == [8, 9, 10]
    assert [r["seq"] for r in tail(path, 50)] == list(range(1, 11))
    assert tail(path, 0) == []
    with path.open("ab") as f:
        f.write(b'{"decision":')  # an incomplete line is not a record yet
    assert [r["seq"] for r in tail(path, 2)] == [9, 10]


def test_tail_with_records_larger_than_the_read_chunk(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path) as alog:
        for i in range(6):
            alog.append(decision(i, path="x" * (50_000 * (i % 3 + 1))))
    assert [r["seq"] for r in tail(path, 4)] == [3, 4, 5, 6]
    assert len(lines(path)[0]) < 64 * 1024 < len(lines(path)[1])


def _follow(path: Path, stop: threading.Event, **kw: Any) -> tuple[threading.Thread, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def run() -> None:
        seen.extend(iter_records(path, follow=True, poll_interval=0.01, stop=stop, **kw))

    t = threading.Thread(target=run)
    t.start()
    return t, seen


def _wait_for(cond: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_follow_sees_new_records_and_stops(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    make_log(path, 4)
    stop = threading.Event()
    follower, seen = _follow(path, stop, last=2)
    with AuditLog.open(path) as alog:
        for i in range(5):
            alog.append(decision(i))
        _wait_for(lambda: len(seen) >= 7)
    stop.set()
    follower.join(5)
    assert not follower.is_alive()
    assert [r["seq"] for r in seen] == list(range(3, 10))


def test_follow_waits_for_partial_lines_and_survives_torn_truncation(tmp_path: Path) -> None:
    src = tmp_path / "src.log"
    make_log(src, 3)
    r1, r2, r3 = lines(src)
    path = tmp_path / "audit.log"
    path.write_bytes(r1 + r2[:30])
    stop = threading.Event()
    follower, seen = _follow(path, stop)
    _wait_for(lambda: len(seen) == 1)
    time.sleep(0.05)
    assert len(seen) == 1  # the half-written record is not yielded
    with path.open("r+b") as f:  # a crash + reopen truncates the torn line ...
        f.truncate(len(r1))
    time.sleep(0.05)
    with path.open("ab") as f:  # ... and the writer continues
        f.write(r2[:10])
        f.flush()
        time.sleep(0.05)
        f.write(r2[10:] + r3)
    _wait_for(lambda: len(seen) == 3)
    stop.set()
    follower.join(5)
    assert [r["seq"] for r in seen] == [1, 2, 3]


def test_format_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path) as alog:
        alog.append(decision(1, path="secret/\x1b[31mred\nline"))
        alog.append(decision(3, namespace=""))
    first, second = (format_record(r) for r in records(path))
    t = records(path)[0]["time"]
    assert first.startswith(f"{t} #1 ALLOWED OK ns=team-a/ read secret/")
    assert "entity=ent-1" in first and "actor=ent-agent" in first and first.endswith("decision=dec-1")
    assert "\x1b" not in first and "\n" not in first and "\\x1b[31mred\\nline" in first
    assert " REFUSED PERMISSION_DENIED ns=(root) " in second
    assert format_record({}).startswith("- #- ?")


def test_iter_records_rejects_garbage_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    make_log(path, 2)
    with path.open("ab") as f:
        f.write(b"not json\n")
    it = iter_records(path)
    assert [next(it)["seq"], next(it)["seq"]] == [1, 2]
    with pytest.raises(AuditLogCorrupt, match="not valid JSON"):
        next(it)


# --------------------------------------------------------------------------------------------------
# Rotation: segments, the marker, the chain across files
# --------------------------------------------------------------------------------------------------


def _rotate(alog: AuditLog) -> None:
    before = alog.stats["rotations"]
    alog.request_rotation()
    _wait_for(lambda: alog.stats["rotations"] == before + 1)


def test_rotation_moves_records_to_a_segment_and_chains_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path) as alog:
        before = [alog.append(decision(i)) for i in range(5)]
        _rotate(alog)
        after = [alog.append(decision(i)) for i in range(5, 8)]
    segment = tmp_path / "audit.log.000000000001"
    assert segment_paths(path) == [segment]
    (tmp_path / "audit.log.1234567890123").write_text("")  # past 12 digits the name just grows
    (tmp_path / "audit.log.12345").write_text("")  # not a segment name
    (tmp_path / "audit.log.000000000001x").write_text("")
    assert segment_paths(path) == [segment, tmp_path / "audit.log.1234567890123"]
    for stray in ("audit.log.1234567890123", "audit.log.12345", "audit.log.000000000001x"):
        (tmp_path / stray).unlink()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [r["seq"] for r in records(segment)] == [1, 2, 3, 4, 5]
    active = records(path)
    marker = active[0]
    assert marker["seq"] == 6 and marker["prev_hash"] == before[-1].hash
    assert marker["decision"] == {
        "event": ROTATED_EVENT,
        "previous_file": "audit.log.000000000001",
        "previous_first_seq": 1,
        "previous_last_seq": 5,
    }
    assert [r.seq for r in after] == [7, 8, 9] and after[0] != marker
    assert active[1]["prev_hash"] == marker["hash"]
    # Each file verifies on its own (the active one from its marker), and the chain across them.
    assert verify(segment).ok and verify(segment).records == 5
    alone = verify(path)
    assert alone.ok and (alone.first_seq, alone.records, alone.start_hash) == (6, 4, before[-1].hash)
    chain = verify_chain(path)
    assert chain.ok and chain.records == 9 and chain.files == (segment, path) and chain.first_seq == 1
    # Reopening continues after the marker; tail reads back into the segment.
    with AuditLog.open(path) as alog:
        assert alog.last_seq == 9
        alog.append(decision(9))
    assert [r["seq"] for r in tail(path, 7)] == [4, 5, 6, 7, 8, 9, 10]
    assert verify_chain(path).ok


def test_rotation_by_size_keeps_one_unbroken_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    one = len(canonical(decision(0))) + 200
    with AuditLog.open(path, rotate_bytes=3 * one) as alog:
        receipts = [alog.append(decision(i)) for i in range(40)]
    rotations = alog.stats["rotations"]  # after close: a size rotation may follow the last append
    assert rotations >= 8
    segments = segment_paths(path)
    assert len(segments) == rotations
    assert all(s.stat().st_size >= 3 * one - one for s in segments)
    chain = verify_chain(path)
    assert chain.ok, chain.problem
    assert chain.records == 40 + rotations  # every decision, plus one marker per rotation
    decisions = [r["decision"] for f in chain.files for r in records(f) if "event" not in r["decision"]]
    assert [d["decision_id"] for d in decisions] == [f"dec-{i}" for i in range(40)]
    by_seq = {r["seq"]: r for f in chain.files for r in records(f)}
    assert all(by_seq[r.seq]["hash"] == r.hash for r in receipts)


def test_rotating_an_empty_log_does_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path) as alog:
        alog.request_rotation()
        alog.append(decision(0))
    assert segment_paths(path) == [] and [r["seq"] for r in records(path)] == [1]


def _three_segments_and_one(alog: AuditLog) -> None:
    """Records 1-4, 5-8 and 9-12 (each group closed by a rotation and its marker), then one more:
    segments ...001, ...005 and ...010 and an active file."""
    for k in range(3):
        for i in range(4):
            alog.append(decision(10 * k + i))
        _rotate(alog)
    alog.append(decision(99))


def test_chain_verification_detects_tampering_across_segments(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path) as alog:
        _three_segments_and_one(alog)
    segs = segment_paths(path)
    assert [s.name for s in segs] == ["audit.log.000000000001", "audit.log.000000000005", "audit.log.000000000010"]
    assert verify_chain(path).ok

    # A segment removed from the middle: the next file does not start where the previous ended.
    hidden = segs[1].with_name("elsewhere")
    segs[1].rename(hidden)
    result = verify_chain(path)
    assert not result.ok and "audit.log.000000000010 starts at seq 10" in result.problem
    hidden.rename(segs[1])

    # The head of the active file cut (marker and all): the file alone no longer verifies.
    original = path.read_bytes()
    path.write_bytes(b"".join(lines(path)[1:]))
    result = verify_chain(path)
    assert not result.ok and "marker of a rotation" in result.problem
    path.write_bytes(original)

    # A record edited inside an old segment.
    seg_bytes = segs[0].read_bytes()
    segs[0].write_bytes(seg_bytes.replace(b"secret/data/app/2", b"secret/data/app/X"))
    result = verify_chain(path)
    assert not result.ok and result.problem.startswith("audit.log.000000000001:")
    segs[0].write_bytes(seg_bytes)

    # A whole segment swapped for a self-consistent forgery that does not link up.
    forged = tmp_path / "forged"
    forged.mkdir()
    with AuditLog.open(forged / "audit.log") as other:
        for i in range(4):
            other.append(decision(i))
    segs[0].write_bytes((forged / "audit.log").read_bytes())
    result = verify_chain(path)
    assert not result.ok and "not chained" in result.problem
    segs[0].write_bytes(seg_bytes)

    # The oldest segments archived away: still a valid chain, starting later (and said so).
    segs[0].unlink()
    result = verify_chain(path)
    assert result.ok and result.first_seq == 5 and result.records == 13 - 4 + 3
    # ... and a failure in what is now the oldest file is located by its own seq.
    edited = segs[1].read_bytes().replace(b"secret/data/app/11", b"secret/data/app/XX")
    segs[1].write_bytes(edited)
    result = verify_chain(path)
    assert not result.ok and result.first_seq == 5
    assert result.first_seq + result.records == 7  # seq 5 is the marker, 6 is decision 10, 7 decision 11


def test_crash_between_rename_and_marker_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    receipts = make_log(path, 3)
    path.rename(tmp_path / "audit.log.000000000001")  # what a rotation had done when it crashed
    with AuditLog.open(path) as alog:
        assert alog.last_seq == 4  # the marker
        alog.append(decision(3))
    marker = records(path)[0]
    assert marker["prev_hash"] == receipts[-1].hash and marker["decision"]["previous_last_seq"] == 3
    chain = verify_chain(path)
    assert chain.ok and chain.records == 5


def test_a_torn_segment_refuses_to_continue(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    make_log(path, 2)
    segment = tmp_path / "audit.log.000000000001"
    path.rename(segment)
    segment.write_bytes(segment.read_bytes()[:-5])
    with pytest.raises(AuditLogCorrupt, match="empty or torn"):
        AuditLog.open(path)


def test_follow_continues_across_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    stop = threading.Event()
    with AuditLog.open(path) as alog:
        alog.append(decision(0))
        follower, seen = _follow(path, stop)
        _wait_for(lambda: len(seen) == 1)
        alog.append(decision(1))
        _rotate(alog)
        alog.append(decision(2))
        _wait_for(lambda: len(seen) == 4)
    stop.set()
    follower.join(5)
    assert [r["seq"] for r in seen] == [1, 2, 3, 4]
    assert seen[2]["decision"]["event"] == ROTATED_EVENT
    assert format_record(seen[2]).endswith(" #3 ROTATED: records 1-2 are in audit.log.000000000001")


class _Script(threading.Event):
    """A follower's stop event that runs the next action each time the follower waits on it (it has
    then read all there is and looked for a new file), and stops it once there are none left."""

    def __init__(self, *actions: Callable[[], None]) -> None:
        super().__init__()
        self._actions = list(actions)

    def wait(self, timeout: float | None = None) -> bool:
        if self._actions:
            self._actions.pop(0)()
        else:
            self.set()
        return self.is_set()


@pytest.mark.parametrize("last", [None, 0, 2])
def test_follow_reads_every_segment_when_the_log_rotates_several_times_between_looks(
    tmp_path: Path, last: int | None
) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path) as alog:
        for i in range(3):
            alog.append(decision(i))

        def three_rotations() -> None:  # the follower is at the end of the first file
            for k in range(3):
                for i in range(5):
                    alog.append(decision(10 * k + i))
                _rotate(alog)
            alog.append(decision(99))

        def two_more_in_the_middle_of_a_file() -> None:  # one segment holds a lone marker
            alog.append(decision(100))
            _rotate(alog)
            _rotate(alog)
            alog.append(decision(101))

        stop = _Script(three_rotations, two_more_in_the_middle_of_a_file)
        seen = [r["seq"] for r in iter_records(path, follow=True, poll_interval=60, stop=stop, last=last)]
        end = alog.last_seq
    assert len(segment_paths(path)) == 5
    first = {None: 1, 0: 4, 2: 2}[last]
    assert seen == list(range(first, end + 1))


def test_follow_skips_a_segment_archived_before_it_was_read(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path) as alog:
        alog.append(decision(0))

        def rotate_and_archive() -> None:
            for k in range(3):
                alog.append(decision(k))
                _rotate(alog)
            segment_paths(path)[1].unlink()  # records 3-4 (the marker, then decision 1)

        stop = _Script(rotate_and_archive)
        seen = [r["seq"] for r in iter_records(path, follow=True, poll_interval=60, stop=stop)]
    assert seen == [1, 2, 5, 6, 7]


def test_audit_tail_follow_prints_every_record_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    cmd = [sys.executable, "-m", "agentceiling.cli", "audit", "tail", "--follow", "--json", "-n", "1"]
    with AuditLog.open(path) as alog:
        for i in range(3):
            alog.append(decision(i))
        follow = subprocess.Popen(
            [*cmd, "--file", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert follow.stdout is not None
            seen = [json.loads(follow.stdout.readline())["seq"]]  # so it is at the end of the file
            # Three rotations in a few milliseconds: usually all between two looks (every 0.2 s).
            for k in range(3):
                for i in range(5):
                    alog.append(decision(10 * k + i))
                _rotate(alog)
            end = alog.append(decision(99)).seq
            while seen[-1] < end:
                seen.append(json.loads(follow.stdout.readline())["seq"])
        finally:
            follow.send_signal(signal.SIGINT)
            try:
                follow.wait(10)
            except subprocess.TimeoutExpired:
                follow.kill()
                follow.wait()
    assert seen == list(range(3, end + 1))


def test_rotation_that_cannot_rename_keeps_appending(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path) as alog:
        alog.append(decision(0))
        (tmp_path / "audit.log.000000000001").mkdir()  # the segment's name is taken
        alog.request_rotation()
        receipt = alog.append(decision(1))
        _wait_for(lambda: "cannot rotate" in caplog.text)
        assert not alog.failed and alog.stats["rotations"] == 0
    assert receipt.seq == 2 and verify(path).ok and verify(path).records == 2


def test_concurrent_appends_through_size_rotations_stay_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    n_threads, per_thread = 16, 100
    got: list[list[AuditReceipt]] = [[] for _ in range(n_threads)]
    with AuditLog.open(path, rotate_bytes=16 * 1024) as alog:

        def worker(t: int) -> None:
            for i in range(per_thread):
                got[t].append(alog.append(decision(t * per_thread + i)))
                if t == 0 and i % 25 == 0:
                    alog.request_rotation()  # SIGHUP-style requests on top of the size limit

        run_threads(n_threads, worker)
    # Read after close: the writer may still rotate after the last acknowledged append (a size
    # rotation or a pending request is carried out between commits, and when idle).
    rotations = alog.stats["rotations"]
    chain = verify_chain(path)
    assert chain.ok, chain.problem
    assert rotations >= 10 and len(chain.files) == rotations + 1
    assert chain.records == n_threads * per_thread + rotations
    on_disk = {rec["seq"]: rec for f in chain.files for rec in records(f)}
    receipts = [r for rs in got for r in rs]
    assert all(on_disk[r.seq]["hash"] == r.hash for r in receipts)
    assert all("event" not in on_disk[r.seq]["decision"] for r in receipts)


class _Anchors(dict[int, str]):
    """Anchors (real ones) that run ``action`` when verification looks record ``at`` up: a way to
    act at a known point of the reading."""

    def __init__(self, anchors: dict[int, str], at: int, action: Callable[[], None]) -> None:
        super().__init__(anchors)
        self._at: int | None = at
        self._action = action

    def __contains__(self, seq: object) -> bool:
        if seq == self._at:
            self._at = None
            self._action()
        return super().__contains__(seq)


def test_verify_chain_is_not_fooled_by_rotations_while_it_reads(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path) as alog:
        receipts = [alog.append(decision(i)) for i in range(4)]
        _rotate(alog)  # records 1-4 in a segment; the active file starts with the marker (5)
        receipts += [alog.append(decision(i)) for i in range(4, 6)]

        def rotate_twice() -> None:  # while the segment is read, after the files were listed
            alog.append(decision(6))
            _rotate(alog)
            alog.append(decision(7))
            _rotate(alog)

        anchors = _Anchors({receipts[1].seq: receipts[1].hash}, at=receipts[3].seq, action=rotate_twice)
        result = verify_chain(path, anchors)
        # The active file as it was opened, to its end (records 5-8, a segment by now).
        assert result.ok and result.records == 8, result.problem
        assert verify_chain(path).records == alog.last_seq == 11


def test_verify_chain_still_reports_tampering_while_the_log_rotates(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path) as alog:
        _three_segments_and_one(alog)
        segs = segment_paths(path)
        assert [s.name for s in segs] == ["audit.log.000000000001", "audit.log.000000000005", "audit.log.000000000010"]
        segs[1].rename(tmp_path / "elsewhere")  # a segment removed from the middle
        anchors = _Anchors({4: records(segs[0])[-1]["hash"]}, at=12, action=lambda: _rotate(alog))
        result = verify_chain(path, anchors)  # rotates while the segment after the gap is read
        assert not result.ok and "audit.log.000000000010 starts at seq 10" in result.problem
        assert len(segment_paths(path)) == 3  # it did rotate
        # A torn last line that is not being written is reported at once.
        (tmp_path / "elsewhere").rename(segs[1])
        with path.open("ab") as f:
            f.write(b'{"decision":{"allo')
        t0 = time.monotonic()
        result = verify_chain(path)
        assert not result.ok and "torn last line" in result.problem
        assert time.monotonic() - t0 < 5


def test_verify_chain_lists_again_when_segments_are_archived_while_it_reads(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path) as alog:
        for k in range(3):
            for i in range(4):
                alog.append(decision(10 * k + i))
            _rotate(alog)
        segs = segment_paths(path)

        def archive_the_two_oldest() -> None:
            segs[0].unlink()
            segs[1].unlink()

        result = verify_chain(path, _Anchors({2: records(segs[0])[1]["hash"]}, at=3, action=archive_the_two_oldest))
        # The first look found the oldest segment (with the anchor) gone while it was read; the
        # second finds the chain starting at the oldest segment left, and the anchor archived.
        assert not result.ok and "archived" in result.problem and result.first_seq == 10
        assert verify_chain(path).ok and verify_chain(path).first_seq == 10


def test_verify_chain_holds_all_along_on_a_busy_log_that_rotates_all_the_time(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    stop = threading.Event()
    with AuditLog.open(path, rotate_bytes=16 * 1024, fsync=False) as alog:

        def writer(t: int) -> None:
            i = 0
            while not stop.is_set():
                alog.append(decision(1000 * t + i))
                i += 1

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(2)]
        for t in threads:
            t.start()
        try:
            _wait_for(lambda: alog.stats["rotations"] >= 3)
            results = [verify_chain(path) for _ in range(40)]
        finally:
            stop.set()
            for t in threads:
                t.join(30)
    assert [r.problem for r in results if not r.ok] == []
    assert [r.records for r in results] == sorted(r.records for r in results)
    assert verify_chain(path).ok


# --------------------------------------------------------------------------------------------------
# Anchors: what the chain alone cannot show (records removed from the end, a rewritten chain)
# --------------------------------------------------------------------------------------------------


def test_anchors_detect_truncation_and_a_rewritten_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path) as alog:
        receipts = [alog.append(decision(i)) for i in range(4)]
        _rotate(alog)
        receipts += [alog.append(decision(i)) for i in range(4, 8)]
    anchors = {receipts[2].seq: receipts[2].hash, receipts[-1].seq: receipts[-1].hash}
    ok = verify_chain(path, anchors)
    assert ok.ok and ok.records == 9

    # The last two records cut: the chain alone still verifies, the anchor does not.
    original = path.read_bytes()
    path.write_bytes(b"".join(lines(path)[:-2]))
    assert verify_chain(path).ok
    cut = verify_chain(path, anchors)
    assert not cut.ok and f"names record {receipts[-1].seq} but the chain ends at {receipts[-1].seq - 2}" in cut.problem
    path.write_bytes(original)

    # The whole history rewritten consistently (one record changed, every hash recomputed).
    forged_dir = tmp_path / "forged"
    forged_dir.mkdir()
    with AuditLog.open(forged_dir / "audit.log") as forger:
        for i in range(8):
            forger.append(decision(i, path="secret/data/other") if i == 2 else decision(i))
    forged = forged_dir / "audit.log"
    assert verify_chain(forged).ok
    rewritten = verify_chain(forged, {receipts[2].seq: receipts[2].hash})
    assert not rewritten.ok and "hash differs from the anchor" in rewritten.problem

    # An anchor in an archived segment cannot be checked: that fails too, saying why.
    segment_paths(path)[0].unlink()
    gone = verify_chain(path, {receipts[1].seq: receipts[1].hash})
    assert not gone.ok and "archived" in gone.problem


def test_audit_tail_follow_n_reads_back_into_segments_and_waits_for_the_active_file(tmp_path: Path) -> None:
    """`tail --follow -n N` starts with the same N records as `tail -n N` (into the newest
    segments: right after a rotation it showed only the marker), and with no active file beside the
    segments it waits for one instead of failing."""
    path = tmp_path / "audit.log"
    cmd = [sys.executable, "-m", "agentceiling.cli", "audit", "tail", "--follow", "--json", "-n", "3",
           "--file", str(path)]
    with AuditLog.open(path) as alog:
        for i in range(4):
            alog.append(decision(i))
        _rotate(alog)  # active file: the rotation marker only (seq 5)
    procs = []
    try:
        follow = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(follow)
        assert follow.stdout is not None
        assert [json.loads(follow.stdout.readline())["seq"] for _ in range(3)] == [3, 4, 5]
        with AuditLog.open(path) as alog:
            end = alog.append(decision(9)).seq
        assert json.loads(follow.stdout.readline())["seq"] == end == 6

        path.rename(tmp_path / "elsewhere")  # as between a rotation's rename and its new file
        waiting = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(waiting)
        assert waiting.stdout is not None
        assert [json.loads(waiting.stdout.readline())["seq"] for _ in range(3)] == [2, 3, 4]  # the segment's last
        time.sleep(0.5)
        assert waiting.poll() is None, waiting.stderr.read() if waiting.stderr else ""
        (tmp_path / "elsewhere").rename(path)
        assert [json.loads(waiting.stdout.readline())["seq"] for _ in range(2)] == [5, 6]
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
