"""The control-plane client the provider's resources use.

One gRPC channel per configured provider, shared by every resource call: terraform applies up to
``-parallelism`` (10) resources at once, and a grpc channel and its stubs are thread-safe. Each
call has a deadline (10 s by default) and is retried, boundedly, while the server is UNAVAILABLE.
Failures become :class:`ApiError`, which :meth:`ControlPlaneClient.add_error` turns into
Terraform diagnostics: one clear diagnostic for an unreachable server or a refused token, and one
diagnostic per field violation, on the matching attribute path.

Imports stay lean on purpose (grpc and the generated stubs): the provider process is started
several times per terraform command.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import grpc

from agentceiling.tfprovider.framework.types import AttributePath, Diagnostics

DEFAULT_ADDRESS = "127.0.0.1:8250"
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_RETRIES = 2
ROOT_NAMESPACE = "root"

# Codes worth another attempt: the request did not take effect (or a write lost a race on a
# store row and can simply be replayed; our requests never pin an expected_version).
_RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED}
)
_WRAPPERS = frozenset({"profile", "registration", "policy", "entity", "alias", "flag"})
_INDEX = re.compile(r"\[(\d+)\]")
_MAP_ENTRY = re.compile(r"\[(?!\d+\])")


class AddressError(ValueError):
    """The provider's ``address`` cannot be used."""


@dataclass(frozen=True)
class Endpoint:
    """Where the control plane listens, parsed from ``address`` / ``VAULT_ADDR``."""

    target: str  # grpc target, e.g. "127.0.0.1:8250" or "unix:/run/agentceiling.sock"
    tls: bool
    display: str  # the address as the user wrote it
    host: str = ""  # for TLS: the name to verify


def parse_address(address: str) -> Endpoint:
    """``host:port`` (plaintext), ``http://host:port`` (plaintext), ``https://host:port`` (TLS)
    or ``unix:/path``. A URL without a port takes its scheme's port (80 / 443); a bare host takes
    8250, the port ``agentceiling serve`` listens on by default."""
    raw = address.strip()
    if not raw:
        raise AddressError("the address is empty")
    if raw.startswith("unix:"):
        return Endpoint(target=raw, tls=False, display=address)
    if "://" in raw:
        parts = urlsplit(raw)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", "grpc", "grpcs"):
            raise AddressError(
                f'unsupported scheme "{parts.scheme}": use http://host:port, https://host:port or host:port'
            )
        tls = scheme in ("https", "grpcs")
        try:
            port = parts.port
        except ValueError as exc:
            raise AddressError(f"invalid port: {exc}") from None
        host = parts.hostname or ""
        if not host:
            raise AddressError("the address names no host")
        if port is None:
            port = 443 if tls else 80
    else:
        tls = False
        host, sep, port_text = raw.rpartition(":")
        if not sep or "]" in port_text:
            host, port_text = raw, "8250"
        host = host.strip("[]")
        if not host:
            raise AddressError("the address names no host")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise AddressError(f'invalid port "{port_text}"')
        port = int(port_text)
    target_host = f"[{host}]" if ":" in host else host
    return Endpoint(target=f"{target_host}:{port}", tls=tls, display=address, host=host)


def join_namespace(provider_ns: str | None, resource_ns: str | None) -> str:
    """The control plane's namespace for a resource: its ``namespace`` is relative to the
    provider's, as in Vault (``admin`` + ``team`` = ``admin/team``). Neither set means root."""
    parts: list[str] = []
    for ns in (provider_ns, resource_ns):
        if ns:
            parts.extend(p for p in ns.strip("/").split("/") if p)
    if parts and parts[0] == ROOT_NAMESPACE:
        parts = parts[1:]
    return "/".join(parts) or ROOT_NAMESPACE


@dataclass
class ClientSettings:
    endpoint: Endpoint
    token: str
    token_source: str = "token"
    address_source: str = "address"
    namespace: str = ""
    ca_cert_pem: bytes | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    skip_tls_verify: bool = False
    tls_server_name: str = ""
    max_retries: int = DEFAULT_MAX_RETRIES
    timeout: float = DEFAULT_TIMEOUT
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ApiError(Exception):
    """A failed control-plane call, after retries."""

    code: grpc.StatusCode
    message: str
    violations: list[tuple[str, str]] = field(default_factory=list)
    attempts: int = 1

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    @property
    def not_found(self) -> bool:
        return self.code == grpc.StatusCode.NOT_FOUND


def field_path(
    name: str, attributes: Iterable[str], renames: Mapping[str, str] | None = None
) -> AttributePath | None:
    """Map an API field name (``public_keys[0].pem``, ``profile.issuer_id``) onto a resource
    attribute path, or None when it names nothing in the schema."""
    # A map entry ("metadata[team]", the key shown clipped and escaped, and possibly holding dots
    # or brackets itself): the diagnostic goes on the map attribute.
    if entry := _MAP_ENTRY.search(name):
        name = name[: entry.start()]
    tokens: list[str | int] = []
    for part in name.replace("/", ".").split("."):
        if not part:
            continue
        head = _INDEX.split(part)
        # "public_keys[0]" -> ["public_keys", "0", ""]
        if head[0]:
            tokens.append(head[0])
        for i, piece in enumerate(head[1:]):
            if i % 2 == 0:
                tokens.append(int(piece))
    if tokens and tokens[0] in _WRAPPERS and len(tokens) > 1:
        tokens = tokens[1:]
    if not tokens or not isinstance(tokens[0], str):
        return None
    first = (renames or {}).get(tokens[0], tokens[0])
    names = set(attributes)
    if first not in names:
        return None
    return (first, *tokens[1:])


def _friendly(path: AttributePath) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


class ControlPlaneClient:
    """Thread-safe: share one instance between concurrent resource operations."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stubs: dict[str, Any] = {}
        self._pb: ModuleType | None = None
        self._pb_grpc: ModuleType | None = None
        self._metadata: tuple[tuple[str, str], ...] = (
            ("authorization", f"Bearer {settings.token}"),
            *((k.lower(), v) for k, v in settings.headers.items() if k.lower() != "authorization"),
        )

    # ------------------------------------------------------------------ plumbing

    @property
    def address(self) -> str:
        return self.settings.endpoint.display

    @property
    def pb(self) -> Any:
        """The ``control_plane_pb2`` module (imported on first use)."""
        if self._pb is None:
            from agentceiling._gen.agentceiling.v1 import control_plane_pb2

            self._pb = control_plane_pb2
        return self._pb

    def namespace(self, resource_ns: str | None) -> str:
        return join_namespace(self.settings.namespace, resource_ns)

    def _credentials(self) -> tuple[grpc.ChannelCredentials, list[tuple[str, Any]]]:
        s = self.settings
        options: list[tuple[str, Any]] = []
        root = s.ca_cert_pem
        if s.skip_tls_verify:
            # grpc cannot switch verification off: trust whatever certificate the server shows
            # (fine for a self-signed development server) and accept the name it carries.
            root, name = _fetch_server_certificate(s.endpoint, self.settings.timeout)
            if name and not s.tls_server_name:
                options.append(("grpc.ssl_target_name_override", name))
        if s.tls_server_name:
            options.append(("grpc.ssl_target_name_override", s.tls_server_name))
        creds = grpc.ssl_channel_credentials(
            root_certificates=root, private_key=s.client_key_pem, certificate_chain=s.client_cert_pem
        )
        return creds, options

    def channel(self) -> grpc.Channel:
        with self._lock:
            if self._channel is None:
                options: list[tuple[str, Any]] = [
                    ("grpc.enable_retries", 0),
                    ("grpc.keepalive_time_ms", 30000),
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 1000),
                    ("grpc.min_reconnect_backoff_ms", 100),
                ]
                if self.settings.endpoint.tls:
                    creds, extra = self._credentials()
                    self._channel = grpc.secure_channel(self.settings.endpoint.target, creds, options + extra)
                else:
                    self._channel = grpc.insecure_channel(self.settings.endpoint.target, options)
            return self._channel

    def _stub(self, service: str) -> Any:
        stub = self._stubs.get(service)
        if stub is None:
            channel = self.channel()
            with self._lock:
                if self._pb_grpc is None:
                    from agentceiling._gen.agentceiling.v1 import control_plane_pb2_grpc

                    self._pb_grpc = control_plane_pb2_grpc
                stub = getattr(self._pb_grpc, f"{service}Stub")(channel)
                self._stubs[service] = stub
        return stub

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None
                self._stubs.clear()

    # ------------------------------------------------------------------ calls

    def call(self, service: str, method: str, request: Any, *, timeout: float | None = None) -> Any:
        """Invoke ``service.method``; retry while UNAVAILABLE; raise :class:`ApiError`."""
        fn: Callable[..., Any] = getattr(self._stub(service), method)
        budget = self.settings.timeout if timeout is None else timeout
        attempts = max(0, self.settings.max_retries) + 1
        deadline = time.monotonic() + budget * attempts
        last: grpc.RpcError | None = None
        for attempt in range(1, attempts + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                return fn(request, timeout=min(budget, remaining), metadata=self._metadata)
            except grpc.RpcError as exc:
                last = exc
                code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
                if code not in _RETRYABLE or attempt == attempts:
                    raise _api_error(exc, attempt) from None
                # Exponential backoff with jitter, bounded by the overall deadline.
                pause = min(1.0, 0.1 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
                time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        if last is not None:
            raise _api_error(last, attempts)
        raise ApiError(grpc.StatusCode.DEADLINE_EXCEEDED, f"no answer within {budget:g}s", attempts=attempts)

    def status(self, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Any:
        return self.call("System", "Status", self.pb.StatusRequest(), timeout=timeout)

    # ------------------------------------------------------------------ diagnostics

    def add_error(
        self,
        diags: Diagnostics,
        err: ApiError,
        *,
        action: str,
        subject: str,
        attributes: Iterable[str] = (),
        renames: Mapping[str, str] | None = None,
        hint: str = "",
        identity: str = "",
    ) -> None:
        """Turn ``err`` into diagnostics. ``action`` is e.g. "create", ``subject`` names the object
        (``policy "ops"``); ``attributes`` are the schema's attribute names, for field paths;
        ``identity`` is the attribute an "already exists" answer is about (e.g. ``name``)."""
        add_api_error(
            diags,
            err,
            address=self.address,
            action=action,
            subject=subject,
            attributes=attributes,
            renames=renames,
            hint=hint,
            source=self.settings.token_source,
            identity=identity,
        )

    def add_warnings(
        self,
        diags: Diagnostics,
        warnings: Iterable[str],
        *,
        subject: str,
        path_for: Callable[[str], AttributePath | None] | None = None,
    ) -> None:
        """Surface the control plane's advisory ``warnings`` as Terraform warnings."""
        for text in warnings:
            if not text:
                continue
            path = path_for(text) if path_for is not None else None
            diags.warning(text, f"The control plane returned this warning for {subject}.", path)


def add_api_error(
    diags: Diagnostics,
    err: ApiError,
    *,
    address: str,
    action: str,
    subject: str,
    attributes: Iterable[str] = (),
    renames: Mapping[str, str] | None = None,
    hint: str = "",
    source: str = "token",
    identity: str = "",
) -> None:
    code = err.code
    verb = {"create": "Create", "read": "Read", "update": "Update", "delete": "Delete", "import": "Import"}
    summary = f"Unable to {verb.get(action, action.capitalize())} Resource"
    if code == grpc.StatusCode.UNAVAILABLE:
        diags.error(
            "Cannot reach the agentceiling control plane",
            f"No control plane answered at {address} while trying to {action} {subject} "
            f"({err.attempts} attempt{'s' if err.attempts != 1 else ''}): {err.message}\n\n"
            "Check that `agentceiling serve` is running and that the provider's address (or VAULT_ADDR) "
            "points at it.",
        )
        return
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        diags.error(
            "The agentceiling control plane did not answer in time",
            f"Trying to {action} {subject} at {address}: {err.message}",
        )
        return
    if code == grpc.StatusCode.UNAUTHENTICATED:
        diags.error(
            "The control plane refused the token",
            f"The control plane at {address} refused the {source} while trying to {action} {subject}: "
            f"{err.message}\n\nUse the admin token that `agentceiling serve` wrote to <data-dir>/admin-token "
            "(provider argument token, or VAULT_TOKEN).",
        )
        return
    if code == grpc.StatusCode.PERMISSION_DENIED:
        diags.error(
            "Permission denied",
            f"The control plane at {address} does not allow this token to {action} {subject}: {err.message}",
        )
        return
    if code == grpc.StatusCode.INVALID_ARGUMENT and err.violations:
        names = list(attributes)
        for fld, description in err.violations:
            path = field_path(fld, names, renames)
            label = _friendly(path) if path else fld
            diags.error(
                f"Invalid {label}" if label else "Invalid argument",
                f"{description}\n\nThe control plane refused to {action} {subject}.",
                path,
            )
        return
    detail = (
        f"The control plane at {address} refused to {action} {subject}.\n\n{err.code.name}: {err.message}"
    )
    if hint and code in (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION):
        detail += f"\n\n{hint}"
    where = (identity,) if code == grpc.StatusCode.ALREADY_EXISTS and identity else None
    diags.error(summary, detail, where or _mentioned_attribute(err.message, attributes, renames))


def _mentioned_attribute(
    message: str, attributes: Iterable[str], renames: Mapping[str, str] | None
) -> AttributePath | None:
    """The first schema attribute a free-text error names (``duplicate issuer_id ...``), if any."""
    names = {**{a: a for a in attributes}, **(renames or {})}
    best: tuple[int, str] | None = None
    for word, attr in names.items():
        m = re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", message)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), attr)
    return (best[1],) if best else None


def _api_error(exc: grpc.RpcError, attempts: int) -> ApiError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    message = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    violations: list[tuple[str, str]] = []
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        violations = _violations(exc)
    if code == grpc.StatusCode.UNAVAILABLE:
        message = _why_unavailable(message)
    return ApiError(code=code, message=message, violations=violations, attempts=attempts)


def _violations(exc: grpc.RpcError) -> list[tuple[str, str]]:
    try:
        from google.rpc import error_details_pb2
        from grpc_status import rpc_status

        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    except Exception:  # malformed trailers: fall back to the message
        return []
    if status is None:
        return []
    out: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            out.extend((v.field, v.description) for v in br.field_violations)
    return out


def _why_unavailable(message: str) -> str:
    low = message.lower()
    if "connection refused" in low:
        return "connection refused (nothing listens there)"
    if "name resolution" in low or "dns" in low or "resolve" in low:
        return f"the host name does not resolve ({message})"
    if "ssl" in low or "handshake" in low or "certificate" in low:
        return f"TLS handshake failed ({message})"
    if "socket closed" in low or "connection reset" in low:
        return (
            "the server closed the connection; is it a gRPC server, and does http/https match its TLS "
            f"setting? ({message})"
        )
    return message


def _fetch_server_certificate(endpoint: Endpoint, timeout: float) -> tuple[bytes | None, str]:
    """For ``skip_tls_verify``: the server's own certificate and a name it is valid for."""
    import socket
    import ssl

    host, _, port = endpoint.target.rpartition(":")
    host = host.strip("[]")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection(
                (host, int(port)), timeout=min(timeout, DEFAULT_CONNECT_TIMEOUT)
            ) as sock,
            ctx.wrap_socket(sock, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError:
        return None, ""
    if not der:
        return None, ""
    pem = ssl.DER_cert_to_PEM_cert(der).encode()
    name = ""
    try:
        from cryptography import x509

        cert = x509.load_der_x509_certificate(der)
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = sans.get_values_for_type(x509.DNSName)
            name = dns[0] if dns else ""
        except x509.ExtensionNotFound:
            pass
        if not name:
            cns = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
            name = str(cns[0].value) if cns else ""
    except ValueError:
        pass
    return pem, name


def read_file(path: str) -> bytes:
    with open(os.path.expanduser(path), "rb") as fh:
        return fh.read()
