"""`agentceiling serve | db | status | provider | authorize | audit`."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from agentceiling import __version__, authz_cli


def _env(name: str, default: str = "") -> str:
    """``AGENTCEILING_<name>``; empty or blank (as env files often leave a variable) means unset."""
    value = os.environ.get(f"AGENTCEILING_{name}", "")
    return value if value.strip() else default


def dir_path(text: str) -> Path:
    """A directory path (argparse type): ``--data-dir=~/x`` is not expanded by the shell."""
    return Path(text).expanduser()


#: Options whose default comes from an environment variable: a bad value there is reported as the
#: variable's, not as the flag's (which the operator never typed).
_ENV_OF_FLAG = {
    "--log-level": "LOG_LEVEL",
    "--data-dir": "DATA_DIR",
    "--database-url": "DATABASE_URL",
    "--listen": "LISTEN",
    "--authz-listen": "AUTHZ_LISTEN",
    "--role": "ROLE",
    "--tls-cert": "TLS_CERT",
    "--tls-key": "TLS_KEY",
    "--audit-rotate-bytes": "AUDIT_ROTATE_BYTES",
    "--max-token-lifetime": "MAX_TOKEN_LIFETIME",
    "--address": "ADDRESS",
    "--ca-cert": "CA_CERT",
}


#: Where a command's option has a variable of its own.
_ENV_OF_COMMAND_FLAG = {("authorize", "--address"): "AUTHZ_ADDRESS", ("authorize", "--ca-cert"): ""}


def env_source(flag: str, argv: Sequence[str], command: str = "") -> str:
    """`` (from AGENTCEILING_X)`` when ``flag``'s value came from its variable, else ``""``."""
    name = _ENV_OF_COMMAND_FLAG.get((command, flag), _ENV_OF_FLAG.get(flag))
    if not name or not _env(name):
        return ""
    if any(a == flag or a.startswith(flag + "=") for a in argv):
        return ""
    return f" (the value comes from AGENTCEILING_{name})"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        m = re.match(r"argument (--[a-z-]+)", message)
        if m:
            message += env_source(m.group(1), sys.argv[1:], self.prog.split()[-1])
        super().error(message)


_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_ROLES = ("all", "control", "authz")


def byte_size(text: str) -> int:
    """``0``, ``1048576``, ``512K``, ``256M``, ``1G`` (powers of 1024; ``KiB``/``MB`` spellings too)."""
    import re

    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:I?B)?\s*", text.upper())
    if m is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 0, 1048576, 512K, 256M, 1G)")
    value = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    if 0 < value < 4096:
        raise argparse.ArgumentTypeError(f"{text!r} is too small: use 0 (off) or at least 4K")
    return value


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3_600, "d": 86_400}
MAX_TOKEN_LIFETIME_LIMIT = 365 * 86_400


def token_lifetime(text: str) -> int:
    """A duration of at least a minute and at most a year: ``3600``, ``90m``, ``12h``, ``30d``."""
    import re

    m = re.fullmatch(r"\s*(\d{1,12})\s*([smhd]?)\s*", text.lower())
    if m is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text[:64]!r} (e.g. 3600, 90m, 12h, 30d)")
    value = int(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if not 60 <= value <= MAX_TOKEN_LIFETIME_LIMIT:
        raise argparse.ArgumentTypeError(f"{text.strip()!r} is out of range: at least 1m, at most 365d")
    return value


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(text: str) -> str:
    """One of Python's logging levels, any case (``WARN`` too)."""
    level = text.strip().upper()
    level = "WARNING" if level == "WARN" else level
    if level not in _LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"invalid level {text!r} (choose from {', '.join(_LOG_LEVELS)})")
    return level


def _add_db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", type=dir_path, default=authz_cli.default_data_dir(), help="data directory [AGENTCEILING_DATA_DIR]"
    )
    p.add_argument(
        "--database-url",
        default=_env("DATABASE_URL"),
        help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db; default: SQLite in the data directory "
        "[AGENTCEILING_DATABASE_URL]",
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="agentceiling", description="Per-request authorization for AI agents.")
    parser.add_argument("--version", action="version", version=f"agentceiling {__version__}")
    parser.add_argument(
        "--log-level",
        type=log_level,
        default=_env("LOG_LEVEL", "INFO"),
        help=f"{', '.join(_LOG_LEVELS)} [AGENTCEILING_LOG_LEVEL]",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = sub.add_parser("serve", help="run the control plane and the authorization endpoint")
    _add_db_args(serve)
    serve.add_argument("--listen", default=_env("LISTEN", "127.0.0.1:8250"), help="control plane [AGENTCEILING_LISTEN]")
    serve.add_argument(
        "--authz-listen",
        default=_env("AUTHZ_LISTEN", "127.0.0.1:8251"),
        help="authorization endpoint [AGENTCEILING_AUTHZ_LISTEN]",
    )
    serve.add_argument(
        "--role", choices=_ROLES, default=_env("ROLE", "all"), help="[AGENTCEILING_ROLE]"
    )
    serve.add_argument(
        "--no-migrate",
        action="store_true",
        default=_env("NO_MIGRATE").strip().lower() in _TRUE,
        help="do not migrate the database on start [AGENTCEILING_NO_MIGRATE=1]",
    )
    serve.add_argument(
        "--tls-cert", type=authz_cli.file_path, default=_env("TLS_CERT") or None, help="[AGENTCEILING_TLS_CERT]"
    )
    serve.add_argument(
        "--tls-key",
        type=authz_cli.file_path,
        default=_env("TLS_KEY") or None,
        help="unencrypted PEM private key [AGENTCEILING_TLS_KEY]",
    )
    serve.add_argument(
        "--audit-rotate-bytes",
        type=byte_size,
        default=_env("AUDIT_ROTATE_BYTES", "0"),
        metavar="SIZE",
        help="rotate the audit log when it reaches SIZE (e.g. 256M); 0: only on SIGHUP or "
        "`agentceiling audit rotate` [AGENTCEILING_AUDIT_ROTATE_BYTES]",
    )
    serve.add_argument(
        "--max-token-lifetime",
        type=token_lifetime,
        default=_env("MAX_TOKEN_LIFETIME", "30d"),
        metavar="DURATION",
        help="refuse agents' tokens living longer than this (exp - iat; exp - now without iat), e.g. 1h, "
        "24h; default 30d [AGENTCEILING_MAX_TOKEN_LIFETIME]",
    )

    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    for name, text in (("upgrade", "migrate to the newest schema"), ("current", "print the schema revision")):
        _add_db_args(db_sub.add_parser(name, help=text))

    status = sub.add_parser("status", help="ask a running control plane for its status")
    status.add_argument(
        "--address",
        type=authz_cli.client_address,
        default=_env("ADDRESS", "127.0.0.1:8250"),
        help="[AGENTCEILING_ADDRESS]",
    )
    status.add_argument(
        "--data-dir",
        type=dir_path,
        default=None,
        help="read the admin token from this server data directory (wins over VAULT_TOKEN when given)",
    )
    status.add_argument(
        "--ca-cert",
        type=authz_cli.file_path,
        default=os.environ.get("AGENTCEILING_CA_CERT") or None,
        help="CA bundle: connect with TLS (a server started with --tls-cert) [AGENTCEILING_CA_CERT]",
    )

    try:
        from agentceiling.tfprovider import install as tf_install

        tf_install.add_cli_arguments(sub)  # type: ignore[arg-type]  # our parser class is an ArgumentParser
    except ImportError:
        pass
    authz_cli.add_cli_arguments(sub)
    return parser


def _database_error(url: str, exc: Exception) -> str:
    """One line for an unusable database: the URL without its password and the driver's reason."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from agentceiling.store.db import shown_url

    try:
        shown = shown_url(make_url(url))
    except ArgumentError:
        shown = "(unparsable URL)"
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"agentceiling: cannot use the database {shown}: {reason[0] if reason else type(exc).__name__}"


def _serve_env_problem(args: argparse.Namespace, argv: Sequence[str]) -> str | None:
    """What is wrong with a setting that came from the environment, naming the variable (argparse
    checks only what was typed)."""
    no_migrate = _env("NO_MIGRATE").strip().lower()
    if no_migrate and no_migrate not in _TRUE + _FALSE and "--no-migrate" not in argv:
        return f"AGENTCEILING_NO_MIGRATE={no_migrate!r}: use 1 or 0 (true/false, yes/no, on/off)"
    if args.role not in _ROLES:
        return f"unknown role {args.role!r}: use all, control or authz{env_source('--role', argv)}"
    if bool(args.tls_cert) != bool(args.tls_key):
        given = "--tls-cert" if args.tls_cert else "--tls-key"
        return f"--tls-cert and --tls-key must be given together{env_source(given, argv)}"
    return None


def _serve(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from agentceiling.api.server import ConfigError, Server, ServerConfig

    problem = _serve_env_problem(args, sys.argv[1:])
    if problem:
        print(f"agentceiling: {problem}", file=sys.stderr)
        return 2

    cfg = ServerConfig(
        data_dir=args.data_dir,
        listen=args.listen,
        authz_listen=args.authz_listen,
        database_url=args.database_url,
        role=args.role,
        migrate=not args.no_migrate,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        audit_rotate_bytes=args.audit_rotate_bytes,
        max_token_lifetime=args.max_token_lifetime,
    )
    from agentceiling.service.authz_bootstrap import build_authz

    server = Server(cfg, build_authz)
    server.install_signal_handlers()
    try:
        server.start()
    except ConfigError as exc:
        print(f"agentceiling: {exc}", file=sys.stderr)
        server.stop()
        return 2
    except SQLAlchemyError as exc:
        print(_database_error(cfg.url, exc), file=sys.stderr)
        server.stop()
        return 2
    server.serve_forever()
    _exit_past_stuck_threads()
    return 0


def _exit_past_stuck_threads(grace: float = 2.0) -> None:
    """After a graceful stop, exit even if a worker thread is stuck in I/O (a database read that
    hangs while the database is unreachable): Python would wait for it at exit, for as long as the
    database stays away. Everything is closed by now; only the stuck call is abandoned."""
    import threading
    import time

    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    main = threading.main_thread()
    stuck = [t.name for t in threading.enumerate() if t is not main and not t.daemon and t.is_alive()]
    if stuck:
        logging.getLogger("agentceiling.server").warning(
            "exiting without waiting for %d thread(s) stuck in I/O: %s", len(stuck), ", ".join(stuck[:5])
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _db(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from agentceiling.store import migrate
    from agentceiling.store.db import Database, DatabaseURLError, sqlite_url

    data_dir: Path = args.data_dir
    if args.database_url:
        url = args.database_url
    else:
        url = sqlite_url(data_dir)
        problem = _data_dir_problem(data_dir, create=args.db_command == "upgrade")
        if problem:
            print(f"agentceiling: {problem}", file=sys.stderr)
            return 2
    try:
        db = Database(url)
    except DatabaseURLError as exc:
        print(f"agentceiling: --database-url: {exc}", file=sys.stderr)
        return 2
    try:
        if args.db_command == "current":
            missing = db.missing_file()
            if missing is not None:
                where = "--data-dir" if not args.database_url else "--database-url"
                print(
                    f"agentceiling: no database at {missing} ({where}): check the path, or create it with "
                    "`agentceiling db upgrade`",
                    file=sys.stderr,
                )
                return 2
        if args.db_command == "upgrade":
            migrate.upgrade(db)
        print(migrate.current(db) or "(empty)")
    except migrate.UnknownRevision as exc:
        print(f"agentceiling: {exc}", file=sys.stderr)
        return 2
    except DatabaseURLError as exc:
        print(f"agentceiling: --database-url: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(_database_error(url, exc), file=sys.stderr)
        return 2
    finally:
        db.dispose()
    return 0


def _data_dir_problem(data_dir: Path, *, create: bool) -> str | None:
    """Why ``--data-dir`` cannot hold the SQLite database (None: it can; created if ``create``)."""
    if data_dir.exists() and not data_dir.is_dir():
        return f"--data-dir {data_dir} is not a directory"
    if create:
        try:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            return f"--data-dir {data_dir}: cannot create it: {exc.strerror or exc}"
    return None


def _status(args: argparse.Namespace) -> int:
    import grpc

    from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb
    from agentceiling._gen.agentceiling.v1 import control_plane_pb2_grpc as pbg

    # An explicit --data-dir names the token to use; without it, VAULT_TOKEN, then the default
    # data directory's admin-token.
    token = "" if args.data_dir is not None else os.environ.get("VAULT_TOKEN", "")
    if not token:
        token_file = (args.data_dir if args.data_dir is not None else authz_cli.default_data_dir()) / "admin-token"
        try:
            if token_file.exists() and not token_file.is_file():  # a FIFO would block: a server writes a file
                raise OSError(errno.EINVAL, "not a regular file", str(token_file))
            token = token_file.read_bytes().decode("utf-8").strip()
        except OSError as exc:
            print(
                f"agentceiling: no admin token: set VAULT_TOKEN, or point --data-dir at the server's data "
                f"directory ({token_file}: {exc.strerror or exc})",
                file=sys.stderr,
            )
            return 2
        except UnicodeDecodeError:
            print(f"agentceiling: {token_file} is not an admin token (not UTF-8 text)", file=sys.stderr)
            return 2
        source = str(token_file)
    else:
        source = "VAULT_TOKEN"
    if not token or not token.isascii() or not token.isprintable():
        print(f"agentceiling: the admin token in {source} is empty or not printable ASCII text", file=sys.stderr)
        return 2
    channel = authz_cli.dial(args.address, args.ca_cert)
    if channel is None:
        return 2
    with channel:
        try:
            resp = pbg.SystemStub(channel).Status(
                pb.StatusRequest(), metadata=[("authorization", f"Bearer {token}")], timeout=5
            )
        except grpc.RpcError as exc:
            hint = ""
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                hint = f" (the admin token came from {source})"
            elif exc.code() == grpc.StatusCode.UNAVAILABLE and args.ca_cert is None:
                hint = " (if the server was started with --tls-cert, give --ca-cert)"
            print(f"agentceiling: {args.address}: {exc.code().name}: {exc.details()}{hint}", file=sys.stderr)
            return 1
    print(json.dumps({"version": resp.version, "generation": resp.generation, "database": resp.database}))
    return 0


class OutputError(Exception):
    """Standard output cannot be written (a full disk, a closed pipe): not an ``OSError``, so that
    the commands' own handlers of read errors do not take it for one of the file they read."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(exc.strerror or str(exc))
        self.cause = exc


class _Stdout:
    """``sys.stdout`` whose write errors are :class:`OutputError`."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except OSError as exc:
            raise OutputError(exc) from exc

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise OutputError(exc) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    real = sys.stdout
    if real is None:
        return _main(argv)
    sys.stdout = _Stdout(real)
    try:
        code = _main(argv)
        sys.stdout.flush()
        return code
    except OutputError as exc:
        if isinstance(exc.cause, BrokenPipeError):  # `... | head`: the reader has what it wanted
            code = 141
        else:
            print(f"agentceiling: cannot write to standard output: {exc}", file=sys.stderr)
            code = 2
        # What is left in the buffer cannot be written either: not at exit, with a second error.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), real.fileno())
        return code
    finally:
        sys.stdout = real


def _main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)  # imports the provider's installer: it takes a moment
    except KeyboardInterrupt:
        return 130
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "db":
            return _db(args)
        if args.command == "status":
            return _status(args)
        handler = getattr(args, "handler", None)
        if handler is not None:
            return int(handler(args))
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as exc:
        print(f"agentceiling: {exc}", file=sys.stderr)
        # authorize's exit 1 means "refused": any other failure there is an error (2)
        return 2 if args.command == "authorize" else 1
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
