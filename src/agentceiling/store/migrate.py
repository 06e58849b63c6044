"""Alembic, driven programmatically: ``agentceiling db upgrade|current`` and migrate-on-start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from agentceiling.store.db import Database


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


def upgrade(db: Database, revision: str = "head") -> None:
    check_known(db)
    cfg = _config(db)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str | None:
    return ScriptDirectory(str(migrations_dir())).get_current_head()
