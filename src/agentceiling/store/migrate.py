"""Alembic, driven programmatically: ``agentceiling db upgrade|current`` and migrate-on-start."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from agentceiling.store.db import WRITE_OPTION, Database


def migrations_dir() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "migrations"
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("the migrations/ directory of agentceiling was not found")


def _config(db: Database) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", db.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


class UnknownRevision(Exception):
    """The database is at a schema revision this agentceiling does not know: a newer agentceiling
    migrated it. Upgrading or serving it would be guesswork, so both refuse."""

    def __init__(self, revision: str) -> None:
        from agentceiling import __version__

        self.revision = revision
        super().__init__(
            f"the database is at schema revision {revision}, which this agentceiling ({__version__}, newest "
            f"revision {head()}) does not know: a newer agentceiling migrated it; run that version instead"
        )


def is_known(revision: str) -> bool:
    """Whether ``revision`` is (exactly) one of this agentceiling's migrations."""
    return any(s.revision == revision for s in ScriptDirectory(str(migrations_dir())).walk_revisions())


def check_known(db: Database) -> str | None:
    """The database's revision (None: no schema yet); :class:`UnknownRevision` if a newer
    agentceiling wrote it."""
    rev = current(db)
    if rev is not None and not is_known(rev):
        raise UnknownRevision(rev)
    return rev


#: The PostgreSQL advisory lock key (any fixed 64-bit number; this one spells "agceilmg") under
#: which agentceiling migrates: every replica, and `agentceiling db upgrade`, takes it first.
MIGRATION_LOCK_KEY = 0x6167_6365_696C_6D67


@contextmanager
def _migration_transaction(db: Database) -> Iterator[Connection]:
    """A transaction that holds the database's migration lock until it ends, so that concurrent
    upgrades (replicas starting together, `db upgrade` next to `serve`) run one after the other:
    whoever waited then finds the schema already at head and has nothing to do.

    PostgreSQL: a transaction-level advisory lock, in READ COMMITTED so that what the waiter reads
    after getting the lock is what the first one committed (a REPEATABLE READ snapshot would be
    taken before the wait). SQLite: ``BEGIN IMMEDIATE``, the database's write lock, waited for
    up to the busy timeout (a deferred transaction that has read cannot take the write lock after
    another process committed: it fails with "database is locked"); and before that an exclusive
    ``flock`` on the database file's directory, taken before the first connection, because
    connecting to a fresh file switches it to WAL, which fails rather than waits when another
    process is doing the same."""
    if db.dialect == "postgresql":
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                conn.execute(sa.text("SET LOCAL lock_timeout = 0"))  # wait for another replica's migration
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                yield conn
        return
    with _sqlite_directory_lock(db), db.engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})  # BEGIN IMMEDIATE (store/db.py)
        with conn.begin():
            yield conn


@contextmanager
def _sqlite_directory_lock(db: Database) -> Iterator[None]:
    """Hold ``flock(LOCK_EX)`` on the directory of a SQLite database file (nothing for an
    in-memory or URI database, or where the directory cannot be opened or locked: SQLite then
    names the problem, and ``BEGIN IMMEDIATE`` still serializes the migration itself). The lock is
    on the directory, not the file: closing another descriptor of the database file would drop
    SQLite's own POSIX locks, and a lock file would be left behind."""
    path = db.url.database
    fd: int | None = None
    if path and path != ":memory:" and not path.startswith("file:"):
        try:
            fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate to ``revision``, under the migration lock: the revision is read (and refused if a
    newer agentceiling wrote it) only once the lock is held."""
    cfg = _config(db)
    db.create_private_file()
    with _migration_transaction(db) as conn:
        rev = MigrationContext.configure(conn).get_current_revision()
        if rev is not None and not is_known(rev):
            raise UnknownRevision(rev)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str | None:
    return ScriptDirectory(str(migrations_dir())).get_current_head()
