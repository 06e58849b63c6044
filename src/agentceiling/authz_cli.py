"""`agentceiling authorize` and `agentceiling audit verify|tail|rotate|anchor`."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from agentceiling.ca_bundle import ca_bundle_problem

#: Longest --timeout accepted (an hour): gRPC deadlines and sleeps need a finite, sane number.
MAX_TIMEOUT = 3600.0


def seconds(text: str) -> float:
    """A positive, finite number of seconds, at most :data:`MAX_TIMEOUT` (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds above 0 and at most {MAX_TIMEOUT:g}")
    return value


def file_path(text: str) -> Path:
    """A path to a file: not empty (``Path("")`` would silently be the current directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path: give a file")
    return Path(text)


def client_address(text: str) -> str:
    """HOST:PORT of a server to dial, the port in 1-65535 (argparse type)."""
    from agentceiling.addresses import address_problem

    problem = address_problem(text, listen=False)
    if problem:
        raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
    return text.strip()


def default_data_dir() -> Path:
    """``AGENTCEILING_DATA_DIR`` (empty or blank: unset), else ``~/.agentceiling/data``. Expanded
    here: values from systemd units, env files or Terraform's env are not shell-expanded, and the
    Terraform provider expands "~" in AGENTCEILING_DATA_DIR too."""
    value = os.environ.get("AGENTCEILING_DATA_DIR", "")
    return Path(value if value.strip() else Path.home() / ".agentceiling" / "data").expanduser()


def add_cli_arguments(sub: Any) -> None:
    p = sub.add_parser(
        "authorize",
        help="ask the authorization endpoint for a decision; exit 0 if allowed, 1 if refused",
        description="Prints the decision as JSON. Exit status: 0 allowed, 1 refused, 2 error.",
    )
    p.add_argument("--token-file", type=file_path, required=True, help="file holding the agent's JWT ('-' for stdin)")
    p.add_argument("--path", default="", help="request path, e.g. secret/data/ci/app (empty: check the token only)")
    p.add_argument("--operation", default="", help="read, create, update, patch, delete, list, sudo, ...")
    p.add_argument("--namespace", default="root")
    p.add_argument("--parameters", default="", help="request parameters as a JSON object")
    p.add_argument(
        "--address",
        type=client_address,
        default=os.environ.get("AGENTCEILING_AUTHZ_ADDRESS", "").strip() or "127.0.0.1:8251",
        help="authorization endpoint [AGENTCEILING_AUTHZ_ADDRESS]",
    )
    p.add_argument("--ca-cert", type=file_path, default=None, help="CA bundle: connect with TLS")
    p.add_argument("--timeout", type=seconds, default=10.0, help=f"seconds (at most {MAX_TIMEOUT:g})")
    p.set_defaults(handler=_authorize)

    audit = sub.add_parser("audit", help="inspect the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    for name, text in (
        ("verify", "check the hash chain through the active file and its rotated segments"),
        ("tail", "show the newest records"),
        ("rotate", "start a new active file; the current one becomes a segment (the server's SIGHUP)"),
        ("anchor", "print the newest record's SEQ:HASH, to keep elsewhere and give to verify --anchor"),
    ):
        a = audit_sub.add_parser(name, help=text)
        a.add_argument("--data-dir", type=lambda text: Path(text).expanduser(), default=default_data_dir())
        a.add_argument(
            "--file",
            type=Path,
            default=None,
            help="the active audit log file; its rotated segments are the FILE.<seq> beside it "
            "(default: DATA_DIR/audit/audit.log)",
        )
        if name == "verify":
            a.add_argument(
                "--anchor",
                action="append",
                default=[],
                type=_anchor,
                metavar="SEQ:HASH",
                help="a record the chain must still hold (from `audit anchor`); detects records removed "
                "from the end or a rewritten chain; repeatable",
            )
        if name == "rotate":
            a.add_argument(
                "--timeout",
                type=seconds,
                default=10.0,
                help=f"seconds to wait for a running server (at most {MAX_TIMEOUT:g})",
            )
        if name == "tail":
            a.add_argument("-n", type=int, default=20, help="how many records")
            a.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
            a.add_argument("--json", action="store_true", help="print records as JSON lines")
        a.set_defaults(handler=_audit)


def _anchor(text: str) -> tuple[int, str]:
    import re

    m = re.fullmatch(r"\s*(\d+):([0-9a-f]{64})\s*", text)
    if m is None or int(m.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"not SEQ:HASH (a positive number and 64 hex digits): {text!r}")
    return int(m.group(1)), m.group(2)


def dial(address: str, ca_cert: Path | str | None) -> Any:
    """A gRPC channel to ``address``: TLS trusting the CA bundle ``ca_cert`` when given, else
    plaintext. None, after saying why, when the bundle cannot be read."""
    import grpc

    if not ca_cert:
        return grpc.insecure_channel(address)
    try:
        ca = Path(ca_cert).read_bytes()
    except OSError as exc:
        print(f"agentceiling: cannot read the CA bundle {ca_cert}: {exc.strerror or exc}", file=sys.stderr)
        return None
    problem = ca_bundle_problem(ca)
    if problem:
        print(f"agentceiling: --ca-cert {ca_cert}: {problem}", file=sys.stderr)
        return None
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(ca))


def _authorize(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import struct_pb2

    from agentceiling._gen.agentceiling.v1 import authorization_pb2 as pb
    from agentceiling._gen.agentceiling.v1 import authorization_pb2_grpc as pbg

    shown = "- (stdin)" if str(args.token_file) == "-" else str(args.token_file)
    limit = 64 * 1024  # far above any token (the endpoint refuses tokens over 8 KiB)
    try:
        if str(args.token_file) == "-":
            if sys.stdin is None:  # started with its standard input closed
                print(f"agentceiling: cannot read the token file {shown}: standard input is closed", file=sys.stderr)
                return 2
            raw = sys.stdin.buffer.read(limit + 1)
        else:
            with open(args.token_file, "rb") as f:
                raw = f.read(limit + 1)
    except OSError as exc:
        print(f"agentceiling: cannot read the token file {shown}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if len(raw) > limit:
        print(f"agentceiling: the token file {shown} is longer than 64 KiB: not a token", file=sys.stderr)
        return 2
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        print(f"agentceiling: --token-file {shown}: not a token (not UTF-8 text)", file=sys.stderr)
        return 2
    for flag, value in (("--path", args.path), ("--operation", args.operation), ("--namespace", args.namespace)):
        if not _is_utf8(value):
            print(f"agentceiling: {flag} is not valid UTF-8 text", file=sys.stderr)
            return 2
    request = pb.AuthorizeRequest(token=token, namespace=args.namespace, path=args.path, operation=args.operation)
    if args.parameters:
        if not _is_utf8(args.parameters):
            print("agentceiling: --parameters is not valid UTF-8 text", file=sys.stderr)
            return 2
        try:
            params = json.loads(args.parameters)
        except json.JSONDecodeError as exc:
            print(f"agentceiling: --parameters is not valid JSON: {exc}", file=sys.stderr)
            return 2
        except RecursionError:
            print("agentceiling: --parameters is nested too deeply", file=sys.stderr)
            return 2
        if not isinstance(params, dict):
            print("agentceiling: --parameters must be a JSON object", file=sys.stderr)
            return 2
        s = struct_pb2.Struct()
        try:
            s.update(params)
        except UnicodeEncodeError:
            print(
                "agentceiling: --parameters holds text that is not valid Unicode (an unpaired \\uD800-\\uDFFF escape)",
                file=sys.stderr,
            )
            return 2
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            print(f"agentceiling: --parameters cannot be sent: {exc}", file=sys.stderr)
            return 2
        request.parameters.CopyFrom(s)
    channel = dial(args.address, args.ca_cert)
    if channel is None:
        return 2
    with channel:
        try:
            resp = pbg.AuthorizationStub(channel).Authorize(request, timeout=args.timeout)
        except grpc.RpcError as exc:
            print(f"agentceiling: {args.address}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 2
    out = {
        "allowed": resp.allowed,
        "code": resp.code,
        "reason": resp.reason,
        "decision_id": resp.decision_id,
        "entity_id": resp.entity_id,
        "actor_entity_id": resp.actor_entity_id,
        "registration_id": resp.registration_id,
        "authorization_details": json.loads(resp.authorization_details or "[]"),
    }
    print(json.dumps(out, indent=2))
    return 0 if resp.allowed else 1


def _is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (command-line bytes that were not UTF-8 arrive as lone
    surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _not_the_server(pid: int, lock_path: Path) -> str:
    """Why ``pid`` (named by the lock file) must not get the SIGHUP, or "" when it is an
    agentceiling server holding that lock. Signalling blindly could stop an unrelated process (the
    server in another pid namespace, e.g. a container: its pid means another process here) or a
    concurrent `audit rotate`, which has no SIGHUP handler. Checked through /proc where there is one."""
    from agentceiling.store import audit_writer

    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return ""  # no /proc here: trust the lock file
    try:
        lock = lock_path.stat()
        holds = False
        for fd in (proc / str(pid) / "fd").iterdir():
            try:
                st = fd.stat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (lock.st_dev, lock.st_ino):
                holds = True
                break
        cmdline = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        holds, cmdline = False, []
    except PermissionError:
        return f"process {pid} (named by {lock_path}) belongs to another user; send it SIGHUP yourself"
    if not holds:
        return (
            f"process {pid}, named by {lock_path}, does not hold the log open (is the server in another "
            "pid namespace, e.g. a container? send SIGHUP to it there)"
        )
    # A server's audit log is held by its audit writer process, which rotates it on SIGHUP.
    if not audit_writer.runs_a_writer(cmdline):
        shown = " ".join(" ".join(a.decode(errors="replace").split()) for a in cmdline if a)[:200]
        return f"the log is held by process {pid} ({shown}), not by a server: try again when it is done"
    return ""


def _rotate(path: Path, timeout: float) -> int:
    """Rotate the audit log at ``path``: through the server that holds it open (SIGHUP to the pid in
    its lock file), or directly when no process holds it."""
    import fcntl
    import signal
    import time

    from agentceiling.store import audit_log

    base, dot, digits = path.name.rpartition(".")
    if dot and digits.isdigit() and base and path in audit_log.segment_paths(path.with_name(base)):
        # A rotated segment of the log beside it: "rotating" it would fork that log's chain.
        print(
            f"agentceiling: not rotating {path}: it is a rotated segment of {path.with_name(base)}; "
            f"rotate that log instead",
            file=sys.stderr,
        )
        return 2
    lock_path = audit_log.lock_path(path)
    before = audit_log.segment_paths(path)
    held_by_server, owner = False, ""
    try:
        # Not created here: no lock file means no server holds the log (a server creates it), and
        # a file that turns out not to be an audit log must be left as it was found.
        fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = -1
    except OSError as exc:
        print(f"agentceiling: cannot open {lock_path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if fd >= 0:
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held_by_server = True
            if held_by_server:
                owner = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    if not path.exists() or path.stat().st_size == 0:
        print(f"nothing to rotate: {path} holds no records")
        return 0
    if not held_by_server:
        try:
            with audit_log.AuditLog.open(path) as alog:
                alog.request_rotation()
        except audit_log.AuditLogCorrupt as exc:
            print(
                f"agentceiling: cannot rotate {path}: {exc}; check it with `agentceiling audit verify --file {path}`",
                file=sys.stderr,
            )
            return 2
        except (audit_log.AuditLogError, OSError) as exc:
            print(f"agentceiling: cannot rotate {path}: {exc}", file=sys.stderr)
            return 2
    else:
        if not owner.isdigit():
            print(f"agentceiling: {lock_path} is locked but names no process id", file=sys.stderr)
            return 2
        problem = _not_the_server(int(owner), lock_path)
        if problem:
            print(f"agentceiling: not rotating {path}: {problem}", file=sys.stderr)
            return 2
        try:
            os.kill(int(owner), signal.SIGHUP)
        except OSError as exc:
            print(f"agentceiling: cannot signal the server (pid {owner}): {exc.strerror or exc}", file=sys.stderr)
            return 2
        deadline = time.monotonic() + timeout
        while audit_log.segment_paths(path) == before and time.monotonic() < deadline:
            time.sleep(0.05)
    new = [p for p in audit_log.segment_paths(path) if p not in before]
    if not new:
        print(f"agentceiling: {path} was not rotated (see the server's log)", file=sys.stderr)
        return 1
    print(f"rotated: {new[-1]} (a new {path.name} continues the hash chain)")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from agentceiling.service.authz_bootstrap import audit_log_path
    from agentceiling.store import audit_log

    path = args.file or audit_log_path(args.data_dir)
    if not path.exists() and not audit_log.segment_paths(path):
        print(f"agentceiling: no audit log at {path}", file=sys.stderr)
        return 2
    if path.exists() and not path.is_file():
        # A FIFO would block the read until some writer opens it (and steal what it writes).
        kind = "a directory" if path.is_dir() else "not a regular file"
        print(f"agentceiling: {path} is {kind}: `audit {args.audit_command}` works on log files", file=sys.stderr)
        return 2
    if args.audit_command == "rotate":
        return _rotate(path, args.timeout)
    if args.audit_command == "anchor":
        # The newest record, from a file that verifies (only the newest file: with rotation that
        # stays cheap however old the log is; `audit verify` checks the rest).
        try:
            candidates = [f for f in audit_log.chain_files(path) if f != path or f.stat().st_size]
        except OSError as exc:
            print(f"agentceiling: cannot read {exc.filename or path}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        if not candidates:
            print(f"agentceiling: {path} holds no records yet", file=sys.stderr)
            return 2
        newest_file = candidates[-1]
        try:
            checked = audit_log.verify(newest_file)
            newest = audit_log.tail(newest_file, 1)
        except (audit_log.AuditLogCorrupt, OSError) as exc:
            print(f"agentceiling: cannot read {newest_file}: {exc}", file=sys.stderr)
            return 2
        if not checked.ok:
            print(f"agentceiling: not anchoring a broken chain: {newest_file.name}: {checked.problem}", file=sys.stderr)
            return 1
        if not newest:
            print(f"agentceiling: {path} holds no records yet", file=sys.stderr)
            return 2
        print(f"{newest[0]['seq']}:{newest[0]['hash']}")
        return 0
    if args.audit_command == "verify":
        try:
            anchors: dict[int, str] = {}
            for seq, digest in args.anchor:
                if anchors.setdefault(seq, digest) != digest:
                    print(f"agentceiling: two different --anchor hashes for record {seq}", file=sys.stderr)
                    return 2
            chain = audit_log.verify_chain(path, anchors)
        except OSError as exc:
            print(f"agentceiling: cannot read {exc.filename or path}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        files = f"{len(chain.files)} file{'s' if len(chain.files) != 1 else ''}"
        if chain.ok:
            held = f"; {len(anchors)} anchor{'s' if len(anchors) != 1 else ''} found" if anchors else ""
            print(f"ok: {chain.records} records in {files}, hash chain intact{held}")
            if chain.first_seq > 1:
                print(
                    f"note: the chain starts at record {chain.first_seq}: the segments before it are not in "
                    f"{path.parent} (archived or removed)"
                )
            return 0
        print(f"FAILED at record {chain.first_seq + chain.records}: {chain.problem}")
        return 1
    if args.n < 0:
        print("agentceiling: -n must be 0 or more", file=sys.stderr)
        return 2

    def show(rec: dict[str, Any]) -> None:
        print(json.dumps(rec, sort_keys=True) if args.json else audit_log.format_record(rec), flush=True)

    try:
        if args.follow:
            # Like `tail -n N -F`: the last N records (reading back into the newest segments, as
            # without --follow), then every record after them (no gap, no repeat), waiting for
            # the active file if a rotation is between its rename and the new file.
            shown_seq: int | None = None
            for rec in audit_log.tail(path, args.n) if args.n else []:
                show(rec)
                seq = rec.get("seq")
                shown_seq = seq if isinstance(seq, int) else shown_seq
            if shown_seq is None:
                records = audit_log.iter_records(path, follow=True, last=0)
            else:
                records = audit_log.iter_records(path, follow=True, after_seq=shown_seq)
            for rec in records:
                show(rec)
        else:
            for rec in audit_log.tail(path, args.n):
                show(rec)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `agentceiling audit tail | head`
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the interpreter's flush at exit
        return 0
    except audit_log.AuditLogCorrupt as exc:
        print(f"agentceiling: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"agentceiling: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    return 0
