"""The audit writer process (store/audit_writer.py): a real child process, real pipes, real files,
driven from a real asyncio event loop, and the single-threaded ``AuditLog.write_group`` it uses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from process_support import process_gone

from agentceiling.store.audit_log import (
    AuditLog,
    AuditLogCorrupt,
    AuditLogLocked,
    AuditReceipt,
    AuditUnavailable,
    iter_records,
    segment_paths,
    verify,
    verify_chain,
)
from agentceiling.store.audit_writer import AuditWriter


def record(i: int, pad: int = 0) -> str:
    return json.dumps({"decision_id": f"d-{i:06d}", "pad": "x" * pad}, sort_keys=True, separators=(",", ":"))


def ids(path: Path) -> list[str]:
    return [r["decision"].get("decision_id", r["decision"].get("event")) for r in iter_records(path)]


class Loop:
    """An event loop in the test's thread, bound to a writer like the server's."""

    def __init__(self, writer: AuditWriter) -> None:
        self.loop = asyncio.new_event_loop()
        self.writer = writer
        self.failures = 0
        self.recoveries = 0
        writer.bind(self.loop, self._failed, self._recovered)

    def _failed(self) -> None:
        self.failures += 1

    def _recovered(self) -> None:
        self.recoveries += 1

    def write_all(self, records: list[str]) -> list[AuditReceipt | BaseException]:
        async def run() -> list[Any]:
            return await asyncio.gather(*(self.writer.write(r) for r in records), return_exceptions=True)

        return self.loop.run_until_complete(run())

    def close(self) -> None:
        self.writer.close(10)
        self.loop.close()


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.log"


@pytest.fixture
def started(log_path: Path) -> Iterator[Loop]:
    loop = Loop(AuditWriter.start(log_path, timeout=5))
    try:
        yield loop
    finally:
        with contextlib.suppress(Exception):
            os.kill(loop.writer.pid, signal.SIGCONT)
        loop.close()


def test_records_written_concurrently_are_durable_in_order_with_their_receipts(started: Loop, log_path: Path) -> None:
    receipts = started.write_all([record(i, pad=900) for i in range(3000)])
    assert all(isinstance(r, AuditReceipt) for r in receipts)
    assert [r.seq for r in receipts] == list(range(1, 3001))  # type: ignore[union-attr]
    started.close()
    result = verify(log_path)
    assert result.ok and result.records == 3000
    written = list(iter_records(log_path))
    assert [r["hash"] for r in written] == [r.hash for r in receipts]  # type: ignore[union-attr]
    assert ids(log_path) == [f"d-{i:06d}" for i in range(3000)]


def test_a_record_the_log_would_refuse_is_refused_at_once_and_the_writer_goes_on(started: Loop) -> None:
    token_like = '{"t":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}'
    bad = started.write_all(["not json", token_like, record(1)])
    assert isinstance(bad[0], ValueError) and isinstance(bad[1], ValueError)
    assert isinstance(bad[2], AuditReceipt) and started.failures == 0


def test_a_stuck_writer_times_out_and_the_abandoned_record_is_never_written(
    log_path: Path,
) -> None:
    loop = Loop(AuditWriter.start(log_path, timeout=0.5))
    try:
        assert isinstance(loop.write_all([record(0)])[0], AuditReceipt)
        os.kill(loop.writer.pid, signal.SIGSTOP)  # a disk that hangs, as far as the server can tell
        t = time.monotonic()
        stuck = loop.write_all([record(1), record(2)])
        assert all(isinstance(r, AuditUnavailable) and "no answer within 0.5s" in str(r) for r in stuck), stuck
        assert 0.4 < time.monotonic() - t < 3 and (loop.failures, loop.recoveries) == (1, 0)
        os.kill(loop.writer.pid, signal.SIGCONT)
        assert isinstance(loop.write_all([record(3)])[0], AuditReceipt)
        assert loop.recoveries == 1  # durable again: health may say so
        assert isinstance(loop.write_all([record(4)])[0], AuditReceipt) and loop.recoveries == 1
    finally:
        os.kill(loop.writer.pid, signal.SIGCONT)
        loop.close()
    # Abandoned before the writer read them: dropped, so no record says "allowed" for a call
    # that was answered UNAVAILABLE.
    assert ids(log_path) == ["d-000000", "d-000003", "d-000004"]


def test_a_full_pipe_never_blocks_the_event_loop(started: Loop, log_path: Path) -> None:
    os.kill(started.writer.pid, signal.SIGSTOP)

    async def run() -> tuple[float, list[Any]]:
        tasks = [asyncio.ensure_future(started.writer.write(record(i, pad=3000))) for i in range(1500)]
        t = time.monotonic()
        await asyncio.sleep(0.2)  # ~4.5 MB: far more than the pipe holds
        ticked = time.monotonic() - t
        os.kill(started.writer.pid, signal.SIGCONT)
        return ticked, await asyncio.gather(*tasks, return_exceptions=True)

    ticked, receipts = started.loop.run_until_complete(run())
    assert ticked < 1.0  # the loop kept running while the writer was stopped
    failed = [r for r in receipts if not isinstance(r, AuditReceipt)]
    assert not failed, failed[:1]
    started.close()
    assert verify(log_path).records == 1500


def test_a_writer_that_dies_fails_every_pending_and_later_record(started: Loop) -> None:
    assert isinstance(started.write_all([record(0)])[0], AuditReceipt)
    os.kill(started.writer.pid, signal.SIGKILL)
    assert process_gone(started.writer.pid, 10)
    first = started.write_all([record(1)])[0]
    assert isinstance(first, AuditUnavailable), first
    assert "was killed by SIGKILL" in str(first) or "gone" in str(first), first
    later = started.write_all([record(2)])[0]
    assert isinstance(later, AuditUnavailable)
    assert started.failures >= 1 and started.recoveries == 0


def test_sigterm_and_sigint_do_not_stop_the_writer_closing_the_pipe_does(started: Loop, log_path: Path) -> None:
    pid = started.writer.pid
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    time.sleep(0.2)
    assert isinstance(started.write_all([record(1)])[0], AuditReceipt)
    started.close()
    assert process_gone(pid, 5)
    # The lock is released: the log opens again and holds the record.
    with AuditLog.open(log_path) as again:
        assert again.last_seq == 1


def test_sighup_rotates_even_when_idle(started: Loop, log_path: Path) -> None:
    started.write_all([record(i) for i in range(3)])
    started.writer.rotate()
    deadline = time.monotonic() + 5
    while not segment_paths(log_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(segment_paths(log_path)) == 1
    started.write_all([record(3)])
    started.close()
    chain = verify_chain(log_path)
    assert chain.ok, chain.problem


def test_open_failures_come_back_as_the_logs_own_errors(log_path: Path, tmp_path: Path) -> None:
    with AuditLog.open(log_path), pytest.raises(AuditLogLocked, match=r"in use by"):
        AuditWriter.start(log_path)
    log_path.write_text('{"not": "a record"}\n')
    with pytest.raises(AuditLogCorrupt):
        AuditWriter.start(log_path)
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(OSError) as err:
        AuditWriter.start(blocked / "audit.log")  # its directory is a file
    assert str(blocked) in str(err.value)


def test_the_writer_exits_when_the_server_is_gone(log_path: Path) -> None:
    # The server's end of the pipes closes (as when the server is killed): the writer writes what
    # it has, releases the lock and exits rather than lingering as an orphan.
    writer = AuditWriter.start(log_path)
    os.close(writer._request_fd)
    assert process_gone(writer.pid, 10)
    with AuditLog.open(log_path) as again:
        assert again.last_seq == 0
    os.close(writer._reply_fd)


def test_write_group_without_a_writer_thread(log_path: Path, tmp_path: Path) -> None:
    with AuditLog.open(log_path, writer_thread=False, rotate_bytes=300) as alog:
        with pytest.raises(RuntimeError, match="write_group"):
            alog.append({"decision_id": "x"})
        r = alog.write_group([record(i).encode() for i in range(3)])
        assert [x.seq for x in r] == [1, 2, 3]
        assert segment_paths(log_path)  # the group passed rotate_bytes: rotated after it
        alog.request_rotation()
        assert alog.write_group([]) == []  # nothing to rotate: the new file holds only its marker
    assert verify_chain(log_path).ok
    full = tmp_path / "full" / "audit.log"
    full.parent.mkdir(mode=0o700)
    full.symlink_to("/dev/full")
    with AuditLog.open(full, writer_thread=False) as alog:
        for _ in range(2):
            with pytest.raises(AuditUnavailable):
                alog.write_group([record(0).encode()])


def test_close_with_a_stuck_writer_and_a_full_pipe_returns_within_its_timeout(log_path: Path) -> None:
    loop = Loop(AuditWriter.start(log_path, timeout=30))
    pid = loop.writer.pid
    os.kill(pid, signal.SIGSTOP)

    tasks: list[asyncio.Future[AuditReceipt]] = []

    async def fill() -> None:
        for i in range(1500):  # ~4.5 MB: the pipe fills, the rest waits in the loop's buffer
            tasks.append(asyncio.ensure_future(loop.writer.write(record(i, pad=3000))))
        await asyncio.sleep(0.2)

    loop.loop.run_until_complete(fill())
    t = time.monotonic()
    loop.writer.close(2)
    assert time.monotonic() - t < 6
    assert process_gone(pid, 5)
    for task in tasks:
        task.cancel()
    loop.loop.run_until_complete(asyncio.sleep(0))
    loop.loop.close()


def test_close_with_thousands_of_unanswered_records_lets_the_writer_finish(log_path: Path) -> None:
    # Calls that gave up (cancelled at the end of a stop's grace period) leave records whose
    # answers nobody reads: the writer must still see the end of its input and exit by itself.
    loop = Loop(AuditWriter.start(log_path, timeout=30))
    pid = loop.writer.pid
    tasks: list[asyncio.Future[AuditReceipt]] = []

    async def send() -> None:
        for i in range(3000):
            tasks.append(asyncio.ensure_future(loop.writer.write(record(i))))
        await asyncio.sleep(0)  # one iteration: they are sent, their answers are not read

    loop.loop.run_until_complete(send())
    t = time.monotonic()
    loop.writer.close(20)
    assert time.monotonic() - t < 10
    assert process_gone(pid, 1)
    assert loop.writer._proc.returncode == 0  # not killed
    for task in tasks:
        task.cancel()
    loop.loop.run_until_complete(asyncio.sleep(0))
    loop.loop.close()
    assert verify(log_path).records == 3000


def test_sighup_while_the_writer_starts_does_not_kill_it(log_path: Path) -> None:
    # `audit rotate` signals whichever pid the lock file names, from the moment the log is opened.
    import threading

    for _ in range(10):
        done = threading.Event()

        def hammer(done: threading.Event = done) -> None:
            while not done.is_set():
                with contextlib.suppress(OSError, ValueError):
                    pid = int(log_path.with_name("audit.log.lock").read_text().strip())
                    if b"agentceiling.store.audit_writer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        os.kill(pid, signal.SIGHUP)

        t = threading.Thread(target=hammer)
        t.start()
        try:
            writer = AuditWriter.start(log_path)
        finally:
            done.set()
            t.join()
        writer.close(10)
        assert writer._proc.returncode == 0


def test_nothing_in_the_working_directory_shadows_the_writers_imports(
    log_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    (work / "argparse.py").write_text("raise SystemExit('shadowed')\n")
    monkeypatch.chdir(work)
    writer = AuditWriter.start(Path(os.path.relpath(log_path, work)))
    assert writer.path.name == "audit.log"
    writer.close(10)
    assert writer._proc.returncode == 0


def test_a_writer_left_by_a_killed_server_is_named_as_such(log_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import sys, time; from pathlib import Path; "
        "from agentceiling.store.audit_writer import AuditWriter; "
        f"w = AuditWriter.start(Path({str(log_path)!r})); print(w.pid, flush=True); time.sleep(60)"
    )
    server = subprocess.Popen([sys.executable, "-c", script, "serve"], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    writer_pid = int(server.stdout.readline())
    os.kill(writer_pid, signal.SIGSTOP)  # its disk hangs
    server.kill()
    server.wait()
    try:
        left = f"audit writer \\(pid {writer_pid}\\) of an agentceiling server that has exited"
        with pytest.raises(AuditLogLocked, match=left):
            AuditWriter.start(log_path)
    finally:
        os.kill(writer_pid, signal.SIGKILL)


def test_frames_split_anywhere_across_reads_decode_the_same() -> None:
    from agentceiling.store import audit_writer as aw

    requests = b"".join(
        [
            aw._RECORD_HEAD.pack(b"R", 1, 5) + b"{\"a\"}",
            b"X" + aw._U64.pack(7),
            aw._RECORD_HEAD.pack(b"R", 2, 0),
            aw._RECORD_HEAD.pack(b"R", 3, 2) + b"{}",
        ]
    )
    replies = b"".join(
        [
            aw._ack(1, AuditReceipt(10, "a" * 64)),
            aw._error(2, "disk full \u2013 gone"),
            aw._ack(3, AuditReceipt(11, "b" * 64)),
        ]
    )
    for size in (1, 2, 3, 7, len(requests)):
        rd, got, gone = aw._RequestDecoder(), [], set()
        for i in range(0, len(requests), size):
            recs, ab = rd.feed(requests[i : i + size])
            got += recs
            gone |= ab
        assert got == [(1, b'{"a"}'), (2, b""), (3, b"{}")] and gone == {7}
        dec, out = aw.ReplyDecoder(), []
        for i in range(0, len(replies), size):
            out += dec.feed(replies[i : i + size])
        assert out == [
            (1, AuditReceipt(10, "a" * 64), None),
            (2, None, "disk full \u2013 gone"),
            (3, AuditReceipt(11, "b" * 64), None),
        ]
    with pytest.raises(ValueError, match="unknown"):
        aw.ReplyDecoder().feed(b"Z")


def test_the_deciders_frames_split_anywhere_decode_the_same() -> None:
    """``D`` requests; ``P``, ``U``, ``B`` answers and ``H`` health reports, mixed with the others."""
    from agentceiling.store import audit_writer as aw

    requests = b"".join(
        [
            aw._RECORD_HEAD.pack(b"D", 1, 3) + b"abc",
            aw._RECORD_HEAD.pack(b"R", 2, 2) + b"{}",
            aw._RECORD_HEAD.pack(b"D", 3, 0),
            b"X" + aw._U64.pack(3),
        ]
    )
    health = json.dumps({"stale": True}).encode()
    replies = b"".join(
        [
            aw._framed(b"P", 1, b"answer-1"),
            b"H" + aw._U32.pack(len(health)) + health,
            aw._ack(2, AuditReceipt(10, "a" * 64)),
            aw._framed(b"U", 3, b"unavailable-3"),
            aw._framed(b"B", 4, json.dumps({"field": "path", "message": "no \u2013 good"}).encode()),
            aw._framed(b"I", 5, b"internal error while deciding x"),
        ]
    )
    for size in (1, 2, 3, 7, len(requests), len(replies)):
        rd, got, gone = aw._RequestDecoder(), [], set()
        for i in range(0, len(requests), size):
            recs, ab = rd.feed(requests[i : i + size])
            got += recs
            gone |= ab
        assert got == [(2, b"{}")] and rd.to_decide == [(1, b"abc"), (3, b"")] and gone == {3}
        dec, out = aw.ReplyDecoder(), []
        for i in range(0, len(replies), size):
            out += dec.feed(replies[i : i + size])
        bad = out[3][1]
        assert isinstance(bad, aw.BadRequestReply) and (bad.field, str(bad)) == ("path", "no \u2013 good")
        assert out[:3] == [
            (1, aw.Answer(b"answer-1"), None),
            (2, AuditReceipt(10, "a" * 64), None),
            (3, aw.Answer(b"unavailable-3"), "the audit log cannot be written"),
        ]
        assert dec.health == [True]
        internal = out[4][1]
        assert isinstance(internal, aw.WorkerError) and str(internal) == "internal error while deciding x"
    for garbage in (b"B" + aw._ID_LENGTH.pack(1, 2) + b"[]", b"H" + aw._U32.pack(2) + b"{}"):
        with pytest.raises(ValueError, match="malformed reply body"):
            aw.ReplyDecoder().feed(garbage)
