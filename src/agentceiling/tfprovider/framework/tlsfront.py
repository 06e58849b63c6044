"""A mutual-TLS front end, written with the standard-library ``ssl`` module, for grpcio.

Terraform's AutoMTLS client certificate is ECDSA P-521. grpcio's bundled BoringSSL does not
offer ``ecdsa_secp521r1_sha512`` in its CertificateRequest, so Go's TLS 1.3 client sends no
certificate and a grpcio server that requires one fails the handshake (pitfall P1). OpenSSL
(the ``ssl`` module) verifies it fine. So: this front end terminates TLS on 127.0.0.1 (client
certificate REQUIRED and verified against ``PLUGIN_CLIENT_CERT``, ALPN ``h2`` for grpc-go >= 1.67,
pitfall P6) and splices the plaintext to grpcio, which listens on a unix socket inside a 0700
directory that only this user can enter.

It runs an asyncio event loop in a daemon thread (grpcio imports asyncio anyway). One terraform
process opens one connection, so the splice is a pair of stream copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading

from agentceiling.tfprovider.framework.handshake import HandshakeError

log = logging.getLogger("agentceiling.tfprovider.tls")

_CHUNK = 256 * 1024


def server_context(cert_file: str, key_file: str, client_cert_pem: str) -> ssl.SSLContext:
    """TLS 1.2+ server context: our certificate, the client's certificate required and verified
    against exactly the PEM terraform passed, ALPN h2."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cadata=client_cert_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise HandshakeError(
            f"PLUGIN_CLIENT_CERT is not a PEM certificate ({exc}); terraform sets it when it starts the plugin.\n"
        ) from None
    ctx.set_alpn_protocols(["h2"])
    return ctx


class TLSFrontEnd:
    """Accepts TLS on a loopback TCP port and forwards each connection to ``backend_path``."""

    def __init__(self, context: ssl.SSLContext, backend_path: str, host: str = "127.0.0.1") -> None:
        self._context = context
        self._backend = backend_path
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(16)
        self._sock.setblocking(False)
        self.address: tuple[str, int] = self._sock.getsockname()[:2]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="tls-front-end", daemon=True)
        self.connections = 0

    def start(self) -> None:
        self._thread.start()
        self._started.wait(5)

    def backend_ready(self) -> None:
        """grpc listens on the backend socket now: start splicing (connections wait until then)."""
        loop, ready = self._loop, self._ready
        if loop is not None and ready is not None:
            loop.call_soon_threadsafe(ready.set)

    def stop(self, timeout: float = 1.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._sock.close()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:
            log.exception("TLS front end stopped")

    async def _main(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        loop.set_exception_handler(_log_loop_exception)
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        accepting = asyncio.ensure_future(self._accept(loop))
        self._started.set()
        await self._stop.wait()
        accepting.cancel()
        # let open connections flush (e.g. the Shutdown response) before the loop ends
        pending = {t for t in self._tasks if not t.done()}
        if pending:
            await asyncio.wait(pending, timeout=0.5)

    async def _accept(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            conn, peer = await loop.sock_accept(self._sock)
            task = asyncio.ensure_future(self._handle(loop, conn, peer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, loop: asyncio.AbstractEventLoop, conn: socket.socket, peer: object) -> None:
        self.connections += 1
        reader = asyncio.StreamReader(limit=_CHUNK, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=self._context, ssl_handshake_timeout=30
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            # e.g. no client certificate: "PEER_DID_NOT_RETURN_A_CERTIFICATE"
            log.warning("TLS handshake refused from %s: %s", peer, exc)
            conn.close()
            return
        except asyncio.CancelledError:
            conn.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        with contextlib.suppress(asyncio.CancelledError):
            await self._splice(reader, writer)

    async def _splice(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = writer.get_extra_info("ssl_object")
        if log.isEnabledFor(logging.DEBUG) and tls is not None:
            subject = dict(x[0] for x in (tls.getpeercert() or {}).get("subject", ()))
            log.debug(
                "TLS connection from %s: %s %s, ALPN %s, client certificate CN=%s",
                writer.get_extra_info("peername"),
                tls.version(),
                (tls.cipher() or ("?",))[0],
                tls.selected_alpn_protocol(),
                subject.get("commonName"),
            )
        assert self._ready is not None and self._stop is not None
        if not self._ready.is_set():
            stopped = asyncio.ensure_future(self._stop.wait())
            ready = asyncio.ensure_future(self._ready.wait())
            await asyncio.wait({stopped, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            ready.cancel()
            if not self._ready.is_set():
                log.error("the gRPC server did not come up; closing the connection")
                writer.close()
                return
        try:
            backend_reader, backend_writer = await asyncio.open_unix_connection(self._backend, limit=_CHUNK)
        except OSError as exc:
            log.error("cannot reach the gRPC server at %s: %s", self._backend, exc)
            writer.close()
            return
        await asyncio.gather(
            _pump(reader, backend_writer, writer), _pump(backend_reader, writer, backend_writer)
        )


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, other: asyncio.StreamWriter) -> None:
    """Copy until EOF or error, then close both sides (HTTP/2 needs no half-close)."""
    try:
        while True:
            data = await src.read(_CHUNK)
            if not data or dst.is_closing():
                break
            dst.write(data)
            await dst.drain()
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    except Exception:  # the other side went away mid-write; nothing to save
        log.debug("splice ended", exc_info=True)
    finally:
        for w in (dst, other):
            with contextlib.suppress(Exception):
                w.close()


def _log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    exc = context.get("exception")
    if isinstance(exc, ssl.SSLError | ConnectionError | TimeoutError):
        # e.g. a client without a certificate: "PEER_DID_NOT_RETURN_A_CERTIFICATE"
        log.warning("TLS handshake refused: %s", exc)
        return
    log.error(
        "TLS front end: %s", context.get("message"), exc_info=exc if isinstance(exc, BaseException) else None
    )
