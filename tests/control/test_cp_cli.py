"""The command line: `db upgrade` / `db current` print the schema revision, `serve --no-migrate`
refuses an empty database cleanly, `status` talks to a running server. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cp_support import free_port, fresh_database_url, settle, start_server

from agentceiling.store import migrate

HEAD = migrate.head()


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentceiling.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "AGENTCEILING_DATA_DIR": "", "AGENTCEILING_DATABASE_URL": ""},
        check=False,
    )


def db_args(data: Path, url: str) -> list[str]:
    return ["--data-dir", str(data), "--database-url", url]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_db_upgrade_and_current_print_the_revision(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    assert HEAD
    url = fresh_database_url(request, kind, tmp_path)
    data = tmp_path / "data"
    for _ in range(2):  # upgrading an up-to-date database is a no-op
        up = cli("db", "upgrade", *db_args(data, url))
        assert (up.returncode, up.stdout) == (0, f"{HEAD}\n"), up.stderr
        assert "Traceback" not in up.stderr
    cur = cli("db", "current", *db_args(data, url))
    assert (cur.returncode, cur.stdout) == (0, f"{HEAD}\n"), cur.stderr


def test_db_upgrade_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = cli("db", "upgrade", "--data-dir", str(data))
    assert (up.returncode, up.stdout) == (0, f"{HEAD}\n"), up.stderr
    assert (data / "agentceiling.db").is_file()
    cur = cli("db", "current", "--data-dir", str(data))
    assert (cur.returncode, cur.stdout) == (0, f"{HEAD}\n"), cur.stderr


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_serve_no_migrate_refuses_an_empty_database(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    url = fresh_database_url(request, kind, tmp_path)
    data = tmp_path / "data"
    listen = f"127.0.0.1:{free_port()}"
    run = cli(
        "serve", *db_args(data, url), "--listen", listen, "--authz-listen", f"127.0.0.1:{free_port()}", "--no-migrate"
    )
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout
    [line] = [ln for ln in run.stderr.splitlines() if ln.startswith("agentceiling: ")]
    if kind == "sqlite":  # no file yet: nothing is created (an empty database was left behind)
        assert f"no database at {tmp_path / 'agentceiling.db'}" in line and "db upgrade" in line, line
        assert not (tmp_path / "agentceiling.db").exists() and not data.exists()
        (tmp_path / "agentceiling.db").touch()  # an empty database: "no schema yet"
        run = cli("serve", *db_args(data, url), "--listen", listen, "--authz-listen", f"127.0.0.1:{free_port()}",
                  "--no-migrate")
        [line] = [ln for ln in run.stderr.splitlines() if ln.startswith("agentceiling: ")]
    assert f"not {HEAD}" in line and "run `agentceiling db upgrade` first" in line, line
    assert not (data / "admin-token").exists()


def test_the_sqlite_database_is_private_even_in_an_open_data_directory(tmp_path: Path) -> None:
    """systemd's StateDirectory= makes 0755 directories: the database (every profile, policy and
    entity, the admin token's hash) must still not be readable by other local users."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    assert cli("db", "upgrade", "--data-dir", str(data)).returncode == 0
    srv = settle(start_server(data))
    try:
        for name in ("agentceiling.db", "agentceiling.db-wal", "agentceiling.db-shm"):
            path = data / name
            if path.exists():
                assert path.stat().st_mode & 0o077 == 0, (name, oct(path.stat().st_mode))
        assert (data / "agentceiling.db").exists()
    finally:
        srv.stop()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite+pysqlite://"])
def test_an_in_memory_sqlite_url_is_refused_cleanly(tmp_path: Path, url: str) -> None:
    for args in (("db", "current"), ("serve", "--listen", f"127.0.0.1:{free_port()}")):
        run = cli(*args, "--data-dir", str(tmp_path / "data"), "--database-url", url)
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        assert "in-memory SQLite database is not supported" in run.stderr, run.stderr


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_serve_no_migrate_after_upgrade_serves(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    url = fresh_database_url(request, kind, tmp_path)
    data = tmp_path / "data"
    assert cli("db", "upgrade", *db_args(data, url)).returncode == 0
    srv = settle(start_server(data, url, extra_args=("--no-migrate",)))
    try:
        status = cli("status", "--address", srv.address, "--data-dir", str(data))
        assert status.returncode == 0, status.stderr
        out = json.loads(status.stdout)
        assert out["database"] == kind and out["generation"] >= 1
    finally:
        assert srv.stop() == 0


def test_status_with_a_wrong_token_fails_cleanly(tmp_path: Path) -> None:
    srv = settle(start_server(tmp_path / "data"))
    try:
        run = subprocess.run(
            [sys.executable, "-m", "agentceiling.cli", "status", "--address", srv.address],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "VAULT_TOKEN": "acs.wrong"},
            check=False,
        )
        assert run.returncode == 1
        assert "UNAUTHENTICATED" in run.stderr and "Traceback" not in run.stderr
    finally:
        assert srv.stop() == 0


def test_an_address_the_server_cannot_listen_on_is_a_clean_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        for listen in (busy, "127.0.0.1:8250x"):
            run = cli(
                "serve",
                "--data-dir",
                str(tmp_path / "data"),
                "--listen",
                listen,
                "--authz-listen",
                f"127.0.0.1:{free_port()}",
            )
            assert run.returncode == 2, (run.stdout, run.stderr)
            assert f"agentceiling: cannot listen on {listen} (--listen)" in run.stderr, run.stderr
            assert "Traceback" not in run.stderr + run.stdout
        run = cli("serve", "--data-dir", str(tmp_path / "data2"), "--listen", f"127.0.0.1:{free_port()}",
                  "--authz-listen", busy)
        assert run.returncode == 2 and f"cannot listen on {busy} (--authz-listen)" in run.stderr, run.stderr


def test_port_zero_listeners_log_the_ports_they_got(tmp_path: Path) -> None:
    import re
    import signal as sig
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "agentceiling.cli", "serve", "--data-dir", str(tmp_path / "data"),
         "--listen", "127.0.0.1:0", "--authz-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "AGENTCEILING_DATA_DIR": "", "AGENTCEILING_DATABASE_URL": ""},
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while len([ln for ln in lines if "listening on" in ln]) < 2 and time.monotonic() < deadline:
            lines.append(proc.stdout.readline())
        text = "".join(lines)
        control = re.search(r"control plane listening on 127\.0\.0\.1:(\d+)", text)
        authz = re.search(r"authorization endpoint listening on 127\.0\.0\.1:(\d+)", text)
        assert control and authz, text
        assert int(control.group(1)) > 0 and int(authz.group(1)) > 0, text
        status = cli("status", "--address", f"127.0.0.1:{control.group(1)}", "--data-dir", str(tmp_path / "data"))
        assert status.returncode == 0, status.stderr
    finally:
        proc.send_signal(sig.SIGTERM)
        proc.wait(30)


def test_an_unreachable_database_is_a_clean_error_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://agent:s3cret-pw@127.0.0.1:{free_port()}/nowhere"
    for args in (("db", "upgrade"), ("serve", "--listen", f"127.0.0.1:{free_port()}")):
        run = cli(*args, *db_args(tmp_path / "data", url), timeout=120)
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        out = run.stderr + run.stdout
        assert "Traceback" not in out and "s3cret-pw" not in out
        assert "agentceiling: cannot use the database postgresql+psycopg://agent:***@127.0.0.1:" in run.stderr
        assert "Connection refused" in run.stderr
    # libpq also takes the password as a query parameter: hidden too, in messages and in the log
    url = f"postgresql+psycopg://agent@127.0.0.1:{free_port()}/nowhere?password=s3cret-pw&sslmode=disable"
    run = cli("db", "upgrade", *db_args(tmp_path / "data", url), timeout=120)
    assert run.returncode == 2 and "s3cret-pw" not in run.stderr + run.stdout, run.stderr
    assert "password=***" in run.stderr, run.stderr


def test_status_without_an_admin_token_says_where_it_looked(tmp_path: Path) -> None:
    env_token = os.environ.pop("VAULT_TOKEN", None)
    try:
        run = cli("status", "--data-dir", str(tmp_path / "absent"), "--address", f"127.0.0.1:{free_port()}")
    finally:
        if env_token is not None:
            os.environ["VAULT_TOKEN"] = env_token
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "no admin token: set VAULT_TOKEN" in run.stderr and str(tmp_path / "absent" / "admin-token") in run.stderr


def test_unusable_tls_files_are_named_before_anything_listens(tmp_path: Path) -> None:
    from tls_support import self_signed

    cert_a, key_a = self_signed(tmp_path / "a")
    _, key_b = self_signed(tmp_path / "b")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        ((cert_a, key_b), "not a PEM certificate and its private key"),  # a key of another certificate
        ((garbage, key_a), "not a PEM certificate and its private key"),
        ((tmp_path / "absent.pem", key_a), f"--tls-cert {tmp_path / 'absent.pem'}: No such file or directory"),
    ]
    for (cert, key), expected in cases:
        run = cli(
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--authz-listen",
            f"127.0.0.1:{free_port()}",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        )
        assert run.returncode == 2, (cert, key, run.stderr)
        assert expected in run.stderr and "cannot listen" not in run.stderr
        assert "Traceback" not in run.stderr + run.stdout


def test_status_reaches_a_tls_control_plane_with_ca_cert(tmp_path: Path) -> None:
    """`status` could only dial plaintext, so a server started with --tls-cert was unreachable."""
    import socket
    import time

    from tls_support import self_signed

    cert, key = self_signed(tmp_path / "tls")
    data = tmp_path / "data"
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentceiling.cli", "serve", "--data-dir", str(data), "--listen", address,
         "--authz-listen", f"127.0.0.1:{free_port()}", "--tls-cert", str(cert), "--tls-key", str(key)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", int(address.rsplit(":", 1)[1])), timeout=0.5):
                    if (data / "admin-token").exists():
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        ok = cli("status", "--address", address, "--data-dir", str(data), "--ca-cert", str(cert))
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["database"] == "sqlite"
        plain = cli("status", "--address", address, "--data-dir", str(data))
        assert plain.returncode == 1 and "give --ca-cert" in plain.stderr, plain.stderr
        missing = cli("status", "--address", address, "--data-dir", str(data), "--ca-cert", str(tmp_path / "no.pem"))
        assert missing.returncode == 2 and "cannot read the CA bundle" in missing.stderr, missing.stderr
    finally:
        proc.terminate()
        proc.wait(30)


def test_status_prefers_an_explicit_data_dir_to_vault_token(tmp_path: Path) -> None:
    srv = settle(start_server(tmp_path / "data"))
    try:
        run = subprocess.run(
            [sys.executable, "-m", "agentceiling.cli", "status", "--address", srv.address, "--data-dir",
             str(srv.data_dir)],
            capture_output=True, text=True, timeout=60, env={**os.environ, "VAULT_TOKEN": "acs.wrong"}, check=False,
        )
        assert run.returncode == 0, run.stderr
        run = subprocess.run(
            [sys.executable, "-m", "agentceiling.cli", "status", "--address", srv.address],
            capture_output=True, text=True, timeout=60, env={**os.environ, "VAULT_TOKEN": "acs.wrong"}, check=False,
        )
        assert run.returncode == 1 and "came from VAULT_TOKEN" in run.stderr, run.stderr
    finally:
        srv.stop()
