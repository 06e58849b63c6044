"""Concurrent migrations: replicas (and `agentceiling db upgrade`) that migrate one fresh database
at the same moment all succeed, and the schema is migrated exactly once. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_cp_support import free_port, fresh_database_url, wait_healthy

from agentceiling.store import migrate

pytestmark = pytest.mark.timeout(240)

HEAD = migrate.head()
WORKERS = 4
ROUNDS = 6

# A warm worker: imports everything, says "ready", then migrates each URL it reads from stdin and
# answers one JSON line. The parent writes a URL to every worker at once, so the upgrades start
# within microseconds of each other (threads will not do: alembic's `context` is process-global).
WORKER = textwrap.dedent(
    """
    import json, sys
    from agentceiling.store import migrate
    from agentceiling.store.db import Database
    print("ready", flush=True)
    for line in sys.stdin:
        db = Database(line.strip())
        try:
            migrate.upgrade(db)
            print(json.dumps({"ok": True, "revision": migrate.current(db)}), flush=True)
        except Exception as exc:
            print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}), flush=True)
        finally:
            db.dispose()
    """
)


def _schema_facts(url: str) -> tuple[list[str], list[tuple[str, int]]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            versions = [r[0] for r in conn.execute(sa.text("SELECT version_num FROM alembic_version"))]
            meta = [(r[0], int(r[1])) for r in conn.execute(sa.text("SELECT key, value FROM meta ORDER BY key"))]
    finally:
        engine.dispose()
    return versions, meta


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_concurrent_upgrades_of_a_fresh_database_all_succeed_and_migrate_once(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    assert HEAD
    urls = []
    for i in range(ROUNDS):
        (tmp_path / f"round-{i}").mkdir()
        urls.append(fresh_database_url(request, kind, tmp_path / f"round-{i}"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "AGENTCEILING_DATA_DIR": "", "AGENTCEILING_DATABASE_URL": ""},
        )
        for _ in range(WORKERS)
    ]
    failures: list[str] = []
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
        for i, url in enumerate(urls):
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(url + "\n")
                p.stdin.flush()
            answers = []
            for p in procs:
                assert p.stdout is not None
                line = p.stdout.readline()
                assert line, p.stderr.read() if p.stderr else ""
                answers.append(json.loads(line))
            failures += [f"round {i}: {a['error']}" for a in answers if not a["ok"]]
            assert all(a["revision"] == HEAD for a in answers if a["ok"]), answers
            versions, meta = _schema_facts(url)
            assert versions == [HEAD]
            assert meta == [("generation", 0)]  # the data migration ran once
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    assert not failures, "\n".join(failures)


def test_two_replicas_and_db_upgrade_started_together_on_a_fresh_postgres_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The report's scenario end to end: `serve --role all`, `serve --role authz` and
    `db upgrade` on one empty PostgreSQL database, started together: all of them succeed."""
    url = str(request.getfixturevalue("pg_cluster").create_database())
    env = {**os.environ, "AGENTCEILING_DATA_DIR": "", "AGENTCEILING_DATABASE_URL": ""}
    cli = [sys.executable, "-m", "agentceiling.cli"]
    servers: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    upgrade: subprocess.Popen[str] | None = None
    try:
        for role in ("all", "authz"):
            data = tmp_path / role
            data.mkdir()
            address, authz_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
            cmd = [*cli, "serve", "--data-dir", str(data), "--role", role, "--database-url", url]
            cmd += ["--listen", address, "--authz-listen", authz_address]
            with open(data / "server.log", "wb") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            servers.append((proc, authz_address, data / "server.log"))
        upgrade = subprocess.Popen(
            [*cli, "db", "upgrade", "--data-dir", str(tmp_path / "cli"), "--database-url", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for proc, authz_address, log_path in servers:
            try:
                wait_healthy(authz_address, timeout=60, proc=proc)
            except (RuntimeError, TimeoutError) as exc:
                raise AssertionError(f"{exc}:\n{log_path.read_text(errors='replace')}") from None
        out, err = upgrade.communicate(timeout=60)
        assert (upgrade.returncode, out) == (0, f"{HEAD}\n"), err
        versions, meta = _schema_facts(url)
        assert versions == [HEAD] and [key for key, _ in meta] == ["generation"], (versions, meta)
    finally:
        for proc, _, _ in servers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if upgrade is not None and upgrade.poll() is None:
            upgrade.kill()
            upgrade.wait()
