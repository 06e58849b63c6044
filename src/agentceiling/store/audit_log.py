"""Append-only, hash-chained, group-committed audit log (in the style of Vault's file audit device).

One log per server process, e.g. ``<data-dir>/audit/audit.log``.  Every authorization decision is
appended (and, with ``fsync=True``, made durable) *before* the endpoint answers; if the log cannot be
written the endpoint answers UNAVAILABLE, as Vault does when no audit device works.

File format: one canonical JSON object per line
(``json.dumps(record, sort_keys=True, separators=(",", ":"))``, ASCII, ``\\n``-terminated)::

    {"decision":{...},"hash":"<hex>","prev_hash":"<hex>","seq":1,"time":"2025-01-01T00:00:00.000000Z"}

* ``seq`` is 1-based and contiguous.
* ``hash`` is the hex SHA-256 of the canonical JSON of the record *without* its ``hash`` field.
* ``prev_hash`` is the previous record's ``hash`` (which covers every byte of the previous record's
  canonical line except the hash itself), or 64 zeros for the first record.  A receipt's ``hash``
  therefore equals the next record's ``prev_hash``.

The chain is unkeyed: it detects accidental corruption and edits by anyone who does not also rewrite
every later record.  Removing records from the *end*, or rewriting the whole chain, is only
detectable against an external anchor: a ``(seq, hash)`` pair kept elsewhere (an append receipt, or
``agentceiling audit anchor``), which :func:`verify` and :func:`verify_chain` check when given.

Rotation: the active file is ``<log>``; :meth:`AuditLog.request_rotation` (the server's SIGHUP,
``agentceiling audit rotate``) or a size limit (``rotate_bytes``) renames it to the *segment*
``<log>.<first seq, 12 digits>`` and starts a new active file whose first record is a rotation
marker (decision ``{"event": "audit_log_rotated", ...}``) chained to the segment's last record.
The chain runs unbroken through every segment: :func:`verify` accepts a file that starts after
seq 1 only with that marker (so records cut from the head of a file are still detected), and
:func:`verify_chain` checks every segment in the directory and the links between them. Old
segments may be archived or removed by the operator; the chain then starts at the oldest one left,
which :func:`verify_chain` reports.

Concurrency: :meth:`AuditLog.append` may be called from many threads.  A single writer thread takes
every pending record, writes them with one ``os.write`` and makes them durable with one
``os.fdatasync`` (group commit), then wakes all the waiters.  Exclusive use of a log file by one
process is enforced with ``fcntl.flock`` on the sidecar ``<log>.lock``.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Final

__all__ = [
    "GENESIS_HASH",
    "MAX_LINE_BYTES",
    "ROTATED_EVENT",
    "AuditLog",
    "AuditLogCorrupt",
    "AuditLogError",
    "AuditLogLocked",
    "AuditReceipt",
    "AuditUnavailable",
    "ChainResult",
    "VerifyResult",
    "chain_files",
    "check_canonical",
    "format_record",
    "iter_records",
    "lock_path",
    "segment_paths",
    "tail",
    "verify",
    "verify_chain",
]

log = logging.getLogger(__name__)

GENESIS_HASH: Final = "0" * 64
#: ``decision.event`` of the first record of an active file started by a rotation.
ROTATED_EVENT: Final = "audit_log_rotated"
_SEGMENT_DIGITS: Final = 12
#: Longest line (record + newline) the log writes or accepts when reading.
MAX_LINE_BYTES: Final = 4 * 1024 * 1024
#: Room left in a line for everything but the decision payload.
_ENVELOPE_BYTES: Final = 512
#: A group commit stops taking records once it holds this many payload bytes (it always takes one).
_MAX_BATCH_BYTES: Final = 8 * 1024 * 1024

_FILE_MODE: Final = 0o600
_DIR_MODE: Final = 0o700
_CHUNK: Final = 64 * 1024
_RECORD_KEYS: Final = frozenset({"decision", "hash", "prev_hash", "seq", "time"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
# A compact JWS/JWT (or the first three parts of a JWE): a base64url header that decodes to a JSON
# object -- '{' then '"' (any first member name), ' ', '\t', '\n' or '\r' begins eyI-eyL, eyA-eyD,
# ewk-ewn, ewo-ewr or ew0-ew3 -- then two more base64url parts (the payload of a detached JWS and
# the signature of an unsecured JWT may be empty). The minimum header length keeps ordinary words
# from matching; there is no word boundary, so a token glued to other text (``x_<token>``) is found
# too. (A header with whitespace before its '{' is not found: the token presented with a decision
# is also removed by its exact text, see :func:`redact_jwts_in_json`.)
JWT_LIKE = re.compile(r"e(?:y[A-DI-L]|w[0-3k-r])[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
# Only text of a token's own alphabet can be replaced in JSON text without touching its structure.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def _may_hold_jwt(text: str) -> bool:
    """A cheap first test: every header :data:`JWT_LIKE` matches begins with "ey" or "ew"."""
    return "ey" in text or "ew" in text


def looks_like_jwt(text: str) -> bool:
    """Whether ``text`` holds something that looks like a raw token (which the log never stores)."""
    return _may_hold_jwt(text) and JWT_LIKE.search(text) is not None


def check_canonical(decision: str) -> bytes:
    """The bytes of a record given as canonical JSON (see :meth:`AuditLog.append_canonical`), after
    the cheap checks; ``ValueError`` (``TypeError`` for a non-string) for what the log refuses."""
    if not isinstance(decision, str):
        raise TypeError(f"decision must be a str, not {type(decision).__name__}")
    if not (decision.startswith("{") and decision.endswith("}") and decision.isascii()):
        raise ValueError("audit decision is not the canonical JSON of an object")
    if looks_like_jwt(decision):
        raise ValueError(
            "audit decision contains a string that looks like a raw JWT/JWS; "
            "the audit log never stores tokens (log its SHA-256 instead)"
        )
    if len(decision) > MAX_LINE_BYTES - _ENVELOPE_BYTES:
        raise ValueError(f"audit decision too large ({len(decision)} bytes)")
    return decision.encode("ascii")


def redact_jwts(text: str, replacement: str) -> str:
    """``text`` with everything :func:`looks_like_jwt` would find replaced by ``replacement``."""
    return JWT_LIKE.sub(replacement, text) if _may_hold_jwt(text) else text


def _escaped(text: str, i: int) -> bool:
    """Whether the character at ``i`` of JSON text is escaped (preceded by an odd run of '\\')."""
    n = 0
    while i - n - 1 >= 0 and text[i - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def _span_start(text: str, start: int) -> int:
    """Where a replacement of a run found at ``start`` of JSON text must begin: at the escape whose
    last hex digit the run begins with, if any (a real escape: its backslash not itself escaped)."""
    if start >= 5 and text[start - 5] == "\\" and text[start - 4] == "u" and not _escaped(text, start - 5):
        head = text[start - 3 : start]
        if all(c in "0123456789abcdefABCDEF" for c in head):
            return start - 5
    return start


def redact_jwts_in_json(text: str, replacement: str, also: str = "") -> str:
    """JSON text (as :func:`json.dumps` writes it, ASCII) with every run that looks like a token,
    and every occurrence of ``also`` (the token presented with a decision, whatever its header;
    only when made of a compact JWS's characters, which never spell JSON structure), replaced by
    ``replacement``: found in the escaped text, as the log's own check sees it, and never cutting
    an escape sequence in two. ``replacement`` must need no escaping in JSON."""
    # In JSON text, the last hex digit of an escape can begin a run ("\u001e" then "yJ..."): the
    # replacement then takes the escape along (_span_start), never leaving half of it behind.
    spans: list[tuple[int, int]] = []
    if _may_hold_jwt(text):
        spans += ((_span_start(text, m.start()), m.end()) for m in JWT_LIKE.finditer(text))
    if len(also) >= 16 and also in text and _COMPACT_JWS.fullmatch(also):
        i = text.find(also)
        while i >= 0:
            spans.append((_span_start(text, i), i + len(also)))
            i = text.find(also, i + len(also))
    if not spans:
        return text
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:  # overlapping runs (the token is one too): one replacement
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out: list[str] = []
    pos = 0
    for start, end in merged:
        out += (text[pos:start], replacement)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


# --------------------------------------------------------------------------------------------------
# Errors and result types
# --------------------------------------------------------------------------------------------------


class AuditLogError(Exception):
    """Base class of the audit log's errors."""


class AuditUnavailable(AuditLogError):
    """The decision could not be durably audited; the endpoint must answer UNAVAILABLE."""

    code: Final = "UNAVAILABLE"


class AuditLogLocked(AuditLogError):
    """Another process (or another AuditLog in this process) has the log open for writing."""


class AuditLogCorrupt(AuditLogError):
    """The log's content is not a valid record stream (beyond a torn, unacknowledged tail)."""


@dataclass(frozen=True, slots=True)
class AuditReceipt:
    """Proof that a decision was appended (and fsync'd when the log was opened with fsync=True)."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of :func:`verify`.

    ``records`` counts the records verified good before the first problem; ``first_bad_seq`` is the
    sequence position at which verification failed (``records + 1``), or None when ``ok``.
    """

    ok: bool
    records: int
    first_bad_seq: int | None
    problem: str
    first_seq: int = 1
    """Sequence number of the file's first record (> 1 for a file started by a rotation)."""
    last_hash: str = GENESIS_HASH
    """Hash of the last good record (the file's first ``prev_hash`` when it has none)."""
    start_hash: str = GENESIS_HASH
    """``prev_hash`` of the file's first record: what links it to the previous segment."""
    anchored: frozenset[int] = frozenset()
    """The anchors (by seq) found in this file with the expected hash."""


@dataclass(frozen=True, slots=True)
class ChainResult:
    """Outcome of :func:`verify_chain` over the active file and its rotated segments."""

    ok: bool
    records: int
    files: tuple[Path, ...]
    problem: str
    first_seq: int = 1
    """Sequence number of the oldest record present; > 1 when older segments were archived."""


def segment_path(path: Path, first_seq: int) -> Path:
    """Name of the rotated segment of the log at ``path`` whose first record is ``first_seq``."""
    return path.with_name(f"{path.name}.{first_seq:0{_SEGMENT_DIGITS}d}")


def lock_path(path: Path) -> Path:
    """The lock file of the log at ``path``: held by the process appending to it, which writes its
    pid there."""
    return path.with_name(path.name + ".lock")


def chain_files(path: Path) -> list[Path]:
    """Every file of the log at ``path``, oldest first: its rotated segments, then the active file
    when it exists."""
    return [*segment_paths(path), *([path] if path.exists() else [])]


def segment_paths(path: Path) -> list[Path]:
    """The rotated segments of the log at ``path``, oldest first (not the active file)."""
    pattern = re.compile(re.escape(path.name) + rf"\.(\d{{{_SEGMENT_DIGITS},}})")
    found: list[tuple[int, Path]] = []
    try:
        entries = list(path.parent.iterdir())
    except (FileNotFoundError, NotADirectoryError):  # no log there (a --data-dir that is a file)
        return []
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is not None:
            if not entry.is_file():  # a FIFO would block whoever opens it (a directory: fails later)
                raise OSError(errno.EINVAL, "named like a segment of the audit log, but not a regular file", str(entry))
            found.append((int(m.group(1)), entry))
    return [p for _, p in sorted(found)]


# --------------------------------------------------------------------------------------------------
# Low-level file helpers
# --------------------------------------------------------------------------------------------------


def _pread_exact(fd: int, size: int, offset: int) -> bytes:
    parts: list[bytes] = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            raise OSError(errno.EIO, f"unexpected end of file at offset {offset}")
        parts.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(parts)


def _rfind_newline(fd: int, end: int) -> int:
    """Offset of the last b"\\n" strictly before ``end``, or -1. Reads backwards in chunks."""
    pos = end
    while pos > 0:
        start = max(0, pos - _CHUNK)
        i = _pread_exact(fd, pos - start, start).rfind(b"\n")
        if i >= 0:
            return start + i
        pos = start
    return -1


def _complete_end(fd: int, size: int) -> int:
    """End offset of the last complete (newline-terminated) line in a file of ``size`` bytes."""
    if size == 0 or _pread_exact(fd, 1, size - 1) == b"\n":
        return size
    return _rfind_newline(fd, size - 1) + 1


def _start_of_last_lines(fd: int, end: int, n: int) -> int:
    """Offset of the first of the last ``n`` lines of ``[0, end)`` (``end`` is at a line boundary)."""
    if n <= 0:
        return end
    seen = 0
    pos = end
    while pos > 0:
        start = max(0, pos - _CHUNK)
        buf = _pread_exact(fd, pos - start, start)
        i = len(buf)
        while (i := buf.rfind(b"\n", 0, i)) >= 0:
            seen += 1
            if seen == n + 1:
                return start + i + 1
        pos = start
    return 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


if sys.platform == "darwin" and hasattr(fcntl, "F_FULLFSYNC"):  # pragma: no cover - not Linux

    def _sync(fd: int) -> None:
        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)

elif hasattr(os, "fdatasync"):

    def _sync(fd: int) -> None:
        os.fdatasync(fd)

else:  # pragma: no cover

    def _sync(fd: int) -> None:
        os.fsync(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # pragma: no cover - os.write raises instead
            raise OSError(errno.EIO, "write returned 0")
        view = view[n:]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record_line(payload: bytes, seq: int, prev: str, now: str) -> tuple[tuple[bytes, ...], str]:
    """The canonical line of a record (as parts to join) and its hash, from the decision's
    canonical JSON: the keys sort as decision, hash, prev_hash, seq, time."""
    rest = f',"prev_hash":"{prev}","seq":{seq},"time":"{now}"}}'.encode("ascii")
    h = hashlib.sha256(b'{"decision":')
    h.update(payload)
    h.update(rest)
    digest = h.hexdigest()
    return (b'{"decision":', payload, b',"hash":"', digest.encode("ascii"), b'"', rest, b"\n"), digest


def _first_seq(fd: int, end: int, path: Path) -> int:
    """``seq`` of the first record of a file whose complete lines end at ``end`` (> 0)."""
    seq = _first_line_seq(fd, end)
    if seq is None or seq < 1:
        raise AuditLogCorrupt(f"audit log {path}: the first line is not a record; refusing to open it")
    return seq


def _first_line_seq(fd: int, end: int) -> int | None:
    """``seq`` of the record on the first line of a file whose complete lines end at ``end`` (None
    if there is none, or it is not a record)."""
    head = _pread_exact(fd, min(end, MAX_LINE_BYTES), 0)
    nl = head.find(b"\n")
    return _line_seq(head[: nl + 1]) if nl >= 0 else None


def _line_seq(line: bytes) -> int | None:
    """``seq`` of the record on ``line`` (None if it is not a record)."""
    try:
        rec = _parse_json_line(line)
    except ValueError:
        return None
    return _seq_of(rec) if isinstance(rec, dict) else None


#: Every record line starts with this (its keys sort with "decision" first).
_LINE_START: Final = b'{"decision":'


def _looks_torn(fragment: bytes) -> bool:
    """Whether ``fragment`` (the start of an incomplete last line) can be what a crash left of an
    append: the beginning of a record, or NUL bytes of blocks that were never written."""
    return b"\0" in fragment or fragment.startswith(_LINE_START) or _LINE_START.startswith(fragment)


def _line_number(fd: int, offset: int) -> int:
    """1-based number of the line that starts at ``offset``."""
    count, pos = 1, 0
    while pos < offset:
        chunk = _pread_exact(fd, min(_CHUNK, offset - pos), pos)
        count += chunk.count(b"\n")
        pos += len(chunk)
    return count


def _record_hash(rec: Mapping[str, Any]) -> str:
    body = {k: v for k, v in rec.items() if k != "hash"}
    return hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest()


def _check_record(rec: Any) -> str | None:
    """Why a parsed line is not a well-formed, self-consistent record (None when it is)."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    missing = _RECORD_KEYS - rec.keys()
    if missing:
        return f"missing field(s) {', '.join(sorted(missing))}"
    seq = rec["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return "seq is not a positive integer"
    for key in ("hash", "prev_hash"):
        value = rec[key]
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            return f"{key} is not a hex SHA-256"
    if not isinstance(rec["time"], str):
        return "time is not a string"
    if not isinstance(rec["decision"], dict):
        return "decision is not an object"
    try:
        digest = _record_hash(rec)
    except ValueError:
        return "contains a non-finite number"
    if digest != rec["hash"]:
        return "hash mismatch (record edited)"
    return None


def _line_problem(rec: Any, line: bytes) -> str | None:
    """Why ``line`` (parsed as ``rec``) is not a valid record in canonical form, or None."""
    problem = _check_record(rec)
    if problem is None and _canonical(rec).encode() + b"\n" != line:
        problem = "not in canonical form"
    return problem


#: Deepest nesting of arrays and objects accepted in a line read back. A record holds its decision
#: one level down, and a decision nests at most 65 levels (``_check_keys``). JSON nested far deeper
#: makes json.loads raise RecursionError, and JSON just shallow enough for json.loads can still make
#: re-encoding or printing the result raise it.
_MAX_READ_DEPTH: Final = 128


def _nested_deeper(obj: Any, limit: int) -> bool:
    """Whether ``obj`` (parsed JSON) nests arrays and objects more than ``limit`` levels deep
    (without recursion)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _parse_json_line(line: bytes) -> Any:
    """json.loads for one line; raises ValueError (incl. UnicodeDecodeError) if it is not JSON, or
    if it nests arrays and objects deeper than any record does (:data:`_MAX_READ_DEPTH`)."""
    text = line.decode("utf-8")
    try:
        obj = json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    # Only a line with that many brackets can nest that deep: records are not walked.
    if (
        isinstance(obj, dict | list)
        and text.count("[") + text.count("{") > _MAX_READ_DEPTH
        and _nested_deeper(obj, _MAX_READ_DEPTH)
    ):
        raise ValueError(f"JSON nested more than {_MAX_READ_DEPTH} levels deep")
    return obj


# --------------------------------------------------------------------------------------------------
# The log
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    payload: bytes  # canonical JSON of the decision
    future: Future[AuditReceipt] | None  # submit(); append() waits on ``event`` instead
    # Every record in the queue shares one Event, set once its group commit is done: one wake-up
    # per group instead of a Future (and its condition variable) per record.
    event: threading.Event
    receipt: AuditReceipt | None = None
    error: AuditUnavailable | None = None
    done: bool = False
    abandoned: bool = False  # its append() timed out before the writer took it

    def take(self) -> bool:
        """Called by the writer with the queue lock held: False drops the record."""
        if self.future is not None:
            return self.future.set_running_or_notify_cancel()
        return not self.abandoned

    def resolve(self, receipt: AuditReceipt | None, error: AuditUnavailable | None) -> None:
        if self.future is not None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(receipt)  # type: ignore[arg-type]
        self.receipt, self.error, self.done = receipt, error, True


class AuditLog:
    """A single-writer, append-only, hash-chained audit log file.  Create with :meth:`open`."""

    path: Path
    lock_path: Path
    fsync: bool
    #: Bytes of a torn (never acknowledged) last line removed when the log was opened.
    recovered_torn_bytes: int

    def __init__(
        self,
        path: Path,
        *,
        fsync: bool,
        max_batch: int,
        max_delay: float,
        rotate_bytes: int = 0,
        writer_thread: bool = True,
    ) -> None:
        """Use :meth:`AuditLog.open`."""
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if max_delay < 0:
            raise ValueError("max_delay must be >= 0")
        if rotate_bytes < 0:
            raise ValueError("rotate_bytes must be >= 0")
        self.path = Path(path)
        self.lock_path = lock_path(self.path)
        self.fsync = fsync
        self.recovered_torn_bytes = 0
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[_Pending] = collections.deque()
        self._event = threading.Event()  # shared by every record now in the queue
        # Queue length at which an appender wakes the writer: 1 while it waits for work, the size
        # it lingers for, "never" while it commits (it looks at the queue when it is done). One
        # wake-up per group instead of one per record: under load each is a thread switch.
        self._wake_at = 1
        self._closing = False
        self._error: AuditUnavailable | None = None
        self._close_lock = threading.Lock()
        self._closed = False
        self._last_batch = 1
        self._batches = 0
        self._records = 0
        self._rotations = 0
        self._rotate_requested = False
        self._rotate_bytes = rotate_bytes
        self._rotate_at = rotate_bytes  # size that triggers the next rotation (0: never)
        # Owned by the writer thread once it runs (published under _cond for the properties).
        self._seq = 0
        self._hash = GENESIS_HASH
        self._size = 0
        self._first_seq = 1  # seq of the active file's first record (its segment's name)
        self._regular = True
        self._ident: tuple[int, int] = (0, 0)
        self._lock_fd = -1
        self._fd = -1

        self._ensure_dir(self.path.parent)
        lock_existed = os.path.lexists(self.lock_path)
        self._lock_fd = self._acquire_lock()
        try:
            self._open_file()
        except BaseException:
            if not lock_existed:
                # Leave no trace of a failed open (e.g. of a file that is not an audit log). Safe
                # while we hold the lock: _acquire_lock retries on a lock file that was unlinked.
                with contextlib.suppress(OSError):
                    os.unlink(self.lock_path)
            self._release()
            raise
        self._writer: threading.Thread | None = None
        if writer_thread:
            self._writer = threading.Thread(target=self._run, name="agentceiling-audit-writer", daemon=True)
            self._writer.start()

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        fsync: bool = True,
        max_batch: int = 512,
        max_delay: float = 0.002,
        rotate_bytes: int = 0,
        writer_thread: bool = True,
    ) -> AuditLog:
        """Open (creating if needed) the log at ``path`` for appending.

        Takes an exclusive lock on ``<path>.lock`` (:class:`AuditLogLocked` if held elsewhere),
        recovers ``seq`` and the chain head from the file's tail, and truncates a torn last line.
        ``max_batch`` caps the records per group commit; ``max_delay`` is the longest the writer
        lingers to let concurrent appenders join a batch (it only lingers when it has recently seen
        concurrency, so a lone appender is never delayed). ``rotate_bytes`` > 0 rotates the active
        file once it reaches that size (see the module docstring); an empty active file next to
        rotated segments continues their chain. With ``writer_thread=False`` the log starts no thread:
        its owner commits whole groups itself with :meth:`write_group` (and cannot ``append``).
        """
        return cls(
            path,
            fsync=fsync,
            max_batch=max_batch,
            max_delay=max_delay,
            rotate_bytes=rotate_bytes,
            writer_thread=writer_thread,
        )

    # -- opening -----------------------------------------------------------------------------------

    @staticmethod
    def _ensure_dir(directory: Path) -> None:
        if directory.is_dir():
            if stat.S_IMODE(directory.stat().st_mode) & 0o077:
                log.warning("audit log directory %s is accessible to group/others (want 0700)", directory)
            return
        missing: list[Path] = []
        d = directory
        while not d.exists():
            missing.append(d)
            d = d.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                d.mkdir(mode=_DIR_MODE)
                os.chmod(d, _DIR_MODE)  # independent of the umask
            _fsync_dir(d.parent)

    def _acquire_lock(self) -> int:
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise self._locked_error(fd) from None
                # If the lock file was unlinked/replaced between our open and flock, we hold a lock
                # nobody else will see: retry on the current file.
                try:
                    st = os.stat(self.lock_path)
                except FileNotFoundError:
                    os.close(fd)
                    continue
                fst = os.fstat(fd)
                if (st.st_dev, st.st_ino) != (fst.st_dev, fst.st_ino):
                    os.close(fd)
                    continue
                if stat.S_IMODE(fst.st_mode) != _FILE_MODE:
                    os.fchmod(fd, _FILE_MODE)
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return fd
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise

    def _locked_error(self, fd: int) -> AuditLogLocked:
        try:
            owner = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        except OSError:
            owner = ""
        pid = owner if owner.isdigit() else "unknown"
        if pid == str(os.getpid()):
            return AuditLogLocked(f"audit log {self.path} is already open in this process (pid {pid})")
        return AuditLogLocked(f"audit log {self.path} is in use by another process (pid {pid})")

    def _open_file(self) -> None:
        existed = self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, _FILE_MODE)
        try:
            st = os.fstat(self._fd)
            self._ident = (st.st_dev, st.st_ino)
            self._regular = stat.S_ISREG(st.st_mode)
            if self._regular:
                # Read-only checks first: a file that is not an audit log is refused unchanged.
                end = self._recover(st.st_size)
                if stat.S_IMODE(st.st_mode) != _FILE_MODE:
                    os.fchmod(self._fd, _FILE_MODE)
                if end < st.st_size:
                    self.recovered_torn_bytes = st.st_size - end
                    log.warning(
                        "audit log %s: truncating %d bytes of a torn (unacknowledged) last line",
                        self.path,
                        st.st_size - end,
                    )
                    os.ftruncate(self._fd, end)
                    _sync(self._fd)
            # Non-regular files (a FIFO, /dev/null, /dev/full, ...) have no tail to recover: the
            # chain starts at seq 1.
            if not existed:
                _fsync_dir(self.path.parent)
            if self._regular and self._size == 0:
                segments = segment_paths(self.path)
                if segments:
                    self._continue_from(segments[-1])
        except BaseException:
            if not existed and self._regular:
                with contextlib.suppress(OSError):
                    if os.fstat(self._fd).st_size == 0:
                        os.unlink(self.path)
            raise

    def _recover(self, size: int) -> int:
        """Find the chain head from the tail of the file (``size`` bytes) without changing it;
        returns the end of the records, before a torn last line that the caller truncates.

        A torn write is what a crash leaves after the last record: an incomplete line (no
        newline) that starts like a record, or a line holding NUL bytes (file blocks a power loss
        left unwritten; a record never contains one: JSON escapes it). Any other line that is not
        a valid record is corruption, or the file is not an audit log: :class:`AuditLogCorrupt`."""
        fd = self._fd
        end = _complete_end(fd, size)
        if end < size and not _looks_torn(_pread_exact(fd, min(size - end, _CHUNK), end)):
            raise AuditLogCorrupt(
                f"audit log {self.path}: line {_line_number(fd, end)} (offset {end}) is not a record "
                "(incomplete, and not the start of one); not an audit log? refusing to open it"
            )
        seq, last_hash = 0, GENESIS_HASH
        if end > 0:
            start = _rfind_newline(fd, end - 1) + 1
            line = _pread_exact(fd, end - start, start)
            try:
                rec = _parse_json_line(line)
            except ValueError:
                if b"\0" not in line:
                    raise AuditLogCorrupt(
                        f"audit log {self.path}: line {_line_number(fd, start)} (offset {start}) is not a "
                        "record (not JSON); not an audit log? refusing to open it"
                    ) from None
                # Newline-terminated crash debris (NUL bytes): also torn.
                log.warning("audit log %s: last line (offset %d) holds NUL bytes: torn", self.path, start)
                end = start
                if end > 0:
                    start = _rfind_newline(fd, end - 1) + 1
                    line = _pread_exact(fd, end - start, start)
                    try:
                        rec = _parse_json_line(line)
                    except ValueError:
                        raise AuditLogCorrupt(
                            f"audit log {self.path}: the last two lines are not JSON (line "
                            f"{_line_number(fd, start)}, offset {start}); refusing to open it"
                        ) from None
            if end > 0:
                problem = _line_problem(rec, line)
                if problem is not None:
                    raise AuditLogCorrupt(
                        f"audit log {self.path}: last record (line {_line_number(fd, start)}, offset {start}) "
                        f"is invalid: {problem}; refusing to open it"
                    )
                seq, last_hash = rec["seq"], rec["hash"]
                self._first_seq = _first_seq(fd, end, self.path)
        self._seq, self._hash, self._size = seq, last_hash, end
        return end

    def _continue_from(self, segment: Path) -> None:
        """The active file is empty but rotated segments exist (a crash between a rotation's rename
        and its marker, or the file removed while the server was stopped): continue the chain from
        the newest segment's last record, starting with a rotation marker."""
        fd = os.open(segment, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size == 0 or _complete_end(fd, size) != size:
                raise AuditLogCorrupt(f"audit log segment {segment} is empty or torn; refusing to open the log")
            start = _rfind_newline(fd, size - 1) + 1
            line = _pread_exact(fd, size - start, start)
            first = _first_seq(fd, size, segment)
        finally:
            os.close(fd)
        try:
            rec = _parse_json_line(line)
        except ValueError:
            rec = None
        problem = _line_problem(rec, line)
        if problem is not None:
            raise AuditLogCorrupt(
                f"audit log segment {segment}: last record is invalid: {problem}; refusing to open the log"
            )
        assert isinstance(rec, dict)
        log.warning(
            "audit log %s is empty: continuing the hash chain of %s after seq %d", self.path, segment.name, rec["seq"]
        )
        self._seq, self._hash = rec["seq"], rec["hash"]
        self._append_marker(segment.name, first)

    def _append_marker(self, previous: str, previous_first_seq: int) -> None:
        """Write the rotation marker as the active file's first record, durably."""
        payload = _canonical(
            {
                "event": ROTATED_EVENT,
                "previous_file": previous,
                "previous_first_seq": previous_first_seq,
                "previous_last_seq": self._seq,
            }
        ).encode("ascii")
        parts, digest = _record_line(payload, self._seq + 1, self._hash, _now())
        data = b"".join(parts)
        _write_all(self._fd, data)
        _sync(self._fd)
        with self._cond:
            self._seq += 1
            self._hash = digest
            self._size += len(data)
            self._first_seq = self._seq

    def _release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = -1

    # -- public API --------------------------------------------------------------------------------

    def submit(self, decision: Mapping[str, Any]) -> Future[AuditReceipt]:
        """Queue ``decision`` for appending; the future resolves once it is written (and fsync'd).

        Invalid payloads raise ``ValueError``/``TypeError`` immediately; a failed or closed log
        resolves the future with :class:`AuditUnavailable`.  Cancelling the future before the writer
        picks it up drops the record.
        """
        fut: Future[AuditReceipt] = Future()
        self._enqueue(self._encode(decision), fut)
        return fut

    def _enqueue(self, payload: bytes, fut: Future[AuditReceipt] | None) -> _Pending:
        if self._writer is None:
            raise RuntimeError("this audit log has no writer thread: use write_group")
        with self._cond:
            item = _Pending(payload, fut, self._event)
            if self._error is not None:
                item.resolve(None, self._unavailable())
            elif self._closing:
                item.resolve(None, AuditUnavailable(f"audit log {self.path} is closed"))
            else:
                self._queue.append(item)
                if len(self._queue) >= self._wake_at:
                    self._cond.notify()
        return item

    def append(self, decision: Mapping[str, Any], *, timeout: float | None = None) -> AuditReceipt:
        """Append ``decision``; returns once the record is written and (with fsync) durable.

        Raises :class:`AuditUnavailable` if it could not be (including after ``timeout`` seconds, in
        which case the record may still be written later).
        """
        return self._wait(self._enqueue(self._encode(decision), None), timeout)

    def append_canonical(self, decision: str, *, timeout: float | None = None) -> AuditReceipt:
        """:meth:`append` for a decision the caller has already encoded in the log's canonical form
        (``json.dumps(decision, sort_keys=True, separators=(",", ":"))``, ASCII): the hot path of
        the authorization endpoint, which writes its records from pre-encoded parts
        (:mod:`agentceiling.service.audit_record`). Only cheap checks run here; a record that is not
        canonical would be reported by :func:`verify`, so tests verify every log they write.
        """
        return self._wait(self._enqueue(check_canonical(decision), None), timeout)

    def abandon(self, item: _Pending) -> None:
        """The caller stopped waiting for ``item``: drop it unless the writer has taken it."""
        with self._cond:
            item.abandoned = True

    def _wait(self, item: _Pending, timeout: float | None) -> AuditReceipt:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not item.done:
            remaining = None if deadline is None else deadline - time.monotonic()
            if (remaining is not None and remaining <= 0) or not item.event.wait(remaining):
                if item.done:
                    break
                self.abandon(item)
                raise AuditUnavailable(f"audit log {self.path}: timed out after {timeout}s")
        if item.error is not None:
            raise item.error
        assert item.receipt is not None
        return item.receipt

    def write_group(self, payloads: Sequence[bytes]) -> list[AuditReceipt]:
        """Commit ``payloads`` (what :func:`check_canonical` returned) as one group in the calling
        thread and return their receipts once they are durable: the writer of a log opened with
        ``writer_thread=False``. A requested rotation happens first (so ``write_group([])`` performs
        one that was requested while idle), a size-triggered one after. Raises
        :class:`AuditUnavailable` when the group cannot be written, and from then on."""
        if self._writer is not None:
            raise RuntimeError("this audit log has a writer thread: use append")
        if self._error is not None:
            raise self._unavailable()
        if self._closing:
            raise AuditUnavailable(f"audit log {self.path} is closed")
        try:
            if self._rotate_requested:
                self._rotate_requested = False
                self._rotate()
            if not payloads:
                return []
            receipts = self._commit_payloads(payloads)
            if self._rotate_at and self._size >= self._rotate_at:
                self._rotate()
        except BaseException as exc:
            self._fail(exc, [])
            raise self._unavailable() from exc
        return receipts

    def request_rotation(self) -> None:
        """Ask the writer to rotate the active file before its next group commit (or now, if idle).

        Safe to call from a signal handler's thread. A no-op for an empty or non-regular file."""
        with self._cond:
            self._rotate_requested = True
            self._cond.notify()

    def close(self) -> None:
        """Write out everything already submitted, then release the file and the lock. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            if self._writer is not None:
                self._writer.join()
            self._release()
            self._closed = True

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "failed" if self._error else "closed" if self._closing else "open"
        return f"<AuditLog {str(self.path)!r} {state} seq={self.last_seq}>"

    @property
    def last_seq(self) -> int:
        """Sequence number of the last committed record (0 for an empty log)."""
        with self._cond:
            return self._seq

    @property
    def last_hash(self) -> str:
        """Hash of the last committed record (:data:`GENESIS_HASH` for an empty log)."""
        with self._cond:
            return self._hash

    @property
    def error(self) -> AuditUnavailable | None:
        """The failure that made this log unavailable, if any."""
        return self._error

    @property
    def failed(self) -> bool:
        return self._error is not None

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def stats(self) -> dict[str, int]:
        """Committed records and group commits (batches) since open."""
        with self._cond:
            return {"records": self._records, "batches": self._batches, "rotations": self._rotations}

    # -- payload checks ----------------------------------------------------------------------------

    @staticmethod
    def _encode(decision: Mapping[str, Any]) -> bytes:
        if not isinstance(decision, Mapping):
            raise TypeError(f"decision must be a mapping, not {type(decision).__name__}")
        decision = dict(decision)
        _check_keys(decision, 0)
        text = _canonical(decision)  # TypeError/ValueError for non-JSON values, NaN
        if looks_like_jwt(text):
            raise ValueError(
                "audit decision contains a string that looks like a raw JWT/JWS; "
                "the audit log never stores tokens (log its SHA-256 instead)"
            )
        payload = text.encode("ascii")  # ensure_ascii=True: always ASCII
        if len(payload) > MAX_LINE_BYTES - _ENVELOPE_BYTES:
            raise ValueError(f"audit decision too large ({len(payload)} bytes)")
        return payload


    # -- writer thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        batch: list[_Pending] = []
        try:
            while True:
                event: threading.Event | None = None
                with self._cond:
                    self._wake_at = 1
                    while not self._queue and not self._closing and not self._rotate_requested:
                        self._cond.wait()
                    rotate, self._rotate_requested = self._rotate_requested, False
                    if not self._queue and not rotate:
                        return  # closing, and everything is written
                    if self._queue:
                        self._linger()
                        self._wake_at = sys.maxsize
                        batch = []
                        size = 0
                        while self._queue and len(batch) < self._max_batch and size < _MAX_BATCH_BYTES:
                            item = self._queue.popleft()
                            if item.take():
                                batch.append(item)
                                size += len(item.payload)
                        event, self._event = self._event, threading.Event()
                        for left in self._queue:  # records that did not fit wait for the next group
                            left.event = self._event
                if rotate:
                    self._rotate()
                if batch:
                    self._commit(batch)
                    batch = []
                if event is not None:
                    event.set()
                if self._rotate_at and self._size >= self._rotate_at:
                    self._rotate()
        except BaseException as exc:
            self._fail(exc, batch)

    def _linger(self) -> None:
        """Called with _cond held: give concurrent appenders a moment to join the batch.

        Only lingers when the previous batch had company, and only until as many records as last
        time are queued (or max_batch, or max_delay elapsed), so a lone appender never waits.
        """
        target = min(self._last_batch, self._max_batch)
        if self._max_delay <= 0 or target <= 1 or len(self._queue) >= target:
            return
        deadline = time.monotonic() + self._max_delay
        self._wake_at = target
        while len(self._queue) < target and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)

    def _commit(self, batch: list[_Pending]) -> None:
        receipts = self._commit_payloads([item.payload for item in batch])
        for item, receipt in zip(batch, receipts, strict=True):
            item.resolve(receipt, None)

    def _commit_payloads(self, payloads: Sequence[bytes]) -> list[AuditReceipt]:
        seq, prev = self._seq, self._hash
        parts: list[bytes] = []
        receipts: list[AuditReceipt] = []
        now = _now()  # commit time, shared by the batch
        for payload in payloads:
            seq += 1
            line, digest = _record_line(payload, seq, prev, now)
            parts += line
            receipts.append(AuditReceipt(seq, digest))
            prev = digest
        data = b"".join(parts)
        _write_all(self._fd, data)
        if self.fsync:
            _sync(self._fd)
        self._check_still_linked()
        with self._cond:
            self._seq, self._hash = seq, prev
            self._size += len(data)
            self._records += len(payloads)
            self._batches += 1
            self._last_batch = len(payloads)
        return receipts

    def _rotate(self) -> None:
        """Writer thread, between group commits: the active file becomes the segment named after its
        first record, and a new active file starts with a marker chained to the segment's last
        record. A failure before the rename leaves everything as it was (logged; a size-triggered
        rotation is retried after another ``rotate_bytes``); after it, the log fails closed."""
        if not self._regular or self._size == 0:
            return
        segment = segment_path(self.path, self._first_seq)
        try:
            if segment.exists():
                raise FileExistsError(errno.EEXIST, "a segment of that name already exists", str(segment))
            self._check_still_linked()
            os.rename(self.path, segment)
        except OSError as exc:
            log.error("audit log %s: cannot rotate to %s: %s; still appending to it", self.path, segment.name, exc)
            if self._rotate_bytes:
                self._rotate_at = self._size + self._rotate_bytes
            return
        old = self._fd
        _fsync_dir(self.path.parent)
        self._fd = os.open(
            self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, _FILE_MODE
        )
        os.close(old)
        st = os.fstat(self._fd)
        self._ident = (st.st_dev, st.st_ino)
        with self._cond:
            self._size = 0
        previous_first = self._first_seq
        self._append_marker(segment.name, previous_first)
        _fsync_dir(self.path.parent)
        self._rotate_at = self._rotate_bytes
        with self._cond:
            self._rotations += 1
        log.info("audit log %s: rotated records %d-%d to %s", self.path, previous_first, self._seq - 1, segment.name)

    def _check_still_linked(self) -> None:
        """Records written to a deleted or renamed-away file are not in the audit log.

        One stat of the path: a deleted file is no longer there, a replaced one has another inode."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise OSError(errno.ENOENT, "audit log file was removed or renamed while open") from None
        if (st.st_dev, st.st_ino) != self._ident:
            raise OSError(errno.ESTALE, "audit log file was replaced while open")

    def _fail(self, exc: BaseException, batch: list[_Pending]) -> None:
        reason = f"{exc.strerror or exc}" if isinstance(exc, OSError) else repr(exc)
        error = AuditUnavailable(f"audit log {self.path} is unavailable: {reason}")
        error.__cause__ = exc
        log.error("%s; every further decision will be answered UNAVAILABLE", error)
        # Best effort: drop whatever part of the failed batch reached the file, so the file holds
        # exactly the acknowledged records (a power loss could still leave a torn tail; open fixes it).
        if self._regular and self._fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
        with self._cond:
            self._error = error
            pending = list(self._queue)
            self._queue.clear()
        for item in batch:
            if not item.done:
                item.resolve(None, self._unavailable())
            item.event.set()
        for item in pending:
            if item.take():
                item.resolve(None, self._unavailable())
            item.event.set()

    def _unavailable(self) -> AuditUnavailable:
        """A fresh exception per waiter (one instance raised in many threads gets a mixed traceback)."""
        assert self._error is not None
        error = AuditUnavailable(*self._error.args)
        error.__cause__ = self._error.__cause__
        return error


_CONTAINERS = (dict, list, tuple)
_STR_ONLY = {str}


def _check_keys(obj: dict[str, Any] | list[Any] | tuple[Any, ...], depth: int) -> None:
    """Keys must be strings (int keys would re-sort differently after a JSON round trip)."""
    if depth > 64:
        raise ValueError("audit decision is nested too deeply")
    if isinstance(obj, dict):
        key_types = set(map(type, obj))  # C-speed: this runs for every decision
        if not key_types <= _STR_ONLY:
            bad = next(t for t in key_types if t is not str)
            raise TypeError(f"audit decision keys must be strings, got {bad.__name__}")
        values: Any = obj.values()
    else:
        values = obj
    for v in values:
        if type(v) in _CONTAINERS or isinstance(v, _CONTAINERS):
            _check_keys(v, depth + 1)


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def _is_marker(rec: Mapping[str, Any]) -> bool:
    decision = rec.get("decision")
    return isinstance(decision, dict) and decision.get("event") == ROTATED_EVENT


def verify(path: Path, anchors: Mapping[int, str] | None = None) -> VerifyResult:
    """Check the whole chain of the log file at ``path`` in one streaming pass (constant memory).

    Detects edited records (hash mismatch or non-canonical bytes), removed, inserted, duplicated or
    reordered records (seq or prev_hash break), torn or unparsable lines anywhere, and a bad first
    record: it must be seq 1 with a zero ``prev_hash``, or, in a file started by a rotation, the
    rotation marker (whose ``prev_hash`` links to the previous segment: :func:`verify_chain`).
    A record whose seq is in ``anchors`` must have that hash. Raises ``OSError`` if the file
    cannot be read.
    """
    with open(path, "rb") as f:
        return _verify_stream(f, anchors or {})


def _verify_stream(f: BinaryIO, anchors: Mapping[int, str]) -> VerifyResult:
    """:func:`verify` of a file open for reading, from its current position (its start)."""
    expected = 1
    prev = GENESIS_HASH
    first_seq = 1
    start_hash = GENESIS_HASH
    count = 0
    anchored: set[int] = set()

    def bad(problem: str) -> VerifyResult:
        return VerifyResult(False, count, expected, problem, first_seq, prev, start_hash, frozenset(anchored))

    offset = 0
    while line := f.readline(MAX_LINE_BYTES + 1):
        where = f"line {count + 1} (offset {offset})"
        offset += len(line)
        if not line.endswith(b"\n"):
            if len(line) > MAX_LINE_BYTES:
                return bad(f"{where}: line longer than {MAX_LINE_BYTES} bytes")
            return bad(f"{where}: torn last line (no trailing newline)")
        try:
            rec = _parse_json_line(line)
        except ValueError:
            return bad(f"{where}: not valid JSON (torn or corrupted line)")
        problem = _check_record(rec)
        if problem is not None and not problem.startswith("hash mismatch"):
            return bad(f"{where}: {problem}")
        seq = rec["seq"]
        if count == 0 and seq != 1:
            if not _is_marker(rec):
                return bad(
                    f"{where}: first record has seq {seq} (expected 1, or the marker of a rotation; "
                    "records removed?)"
                )
            expected = first_seq = seq
            prev = start_hash = rec["prev_hash"]
        if seq != expected:
            if seq > expected:
                return bad(f"{where}: seq jumps from {expected - 1} to {seq} (records removed)")
            return bad(f"{where}: seq {seq} after {expected - 1} (records reordered or inserted)")
        if problem is not None:
            return bad(f"{where}: seq {seq}: {problem}")
        if rec["prev_hash"] != prev:
            what = (
                "first record's prev_hash is not zeros"
                if seq == 1
                else ("prev_hash does not match the previous record's hash (record removed, inserted or reordered)")
            )
            return bad(f"{where}: seq {seq}: {what}")
        if _canonical(rec).encode("utf-8") + b"\n" != line:
            return bad(f"{where}: seq {seq}: bytes are not in canonical form (record edited)")
        if seq in anchors:
            if rec["hash"] != anchors[seq]:
                return bad(f"{where}: seq {seq}: hash differs from the anchor (the chain was rewritten)")
            anchored.add(seq)
        prev = rec["hash"]
        expected += 1
        count += 1
    return VerifyResult(True, count, None, "", first_seq, prev, start_hash, frozenset(anchored))


def verify_chain(path: Path, anchors: Mapping[int, str] | None = None) -> ChainResult:
    """:func:`verify` every rotated segment of the log at ``path`` and the active file, oldest first,
    and the links between them: each file must start where the previous one ended (next ``seq``,
    ``prev_hash`` = its last ``hash``), so a missing, reordered or edited segment is detected.

    The oldest file present may start after seq 1 (older segments archived or removed by the
    operator): that is reported in ``first_seq``, not as a failure. Every anchor (``seq -> hash``,
    kept elsewhere) must be found with its hash: one past the end means records were removed from
    the end; one before the oldest file cannot be checked and fails too. Raises ``OSError`` if a
    file cannot be read.

    On a live log, rotations and appends go on while the files are read. The active file is opened
    before the segments are listed, so every segment before it is in the list whatever rotates
    meanwhile (the segments made after it hold later records and are left out), and it is read
    through that descriptor even if a rotation renames it. A failure in the active file while it
    grows (its last line still being written) is checked again rather than reported, and so is a
    segment removed (archived) while the files were read."""
    anchors = anchors or {}
    checked: dict[tuple[str, int, int, int, int], VerifyResult] = {}
    for attempt in range(1, _VERIFY_ATTEMPTS + 1):
        last_try = attempt == _VERIFY_ATTEMPTS
        try:
            active: BinaryIO | None = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:  # no active file (or between a rotation's rename and the new one)
            active = None
        try:
            result, growing = _verify_files(path, active, anchors, checked)
        except FileNotFoundError as exc:
            if last_try or not exc.filename or os.path.lexists(exc.filename):
                raise
            continue  # a segment was removed since it was listed: list them again
        finally:
            if active is not None:
                active.close()
        if result.ok or not growing or last_try:
            return result
        time.sleep(0.01 * attempt)  # let the append in progress complete
    raise AssertionError("unreachable")  # pragma: no cover


#: How many times :func:`verify_chain` checks a log whose active file grew while a failure was found
#: in it, or whose segments were removed while they were read.
_VERIFY_ATTEMPTS: Final = 10


def _segment_seq(segment: Path) -> int:
    """The first seq of a rotated segment, from its name (see :func:`segment_paths`)."""
    return int(segment.name.rsplit(".", 1)[1])


def _verify_files(
    path: Path,
    active: BinaryIO | None,
    anchors: Mapping[int, str],
    checked: dict[tuple[str, int, int, int, int], VerifyResult],
) -> tuple[ChainResult, bool]:
    """One pass of :func:`verify_chain`, given the active file ``path`` open (``active``, or None
    when there is none); also returns whether the failure found is in the active file while it grew.
    ``checked`` keeps the results of segments, by name and identity, across passes."""
    segments = segment_paths(path)
    if active is not None:
        # Read after the listing: a file empty then had not been rotated (rotation needs a record).
        head = _first_line_seq(active.fileno(), os.fstat(active.fileno()).st_size)
        if head is not None:
            later = [s for s in segments if _segment_seq(s) >= head]
            try:
                renamed = bool(later) and _ident(os.stat(later[0])) == _ident(os.fstat(active.fileno()))
            except FileNotFoundError:
                renamed = False
            if renamed:  # rotated since it was opened: it, and the segments after it, come later
                segments = segments[: len(segments) - len(later)]
    files = [*segments, *([path] if active is not None else [])]
    total = 0
    first = 1
    found: set[int] = set()
    prev_end: tuple[int, str] | None = None  # (last seq, last hash) of the previous file
    for i, file in enumerate(files):
        if active is not None and file == path:
            size = os.fstat(active.fileno()).st_size
            r = _verify_stream(active, anchors)
            if not r.ok:
                growing = os.fstat(active.fileno()).st_size != size
                return ChainResult(False, total + r.records, tuple(files), f"{file.name}: {r.problem}", first), growing
        else:
            st = os.stat(file)
            key = (file.name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            cached = checked.get(key)
            r = checked[key] = verify(file, anchors) if cached is None else cached
        found |= r.anchored
        if i == 0:
            first = r.first_seq
        if not r.ok:
            return ChainResult(False, total + r.records, tuple(files), f"{file.name}: {r.problem}", first), False
        if r.records == 0:
            if file != path:
                problem = f"{file.name}: rotated segment holds no records"
                return ChainResult(False, total, tuple(files), problem, first), False
            continue  # an active file created but not yet written (the marker comes at open)
        if prev_end is not None:
            last_seq, last_hash = prev_end
            if r.first_seq != last_seq + 1:
                problem = (
                    f"{file.name} starts at seq {r.first_seq} but the file before it ends at seq {last_seq} "
                    "(segment missing, or records removed)"
                )
                return ChainResult(False, total, tuple(files), problem, first), False
            if r.start_hash != last_hash:
                problem = f"{file.name}: its first record is not chained to the last record of the file before it"
                return ChainResult(False, total, tuple(files), problem, first), False
        total += r.records
        prev_end = (r.first_seq + r.records - 1, r.last_hash)
    missing = sorted(set(anchors) - found)
    if missing:
        last = first + total - 1
        seq = missing[-1]
        if seq > last:
            problem = f"the anchor names record {seq} but the chain ends at {last}: records were removed from the end"
        else:
            problem = f"the anchor names record {seq}, which is not in these files (archived with its segment?)"
        return ChainResult(False, total, tuple(files), problem, first), False
    return ChainResult(True, total, tuple(files), "", first), False


def iter_records(
    path: Path,
    *,
    follow: bool = False,
    poll_interval: float = 0.2,
    stop: threading.Event | None = None,
    last: int | None = None,
    after_seq: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the log's records in order (parsed, not verified).

    ``last=n`` starts with the last n records (found by seeking from the end); ``after_seq=s``
    with the first record after seq ``s`` (found the same way: records are appended in seq order).
    With ``follow``, a missing file is waited for, as ``tail -F`` does.  With ``follow`` it
    then waits for new records (like ``tail -F``: survives truncation of a torn tail and the file
    being replaced) until ``stop`` is set.  When a rotation replaces the file, it reads the old file
    to its end, then the rotated segments holding the records between it and the new file (however
    many rotations happened meanwhile), then the new file: no record is skipped or repeated.
    Without ``follow`` an incomplete last line is skipped.
    Raises :class:`AuditLogCorrupt` on a complete line that is not JSON.
    """
    path = Path(path)
    while True:
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed in finally; reopened on replacement
            break
        except FileNotFoundError:
            # Between a rotation's rename and its new file (or a log not written yet): wait for it.
            if not follow or (stop is not None and stop.is_set()):
                raise
            if stop is not None:
                stop.wait(poll_interval)
            else:
                time.sleep(poll_interval)
    try:
        last_seq: int | None = None  # of the last record passed: what a rotation moved comes after it
        if last is not None:
            fd = f.fileno()
            start = _start_of_last_lines(fd, _complete_end(fd, os.fstat(fd).st_size), last)
            f.seek(start)
            if follow:
                last_seq = _seq_before(fd, start)
        elif after_seq is not None:
            fd = f.fileno()
            end = _complete_end(fd, os.fstat(fd).st_size)
            k = 1
            while True:
                start = _start_of_last_lines(fd, end, k)
                before = _seq_before(fd, start)
                if start == 0 or before is None or before <= after_seq:
                    break
                k *= 2
            f.seek(start)
            last_seq = after_seq
        ident = _ident(os.fstat(f.fileno()))
        pending = b""
        replaced = False  # the path names another file now: finish this one first
        # A file opened after a rotation, before its first record: then the records between the
        # last one passed and its first are in segments. With after_seq the file may itself be
        # newer than that record (a rotation came in between), so it counts as reopened.
        reopened = after_seq is not None
        while True:
            if stop is not None and stop.is_set():
                return
            chunk = f.readline(MAX_LINE_BYTES + 1)
            if chunk:
                pending = pending + chunk if pending else chunk
                if pending.endswith(b"\n"):
                    line, pending = pending, b""
                    rec = _parse_record(line, path, f.tell() - len(line))
                    seq = _seq_of(rec)
                    if after_seq is not None and seq is not None and seq <= after_seq:
                        continue  # printed already (from the segments, or before the start)
                    if reopened:
                        reopened = False
                        if last_seq is not None and seq is not None and seq > last_seq + 1:
                            # More rotations than one since the old file: their segments come first.
                            for moved in _rotated_between(path, last_seq, seq):
                                if stop is not None and stop.is_set():
                                    return
                                yield moved
                    yield rec
                    if seq is not None:
                        last_seq = seq
                elif len(pending) > MAX_LINE_BYTES:
                    raise AuditLogCorrupt(f"{path}: line longer than {MAX_LINE_BYTES} bytes")
                continue
            if not follow:
                return
            if replaced:
                # The old file is read to its end (the writer renames it after its last write, and
                # that was before we saw the new file); a torn line in it will not be completed.
                try:
                    new = open(path, "rb")  # noqa: SIM115
                except FileNotFoundError:  # renamed again: wait for the next file
                    pass
                else:
                    f.close()
                    f, ident, pending = new, _ident(os.fstat(new.fileno())), b""
                    replaced, reopened = False, True
                    continue
            else:
                # At EOF: has the file been replaced, or truncated (torn tail removed on reopen)?
                try:
                    current = _ident(os.stat(path))
                except FileNotFoundError:
                    current = ident
                if current != ident:
                    replaced = True
                    continue  # read what was written to the old file before it was renamed
                pos = f.tell()
                size = os.fstat(f.fileno()).st_size
                if size < pos:
                    f.seek(min(size, pos - len(pending)))
                    pending = b""
                    continue
            if stop is not None:
                stop.wait(poll_interval)
            else:
                time.sleep(poll_interval)
    finally:
        f.close()


def _parse_record(line: bytes, path: Path, offset: int) -> dict[str, Any]:
    """A complete line read by :func:`iter_records` as a JSON object (not verified)."""
    try:
        rec = _parse_json_line(line)
    except ValueError:
        raise AuditLogCorrupt(f"{path}: line at offset {offset} is not valid JSON") from None
    if not isinstance(rec, dict):
        raise AuditLogCorrupt(f"{path}: line at offset {offset} is not a record")
    return rec


def _seq_of(rec: Mapping[str, Any]) -> int | None:
    seq = rec.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _seq_before(fd: int, offset: int) -> int | None:
    """``seq`` of the record on the line that ends at ``offset`` (None if none, or not a record)."""
    if offset <= 0:
        return None
    start = _rfind_newline(fd, offset - 1) + 1
    if offset - start > MAX_LINE_BYTES:
        return None
    return _line_seq(_pread_exact(fd, offset - start, start))


def _rotated_between(path: Path, after: int, before: int) -> Iterator[dict[str, Any]]:
    """The records after seq ``after`` and before seq ``before`` in the rotated segments of the log
    at ``path`` (the segments whose first record is in between), in order."""
    for segment in segment_paths(path):
        if not after < _segment_seq(segment) < before:
            continue
        try:
            for rec in iter_records(segment):
                seq = _seq_of(rec)
                if seq is not None and after < seq < before:
                    yield rec
                    after = seq
        except FileNotFoundError:  # archived meanwhile
            continue


def _ident(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def tail(path: Path, n: int = 20) -> list[dict[str, Any]]:
    """The last ``n`` complete records of the log, read by seeking from the end; continues into the
    newest rotated segments when the active file holds fewer."""
    records = list(iter_records(path, last=n)) if path.exists() else []
    for segment in reversed(segment_paths(path)):
        if len(records) >= n:
            break
        records = list(iter_records(segment, last=n - len(records))) + records
    return records


def _clean(value: Any) -> str:
    text = "-" if value is None or value == "" else str(value)
    # Never let a logged value drive the terminal (ANSI escapes, newlines, ...).
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def format_record(rec: Mapping[str, Any]) -> str:
    """One human-readable line: time, seq, verdict, code, namespace, operation, path, entity, id."""
    d = rec.get("decision")
    d = d if isinstance(d, Mapping) else {}
    if d.get("event") == ROTATED_EVENT:
        return (
            f"{_clean(rec.get('time'))} #{_clean(rec.get('seq'))} ROTATED: records "
            f"{_clean(d.get('previous_first_seq'))}-{_clean(d.get('previous_last_seq'))} are in "
            f"{_clean(d.get('previous_file'))}"
        )
    allowed = d.get("allowed")
    verdict = "ALLOWED" if allowed is True else "REFUSED" if allowed is False else "?"
    ns = d.get("namespace")
    parts = [
        _clean(rec.get("time")),
        f"#{_clean(rec.get('seq'))}",
        verdict,
        _clean(d.get("code")),
        f"ns={'(root)' if ns == '' else _clean(ns)}",
        _clean(d.get("operation")),
        _clean(d.get("path")),
        f"entity={_clean(d.get('entity_id'))}",
    ]
    actor = d.get("actor_entity_id")
    if actor:
        parts.append(f"actor={_clean(actor)}")
    parts.append(f"decision={_clean(d.get('decision_id'))}")
    return " ".join(parts)
