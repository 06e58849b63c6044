"""Serve a provider the way go-plugin expects (terraform's plugin host).

Start-up order matters, because terraform starts the plugin 3-5 times per command and anything
on stdout before the handshake line breaks it (pitfall P4):

1. ignore SIGINT (Ctrl-C reaches the whole process group; terraform itself asks providers to stop
   with StopProvider, pitfall P19) and end on SIGTERM like on Shutdown;
2. keep a copy of the real stdout for the handshake, then point fd 1 at stderr;
3. check the magic cookie and the protocol versions (``handshake.check_environment``);
4. with ``PLUGIN_CLIENT_CERT`` (AutoMTLS): an ephemeral P-256 certificate and the ``ssl`` TLS
   front end listening on 127.0.0.1 (``tlsfront``), then the handshake line;
5. import and start grpcio in plaintext on a unix socket inside a fresh 0700 directory; the front
   end splices accepted connections to it once it is up. Without AutoMTLS
   (``TF_DISABLE_PLUGIN_TLS``) grpcio serves the unix socket itself and the line follows;
6. build the provider in a background thread (the first RPC waits for it if needed);
7. wait for ``plugin.GRPCController/Shutdown`` (or SIGTERM, or terraform's death), stop, remove
   the directory.

Like a Go plugin, which prints the line once its listener exists and serves in a goroutine, the
line goes out as soon as the listener accepts: terraform's connection and TLS handshake then
overlap with loading grpcio (~80 ms of imports), the protobuf stubs and the provider.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from agentceiling.tfprovider.framework.handshake import (
    HandshakeError,
    PluginEnv,
    check_environment,
    generate_server_certificate,
    handshake_line,
)

if TYPE_CHECKING:
    from agentceiling.tfprovider.framework.tlsfront import TLSFrontEnd
    from agentceiling.tfprovider.framework.types import Provider

log = logging.getLogger("agentceiling.tfprovider")

LOG_ENV = "AGENTCEILING_PROVIDER_LOG"
RUNDIR_PREFIX = "agentceiling-tfp-"
MAX_MESSAGE = 256 << 20  # terraform-plugin-go's limit; grpc's default of 4 MiB is too small
WORKERS = 24  # terraform runs up to 10 operations at once; StreamStdio holds one worker

ProviderFactory = Callable[[], "Provider"]


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Logging: stderr lines that terraform's TF_LOG shows at the level of their [LEVEL] prefix.

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}
_PREFIX = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARN"}


class _TerraformFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = _PREFIX.get(record.levelno, "ERROR" if record.levelno > logging.WARNING else "TRACE")
        text = f"[{prefix}] {record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    level = _LEVELS.get(environ.get(LOG_ENV, "").strip().lower(), logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_TerraformFormatter())
    root = logging.getLogger("agentceiling")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


# ---------------------------------------------------------------------------------------------
# The run directory (unix socket, certificate files): 0700, removed at shutdown.


# A unix socket path must fit in sockaddr_un.sun_path (108 bytes on Linux, 104 on macOS), and
# PLUGIN_UNIX_SOCKET_DIR / TMPDIR can be long (macOS's TMPDIR is): fall back to /tmp then.
_MAX_SOCKET_PATH = 100
_SOCKET_NAME = "grpc.sock"


def rundir_parent(env: PluginEnv | None = None) -> str:
    return (env.unix_socket_dir if env else None) or os.environ.get("TMPDIR") or "/tmp"


def make_rundir(env: PluginEnv | None = None) -> str:
    """A fresh 0700 directory named after our pid, short enough for a unix socket inside it
    (``tempfile`` costs more to import)."""
    parent = rundir_parent(env)
    name_length = len(f"/{RUNDIR_PREFIX}{os.getpid()}-00000000/{_SOCKET_NAME}")
    if len(os.fsencode(parent)) + name_length > _MAX_SOCKET_PATH:
        parent = "/tmp"
    while True:
        path = os.path.join(parent, f"{RUNDIR_PREFIX}{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def remove_stale_rundirs(parent: str) -> int:
    """Remove run directories of provider processes that no longer exist (killed with SIGKILL,
    e.g. after a failed handshake). Returns how many were removed."""
    removed = 0
    try:
        entries = os.listdir(parent)
    except OSError:
        return 0
    uid = os.getuid()
    for name in entries:
        if not name.startswith(RUNDIR_PREFIX):
            continue
        path = os.path.join(parent, name)
        try:
            pid = int(name[len(RUNDIR_PREFIX) :].split("-", 1)[0])
            if os.lstat(path).st_uid != uid or pid == os.getpid():
                continue
            os.kill(pid, 0)
        except ProcessLookupError:
            _rmtree(path)
            removed += 1
        except (ValueError, OSError):
            continue
    return removed


# ---------------------------------------------------------------------------------------------
# go-plugin's own services


class PluginState:
    def __init__(self) -> None:
        self.shutdown = threading.Event()
        self.streams: set[threading.Event] = set()
        self.lock = threading.Lock()

    def request_shutdown(self) -> None:
        self.shutdown.set()
        with self.lock:
            for ev in self.streams:
                ev.set()


def _add_goplugin_services(server: Any, state: PluginState) -> None:
    import grpc

    from agentceiling._gen.goplugin import (
        grpc_controller_pb2,
        grpc_controller_pb2_grpc,
        grpc_stdio_pb2,
        grpc_stdio_pb2_grpc,
    )

    class Controller(grpc_controller_pb2_grpc.GRPCControllerServicer):
        def Shutdown(self, request: Any, context: grpc.ServicerContext) -> Any:
            log.debug("GRPCController.Shutdown")
            state.request_shutdown()
            return grpc_controller_pb2.Empty()

    class Stdio(grpc_stdio_pb2_grpc.GRPCStdioServicer):
        """Open until shutdown. Our stdout/stderr go to the process's stderr (fd 1 is fd 2),
        which go-plugin already forwards to TF_LOG, so nothing is sent on the stream."""

        def StreamStdio(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            done = threading.Event()
            with state.lock:
                if state.shutdown.is_set():
                    return
                state.streams.add(done)
            context.add_callback(done.set)
            try:
                done.wait()
            finally:
                with state.lock:
                    state.streams.discard(done)
            return
            yield grpc_stdio_pb2.StdioData()  # pragma: no cover - makes this a generator

    grpc_controller_pb2_grpc.add_GRPCControllerServicer_to_server(Controller(), server)
    grpc_stdio_pb2_grpc.add_GRPCStdioServicer_to_server(Stdio(), server)
    # grpc.health.v1.Health/Check -> SERVING (b"\x08\x01"), for go-plugin's Ping; no extra package.
    health = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {"Check": grpc.unary_unary_rpc_method_handler(lambda request, context: b"\x08\x01")},
    )
    server.add_generic_rpc_handlers((health,))
    # plugin.GRPCBroker is not registered: terraform uses no broker and tolerates UNIMPLEMENTED.


# ---------------------------------------------------------------------------------------------
# Serving


class Served:
    """A running plugin server."""

    def __init__(self, server: Any, servicer: Any, state: PluginState, rundir: str, backend: str) -> None:
        self.server = server
        self.servicer = servicer
        self.state = state
        self.rundir = rundir
        self.backend = backend
        self.front: TLSFrontEnd | None = None

    def stop(self, grace: float = 0.5) -> None:
        self.state.request_shutdown()
        # grpc first: in-flight RPCs (the Shutdown response among them) finish and flow out
        # through the front end, whose connections then see EOF and close.
        self.server.stop(grace).wait(grace + 1)
        if self.front is not None:
            self.front.stop()
        _rmtree(self.rundir)


def start_grpc(factory: ProviderFactory | Provider, rundir: str, state: PluginState | None = None) -> Served:
    """Start grpcio in plaintext on ``rundir/grpc.sock`` with the provider and go-plugin services."""
    from concurrent import futures

    import grpc

    from agentceiling._gen.tfplugin6 import tfplugin6_pb2_grpc
    from agentceiling.tfprovider.framework.server import ProviderServer

    state = state or PluginState()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="rpc"),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.so_reuseport", 0),
        ],
    )
    servicer = ProviderServer(factory)
    tfplugin6_pb2_grpc.add_ProviderServicer_to_server(servicer, server)
    _add_goplugin_services(server, state)
    backend = os.path.join(rundir, _SOCKET_NAME)
    if server.add_insecure_port("unix:" + backend) == 0:
        raise OSError(f"gRPC cannot listen on the unix socket {backend}")
    server.start()
    return Served(server, servicer, state, rundir, backend)


def start_front_end(env: PluginEnv, rundir: str) -> tuple[TLSFrontEnd, bytes]:
    """The mutual-TLS listener (not yet connected to grpc) and our certificate's DER."""
    from agentceiling.tfprovider.framework.tlsfront import TLSFrontEnd, server_context

    assert env.client_cert_pem is not None
    cert = generate_server_certificate()
    cert_file, key_file = os.path.join(rundir, "cert.pem"), os.path.join(rundir, "key.pem")
    _write_private(cert_file, cert.cert_pem.encode())
    _write_private(key_file, cert.key_pem)
    front = TLSFrontEnd(
        server_context(cert_file, key_file, env.client_cert_pem), os.path.join(rundir, _SOCKET_NAME)
    )
    front.start()
    return front, cert.cert_der


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def serve(factory: ProviderFactory, environ: dict[str, str] | os._Environ[str] = os.environ) -> int:
    """Run as a terraform plugin until Shutdown. Returns the exit code."""
    t0 = time.perf_counter()
    parent = os.getppid()  # terraform (the launcher execs us)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    handshake_fd = os.dup(1)
    os.dup2(2, 1)  # from here on, stray prints go to stderr (TF_LOG), never into the handshake
    sys.stdout.flush()
    sys.stdout = sys.stderr
    try:
        env = check_environment(environ)
    except HandshakeError as exc:
        os.close(handshake_fd)
        sys.stderr.write(str(exc))
        sys.stderr.flush()
        return 1
    configure_logging(environ)
    rundir = make_rundir(env)
    state = PluginState()
    signal.signal(signal.SIGTERM, lambda signum, frame: state.request_shutdown())
    front: TLSFrontEnd | None = None
    served: Served | None = None
    try:
        if env.client_cert_pem is not None:
            front, cert_der = start_front_end(env, rundir)
            host, port = front.address
            _write_handshake(handshake_fd, handshake_line("tcp", f"{host}:{port}", cert_der), t0)
            served = start_grpc(factory, rundir, state)
            served.front = front
            front.backend_ready()
        else:
            served = start_grpc(factory, rundir, state)
            _write_handshake(handshake_fd, handshake_line("unix", served.backend, None), t0)
        log.debug("serving after %.1f ms", (time.perf_counter() - t0) * 1000)
    except Exception as exc:
        if isinstance(exc, HandshakeError):  # the environment, not us: one line, no traceback
            sys.stderr.write(str(exc))
            sys.stderr.flush()
        else:
            log.exception("the provider plugin failed to start")
        if front is not None:
            front.stop()
        if served is not None:
            served.stop()
        _rmtree(rundir)
        return 1
    threading.Thread(target=_background, args=(served, env), name="warm-up", daemon=True).start()
    threading.Thread(target=_watch_parent, args=(state, parent), name="parent-watch", daemon=True).start()
    while not state.shutdown.wait(0.2):
        pass  # a timed wait, so that a SIGTERM delivered to another thread is still handled here
    log.debug("shutting down")
    served.stop()
    return 0


def _write_handshake(fd: int, line: str, t0: float) -> None:
    os.write(fd, line.encode("ascii"))
    os.close(fd)
    log.debug("handshake after %.1f ms: %s", (time.perf_counter() - t0) * 1000, line.strip()[:80])


def _watch_parent(state: PluginState, parent: int, interval: float = 1.0) -> None:
    """Shut down when terraform dies without calling Shutdown (e.g. SIGKILL): we are re-parented.
    Otherwise the process would wait for a Shutdown that never comes."""
    while not state.shutdown.wait(interval):
        if os.getppid() != parent:
            log.warning("terraform (pid %d) went away without Shutdown; exiting", parent)
            state.request_shutdown()


def _background(served: Served, env: PluginEnv) -> None:
    served.servicer.warm_up()
    try:
        removed = remove_stale_rundirs(os.path.dirname(served.rundir))
        if removed:
            log.debug("removed %d stale run directories", removed)
    except Exception:  # housekeeping only
        log.debug("stale run directory clean-up failed", exc_info=True)


# ---------------------------------------------------------------------------------------------
# Debug mode: serve in the foreground, print TF_REATTACH_PROVIDERS.


def serve_debug(factory: ProviderFactory, address: str, out: Any = None) -> int:
    """Serve without TLS on a unix socket until Ctrl-C and print the ``TF_REATTACH_PROVIDERS``
    value that makes terraform use this process (``"Test": true`` is required for protocol 6)."""
    import json

    configure_logging({LOG_ENV: os.environ.get(LOG_ENV, "debug")})
    served = start_grpc(factory, make_rundir())
    reattach = {
        address: {
            "Protocol": "grpc",
            "ProtocolVersion": 6,
            "Pid": os.getpid(),
            "Test": True,
            "Addr": {"Network": "unix", "String": served.backend},
        }
    }
    print(
        "Provider serving in debug mode. In another shell:\n\n"
        f"    export TF_REATTACH_PROVIDERS='{json.dumps(reattach)}'\n\n"
        "then run terraform there. Ctrl-C stops the provider.",
        file=out or sys.stdout,
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    while not stop.wait(0.5) and not served.state.shutdown.is_set():
        pass
    served.stop()
    return 0
