"""Server bootstrap: build the collaborators from a config, serve, shut down gracefully."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import threading
from collections.abc import Callable, Coroutine
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

# grpc.aio's health servicer: Check and Watch run on the event loop, holding no thread.
from grpc_health.v1._async import HealthServicer as AioHealthServicer
from grpc_reflection.v1alpha import reflection

from agentceiling.addresses import address_problem
from agentceiling.api import control
from agentceiling.service.control import ControlPlane
from agentceiling.store import migrate
from agentceiling.store.audit_log import AuditLogCorrupt, AuditLogError, AuditLogLocked
from agentceiling.store.db import Database, DatabaseURLError, sqlite_url

log = logging.getLogger("agentceiling.server")
T = TypeVar("T")

MiB = 1024 * 1024


@dataclass
class ServerConfig:
    data_dir: Path
    listen: str = "127.0.0.1:8250"
    authz_listen: str = "127.0.0.1:8251"
    database_url: str = ""
    role: str = "all"  # all | control | authz
    migrate: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_message_bytes: int = 4 * MiB
    workers: int = 32
    grace_seconds: float = 15.0
    audit_rotate_bytes: int = 0
    """Rotate the audit log when it reaches this size (0: only on SIGHUP / `audit rotate`)."""
    max_token_lifetime: int | None = None
    """Longest token lifetime the authorization endpoint accepts, in seconds (None: the default)."""

    @property
    def url(self) -> str:
        return self.database_url or sqlite_url(self.data_dir)


class ConfigError(Exception):
    """A configuration problem the operator must fix; reported without a traceback."""


def wait_in_main_thread(event: threading.Event, tick: float = 0.2) -> None:
    """Wait for ``event`` in the main thread without missing a signal. A signal may be delivered
    to any thread (gRPC's own threads included); CPython then only flags it, and runs the handler
    when the main thread next runs Python code, which a wait without a timeout may never do."""
    while not event.wait(tick):
        pass


def _make_data_dir(data_dir: Path) -> None:
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"--data-dir {data_dir} is not a directory")
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"--data-dir {data_dir}: cannot create it: {exc.strerror or exc}") from None


def _options(cfg: ServerConfig) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", cfg.max_message_bytes),
        ("grpc.max_send_message_length", cfg.max_message_bytes),
        ("grpc.so_reuseport", 0),
        ("grpc.max_concurrent_streams", 256),
    ]


def _server_credentials(cfg: ServerConfig) -> grpc.ServerCredentials | None:
    """The listeners' TLS credentials (None: plaintext), the files read once and checked: both
    readable, PEM, and a key that belongs to the certificate; grpcio would only say that it cannot
    listen."""
    if not (cfg.tls_cert and cfg.tls_key):
        return None
    import ssl

    pem: dict[str, bytes] = {}
    for flag, path in (("--tls-cert", cfg.tls_cert), ("--tls-key", cfg.tls_key)):
        if path.exists() and not path.is_file():  # read twice below: a FIFO would block start-up
            raise ConfigError(f"{flag} {path}: not a regular file")
        try:
            pem[flag] = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{flag} {path}: {exc.strerror or exc}") from None
    encrypted = ConfigError(f"--tls-key {cfg.tls_key} is encrypted (passphrase-protected); give an unencrypted key")
    if _is_encrypted_key(pem["--tls-key"]):
        raise encrypted

    def no_passphrase() -> str:  # never prompt on the terminal (OpenSSL's default)
        raise encrypted

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            cfg.tls_cert, cfg.tls_key, password=no_passphrase
        )
    except ConfigError:
        raise
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(
            f"--tls-cert {cfg.tls_cert} / --tls-key {cfg.tls_key}: not a PEM certificate and its private key ({exc})"
        ) from None
    return grpc.ssl_server_credentials([(pem["--tls-key"], pem["--tls-cert"])])


def _is_encrypted_key(pem: bytes) -> bool:
    """Whether a PEM private key needs a passphrase (PKCS#8 ``ENCRYPTED PRIVATE KEY`` or a
    traditional key with ``Proc-Type: 4,ENCRYPTED``)."""
    try:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:  # pragma: no cover - cryptography is a dependency
        return b"ENCRYPTED" in pem
    try:
        load_pem_private_key(pem, password=None)
    except TypeError:  # "Password was not given but private key is encrypted"
        return True
    except Exception:  # not a key cryptography reads: ssl reports it below
        return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem or b"Proc-Type: 4,ENCRYPTED" in pem
    return False


def _check_address(flag: str, address: str) -> None:
    problem = address_problem(address, listen=True)
    if problem:
        raise ConfigError(f"cannot listen on {address} ({flag}): {problem}")


def _bind(server: grpc.aio.Server, address: str, creds: grpc.ServerCredentials | None, flag: str) -> int:
    try:
        port = server.add_insecure_port(address) if creds is None else server.add_secure_port(address, creds)
    except RuntimeError:  # grpcio >= 1.60 raises instead of returning 0
        port = 0
    if not port:
        raise ConfigError(f"cannot listen on {address} ({flag}): not a valid host:port here, or already in use")
    return port


def _bound(address: str, port: int) -> str:
    """``address`` with the port the server got (a listener on port 0 gets any free one)."""
    host, sep, wanted = address.rpartition(":")
    return f"{host}:{port}" if sep and wanted == "0" and port > 0 else address


class _HealthServicer(AioHealthServicer):
    """grpc_health's servicer, whose Watch streams end when the server stops. The library's wait for
    the next change of status forever, so each stream (gRPC's client-side health checking keeps one
    per channel) held every stop for its whole grace period."""

    def __init__(self) -> None:
        super().__init__()
        self._watches: set[asyncio.Task[Any]] = set()
        self._stopping = False

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._watches.add(task)
        try:
            await super().Watch(request, context)
        except asyncio.CancelledError:
            if not self._stopping:
                raise  # the client went away
            # The server stops: the stream ends (status OK) after its NOT_SERVING.
        finally:
            self._watches.discard(task)

    async def enter_graceful_shutdown(self) -> None:
        await super().enter_graceful_shutdown()  # every Watch stream is told NOT_SERVING
        self._stopping = True
        for _ in range(3):  # let them write it
            await asyncio.sleep(0)
        for task in list(self._watches):
            task.cancel()


async def _add_health_and_reflection(server: grpc.aio.Server, services: list[str]) -> AioHealthServicer:
    """Health starts NOT_SERVING; ``Server.start`` flips every listener to SERVING once all are up."""
    servicer = _HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ["", *services]:
        await servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection([*services, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return servicer


class _EventLoop:
    """The asyncio event loop of the gRPC servers, in a thread of its own.

    The listeners are grpc.aio servers. Synchronous handlers (the control plane's) run in a worker
    pool, which a call joins only once its request has arrived; coroutines (Authorize, health,
    reflection) run on the loop. So clients that open calls and never send, or hold streams open,
    cannot take every worker, as they could in grpc's thread-per-call server."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="grpc-event-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the loop's thread and wait for its result."""

        async def run() -> T:
            return fn()

        return self.run(run())

    def soon(self, coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Schedule a coroutine without waiting for it (safe from any thread, the loop's included)."""
        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(coro_fn()))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


# (database, config) -> (register(server, mark_health, on_hangup) -> service names, close);
# mark_health(False) makes the authorization listener's health NOT_SERVING, mark_health(True)
# SERVING again; on_hangup(fn) asks for fn to run when the process receives SIGHUP (e.g. rotate the audit log).
AuthzFactory = Callable[
    [Database, ServerConfig],
    tuple[
        Callable[[grpc.aio.Server, Callable[[bool], None], Callable[[Callable[[], None]], None]], list[str]],
        Callable[[], None],
    ],
]


class Server:
    """The control plane and/or the authorization endpoint, each on its own listener."""

    def __init__(self, cfg: ServerConfig, authz_factory: AuthzFactory | None = None) -> None:
        self.cfg = cfg
        self._authz_factory = authz_factory
        self.db: Database | None = None
        self.control_plane: ControlPlane | None = None
        self._servers: list[tuple[grpc.aio.Server, AioHealthServicer, list[str]]] = []
        self._pools: list[futures.ThreadPoolExecutor] = []
        self._loop: _EventLoop | None = None
        self._lifecycle = threading.Lock()  # serializes marking SERVING and stopping
        self._closers: list[Callable[[], None]] = []
        #: Set while the authorization endpoint cannot decide (its audit log failed, or hangs):
        #: health says NOT_SERVING there meanwhile, start-up's switch to SERVING included.
        self._unhealthy = threading.Event()
        self._marked_serving = threading.Event()
        #: The authorization listener's health servicer and the names it reports (once it exists).
        self._authz_health: tuple[AioHealthServicer, list[str]] | None = None
        self.ports: dict[str, int] = {}
        self._stopped = threading.Event()
        self._done = threading.Event()
        self._started = threading.Event()
        self._stop_requested = threading.Event()
        self._hangup_handlers: list[Callable[[], None]] = []

    def start(self) -> None:
        """Check the configuration, open the database (migrating it) and the audit log, then
        listen. Every check that can fail runs before the first listener starts: a
        :class:`ConfigError` leaves nothing listening."""
        cfg = self.cfg
        if cfg.role not in ("all", "control", "authz"):
            raise ConfigError(f"unknown role {cfg.role!r}: use all, control or authz")
        if bool(cfg.tls_cert) != bool(cfg.tls_key):
            raise ConfigError("--tls-cert and --tls-key must be given together")
        serve_control = cfg.role in ("all", "control")
        serve_authz = cfg.role in ("all", "authz") and self._authz_factory is not None
        if serve_control:
            _check_address("--listen", cfg.listen)
        if serve_authz:
            _check_address("--authz-listen", cfg.authz_listen)
        creds = _server_credentials(cfg)
        try:
            db = Database(cfg.url)  # connects (and creates a SQLite file) only once used
        except DatabaseURLError as exc:
            raise ConfigError(f"--database-url: {exc}") from None
        self.db = db
        missing = None if cfg.migrate else db.missing_file()
        if missing is not None:
            # Connecting would create an empty database (and the data directory): nothing is made.
            raise ConfigError(
                f"no database at {missing}: check --data-dir (or --database-url), or create it with "
                "`agentceiling db upgrade` (or start without --no-migrate)"
            )
        _make_data_dir(cfg.data_dir)
        try:
            if cfg.migrate:
                migrate.upgrade(self.db)
            else:
                current = migrate.check_known(self.db)
                if current != migrate.head():
                    state = f"is at revision {current}" if current else "has no schema yet"
                    raise ConfigError(
                        f"the database {state}, not {migrate.head()}: "
                        "run `agentceiling db upgrade` first (or start without --no-migrate)"
                    )
        except migrate.UnknownRevision as exc:
            raise ConfigError(str(exc)) from None
        except DatabaseURLError as exc:  # e.g. a SQLite file in a directory that does not exist
            raise ConfigError(f"--database-url: {exc}") from None
        self.control_plane = ControlPlane(self.db)
        register_authz = None
        if serve_authz:
            assert self._authz_factory is not None
            try:
                register_authz, close = self._authz_factory(self.db, cfg)
            except AuditLogLocked as exc:
                raise ConfigError(
                    f"{exc}: another agentceiling server is using the data directory {cfg.data_dir}"
                ) from None
            except AuditLogCorrupt as exc:
                raise ConfigError(
                    f"{exc}; find the damage with `agentceiling audit verify --data-dir {cfg.data_dir}`"
                ) from None
            except (AuditLogError, OSError) as exc:
                raise ConfigError(f"cannot open the audit log in {cfg.data_dir}: {exc}") from None
            self._closers.append(close)
        loop = self._loop = _EventLoop()
        pending: list[tuple[grpc.aio.Server, AioHealthServicer, list[str], str]] = []

        def new_server(prefix: str) -> grpc.aio.Server:
            pool = futures.ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix=prefix)
            self._pools.append(pool)
            # No maximum_concurrent_rpcs: a call counts against it from its headers on, so clients
            # holding calls open (no token needed) would get every other call RESOURCE_EXHAUSTED.
            # A held call costs the event loop nothing; work waits in the pool's queue.
            return loop.call(lambda: grpc.aio.server(migration_thread_pool=pool, options=_options(cfg)))

        try:
            if serve_control:
                token_file = cfg.data_dir / "admin-token"
                try:
                    created = self.control_plane.ensure_admin_token(token_file)
                except OSError as exc:
                    raise ConfigError(
                        f"cannot write the admin token {exc.filename or token_file}: {exc.strerror or exc}"
                    ) from None
                if created:
                    log.info("created the first admin token in %s", token_file)
                server = new_server("control")
                cp = self.control_plane
                services = loop.call(lambda: control.register(server, cp))
                self.ports["control"] = loop.call(lambda: _bind(server, cfg.listen, creds, "--listen"))
                hs = loop.run(_add_health_and_reflection(server, services))
                pending.append(
                    (
                        server,
                        hs,
                        ["", *services],
                        f"control plane listening on {_bound(cfg.listen, self.ports['control'])} "
                        f"(database {self.db.display_url})",
                    )
                )
            if register_authz is not None:
                authz_server = server = new_server("authz")
                def mark_health(healthy: bool) -> None:  # from any thread: never waits for the loop
                    if healthy:
                        self._unhealthy.clear()
                        if not self._marked_serving.is_set():
                            return  # the switch to SERVING at the end of start-up does it
                    else:
                        self._unhealthy.set()  # lasting: start-up's switch to SERVING must not undo it
                    status = health_pb2.HealthCheckResponse.NOT_SERVING
                    if healthy:
                        status = health_pb2.HealthCheckResponse.SERVING
                    if self._authz_health is not None:  # else start-up sets it
                        servicer, names = self._authz_health
                        for name in names:
                            loop.soon(functools.partial(servicer.set, name, status))

                reg = register_authz
                services = loop.call(lambda: reg(authz_server, mark_health, self._hangup_handlers.append))
                self.ports["authz"] = loop.call(lambda: _bind(authz_server, cfg.authz_listen, creds, "--authz-listen"))
                hs = loop.run(_add_health_and_reflection(authz_server, services))
                self._authz_health = (hs, ["", *services])
                listening = f"authorization endpoint listening on {_bound(cfg.authz_listen, self.ports['authz'])}"
                pending.append((server, hs, ["", *services], listening))
        except BaseException:
            for server, _hs, _names, _msg in pending:
                loop.run(server.stop(None))
            self._close_loop()
            raise
        for server, hs, names, message in pending:
            loop.run(server.start())
            self._servers.append((server, hs, names))
            log.info("%s", message)

    def _close_loop(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)
        self._pools = []
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.close()

    def _serving(self) -> None:
        # Under the lifecycle lock: a SIGTERM right now starts stop() in another thread, which must
        # not close the event loop while health is being set on it.
        with self._lifecycle:
            if self._stopped.is_set() or self._loop is None:
                return
            authz = self._authz_health[0] if self._authz_health is not None else None
            for _, hs, names in self._servers:
                status = health_pb2.HealthCheckResponse.SERVING
                if hs is authz and self._unhealthy.is_set():
                    status = health_pb2.HealthCheckResponse.NOT_SERVING  # e.g. the audit writer died
                for name in names:
                    self._loop.run(hs.set(name, status))
            self._marked_serving.set()
            if self._authz_health is not None and self._unhealthy.is_set():  # marked while this ran
                servicer, names = self._authz_health
                for name in names:
                    self._loop.run(servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING))

    def stop(self) -> None:
        """Stop accepting calls, let in-flight calls finish (bounded by grace_seconds), close."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        with self._lifecycle:
            self._stop()

    def _stop(self) -> None:
        loop = self._loop
        if loop is not None and self._servers:

            async def stop_all() -> None:
                for _, hs, _names in self._servers:
                    await hs.enter_graceful_shutdown()
                await asyncio.gather(*(server.stop(self.cfg.grace_seconds) for server, _, _n in self._servers))

            loop.run(stop_all())
        for close in self._closers:  # the audit log's last group commits still wake the loop
            close()
        self._close_loop()
        if self.db is not None:
            self.db.dispose()
        log.info("stopped")
        self._done.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop the server gracefully; one that arrives while it is still starting
        takes effect as soon as the start completes. SIGHUP rotates the audit log."""

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            self._stop_requested.set()
            if self._started.is_set():
                threading.Thread(target=self.stop, name="shutdown").start()

        def on_hangup(_signum: int, _frame: FrameType | None) -> None:
            if not self._hangup_handlers:
                log.info("received SIGHUP: nothing to rotate (no authorization endpoint here)")
            for handler in self._hangup_handlers:
                # Not in the signal handler itself: the main thread may hold a lock the handler needs.
                threading.Thread(target=handler, name="sighup", daemon=True).start()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGHUP, on_hangup)

    def serve_forever(self) -> None:
        """Call after ``start``: mark every listener SERVING and block until stopped."""
        self._started.set()
        if self._stop_requested.is_set():
            self.stop()
        else:
            self._serving()
        wait_in_main_thread(self._done)
