"""Engine set-up and transactions for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)
T = TypeVar("T")

WRITE_OPTION = "agentceiling_write"
_WRITE = WRITE_OPTION


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'agentceiling.db'}"


def shown_url(url: sa.URL) -> str:
    """The URL for messages and logs: the password hidden, also when it is a query parameter
    (``?password=...``, which libpq accepts and SQLAlchemy does not treat as a password)."""
    secret = [k for k in url.query if k.lower() in ("password", "sslpassword")]
    if not secret:
        return url.render_as_string(hide_password=True)
    url = url.update_query_dict(dict.fromkeys(secret, "***"))
    return url.render_as_string(hide_password=True).replace("=%2A%2A%2A", "=***")


class DatabaseURLError(ValueError):
    """A database URL that cannot be used: unparsable, an unsupported database, a driver that is
    not installed. The message is for a human and holds no password."""


#: SQLAlchemy's asyncio drivers: the service uses synchronous engines.
_ASYNC_DRIVERS = frozenset({"asyncpg", "aiosqlite", "psycopg_async", "pysqlite_async"})


#: Longest wait of a PostgreSQL statement for a lock (``lock_timeout``). Every write ends by
#: updating the one generation row, so a transaction left open while holding it (its client cut
#: off mid-write) would otherwise stop every write of every replica; past this wait a write fails
#: (UNAVAILABLE, "retry later") instead of hanging. Migrations wait for their lock as long as it takes.
LOCK_TIMEOUT_MS = 10_000
#: The server ends a session of ours idle inside a transaction this long
#: (``idle_in_transaction_session_timeout``): the transaction of a client that vanished mid-write,
#: and the locks it holds, go away. Ours never pause that long inside a transaction.
IDLE_IN_TRANSACTION_MS = 60_000


def _postgresql_connect_args(url: sa.URL) -> dict[str, Any]:
    """libpq connection parameters (the URL's own win). The session settings are not sent as the
    ``options`` startup parameter, which PgBouncer refuses: see :func:`_install_postgresql_hooks`."""
    args: dict[str, Any] = {
        "connect_timeout": 10,
        # A server (or a network path) that vanished without a word, a partition or a dropped
        # NAT entry, is noticed within about a minute, not the kernel's 15 minutes (unacknowledged
        # data) or 2 hours (an idle connection).
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": 60_000,
    }
    for key in list(args):
        if key in url.query:
            del args[key]
    return args


def _install_postgresql_hooks(engine: Engine, url: sa.URL) -> None:
    """Set the session settings on each new connection, but those the URL's ``options`` set."""
    theirs = url.query.get("options")
    theirs = " ".join(theirs) if isinstance(theirs, tuple) else (theirs or "")
    settings = [
        f"SET {name} = {value}"
        for name, value in (
            ("lock_timeout", LOCK_TIMEOUT_MS),
            ("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION_MS),
        )
        if name not in theirs
    ]
    if not settings:
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True  # a SET outside any transaction lasts for the session
        try:
            with dbapi_conn.cursor() as cur:
                for statement in settings:
                    cur.execute(statement)
        finally:
            dbapi_conn.autocommit = autocommit


class Database:
    """An engine plus the transaction discipline the service relies on.

    Writes run in a transaction that takes the write lock up front (SQLite ``BEGIN IMMEDIATE``), so
    concurrent writers queue instead of failing half-way; transient conflicts (SQLite busy,
    PostgreSQL serialization failures and deadlocks) are retried with a fresh transaction."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        try:
            self.url = sa.make_url(url)
        except sa.exc.ArgumentError:
            raise DatabaseURLError(
                "not a database URL (e.g. postgresql+psycopg://user@host/db or sqlite:////path/agentceiling.db)"
            ) from None
        self.dialect = self.url.get_backend_name()
        shown = shown_url(self.url)
        if self.dialect not in ("sqlite", "postgresql"):
            raise DatabaseURLError(f"unsupported database {shown}: use postgresql+psycopg:// or sqlite://")
        if self.url.get_driver_name() in _ASYNC_DRIVERS:
            raise DatabaseURLError(
                f"{shown}: the asynchronous driver {self.url.get_driver_name()} is not supported; "
                "use postgresql+psycopg://"
            )
        if self.dialect == "sqlite" and (self.url.database or ":memory:") == ":memory:":
            raise DatabaseURLError(
                f"{shown}: an in-memory SQLite database is not supported (every connection would see "
                "its own, and it is lost on exit): use sqlite:////path/agentceiling.db"
            )
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = 20
        else:
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = 10
            kwargs["pool_pre_ping"] = True
            kwargs["connect_args"] = _postgresql_connect_args(self.url)
        try:
            self.engine: Engine = sa.create_engine(self.url, **kwargs)
        except ImportError as exc:  # the DBAPI module of the URL's driver
            raise DatabaseURLError(
                f"{shown}: its driver {exc.name or self.url.get_driver_name()} is not installed "
                "(for PostgreSQL use postgresql+psycopg://, which agentceiling installs)"
            ) from None
        except sa.exc.ArgumentError as exc:  # e.g. an unknown driver name (NoSuchModuleError)
            raise DatabaseURLError(f"{shown}: {exc}") from None
        if self.dialect == "sqlite":
            _install_sqlite_hooks(self.engine)
        else:
            _install_postgresql_hooks(self.engine, self.url)

    def sqlite_file(self) -> Path | None:
        """The file of a SQLite database given by path (None for PostgreSQL or a ``file:`` URI)."""
        if self.dialect != "sqlite":
            return None
        name = self.url.database or ""
        if not name or name == ":memory:" or name.startswith("file:") or self.url.query.get("mode") == "memory":
            return None
        return Path(name)

    def missing_file(self) -> Path | None:
        """The SQLite database file when it does not exist (connecting would create it)."""
        path = self.sqlite_file()
        return path if path is not None and not path.exists() else None

    def create_private_file(self) -> None:
        """Create a missing SQLite database file readable by its owner only. SQLite would create it
        with the umask's mode (0644: every local user could read the configuration), and it gives
        the -wal and -shm files the database file's mode."""
        path = self.missing_file()
        if path is None:
            return
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        except FileExistsError:  # another process made it meanwhile
            pass
        except OSError as exc:  # its directory is missing, or is a file, or is not writable
            raise DatabaseURLError(
                f"{shown_url(self.url)}: cannot create the database file {path}: {exc.strerror or exc}"
            ) from None

    @property
    def display_url(self) -> str:
        return shown_url(self.url)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction over one snapshot: on PostgreSQL REPEATABLE READ (which never
        fails a read-only transaction), so that a read made of several queries cannot see a write
        commit between two of them; SQLite's read transactions already keep one snapshot."""
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def write(self, fn: Callable[[Connection], T], *, attempts: int = 8) -> T:
        """Run ``fn`` in a write transaction, retrying transient conflicts. ``fn`` must be
        idempotent up to its own database effects (it is re-run from scratch)."""
        for attempt in range(1, attempts + 1):
            try:
                with self.engine.connect() as conn:
                    conn = conn.execution_options(**{_WRITE: True})
                    with conn.begin():
                        return fn(conn)
            except sa.exc.OperationalError as exc:
                if attempt == attempts or not self._transient(exc):
                    raise
            except sa.exc.DBAPIError as exc:
                if attempt == attempts or not self._transient(exc):
                    raise
            time.sleep(min(0.5, 0.01 * 2**attempt) * random.random())
        raise AssertionError("unreachable")

    def _transient(self, exc: sa.exc.DBAPIError) -> bool:
        if self.dialect == "sqlite":
            text = str(exc.orig).lower()
            return "locked" in text or "busy" in text
        code = getattr(exc.orig, "sqlstate", None)
        # Not 55P03 (lock_not_available): a lock held past LOCK_TIMEOUT_MS is held by something
        # stuck, and waiting for it again would only multiply the wait.
        return code in ("40001", "40P01")

    def dispose(self) -> None:
        self.engine.dispose()


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions defer the write lock).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")
