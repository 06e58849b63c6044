"""The authorization endpoint's audit log, written by a process of its own.

This process (``python -m agentceiling.store.audit_writer``, started by :meth:`AuditWriter.start`;
the endpoint starts it as ``agentceiling.api.authz_worker``, which decides too, see below) owns
the :class:`~agentceiling.store.audit_log.AuditLog`: its lock, its hash chain, its group commits and
their ``fdatasync``. The server hands each record over a pipe and answers the call only once this
process reports the record durable, so the guarantee is the audit log's own: no answer leaves
before its record is on disk. What moves is the work: encoding, hashing, writing and syncing no
longer take the serving process's GIL, and the serving side pays one pipe write per event-loop
iteration and one read per group commit (docs/performance.md, sixth pass).

The writer process ignores SIGINT and SIGTERM (it runs in a session of its own): it stops when the
server closes the request pipe, after writing out everything it was sent, so a server that is
being stopped gracefully can still audit its last calls. SIGHUP rotates the log, like the server's
own SIGHUP (``agentceiling audit rotate`` signals whichever process holds the log's lock). If the
server dies, the pipe closes and the writer exits; if the writer dies, every pending and later
record fails and the endpoint answers UNAVAILABLE (fail closed).

Frames on the two pipes (a private protocol: both ends are this module), integers little-endian:

===========  ============================================  =========================================
direction    frame                                         meaning
===========  ============================================  =========================================
to writer    ``R`` id:u64 length:u32 record                append a canonical record
to writer    ``X`` id:u64                                  the server stopped waiting: drop the
                                                           record unless it is written already
to writer    end of file                                   write and answer what came, close, exit
to server    ``O`` length:u32 JSON ``{"seq": n}``          the log is open (the first frame)
to server    ``F`` length:u32 JSON ``{"kind", "message"}``  it could not be opened (then exit 1)
to server    ``A`` id:u64 seq:u64 hash:64 hex              record ``id`` is durable
to server    ``E`` id:u64 length:u32 message               record ``id`` failed: log unavailable
===========  ============================================  =========================================

Started with a decider (``agentceiling.api.authz_worker``, which the authorization endpoint
starts), this process also decides: the endpoint's event loop hands it each Authorize request as
the bytes it arrived in, and it decides, writes the decision's record in its next group commit, and
answers with the serialized answer once the record is durable. The decider's configuration (the
database URL among it) comes through a pipe of its own (``--config-fd``), never the command line or
the environment. More frames:

===========  ============================================  =========================================
to writer    ``D`` id:u64 length:u32 body                  decide (the body is the decider's own)
to server    ``P`` id:u64 length:u32 answer                decision ``id``'s record is durable:
                                                           its answer
to server    ``U`` id:u64 length:u32 answer                its record could not be written: the
                                                           answer to give instead (UNAVAILABLE)
to server    ``B`` id:u64 length:u32 JSON                  the request is malformed: ``{"field",
                                                           "message"}`` (nothing is audited)
to server    ``I`` id:u64 length:u32 message               deciding failed (a bug): INTERNAL for that
                                                           call alone (nothing is audited)
to server    ``H`` length:u32 JSON ``{"stale": bool}``     the decider can (not) confirm that its
                                                           directory is current
===========  ============================================  =========================================
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .audit_log import (
    AuditLog,
    AuditLogCorrupt,
    AuditLogError,
    AuditLogLocked,
    AuditReceipt,
    AuditUnavailable,
    _write_all,
    check_canonical,
    lock_path,
)

__all__ = [
    "MODULE",
    "Answer",
    "AuditWriter",
    "BadRequestReply",
    "Decided",
    "Decider",
    "ReplyDecoder",
    "WorkerError",
    "main",
    "run",
]

log = logging.getLogger("agentceiling.store.audit_writer")

#: What ``agentceiling audit rotate`` looks for in the command line of the lock's holder.
MODULE = "agentceiling.store.audit_writer"  # not __name__: "__main__" in the writer process
#: The modules a writer process runs as: alone, or as the authorization worker (which decides too).
MODULES = (MODULE, "agentceiling.api.authz_worker")


def runs_a_writer(cmdline: Sequence[bytes]) -> bool:
    """Whether a process with this command line (``/proc/<pid>/cmdline`` split) is a writer process."""
    return any(m.encode() in cmdline for m in MODULES)

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ACK = struct.Struct("<QQ64s")
_RECORD_HEAD = struct.Struct("<cQI")
_ID_LENGTH = struct.Struct("<QI")

#: Pipe capacity asked for (Linux: up to /proc/sys/fs/pipe-max-size, 1 MiB by default): room for a
#: few hundred records while the writer is busy, so the event loop rarely meets a full pipe.
_PIPE_BYTES = 1 << 20


_OPEN_KINDS: dict[str, type[Exception]] = {
    "locked": AuditLogLocked,
    "corrupt": AuditLogCorrupt,
    "error": AuditLogError,
}


# ----------------------------------------------------------------------------- the writer process


def _open_failure(exc: BaseException) -> bytes:
    if isinstance(exc, OSError):
        kind, message = "os", json.dumps([exc.errno, exc.strerror or str(exc), exc.filename and str(exc.filename)])
    else:
        kind = next((k for k, cls in _OPEN_KINDS.items() if type(exc) is cls), "error")
        message = str(exc)
    body = json.dumps({"kind": kind, "message": message}).encode()
    return _sized(b"F", body)


def _name_the_server(path: Path) -> str:
    """When another server's writer process holds the log: a message naming that server (the
    writer's parent), which is the process to stop. "" when it cannot be told (no /proc)."""
    try:
        pid = int(lock_path(path).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return ""
    if not runs_a_writer(cmdline):
        return ""
    try:
        parent = Path(f"/proc/{ppid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        parent = []
    if b"serve" not in parent:  # its server is gone; it finishes its last group and exits
        return (
            f"audit log {path} is still held by the audit writer (pid {pid}) of an agentceiling server "
            "that has exited; it exits once its last records are written (a disk that hangs delays it)"
        )
    return f"audit log {path} is in use by the agentceiling server with pid {ppid} (its audit writer has pid {pid})"


def _ack(ident: int, receipt: AuditReceipt) -> bytes:
    return b"A" + _ACK.pack(ident, receipt.seq, receipt.hash.encode("ascii"))


def _error(ident: int, message: str) -> bytes:
    return _framed(b"E", ident, message.encode("utf-8", "replace"))


def _framed(kind: bytes, ident: int, body: bytes) -> bytes:
    return kind + _ID_LENGTH.pack(ident, len(body)) + body


def _sized(kind: bytes, body: bytes) -> bytes:
    """A frame that names no record: ``O``, ``F``, ``H`` (kind, length:u32, body)."""
    return kind + _U32.pack(len(body)) + body


def _sized_body(buf: bytes, i: int) -> tuple[bytes, int] | None:
    """The body of the :func:`_sized` frame at ``buf[i]`` and where the next frame starts; None
    while the frame is incomplete."""
    start = i + 1 + _U32.size
    if len(buf) < start:
        return None
    (length,) = _U32.unpack_from(buf, i + 1)
    if len(buf) < start + length:
        return None
    return buf[start : start + length], start + length


@dataclass(frozen=True, slots=True)
class Decided:
    """What the decider made of one ``D`` frame."""

    ident: int
    record: str | None
    """The decision's audit record (canonical JSON); None when there is no decision: a malformed
    request, or an internal error."""
    answer: bytes
    """The answer once ``record`` is durable; without a record, the body of the ``reply`` frame."""
    unavailable: Callable[[BaseException], bytes] | None = None
    """The answer when ``record`` cannot be written."""
    reply: bytes = b"B"
    """Without a record: ``B`` (malformed request, INVALID_ARGUMENT) or ``I`` (internal error)."""


class Decider(Protocol):
    """What this process decides with (``agentceiling.api.authz_worker``). Called from its one
    serving thread; it may decide in threads of its own, and then calls the ``wake`` it was built
    with when :meth:`ready` has more."""

    def decide(self, ident: int, body: bytes) -> Decided | None:
        """Decide now, or return None and hand the result to :meth:`ready` later."""
        ...

    def ready(self) -> list[Decided]:
        """The decisions finished in other threads since the last call."""
        ...

    def abandon(self, idents: set[int]) -> None:
        """The server gave up on these: what is still being decided for them is dropped."""
        ...

    def health(self) -> bool | None:
        """Whether the directory is stale, when that changed since the last call (else None)."""
        ...

    def close(self) -> None: ...


DeciderFactory = Callable[[bytes, Callable[[], None]], Decider]
"""Builds the decider from its configuration (the ``--config-fd`` pipe's bytes) and ``wake``."""


def _id_and_body(buf: bytes, i: int) -> tuple[int, bytes, int] | None:
    """The id and body of the frame at ``buf[i]`` (any kind laid out as kind, id:u64, length:u32,
    body), and where the next frame starts; None while the frame is incomplete."""
    start = i + 1 + _ID_LENGTH.size
    if len(buf) < start:
        return None
    ident, length = _ID_LENGTH.unpack_from(buf, i + 1)
    if len(buf) < start + length:
        return None
    return ident, buf[start : start + length], start + length


class _RequestDecoder:
    """Incremental decoder of the server's ``R``, ``D`` and ``X`` frames."""

    def __init__(self) -> None:
        self._buf = b""
        self.to_decide: list[tuple[int, bytes]] = []
        """The ``D`` frames fed so far, (id, body), in order: the caller takes them."""

    def feed(self, data: bytes) -> tuple[list[tuple[int, bytes]], set[int]]:
        """The records (id, bytes) and the abandoned ids in ``data`` (plus what was left over);
        ``D`` frames go to :attr:`to_decide`."""
        buf = self._buf + data if self._buf else data
        records: list[tuple[int, bytes]] = []
        abandoned: set[int] = set()
        i, n = 0, len(buf)
        while i < n:
            kind = buf[i]
            if kind in (0x52, 0x44):  # "R", "D"
                framed = _id_and_body(buf, i)
                if framed is None:
                    break
                ident, body, i = framed
                (records if kind == 0x52 else self.to_decide).append((ident, body))
            elif kind == 0x58:  # "X"
                if n - i < 1 + _U64.size:
                    break
                abandoned.add(_U64.unpack_from(buf, i + 1)[0])
                i += 1 + _U64.size
            else:
                raise ValueError(f"audit writer: unknown request frame {bytes([kind])!r}")
        self._buf = buf[i:]
        return records, abandoned


class _Replies:
    """The reply pipe, written by the serving thread and the committer."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def send(self, frames: list[bytes]) -> None:
        if frames:
            with self._lock, contextlib.suppress(BrokenPipeError):  # the server is gone: nobody waits
                _write_all(self._fd, b"".join(frames))


class _Committer:
    """The group commits, in a thread of their own: while one group's ``fdatasync`` runs (it
    releases the GIL), the serving thread reads and decides what comes next, and everything it
    hands over meanwhile is the next group (one write, one ``fdatasync`` and one reply write for
    all of it). The log is written by this thread only."""

    def __init__(self, alog: AuditLog, replies: _Replies) -> None:
        self._alog = alog
        self._replies = replies
        self._cond = threading.Condition()
        self._batch: list[tuple[int, bytes, Decided | None]] = []
        self._rotate = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="audit-commit", daemon=True)
        self._thread.start()

    def submit(self, items: list[tuple[int, bytes, Decided | None]]) -> None:
        """Records (id, payload, its decision or None) for the next group."""
        with self._cond:
            self._batch += items
            self._cond.notify()

    def abandon(self, idents: set[int]) -> None:
        """The server gave up on these: drop those not written yet."""
        with self._cond:
            self._batch = [item for item in self._batch if item[0] not in idents]

    def rotate(self) -> None:
        self._alog.request_rotation()
        with self._cond:
            self._rotate = True  # rotate now, while idle: write_group([]) does
            self._cond.notify()

    def finish(self) -> None:
        """Write out what was submitted, then stop."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        try:
            self._commit_loop()
        except BaseException:
            # Nothing can be made durable any more: end the process, so that the server sees its
            # pipe close and fails closed at once, rather than every call waiting for its timeout.
            log.exception("the audit log's committer failed")
            os._exit(1)

    def _commit_loop(self) -> None:
        while True:
            with self._cond:
                while not self._batch and not self._rotate and not self._stop:
                    self._cond.wait()
                items, self._batch = self._batch, []
                rotate, self._rotate = self._rotate, False
                if not items and not rotate:
                    return  # stopping, and everything is written
            out: list[bytes] = []
            try:
                receipts = self._alog.write_group([payload for _, payload, _ in items])
            except AuditUnavailable as exc:
                for ident, _, done in items:
                    if done is None:
                        out.append(_error(ident, str(exc)))
                    else:
                        assert done.unavailable is not None
                        out.append(_framed(b"U", ident, done.unavailable(exc)))
            else:
                for (ident, _, done), receipt in zip(items, receipts, strict=True):
                    out.append(_ack(ident, receipt) if done is None else _framed(b"P", ident, done.answer))
            self._replies.send(out)


def _serve(
    alog: AuditLog,
    request_fd: int,
    reply_fd: int,
    wake_fd: int,
    hangup: list[bool],
    decider: Decider | None = None,
) -> None:
    """Until end of file on the request pipe: read what came, decide the ``D`` frames (those that
    need I/O in the decider's threads, which wake this one through ``wake_fd``) and hand the
    records to the committer, whose next group takes everything handed over while the last one was
    being written. Under load, what a record costs most is the hand-offs between threads
    (docs/performance.md): one per group here, none per record."""
    decoder = _RequestDecoder()
    replies = _Replies(reply_fd)
    committer = _Committer(alog, replies)
    poller = select.poll()  # not select(): the descriptors keep the server's numbers, maybe > 1024
    poller.register(request_fd, select.POLLIN)
    poller.register(wake_fd, select.POLLIN)
    try:
        while True:
            ready = [fd for fd, _ in poller.poll()]
            if wake_fd in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_fd, 512)
            if hangup[0]:
                hangup[0] = False
                committer.rotate()
            records: list[tuple[int, bytes]] = []
            if request_fd in ready:
                data = os.read(request_fd, 1 << 20)
                if not data:
                    return
                records, abandoned = decoder.feed(data)
                if abandoned:
                    committer.abandon(abandoned)
                    if decider is not None:
                        decider.abandon(abandoned)
                    records = [r for r in records if r[0] not in abandoned]
                    decoder.to_decide[:] = [d for d in decoder.to_decide if d[0] not in abandoned]
            out: list[bytes] = []
            items: list[tuple[int, bytes, Decided | None]] = []
            for ident, record in records:
                try:
                    items.append((ident, check_canonical(record.decode("ascii")), None))
                except (ValueError, UnicodeDecodeError) as exc:  # the server checks first
                    out.append(_error(ident, f"audit record refused: {exc}"))
            if decider is not None:
                decided = []
                for ident, body in decoder.to_decide:
                    now = decider.decide(ident, body)
                    if now is not None:  # else it comes back through ready()
                        decided.append(now)
                decoder.to_decide.clear()
                for done in decided + decider.ready():
                    if done.record is None:
                        out.append(_framed(done.reply, done.ident, done.answer))
                        continue
                    try:
                        items.append((done.ident, check_canonical(done.record), done))
                    except ValueError as exc:
                        assert done.unavailable is not None
                        out.append(_framed(b"U", done.ident, done.unavailable(exc)))
                stale = decider.health()
                if stale is not None:
                    out.append(_sized(b"H", json.dumps({"stale": stale}).encode()))
            elif decoder.to_decide:
                out += (_error(ident, "this audit writer does not decide") for ident, _ in decoder.to_decide)
                decoder.to_decide.clear()
            if items:
                committer.submit(items)
            replies.send(out)
    finally:
        committer.finish()


def main(argv: Sequence[str] | None = None, decider_factory: DeciderFactory | None = None) -> int:
    """The writer process: ``python -m agentceiling.store.audit_writer --fds R,W [...] PATH``.
    With ``decider_factory`` (``python -m agentceiling.api.authz_worker ... --config-fd C``) it
    decides too, configured by what the ``C`` pipe holds."""
    ap = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    ap.add_argument("--fds", required=True, help="request pipe (read end), reply pipe (write end)")
    ap.add_argument("--rotate-bytes", type=int, default=0)
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--config-fd", type=int, default=-1, help="pipe holding the decider's configuration")
    ap.add_argument("path", type=Path)
    args = ap.parse_args(argv)
    config = b""
    if args.config_fd >= 0:
        with os.fdopen(args.config_fd, "rb") as f:
            config = f.read()
    logging.basicConfig(
        level=getattr(logging, args.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The server stops this process by closing the request pipe, after its last calls.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # SIGHUP rotates; its handler goes in before the log is opened, which names this process in
    # the lock file (`audit rotate` may signal it from then on).
    hangup = [False]
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w)  # a signal wakes the poll in _serve

    def on_hangup(_signum: int, _frame: Any) -> None:
        hangup[0] = True  # rotated by the loop: the handler may run in the middle of a group

    signal.signal(signal.SIGHUP, on_hangup)
    request_fd, reply_fd = (int(fd) for fd in args.fds.split(","))
    try:
        alog = AuditLog.open(args.path, rotate_bytes=args.rotate_bytes, writer_thread=False)
    except AuditLogLocked as exc:
        os.write(reply_fd, _open_failure(AuditLogLocked(_name_the_server(args.path) or str(exc))))
        return 1
    except Exception as exc:
        os.write(reply_fd, _open_failure(exc))
        return 1

    decider: Decider | None = None
    if decider_factory is not None:

        def wake() -> None:  # from the decider's threads: the poll in _serve returns
            with contextlib.suppress(BlockingIOError):
                os.write(wake_w, b"d")

        try:
            decider = decider_factory(config, wake)
        except Exception as exc:
            log.exception("the decider could not be set up")
            alog.close()
            os.write(reply_fd, _open_failure(AuditLogError(f"the decider could not be set up: {exc}")))
            return 1
    opened = json.dumps({"seq": alog.last_seq}).encode()
    os.write(reply_fd, _sized(b"O", opened))
    try:
        _serve(alog, request_fd, reply_fd, wake_r, hangup, decider)
    finally:
        if decider is not None:
            decider.close()
        alog.close()
        for fd in (request_fd, reply_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
    return 0


# ----------------------------------------------------------------------------- the serving side


@dataclass(frozen=True, slots=True)
class Answer:
    """A decision's answer from the writer process (``P``, or ``U`` with an error)."""

    data: bytes


class BadRequestReply(Exception):
    """The writer process found the request malformed (``B``): INVALID_ARGUMENT on ``field``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class WorkerError(Exception):
    """Deciding failed in the writer process (``I``): INTERNAL for that call."""


def _json_object(body: bytes, keys: Sequence[str]) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if not isinstance(value, dict) or any(k not in value for k in keys):
        raise ValueError(f"malformed reply body {body[:64]!r}")
    return value


Reply = AuditReceipt | Answer | BadRequestReply | WorkerError | None


class ReplyDecoder:
    """Incremental decoder of the writer's frames after ``O``."""

    def __init__(self) -> None:
        self._buf = b""
        self.health: list[bool] = []
        """The ``H`` frames fed so far (whether the directory is stale), in order: the caller takes them."""

    def feed(self, data: bytes) -> list[tuple[int, Reply, str | None]]:
        """(id, what came back, the error when the record could not be made durable)."""
        buf = self._buf + data if self._buf else data
        out: list[tuple[int, Reply, str | None]] = []
        i, n = 0, len(buf)
        while i < n:
            kind = buf[i]
            if kind in (0x50, 0x55, 0x42, 0x49):  # "P", "U", "B", "I"
                framed = _id_and_body(buf, i)
                if framed is None:
                    break
                ident, body, i = framed
                if kind == 0x50:
                    out.append((ident, Answer(body), None))
                elif kind == 0x55:
                    out.append((ident, Answer(body), "the audit log cannot be written"))
                elif kind == 0x49:
                    out.append((ident, WorkerError(body.decode("utf-8", "replace")), None))
                else:
                    why = _json_object(body, ("field", "message"))
                    out.append((ident, BadRequestReply(str(why["field"]), str(why["message"])), None))
                continue
            if kind == 0x48:  # "H"
                sized = _sized_body(buf, i)
                if sized is None:
                    break
                body, i = sized
                self.health.append(bool(_json_object(body, ("stale",))["stale"]))
                continue
            if kind == 0x41:  # "A"
                if n - i < 1 + _ACK.size:
                    break
                ident, seq, digest = _ACK.unpack_from(buf, i + 1)
                out.append((ident, AuditReceipt(seq, digest.decode("ascii")), None))
                i += 1 + _ACK.size
            elif kind == 0x45:  # "E"
                framed = _id_and_body(buf, i)
                if framed is None:
                    break
                ident, body, i = framed
                out.append((ident, None, body.decode("utf-8", "replace")))
            else:
                raise ValueError(f"audit writer: unknown reply frame {bytes([kind])!r}")
        self._buf = buf[i:]
        return out


def _handshake(proc: subprocess.Popen[bytes], fd: int, timeout: float, path: Path) -> int:
    """Wait for the writer's first frame; return the log's last seq, or raise why it did not open."""
    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        sized = _sized_body(buf, 0)
        if sized is not None:
            body = json.loads(sized[0])
            if buf[:1] == b"O":
                return int(body["seq"])
            if body["kind"] == "os":
                code, message, filename = json.loads(body["message"])
                raise OSError(code, message, filename) if filename else OSError(code, message)
            raise _OPEN_KINDS.get(body["kind"], AuditLogError)(body["message"])
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            proc.kill()
            raise AuditLogError(f"the audit writer process did not open {path} within {timeout:.0f} s")
        if _readable(fd, remaining):
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AuditLogError(f"the audit writer process {_exit_status(proc.wait())} before opening {path}")
            buf += chunk


#: What the writer process's environment leaves out: secrets it has no use for (its database URL
#: comes through its configuration pipe; libpq's own variables, such as PGPASSWORD, stay, since
#: connecting may need them).
_NOT_INHERITED = ("AGENTCEILING_DATABASE_URL", "VAULT_TOKEN")


def _child_env() -> dict[str, str]:
    """The environment of the writer process: this one, with this package importable."""
    root = str(Path(__file__).resolve().parents[2])
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([root, *(p for p in paths if p != root)])
    return env


def _readable(fd: int, timeout: float) -> bool:
    poller = select.poll()  # not select(): the server may have more than 1024 descriptors open
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0.0, timeout) * 1000))


def _exit_status(status: int) -> str:
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-status).name}"
    return f"exited (status {status})"


def _finish(request_fd: int, reply_fd: int, unsent: bytes, deadline: float) -> None:
    """Send the records the event loop still held, close the request pipe, and read (dropping them:
    nobody waits any more) the writer's last answers until it closes its end. A writer stuck on
    its disk must not hang the server's stop past ``deadline``. Reading while
    sending matters: a writer blocked on a full reply pipe reads no more requests."""
    view = memoryview(unsent)
    poller = select.poll()
    poller.register(reply_fd, select.POLLIN)
    sending = bool(view)
    if sending:
        poller.register(request_fd, select.POLLOUT)
    else:
        os.close(request_fd)
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            for fd, _events in poller.poll(remaining * 1000):
                if fd == request_fd:
                    try:
                        view = view[os.write(request_fd, view) :]
                    except BlockingIOError:
                        continue
                    except OSError:  # the writer is gone
                        view = view[len(view) :]
                    if not view:
                        poller.unregister(request_fd)
                        os.close(request_fd)
                        sending = False
                else:
                    try:
                        data = os.read(reply_fd, 1 << 16)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        return
        if sending:
            log.error("audit writer: %d bytes of records not sent before the stop's deadline", len(view))
    finally:
        if sending:
            os.close(request_fd)


class AuditWriter:
    """The server's handle on the writer process: records are written from one asyncio event loop
    (:meth:`bind`, then :meth:`write`); :meth:`rotate` and :meth:`close` may be called from any
    thread."""

    def __init__(self, proc: subprocess.Popen[bytes], request_fd: int, reply_fd: int, path: Path, timeout: float):
        self.path = path
        self.timeout = timeout
        self._proc = proc
        self._request_fd = request_fd
        self._reply_fd = reply_fd
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_failure: Callable[[], None] = lambda: None
        self._on_recovery: Callable[[], None] = lambda: None
        self._stalled = False  # records timed out; the next one made durable is a recovery
        self._pending: dict[int, tuple[asyncio.Future[Any], float]] = {}
        self._on_health: Callable[[bool], None] = lambda stale: None
        self._next_id = 1
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._waiting_writable = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._decoder = ReplyDecoder()
        self._failure: str | None = None
        self._closing = False
        self._fds_closed = False  # the loop's callbacks must not touch the numbers any more
        self._close_lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @classmethod
    def start(
        cls,
        path: Path,
        *,
        rotate_bytes: int = 0,
        timeout: float = 30.0,
        open_timeout: float = 60.0,
        decider: tuple[str, bytes] | None = None,
    ) -> AuditWriter:
        """Start the writer process and wait until it has opened the log at ``path``. Raises what
        :meth:`AuditLog.open` would (``AuditLogLocked``, ``AuditLogCorrupt``, ``AuditLogError``,
        ``OSError``). ``timeout`` bounds each record's wait for durability. ``decider`` is (the
        module to run, its configuration): a writer process that decides too (:meth:`decide`)."""
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        fds = [request_r, request_w, reply_r, reply_w]
        level = logging.getLevelName(logging.getLogger("agentceiling").getEffectiveLevel())
        # -P: nothing importable from the server's working directory shadows the standard library.
        cmd = [sys.executable, "-P", "-m", decider[0] if decider else MODULE, "--fds", f"{request_r},{reply_w}"]
        cmd += ["--rotate-bytes", str(rotate_bytes), "--log-level", str(level)]
        passed = [request_r, reply_w]
        config_w = -1
        if decider is not None:
            config_r, config_w = os.pipe()  # not argv nor the environment: it may hold a password
            fds += [config_r, config_w]
            passed.append(config_r)
            cmd += ["--config-fd", str(config_r)]
        cmd.append(str(Path(path).absolute()))
        try:
            proc = subprocess.Popen(
                cmd, pass_fds=passed, stdin=subprocess.DEVNULL, env=_child_env(), start_new_session=True
            )
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        for fd in passed:
            os.close(fd)
        if decider is not None:
            try:
                _write_all(config_w, decider[1])  # the child reads it all before anything else
            except OSError:
                pass  # it died at once: the handshake says how
            finally:
                os.close(config_w)
        try:
            seq = _handshake(proc, reply_r, open_timeout, path)
        except BaseException:
            os.close(request_w)
            os.close(reply_r)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            raise
        setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only; elsewhere the default size
        if setpipe is not None:
            with contextlib.suppress(OSError):
                fcntl.fcntl(request_w, setpipe, _PIPE_BYTES)
        os.set_blocking(request_w, False)
        os.set_blocking(reply_r, False)
        log.info("audit writer process %d: %s (last record %d)", proc.pid, path, seq)
        return cls(proc, request_w, reply_r, path, timeout)

    # -- on the event loop ----------------------------------------------------------------------------

    def bind(
        self,
        loop: asyncio.AbstractEventLoop,
        on_failure: Callable[[], None],
        on_recovery: Callable[[], None] = lambda: None,
        on_health: Callable[[bool], None] = lambda stale: None,
    ) -> None:
        """Write from ``loop`` (call in its thread); ``on_failure`` runs there whenever a record
        could not be made durable (the log failed, the writer died, or ``timeout`` passed), and
        ``on_recovery`` when records are durable again after a timeout (a disk that hung and came
        back; a failed log or a dead writer never recovers)."""
        self._loop = loop
        self._on_failure = on_failure
        self._on_recovery = on_recovery
        self._on_health = on_health
        loop.add_reader(self._reply_fd, self._on_readable)

    async def write(self, record: str) -> AuditReceipt:
        """Return once ``record`` (canonical JSON, see :meth:`AuditLog.append_canonical`) is durable.
        Raises ``ValueError`` for a record the log would refuse, :class:`AuditUnavailable` when it
        cannot be made durable."""
        payload = check_canonical(record)
        receipt: AuditReceipt = await self._send(b"R", payload)
        return receipt

    async def decide(self, body: bytes) -> bytes:
        """Have a deciding writer process (started with ``decider``) decide on ``body`` and write
        the decision's record; return the answer once the record is durable, or the answer the
        decider gives when it cannot be written. Raises :class:`BadRequestReply` for a malformed
        request, :class:`AuditUnavailable` when no answer can come (the process is gone, or
        ``timeout`` passed)."""
        answer: bytes = await self._send(b"D", body)
        return answer

    async def _send(self, kind: bytes, payload: bytes) -> Any:
        loop = self._loop
        assert loop is not None, "AuditWriter used before bind"
        if self._failure is not None:
            raise AuditUnavailable(self._failure)
        if self._closing:
            raise AuditUnavailable(f"audit log {self.path} is closed")
        ident = self._next_id
        self._next_id += 1
        future: asyncio.Future[Any] = loop.create_future()
        deadline = loop.time() + self.timeout
        self._pending[ident] = (future, deadline)
        self._out.append(_RECORD_HEAD.pack(kind, ident, len(payload)) + payload)
        if not self._flush_scheduled and not self._waiting_writable:
            self._flush_scheduled = True
            loop.call_soon(self._flush)  # once per loop iteration, however many records it wrote
        if self._watchdog is None:
            self._watchdog = loop.call_at(deadline, self._expire)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._out or self._failure is not None or self._fds_closed:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        try:
            sent = os.write(self._request_fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._fail(f"the audit writer process is gone ({exc.strerror or exc})")
            return
        if sent < len(data):  # the pipe is full: the writer is behind; send the rest when it drains
            self._out.append(data[sent:])
            if not self._waiting_writable:
                self._waiting_writable = True
                assert self._loop is not None
                self._loop.add_writer(self._request_fd, self._on_writable)

    def _on_writable(self) -> None:
        assert self._loop is not None
        self._loop.remove_writer(self._request_fd)
        self._waiting_writable = False
        self._flush()

    def _on_readable(self) -> None:
        if self._fds_closed:
            return
        try:
            data = os.read(self._reply_fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if not self._closing:
                self._fail(f"the audit writer process {self._how_it_ended()}")
            else:
                self._detach()
            return
        try:
            replies = self._decoder.feed(data)
        except ValueError as exc:  # not our writer's frames: nothing it says can be trusted
            self._fail(f"the audit writer process answered garbage ({exc})")
            return
        if self._decoder.health:
            for stale in self._decoder.health:
                self._on_health(stale)
            self._decoder.health.clear()
        failed = recovered = False
        for ident, reply, error in replies:
            entry = self._pending.pop(ident, None)
            if error is not None:
                failed = True  # the log failed: nothing is durable again (no acks follow)
            elif entry is not None and self._stalled and not isinstance(reply, BadRequestReply | WorkerError):
                recovered = True
            if entry is None or entry[0].done():
                continue  # timed out, or its call was cancelled
            if isinstance(reply, Answer):
                entry[0].set_result(reply.data)  # the decider's answer, UNAVAILABLE ones too
            elif isinstance(reply, BadRequestReply | WorkerError):
                entry[0].set_exception(reply)
            elif error is not None:
                entry[0].set_exception(AuditUnavailable(error))
            else:
                entry[0].set_result(reply)
        if failed:
            self._on_failure()
        elif recovered and self._failure is None:
            self._stalled = False
            log.info("audit log %s: records are durable again", self.path)
            self._on_recovery()

    def _expire(self) -> None:
        """Fail the records that waited ``timeout``; the writer drops them unless already taken."""
        assert self._loop is not None
        self._watchdog = None
        now = self._loop.time()
        expired = []
        for ident, (future, deadline) in self._pending.items():
            if deadline > now:
                self._watchdog = self._loop.call_at(deadline, self._expire)
                break
            expired.append((ident, future))
        for ident, future in expired:
            del self._pending[ident]
            self._out.append(b"X" + _U64.pack(ident))
            if not future.done():
                future.set_exception(
                    AuditUnavailable(
                        f"audit log {self.path}: no answer within {self.timeout:g}s (a decision that "
                        "waits on the database or an IdP, or a record that waits on the disk)"
                    )
                )
        if expired:
            self._stalled = True
            self._flush()
            self._on_failure()

    def _fail(self, reason: str) -> None:
        if self._failure is None:
            self._failure = reason
            log.error("audit log %s: %s; every further decision will be answered UNAVAILABLE", self.path, reason)
        self._detach()
        pending, self._pending = self._pending, {}
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(AuditUnavailable(reason))
        self._on_failure()

    def _how_it_ended(self) -> str:
        """How the writer ended, once its pipe closed: the process is usually reaped a moment later.
        Waits at most 50 ms, once, on the event loop: only after the log has failed."""
        try:
            status = self._proc.wait(0.05)
        except subprocess.TimeoutExpired:
            return "closed its pipe"
        return _exit_status(status)

    def _detach(self) -> None:
        loop = self._loop
        if loop is None:
            return
        loop.remove_reader(self._reply_fd)
        if self._waiting_writable:
            loop.remove_writer(self._request_fd)
            self._waiting_writable = False
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    # -- any thread ---------------------------------------------------------------------------------

    def rotate(self) -> None:
        """Rotate the log (SIGHUP to the writer process)."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGHUP)

    def close(self, timeout: float = 30.0) -> None:
        """Send what the event loop still holds, let the writer write out everything it was sent,
        and wait (at most ``timeout``) for it to exit. Idempotent."""
        with self._close_lock:
            if self._closing:
                return
            self._closing = True
        deadline = time.monotonic() + timeout
        _finish(self._request_fd, self._reply_fd, self._stop_loop_side(), deadline)
        self._fds_closed = True
        try:
            status = self._proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("audit writer process %d did not finish within %.0f s; killing it", self._proc.pid, timeout)
            self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):  # a disk that hangs keeps it in D state
                status = self._proc.wait(5)
        else:
            if status:
                log.error("audit writer process %d %s", self._proc.pid, _exit_status(status))
        with contextlib.suppress(OSError):
            os.close(self._reply_fd)

    def _stop_loop_side(self) -> bytes:
        """On the loop's thread (if it still runs): stop watching the pipes; return unsent bytes."""
        loop = self._loop

        def take() -> bytes:
            self._detach()
            data, self._out = b"".join(self._out), []
            return data

        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if loop is None or loop.is_closed() or not loop.is_running() or loop is current:
            return take()
        done = threading.Event()
        box: list[bytes] = []

        def run() -> None:
            box.append(take())
            done.set()

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # closed meanwhile
            return take()
        if not done.wait(10):
            log.error("the event loop did not answer; closing the audit writer anyway")
            return b""
        return box[0]


def run(entry: Callable[[], int]) -> None:  # pragma: no cover - the writer process
    """Run ``entry`` as the process's main, with its exit status; a line in the server's log on
    failure, not a traceback."""
    try:
        sys.exit(entry())
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            sys.exit(0)  # the server is gone
        print(f"agentceiling audit writer: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        print(f"agentceiling audit writer: internal error: {exc!r}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover - the writer process
    run(main)
