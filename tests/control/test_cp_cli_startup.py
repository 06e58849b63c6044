"""`agentceiling serve | db | status` refuse bad start-up input with one clear line and exit 2,
before anything listens and without changing files: a database migrated by a newer agentceiling,
unusable database URLs, a data directory in use or that is a file, a damaged audit log, ports out
of range, an encrypted TLS key, an admin-token path that cannot be written."""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_cp_support import free_port, fresh_database_url, settle, start_server

from agentceiling.addresses import address_problem
from agentceiling.store.audit_log import AuditLog

pytestmark = pytest.mark.timeout(180)


def cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentceiling.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "AGENTCEILING_DATA_DIR": "", "AGENTCEILING_DATABASE_URL": "", **(env or {})},
        check=False,
    )


def listen_args() -> list[str]:
    return ["--listen", f"127.0.0.1:{free_port()}", "--authz-listen", f"127.0.0.1:{free_port()}"]


def error_line(run: subprocess.CompletedProcess[str]) -> str:
    """The one `agentceiling: ...` line of a failed run (and no traceback anywhere)."""
    out = run.stderr + run.stdout
    assert "Traceback" not in out, out
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("agentceiling: ")]
    assert len(lines) == 1, run.stderr
    return lines[0]


def usage_error(run: subprocess.CompletedProcess[str]) -> str:
    """The argparse error line of a run refused at the command line."""
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr + run.stdout
    return run.stderr.strip().splitlines()[-1]


# ---------------------------------------------------------------- H1: start-up tracebacks


def _set_revision(url: str, revision: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_database_migrated_by_a_newer_agentceiling_is_named_not_a_traceback(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    url = fresh_database_url(request, kind, tmp_path)
    data = tmp_path / "data"
    assert cli("db", "upgrade", "--data-dir", str(data), "--database-url", url).returncode == 0
    _set_revision(url, "ffff9999abcd")
    db = ["--data-dir", str(data), "--database-url", url]
    for args in (
        ("db", "upgrade", *db),
        ("serve", *db, *listen_args()),
        ("serve", "--no-migrate", *db, *listen_args()),
    ):
        run = cli(*args)
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        line = error_line(run)
        assert "ffff9999abcd" in line and "newer agentceiling" in line, line
        assert "db upgrade" not in line  # upgrading cannot help: that is the Alembic traceback
        assert "listening" not in run.stderr
    assert not (data / "admin-token").exists()
    cur = cli("db", "current", *db)
    assert (cur.returncode, cur.stdout) == (0, "ffff9999abcd\n")


def test_an_unusable_database_url_is_named(tmp_path: Path) -> None:
    cases = [
        ("garbage", "not a database URL"),
        ("mysql://u@127.0.0.1/x", "unsupported database mysql://"),
        ("postgresql+asyncpg://u@127.0.0.1/x", "asynchronous driver asyncpg is not supported"),
    ]
    if importlib.util.find_spec("psycopg2") is None:
        cases.append(("postgresql+psycopg2://u:pw@127.0.0.1/x", "its driver psycopg2 is not installed"))
    for url, expected in cases:
        for args in (("db", "current"), ("db", "upgrade"), ("serve", *listen_args())):
            run = cli(*args, "--data-dir", str(tmp_path / "data"), "--database-url", url)
            assert run.returncode == 2, (url, args, run.stdout, run.stderr)
            line = error_line(run)
            assert line.startswith("agentceiling: --database-url: ") and expected in line, line
            assert ":pw@" not in line


def test_a_second_server_on_the_same_data_dir_names_the_first_and_never_listens(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = settle(start_server(data))
    try:
        control, authz = free_port(), free_port()
        run = cli(
            "--log-level",
            "info",
            "serve",
            "--data-dir",
            str(data),
            "--listen",
            f"127.0.0.1:{control}",
            "--authz-listen",
            f"127.0.0.1:{authz}",
        )
        assert run.returncode == 2, (run.stdout, run.stderr)
        line = error_line(run)
        assert f"pid {first.proc.pid}" in line and str(data) in line, line
        assert "listening" not in run.stderr  # refused before its first listener started
        assert first.proc.poll() is None
    finally:
        assert first.stop() == 0


def _write_log(path: Path, n: int) -> None:
    with AuditLog.open(path) as alog:
        for i in range(n):
            alog.append({"allowed": False, "i": i})


def test_a_tampered_audit_log_stops_serve_with_a_pointer_to_audit_verify(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = data / "audit" / "audit.log"
    _write_log(log, 3)
    lines = log.read_bytes().splitlines(keepends=True)
    lines[-1] = lines[-1].replace(b'"allowed":false', b'"allowed":true')
    log.write_bytes(b"".join(lines))
    before = log.read_bytes()
    run = cli("serve", "--data-dir", str(data), *listen_args())
    assert run.returncode == 2, (run.stdout, run.stderr)
    line = error_line(run)
    assert "hash mismatch" in line and f"agentceiling audit verify --data-dir {data}" in line, line
    assert "listening" not in run.stderr
    assert log.read_bytes() == before


# ---------------------------------------------------------------- M1: ports out of range


@pytest.mark.parametrize("flag", ["--listen", "--authz-listen"])
@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_serve_refuses_ports_out_of_range(tmp_path: Path, flag: str, port: str) -> None:
    addresses = {"--listen": f"127.0.0.1:{free_port()}", "--authz-listen": f"127.0.0.1:{free_port()}"}
    addresses[flag] = f"127.0.0.1:{port}"
    run = cli("serve", "--data-dir", str(tmp_path / "data"), *[x for kv in addresses.items() for x in kv])
    assert run.returncode == 2, (run.stdout, run.stderr)
    line = error_line(run)
    assert f"cannot listen on 127.0.0.1:{port} ({flag})" in line and "out of range" in line, line
    assert not (tmp_path / "data").exists()  # refused before anything was created


def test_status_refuses_an_address_out_of_range(tmp_path: Path) -> None:
    for address in ("127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1:0"):
        run = cli("status", "--address", address, "--data-dir", str(tmp_path), env={"VAULT_TOKEN": "acs.x"})
        assert "argument --address" in usage_error(run) and "out of range" in run.stderr


def test_address_checks() -> None:
    assert address_problem("127.0.0.1:8250", listen=True) is None
    assert address_problem("[::1]:8250", listen=False) is None
    assert address_problem("127.0.0.1:0", listen=True) is None  # any free port
    assert address_problem("unix:/run/agentceiling.sock", listen=True) is None
    assert address_problem("dns:///localhost:8251", listen=False) is None
    assert "out of range" in (address_problem("127.0.0.1:0", listen=False) or "")
    assert "out of range" in (address_problem("[::1]:70000", listen=True) or "")
    assert "not a number" in (address_problem("127.0.0.1:8250x", listen=True) or "")


# ---------------------------------------------------------------- M2: encrypted TLS key


@pytest.mark.parametrize("fmt", ["pkcs8", "traditional"])
def test_an_encrypted_tls_key_is_refused_without_a_prompt(tmp_path: Path, fmt: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from tls_support import self_signed

    cert, key_file = self_signed(tmp_path / "tls")
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    enc = tmp_path / "enc.pem"
    enc.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8 if fmt == "pkcs8" else serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(b"secret passphrase"),
        )
    )
    run = cli(
        "serve", "--data-dir", str(tmp_path / "data"), *listen_args(), "--tls-cert", str(cert), "--tls-key", str(enc)
    )
    assert run.returncode == 2, (run.stdout, run.stderr)
    line = error_line(run)
    assert line == f"agentceiling: --tls-key {enc} is encrypted (passphrase-protected); give an unencrypted key"
    assert "pass phrase" not in (run.stdout + run.stderr).lower()


def test_an_empty_tls_path_is_a_usage_error(tmp_path: Path) -> None:
    run = cli("serve", "--data-dir", str(tmp_path / "data"), "--tls-cert", "", "--tls-key", "")
    line = usage_error(run)
    assert "argument --tls-cert: empty path" in line and "Is a directory" not in run.stderr


# ---------------------------------------------------------------- M9, M10: local files


def test_a_data_dir_that_is_a_file_is_named(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a directory\n")
    for args in (("serve", *listen_args()), ("db", "upgrade"), ("db", "current")):
        run = cli(*args, "--data-dir", str(afile))
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        assert error_line(run) == f"agentceiling: --data-dir {afile} is not a directory"
    assert afile.read_text() == "not a directory\n"


def test_status_names_an_admin_token_file_that_is_not_text(tmp_path: Path) -> None:
    (tmp_path / "admin-token").write_bytes(b"\xff\xfeacs.\x00\n")
    env = {k: v for k, v in os.environ.items() if k != "VAULT_TOKEN"}
    run = subprocess.run(
        [sys.executable, "-m", "agentceiling.cli", "status", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert error_line(run) == f"agentceiling: {tmp_path / 'admin-token'} is not an admin token (not UTF-8 text)"


def test_an_admin_token_path_that_cannot_be_written_leaves_no_secret_behind(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "admin-token").mkdir(parents=True)
    run = cli("serve", "--data-dir", str(data), *listen_args())
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert error_line(run) == f"agentceiling: cannot write the admin token {data / 'admin-token'}: Is a directory"
    assert not (data / "admin-token.tmp").exists()
    with sqlite3.connect(data / "agentceiling.db") as conn:
        assert conn.execute("SELECT count(*) FROM admin_tokens").fetchone() == (0,)  # rolled back
    # Once the path is fixed, the first start creates the token the failed one did not commit.
    (data / "admin-token").rmdir()
    srv = settle(start_server(data))
    try:
        assert srv.token.startswith("acs.")
        status = cli("status", "--address", srv.address, "--data-dir", str(data), env={"VAULT_TOKEN": ""})
        assert status.returncode == 0, status.stderr
    finally:
        assert srv.stop() == 0


# ---------------------------------------------------------------- low


def test_db_current_does_not_create_a_mistyped_sqlite_database(tmp_path: Path) -> None:
    typo = tmp_path / "typo" / "data"
    run = cli("db", "current", "--data-dir", str(typo))
    assert run.returncode == 2, (run.stdout, run.stderr)
    line = error_line(run)
    assert f"no database at {typo / 'agentceiling.db'} (--data-dir)" in line, line
    assert not (tmp_path / "typo").exists()
    url = f"sqlite:///{tmp_path / 'nope.db'}"
    run = cli("db", "current", "--database-url", url)
    assert run.returncode == 2 and "(--database-url)" in error_line(run)
    assert not (tmp_path / "nope.db").exists()


def test_an_unknown_log_level_is_a_usage_error(tmp_path: Path) -> None:
    line = usage_error(cli("--log-level", "garbage", "db", "current", "--data-dir", str(tmp_path)))
    assert "argument --log-level: invalid level 'garbage'" in line and "DEBUG, INFO, WARNING" in line
    line = usage_error(cli("db", "current", "--data-dir", str(tmp_path), env={"AGENTCEILING_LOG_LEVEL": "loud"}))
    assert "invalid level 'loud'" in line
    ok = cli("--log-level", "debug", "db", "upgrade", "--data-dir", str(tmp_path))
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("value", ["5", "0", "366d", "-1h", "1w", "ten", "1e3"])
def test_a_max_token_lifetime_out_of_range_is_a_usage_error(tmp_path: Path, value: str) -> None:
    run = cli("serve", "--data-dir", str(tmp_path / "data"), "--max-token-lifetime", value)
    assert "argument --max-token-lifetime" in usage_error(run), run.stderr
    assert not (tmp_path / "data").exists()


def test_environment_variables_empty_tilde_and_blamed_by_name(tmp_path: Path) -> None:
    """An empty AGENTCEILING_* (as env files leave them) means unset; "~" in AGENTCEILING_DATA_DIR is
    the home directory (as the Terraform provider reads it); a bad value is reported as the
    variable's, not as a flag the operator never typed."""
    run = cli("db", "upgrade", "--data-dir", str(tmp_path / "d1"), env={"AGENTCEILING_LOG_LEVEL": ""})
    assert run.returncode == 0, run.stderr
    home = tmp_path / "home"
    run = cli("db", "upgrade", env={"AGENTCEILING_DATA_DIR": "~/acdata", "HOME": str(home)})
    assert run.returncode == 0, run.stderr
    assert (home / "acdata" / "agentceiling.db").is_file()
    assert not (Path.cwd() / "~").exists()
    line = usage_error(cli("serve", "--data-dir", str(tmp_path / "d2"), *listen_args(),
                           env={"AGENTCEILING_AUDIT_ROTATE_BYTES": "100"}))
    assert "too small" in line and "(the value comes from AGENTCEILING_AUDIT_ROTATE_BYTES)" in line, line
    line = usage_error(cli("serve", "--data-dir", str(tmp_path / "d2"), "--audit-rotate-bytes", "100",
                           *listen_args(), env={"AGENTCEILING_AUDIT_ROTATE_BYTES": "100"}))
    assert "too small" in line and "AGENTCEILING_" not in line, line  # the flag was typed
    # --no-migrate from the environment
    run = cli("serve", "--data-dir", str(tmp_path / "d3"), *listen_args(), env={"AGENTCEILING_NO_MIGRATE": "1"})
    assert run.returncode == 2 and "no database at" in error_line(run), run.stderr
    # Settings argparse does not check when they come from the environment are checked, and named.
    for env, says in (
        ({"AGENTCEILING_NO_MIGRATE": "maybe"}, "AGENTCEILING_NO_MIGRATE='maybe': use 1 or 0"),
        ({"AGENTCEILING_ROLE": "bogus"}, "unknown role 'bogus': use all, control or authz (the value comes from "
                                         "AGENTCEILING_ROLE)"),
        ({"AGENTCEILING_ROLE": "all "}, "(the value comes from AGENTCEILING_ROLE)"),
        ({"AGENTCEILING_TLS_CERT": "/etc/hostname"}, "--tls-cert and --tls-key must be given together (the value "
                                                     "comes from AGENTCEILING_TLS_CERT)"),
    ):
        run = cli("serve", "--data-dir", str(tmp_path / "d4"), *listen_args(), env=env)
        assert run.returncode == 2 and says in error_line(run), run.stderr
        assert not (tmp_path / "d4").exists()  # refused before anything is made
    # A blank value is unset too (not a directory named " " in the working directory).
    run = cli("db", "upgrade", env={"AGENTCEILING_DATA_DIR": " ", "HOME": str(home)})
    assert run.returncode == 0 and not (Path.cwd() / " ").exists(), run.stderr
    assert (home / ".agentceiling" / "data" / "agentceiling.db").is_file()
    # authorize has a variable of its own for its address: empty is unset, a bad value is its own.
    token = tmp_path / "tok"
    token.write_text("x.y.z")
    run = cli("authorize", "--token-file", str(token), env={"AGENTCEILING_AUTHZ_ADDRESS": "", "AGENTCEILING_ADDRESS":
                                                            f"127.0.0.1:{free_port()}"}, timeout=60)
    assert run.returncode == 2 and "127.0.0.1:8251" in error_line(run), run.stderr
    both = {"AGENTCEILING_AUTHZ_ADDRESS": "127.0.0.1:99999", "AGENTCEILING_ADDRESS": "127.0.0.1:1"}
    line = usage_error(cli("authorize", "--token-file", str(token), env=both))
    assert line.endswith("(the value comes from AGENTCEILING_AUTHZ_ADDRESS)"), line


def test_serve_refuses_a_fifo_named_like_an_audit_segment_instead_of_hanging(tmp_path: Path) -> None:
    """The audit writer used to block opening it: the server never started, ignored SIGTERM, and
    once killed left the writer behind."""
    audit = tmp_path / "data" / "audit"
    audit.mkdir(parents=True, mode=0o700)
    (tmp_path / "data").chmod(0o700)
    os.mkfifo(audit / "audit.log.000000000001")
    run = cli("serve", "--data-dir", str(tmp_path / "data"), *listen_args(), timeout=60)
    line = error_line(run)
    assert run.returncode == 2 and "audit.log.000000000001" in line and "not a regular file" in line, line


def test_a_sqlite_url_in_a_directory_that_does_not_exist_is_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/missing/x.db"
    for args in (("db", "upgrade"), ("serve", "--data-dir", str(tmp_path / "data"), *listen_args())):
        run = cli(*args, "--database-url", url)
        line = error_line(run)
        assert run.returncode == 2 and line == (
            f"agentceiling: --database-url: {url}: cannot create the database file {tmp_path}/missing/x.db: "
            "No such file or directory"
        ), line


def test_fifos_where_the_server_keeps_files_are_refused_instead_of_waited_on(tmp_path: Path) -> None:
    """A FIFO nobody writes blocked `status` (admin-token) and `serve` (--tls-cert, read twice)
    for good, and serve's start-up defers SIGINT and SIGTERM."""
    data = tmp_path / "data"
    data.mkdir()
    os.mkfifo(data / "admin-token")
    run = cli("status", "--data-dir", str(data), "--address", f"127.0.0.1:{free_port()}", timeout=30)
    assert run.returncode == 2 and "admin-token: not a regular file" in error_line(run), run.stderr
    os.mkfifo(tmp_path / "cert.pem")
    (tmp_path / "key.pem").write_text("x")
    run = cli("serve", "--data-dir", str(tmp_path / "d"), *listen_args(), "--tls-cert", str(tmp_path / "cert.pem"),
              "--tls-key", str(tmp_path / "key.pem"), timeout=30)
    line = error_line(run)
    assert run.returncode == 2 and line == f"agentceiling: --tls-cert {tmp_path}/cert.pem: not a regular file", line
