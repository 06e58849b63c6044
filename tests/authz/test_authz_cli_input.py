"""`agentceiling authorize` and `agentceiling audit rotate` refuse bad input up front: exit 2 with
one line naming the flag or file (never exit 1, which means "refused"), and `audit rotate` never
changes a file that is not an audit log."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from authz_support import free_port

from agentceiling.store.audit_log import AuditLog, segment_paths, verify

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO / "src")]))}

pytestmark = pytest.mark.timeout(120)


def _cli(*args: str | bytes, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        [sys.executable, "-m", "agentceiling.cli", *args],
        capture_output=True,
        env=ENV,
        input=stdin if stdin is not None else b"",
        timeout=60,
        check=False,
    )
    return subprocess.CompletedProcess(
        run.args, run.returncode, run.stdout.decode(errors="replace"), run.stderr.decode(errors="replace")
    )


def _error(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr + run.stdout and run.stdout == ""
    return run.stderr.strip().splitlines()[-1]


@pytest.fixture
def token(tmp_path: Path) -> Path:
    tok = tmp_path / "token"
    tok.write_text("eyJhbGciOiJub25lIn0.e30.\n")
    return tok


def _dead() -> str:
    return f"127.0.0.1:{free_port()}"


# ---------------------------------------------------------------- M5: text that is not UTF-8


def test_a_token_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    line = _error(_cli("authorize", "--token-file", "-", "--address", _dead(), stdin=b"\xff"))
    assert line == "agentceiling: --token-file - (stdin): not a token (not UTF-8 text)"
    bad = tmp_path / "bad-token"
    bad.write_bytes(b"eyJ\xff.e30.\n")
    line = _error(_cli("authorize", "--token-file", str(bad), "--address", _dead()))
    assert line == f"agentceiling: --token-file {bad}: not a token (not UTF-8 text)"


def test_parameters_and_arguments_that_are_not_unicode_are_named(token: Path) -> None:
    common = ["authorize", "--token-file", str(token), "--address", _dead()]
    line = _error(_cli(*common, "--parameters", '{"a": "\\ud800"}'))
    assert line.startswith("agentceiling: --parameters holds text that is not valid Unicode"), line
    line = _error(_cli(*common, "--parameters", '{"\\udfff": 1}'))
    assert line.startswith("agentceiling: --parameters holds text that is not valid Unicode"), line
    line = _error(_cli(*common, "--parameters", "[" * 20_000 + "]" * 20_000))
    assert line.startswith("agentceiling: --parameters"), line
    line = _error(_cli(*common, "--path", b"secret/\xff"))
    assert line == "agentceiling: --path is not valid UTF-8 text"
    line = _error(_cli(*common, "--parameters", b'{"a": "\xff"}'))
    assert line == "agentceiling: --parameters is not valid UTF-8 text"


# ---------------------------------------------------------------- M8, M1: --timeout and --address


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e308", "-1", "0", "ten", "3601"])
def test_authorize_refuses_a_timeout_that_is_not_a_sane_number_of_seconds(token: Path, value: str) -> None:
    line = _error(_cli("authorize", "--token-file", str(token), "--address", _dead(), f"--timeout={value}"))
    assert "argument --timeout" in line and repr(value) in line, line


@pytest.mark.parametrize("address", ["127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1:0", "[::1]:65536"])
def test_authorize_refuses_an_address_out_of_range(token: Path, address: str) -> None:
    line = _error(_cli("authorize", "--token-file", str(token), f"--address={address}"))
    assert "argument --address" in line and "out of range" in line, line


# ---------------------------------------------------------------- M7, H8: audit rotate


def _make_log(path: Path, n: int = 3) -> None:
    with AuditLog.open(path) as alog:
        for i in range(n):
            alog.append({"allowed": True, "i": i})


@pytest.mark.parametrize("value", ["-5", "nan", "inf", "0"])
def test_audit_rotate_refuses_a_bad_timeout_before_rotating(tmp_path: Path, value: str) -> None:
    log = tmp_path / "audit.log"
    _make_log(log)
    line = _error(_cli("audit", "rotate", "--file", str(log), f"--timeout={value}"))
    assert "argument --timeout" in line, line
    assert segment_paths(log) == [] and verify(log).records == 3


@pytest.mark.parametrize(
    "content",
    [
        b"my notes\nsecond line\n",  # complete lines that are not records
        b"just some text",  # no newline at all
        b'{"a": 1}\n',  # JSON, not a record
    ],
)
def test_audit_rotate_never_touches_a_file_that_is_not_an_audit_log(tmp_path: Path, content: bytes) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(content)
    notes.chmod(0o644)
    line = _error(_cli("audit", "rotate", "--file", str(notes)))
    assert line.startswith(f"agentceiling: cannot rotate {notes}: ") and "refusing to open it" in line, line
    assert notes.read_bytes() == content
    assert stat.S_IMODE(notes.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no .lock, no segment


def test_audit_rotate_still_rotates_a_log_with_a_torn_last_line(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    _make_log(log)
    with log.open("ab") as f:
        f.write(b'{"decision":{"allo')  # a crash in the middle of an append
    run = _cli("audit", "rotate", "--file", str(log))
    assert run.returncode == 0, run.stderr
    assert len(segment_paths(log)) == 1 and verify(segment_paths(log)[0]).records == 3


@pytest.mark.parametrize("command", ["verify", "tail", "anchor", "rotate"])
def test_audit_commands_refuse_a_fifo_or_a_directory_instead_of_waiting(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "audit.fifo"
    os.mkfifo(fifo)
    run = _cli("audit", command, "--file", str(fifo))  # would block forever on open() before
    assert run.returncode == 2 and "not a regular file" in _error(run), run
    run = _cli("audit", command, "--file", str(tmp_path))
    assert run.returncode == 2 and "is a directory" in _error(run), run


def test_audit_rotate_signals_only_a_server_that_holds_the_log(tmp_path: Path) -> None:
    """The lock file names a pid. `audit rotate` sends SIGHUP only when that process holds the log
    open and is a server: a concurrent `audit rotate` (no SIGHUP handler: it died) or a process the
    pid means here but not in the server's pid namespace (a container) is left alone."""
    log = tmp_path / "audit.log"
    _make_log(log)
    holder_code = (
        "import sys, time\n"
        "from agentceiling.store.audit_log import AuditLog\n"
        "alog = AuditLog.open(sys.argv[1]); print('ready', flush=True); time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", holder_code, str(log)], stdout=subprocess.PIPE, text=True)
    bystander = subprocess.Popen(["sleep", "120"])
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        # Held by a process that is not a server.
        line = _error(_cli("audit", "rotate", "--file", str(log)))
        assert f"held by process {holder.pid}" in line and "not by a server" in line, line
        # The lock names a process that does not hold it (as a pid from another namespace would).
        lock = log.with_name(log.name + ".lock")
        with open(lock, "r+") as f:
            f.seek(0)
            f.truncate()
            f.write(f"{bystander.pid}\n")
        line = _error(_cli("audit", "rotate", "--file", str(lock.with_name("audit.log"))))
        assert f"process {bystander.pid}" in line and "does not hold the log open" in line, line
        assert holder.poll() is None and bystander.poll() is None  # neither got a SIGHUP
        assert segment_paths(log) == []
    finally:
        holder.kill()
        bystander.kill()
        holder.wait()
        bystander.wait()


def test_audit_rotate_refuses_a_rotated_segment(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    _make_log(log)
    assert _cli("audit", "rotate", "--file", str(log)).returncode == 0
    _make_log(log)
    (segment,) = segment_paths(log)
    line = _error(_cli("audit", "rotate", "--file", str(segment)))
    assert "is a rotated segment of" in line and str(log) in line, line
    assert segment_paths(log) == [segment] and sorted(p.name for p in tmp_path.iterdir() if "lock" not in p.name) == [
        "audit.log", segment.name]
    assert _cli("audit", "verify", "--file", str(log)).returncode == 0


def test_a_token_file_is_read_only_up_to_64_kib(tmp_path: Path) -> None:
    """`--token-file /dev/zero` (or a wrong path to a big file) read until memory ran out."""
    line = _error(_cli("authorize", "--token-file", "/dev/zero", "--address", _dead()))
    assert line == "agentceiling: the token file /dev/zero is longer than 64 KiB: not a token", line
    big = tmp_path / "big"
    big.write_bytes(b"a" * (64 * 1024 + 1))
    assert "longer than 64 KiB" in _error(_cli("authorize", "--token-file", str(big), "--address", _dead()))
    line = _error(_cli("authorize", "--token-file", "-", "--address", _dead(), stdin=b"b" * (200 * 1024)))
    assert "longer than 64 KiB" in line, line


def test_authorize_with_its_standard_input_closed_names_it(token: Path) -> None:
    run = subprocess.run(  # started with no file descriptor 0 at all (`<&-` in a shell)
        [sys.executable, "-m", "agentceiling.cli",
         "authorize", "--token-file", "-", "--path", "a", "--operation", "read", "--address", _dead()],
        capture_output=True, env=ENV, timeout=60, check=False, text=True, preexec_fn=lambda: os.close(0),
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().endswith("cannot read the token file - (stdin): standard input is closed")


@pytest.mark.parametrize("content", [b"", b"  \n", b"not a certificate\n", b"-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_a_ca_bundle_without_a_certificate_is_refused_not_widened(token: Path, tmp_path: Path, content: bytes) -> None:
    """gRPC takes an empty bundle for "trust the default roots": a wider trust than the one named."""
    ca = tmp_path / "ca.pem"
    ca.write_bytes(content)
    says = "no CA certificate to trust" if not content.strip() else "not a PEM certificate bundle"
    line = _error(
        _cli("authorize", "--token-file", str(token), "--path", "a", "--operation", "read", "--address", _dead(),
             "--ca-cert", str(ca))
    )
    assert line.startswith(f"agentceiling: --ca-cert {ca}: ") and says in line, line
    run = subprocess.run(
        [sys.executable, "-m", "agentceiling.cli", "status", "--address", _dead(), "--ca-cert", str(ca)],
        capture_output=True, env={**ENV, "VAULT_TOKEN": "x"}, timeout=60, check=False, text=True,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().startswith(f"agentceiling: --ca-cert {ca}: ") and says in run.stderr, run.stderr


@pytest.mark.parametrize("command", ["verify", "tail", "anchor", "rotate"])
def test_audit_commands_on_a_data_dir_that_is_a_file_find_no_log(tmp_path: Path, command: str) -> None:
    """Exit 2 (no log there), never `verify`'s 1, which says records were edited or removed."""
    not_a_dir = tmp_path / "datafile"
    not_a_dir.write_text("x")
    line = _error(_cli("audit", command, "--data-dir", str(not_a_dir)))
    assert line == f"agentceiling: no audit log at {not_a_dir}/audit/audit.log", line


@pytest.mark.parametrize("command", ["verify", "tail", "anchor"])
def test_audit_commands_refuse_a_fifo_named_like_a_segment_instead_of_waiting(tmp_path: Path, command: str) -> None:
    log = tmp_path / "audit" / "audit.log"
    log.parent.mkdir()
    with AuditLog.open(log) as alog:
        alog.append({"n": 1})
    os.mkfifo(log.parent / "audit.log.000000000099")
    line = _error(_cli("audit", command, "--data-dir", str(tmp_path)))
    assert "audit.log.000000000099" in line and "not a regular file" in line, line


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("command", ["verify", "tail"])
def test_an_unwritable_standard_output_is_named_not_taken_for_the_log(tmp_path: Path, command: str) -> None:
    """`verify`'s exit 1 says records were edited or removed; `tail` used to blame the log."""
    log = tmp_path / "audit" / "audit.log"
    log.parent.mkdir()
    with AuditLog.open(log) as alog:
        alog.append({"n": 1})
    with open("/dev/full", "w") as full:
        run = subprocess.run([sys.executable, "-m", "agentceiling.cli", "audit", command, "--data-dir", str(tmp_path)],
                             stdout=full, stderr=subprocess.PIPE, env=ENV, timeout=60, check=False, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip() == "agentceiling: cannot write to standard output: No space left on device", run.stderr


def test_a_reader_that_stops_reading_ends_tail_quietly(tmp_path: Path) -> None:
    log = tmp_path / "audit" / "audit.log"
    log.parent.mkdir()
    with AuditLog.open(log) as alog:
        for i in range(20000):
            alog.append({"n": i})
    proc = subprocess.Popen([sys.executable, "-m", "agentceiling.cli", "audit", "tail", "-n", "20000", "--data-dir",
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # `... | head -1`
    assert proc.wait(60) == 141
    assert proc.stderr.read() == b""


def test_a_ca_bundle_needs_one_certificate_that_parses_and_no_warning(tmp_path: Path) -> None:
    """System bundles hold old certificates cryptography warns about (and may one day refuse):
    one that parses is enough, as for gRPC."""
    import warnings

    from tls_support import self_signed

    from agentceiling.ca_bundle import ca_bundle_problem

    good = self_signed(tmp_path)[0].read_bytes()
    broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ca_bundle_problem(broken + good) is None
        assert ca_bundle_problem(broken) is not None
        system = Path("/etc/ssl/certs/ca-certificates.crt")
        if system.is_file():
            assert ca_bundle_problem(system.read_bytes()) is None
