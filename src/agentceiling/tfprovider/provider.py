"""``provider "vault"``: connects the resources to an agentceiling control plane.

Takes the arguments terraform-provider-vault configurations carry. ``address``, ``token``,
``namespace``, ``ca_cert_file``/``ca_cert_dir``, ``client_auth``, ``skip_tls_verify``,
``tls_server_name``, ``headers`` and ``max_retries`` are used; ``token_name``, ``skip_child_token``,
``max_lease_ttl_seconds``, ``max_retries_ccc``, ``skip_get_vault_version``,
``vault_version_override``, ``set_namespace_from_token`` and ``add_address_to_env`` are accepted so
existing configurations work, and change nothing (there are no child tokens or leases here).
``auth_login_token_file`` (what HCP Terraform's dynamic credentials write) reads the token from a
file and takes precedence over ``token``, as in terraform-provider-vault; the other ``auth_login*``
methods log in to Vault auth backends that agentceiling does not have.

Fallbacks, in order: the argument, Vault's environment variable (VAULT_ADDR, VAULT_TOKEN,
VAULT_NAMESPACE, VAULT_CACERT, VAULT_CAPATH, VAULT_SKIP_VERIFY, VAULT_TLS_SERVER_NAME,
VAULT_MAX_RETRIES, VAULT_CLIENT_CERT/VAULT_CLIENT_KEY), then a local server: address
127.0.0.1:8250 and the admin token that ``agentceiling serve`` wrote to ``<data-dir>/admin-token``
(data dir from AGENTCEILING_DATA_DIR, else ~/.agentceiling/data).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentceiling.ca_bundle import ca_bundle_problem
from agentceiling.tfprovider.client import (
    DEFAULT_ADDRESS,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    AddressError,
    ApiError,
    ClientSettings,
    ControlPlaneClient,
    parse_address,
)
from agentceiling.tfprovider.framework.types import (
    BOOL,
    NUMBER,
    STRING,
    UNKNOWN,
    Attribute,
    Block,
    Diagnostics,
    Provider,
    Resource,
    Schema,
)

_NOOP = " Accepted for compatibility with terraform-provider-vault; has no effect."

SCHEMA = Schema(
    description="Manages an agentceiling control plane with resources written for terraform-provider-vault.",
    attributes=(
        Attribute(
            "address",
            STRING,
            "Control-plane address: `host:port` or `http://host:port` (plaintext), "
            "`https://host:port` (TLS). Defaults to VAULT_ADDR, then 127.0.0.1:8250.",
            optional=True,
        ),
        Attribute(
            "token",
            STRING,
            "Admin token. Defaults to VAULT_TOKEN, then the `admin-token` file in the "
            "local server's data directory (AGENTCEILING_DATA_DIR or ~/.agentceiling/data).",
            optional=True,
            sensitive=True,
        ),
        Attribute(
            "namespace",
            STRING,
            "Namespace every resource's `namespace` is relative to. Defaults to VAULT_NAMESPACE.",
            optional=True,
        ),
        Attribute(
            "ca_cert_file",
            STRING,
            "PEM CA certificate to verify the server's TLS certificate. Defaults to VAULT_CACERT.",
            optional=True,
        ),
        Attribute(
            "ca_cert_dir",
            STRING,
            "Directory of PEM CA certificates. Defaults to VAULT_CAPATH.",
            optional=True,
        ),
        Attribute(
            "skip_tls_verify",
            BOOL,
            "Trust whatever certificate the server presents (development only). Defaults to VAULT_SKIP_VERIFY.",
            optional=True,
        ),
        Attribute(
            "tls_server_name",
            STRING,
            "Name to verify the server certificate against. Defaults to VAULT_TLS_SERVER_NAME.",
            optional=True,
        ),
        Attribute(
            "max_retries",
            NUMBER,
            "Retries of a call while the server is unavailable (default 2). Defaults to VAULT_MAX_RETRIES.",
            optional=True,
        ),
        Attribute(
            "max_retries_ccc",
            NUMBER,
            "Maximum retries for client-controlled consistency." + _NOOP,
            optional=True,
        ),
        Attribute(
            "add_address_to_env",
            STRING,
            "If true, export the address as VAULT_ADDR to the provider process." + _NOOP,
            optional=True,
        ),
        Attribute("token_name", STRING, "Name of the child token." + _NOOP, optional=True),
        Attribute("skip_child_token", BOOL, "Do not create a child token." + _NOOP, optional=True),
        Attribute("max_lease_ttl_seconds", NUMBER, "Maximum TTL of leases." + _NOOP, optional=True),
        Attribute("skip_get_vault_version", BOOL, "Skip fetching the server version." + _NOOP, optional=True),
        Attribute("vault_version_override", STRING, "Server version to assume." + _NOOP, optional=True),
        Attribute("set_namespace_from_token", BOOL, "Use the token's namespace." + _NOOP, optional=True),
    ),
    blocks=(
        Block(
            "headers",
            (
                Attribute("name", STRING, "Header name.", required=True),
                Attribute("value", STRING, "Header value.", required=True, sensitive=True),
            ),
            description="Extra headers sent with every request (as gRPC metadata).",
        ),
        Block(
            "auth_login_token_file",
            (
                Attribute(
                    "filename",
                    STRING,
                    "File holding the token (one line), readable by its owner only (e.g. mode 0600). Defaults "
                    "to TERRAFORM_VAULT_TOKEN_FILENAME.",
                    optional=True,
                ),
                Attribute("namespace", STRING, "Namespace of the login." + _NOOP, optional=True),
                Attribute("use_root_namespace", BOOL, "Log in to the root namespace." + _NOOP, optional=True),
            ),
            description="Read the token from a file (HCP Terraform's Vault dynamic credentials write one); takes "
            "precedence over `token`.",
            max_items=1,
        ),
        Block(
            "client_auth",
            (
                Attribute("cert_file", STRING, "PEM client certificate.", required=True),
                Attribute("key_file", STRING, "PEM private key of the client certificate.", required=True),
            ),
            description="Client certificate for mutual TLS.",
            max_items=1,
        ),
    ),
)

_TRUE = ("1", "true", "t", "yes", "y", "on")


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def data_dir() -> Path:
    return Path(os.environ.get("AGENTCEILING_DATA_DIR") or "~/.agentceiling/data").expanduser()


class VaultProvider(Provider):
    type_name = "vault"
    schema = SCHEMA

    def __init__(self) -> None:
        self._resources: list[Resource] | None = None

    def resources(self) -> Sequence[Resource]:
        if self._resources is None:
            from agentceiling.tfprovider.resources import all_resources

            self._resources = all_resources()
        return self._resources

    def validate(self, config: dict[str, Any], diags: Diagnostics) -> None:
        address = config.get("address")
        if isinstance(address, str):
            try:
                parse_address(address)
            except AddressError as exc:
                diags.error(
                    "Invalid address", f'"{address}" is not a control-plane address: {exc}.', ("address",)
                )
        for name in ("max_retries", "max_retries_ccc", "max_lease_ttl_seconds"):
            value = config.get(name)
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and (value < 0 or value != int(value))
            ):
                diags.error(f"Invalid {name}", f"{name} must be a whole number, at least 0.", (name,))

    def configure(self, config: dict[str, Any], diags: Diagnostics) -> Any:
        unknown = sorted(k for k, v in config.items() if v is UNKNOWN)
        if unknown:
            diags.error(
                "Provider configuration not known yet",
                f"The vault provider's {', '.join(unknown)} depend(s) on values known only after apply. "
                "Configure the provider from variables or environment variables instead.",
            )
            return None

        # address
        if config.get("address"):
            address, address_source, address_path = config["address"], "the provider's address", ("address",)
        elif _env("VAULT_ADDR"):
            address, address_source, address_path = os.environ["VAULT_ADDR"], "VAULT_ADDR", None
        else:
            address, address_source, address_path = DEFAULT_ADDRESS, "the default address", None
        try:
            endpoint = parse_address(address)
        except AddressError as exc:
            diags.error(
                "Invalid address",
                f'{address_source} "{address}" is not a control-plane address: {exc}.',
                address_path,
            )
            return None

        # token
        token_file = data_dir() / "admin-token"
        token_path: tuple[str | int, ...] | None = None
        login = (config.get("auth_login_token_file") or [None])[0]
        if login:
            read = _read_token_file(login.get("filename") or _env("TERRAFORM_VAULT_TOKEN_FILENAME"), diags)
            if read is None:
                return None
            token, token_source = read
            token_path = _TOKEN_FILE_PATH
        elif config.get("token"):
            token, token_source = config["token"], "token from the provider's token argument"
            token_path = ("token",)
        elif _env("VAULT_TOKEN"):
            token, token_source = os.environ["VAULT_TOKEN"], "token from VAULT_TOKEN"
        else:
            try:
                token = token_file.read_text().strip()
                token_source = f"admin token from {token_file}"
            except OSError:
                token, token_source = "", ""
        token = token.strip()  # a newline from `echo` or a file is never part of a token
        if token and not _sendable(token):
            diags.error(
                "Invalid token",
                f"The {token_source} holds characters that cannot be sent in a request header (control "
                "characters, spaces or non-ASCII): tokens are printable ASCII.",
                token_path,
            )
            return None
        if not token:
            diags.error(
                "No token for the agentceiling control plane",
                "Set the provider's token argument or VAULT_TOKEN to the admin token, or run "
                f"`agentceiling serve` locally so that {token_file} exists "
                "(AGENTCEILING_DATA_DIR selects another data directory).",
                ("token",),
            )
            return None

        headers: dict[str, str] = {}
        for i, h in enumerate(config.get("headers") or []):
            name, value = h.get("name"), h.get("value")
            if not name:
                continue
            key = str(name).strip().lower()
            if not key or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in key):
                diags.error(
                    "Invalid header name",
                    f'"{str(name)[:64]}" is not a header name: letters, digits, "-", "_" and "." only.',
                    ("headers", i, "name"),
                )
            elif value is not None and not _sendable(str(value), spaces=True):
                diags.error(
                    "Invalid header value",
                    f'The value of header "{key}" holds characters that cannot be sent (control characters '
                    "such as a newline, or non-ASCII).",
                    ("headers", i, "value"),
                )
            else:
                headers[key] = str(value or "")
        if diags.has_errors:
            return None

        if _truthy(config.get("add_address_to_env")):
            os.environ["VAULT_ADDR"] = address

        settings = ClientSettings(
            endpoint=endpoint,
            token=token,
            token_source=token_source,
            address_source=address_source,
            namespace=str(config.get("namespace") or _env("VAULT_NAMESPACE") or ""),
            skip_tls_verify=_flag(config.get("skip_tls_verify"), "VAULT_SKIP_VERIFY"),
            tls_server_name=str(config.get("tls_server_name") or _env("VAULT_TLS_SERVER_NAME") or ""),
            max_retries=_int(config.get("max_retries"), _env("VAULT_MAX_RETRIES"), DEFAULT_MAX_RETRIES),
            headers=headers,
        )
        if endpoint.tls and not _load_tls_files(config, settings, diags):
            return None

        client = ControlPlaneClient(settings)
        try:
            client.status(timeout=DEFAULT_CONNECT_TIMEOUT)
        except ApiError as err:
            _configure_error(diags, err, endpoint.display, address_source, token_source, address_path, token_path)
            client.close()
            return None
        return client


def _sendable(text: str, *, spaces: bool = False) -> bool:
    """Whether ``text`` can be a gRPC (HTTP/2) metadata value: printable ASCII."""
    low = 0x20 if spaces else 0x21
    return all(low <= ord(c) <= 0x7E for c in text)


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() in _TRUE


def _flag(value: Any, env: str) -> bool:
    if isinstance(value, bool):
        return value
    return (_env(env) or "").strip().lower() in _TRUE


def _int(value: Any, env: str | None, default: int) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(0, int(value))
    if env is not None and env.strip().isdigit():
        return int(env.strip())
    return default


#: Where diagnostics about the token file go.
_TOKEN_FILE_PATH: tuple[str | int, ...] = ("auth_login_token_file", 0, "filename")


def _read_token_file(filename: Any, diags: Diagnostics) -> tuple[str, str] | None:
    """The token in ``auth_login_token_file``'s file and where it came from, or None (diagnosed)."""
    path = _TOKEN_FILE_PATH
    if filename is UNKNOWN:
        diags.error(
            "Provider configuration not known yet",
            "auth_login_token_file.filename depends on values known only after apply.",
            path,
        )
        return None
    if not filename:
        diags.error(
            "Missing token file name",
            "auth_login_token_file needs a filename, or the TERRAFORM_VAULT_TOKEN_FILENAME environment variable.",
            path,
        )
        return None
    file = Path(str(filename)).expanduser()
    try:
        # As terraform-provider-vault: a regular file that only its owner can read (the token is a
        # credential; other local users must not be able to read it).
        mode = file.stat().st_mode
        if not stat.S_ISREG(mode):
            diags.error("Invalid token file", f'token path "{filename}" is not regular file', path)
            return None
        if mode & 0o077:
            diags.error(
                "Invalid token file",
                f'token path "{filename}" has an invalid mode {stat.filemode(mode)}: the token file must be '
                "readable by its owner only (e.g. chmod 600)",
                path,
            )
            return None
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        diags.error("Cannot read the token file", f"auth_login_token_file: {filename}: {why}.", path)
        return None
    token = text.strip()
    if not token or any(c.isspace() for c in token):
        diags.error(
            "Invalid token file",
            f"auth_login_token_file: {filename} must hold one token on a single line"
            + (" (it is empty)." if not token else "."),
            path,
        )
        return None
    return token, f"token from {filename} (auth_login_token_file)"


def _load_tls_files(config: dict[str, Any], settings: ClientSettings, diags: Diagnostics) -> bool:
    ca_file = config.get("ca_cert_file") or _env("VAULT_CACERT")
    ca_dir = config.get("ca_cert_dir") or _env("VAULT_CAPATH")
    bundle = b""
    try:
        if ca_file:
            bundle += Path(ca_file).expanduser().read_bytes()
        if ca_dir:
            for entry in sorted(Path(ca_dir).expanduser().iterdir()):
                if entry.is_file() and entry.suffix in (".pem", ".crt", ".cer"):
                    bundle += b"\n" + entry.read_bytes()
    except OSError as exc:
        diags.error(
            "Cannot read the CA certificate", f"{exc}", ("ca_cert_file",) if ca_file else ("ca_cert_dir",)
        )
        return False
    if ca_file or ca_dir:
        problem = ca_bundle_problem(bundle)
        if problem:
            where = f"ca_cert_file {ca_file}" if ca_file else f"ca_cert_dir {ca_dir} (its .pem, .crt and .cer files)"
            attr = ("ca_cert_file",) if ca_file else ("ca_cert_dir",)
            diags.error("Unusable CA certificate", f"{where}: {problem}", attr)
            return False
    settings.ca_cert_pem = bundle or None
    auth = (config.get("client_auth") or [None])[0]
    cert_file = (auth or {}).get("cert_file") or _env("VAULT_CLIENT_CERT")
    key_file = (auth or {}).get("key_file") or _env("VAULT_CLIENT_KEY")
    if cert_file and key_file:
        try:
            settings.client_cert_pem = Path(cert_file).expanduser().read_bytes()
            settings.client_key_pem = Path(key_file).expanduser().read_bytes()
        except OSError as exc:
            diags.error("Cannot read the client certificate", f"{exc}", ("client_auth",))
            return False
    return True


def _configure_error(
    diags: Diagnostics,
    err: ApiError,
    address: str,
    address_source: str,
    token_source: str,
    address_path: tuple[str, ...] | None,
    token_path: tuple[str | int, ...] | None = None,
) -> None:
    import grpc

    if err.code == grpc.StatusCode.UNAUTHENTICATED:
        diags.error(
            "The control plane refused the token",
            f"The agentceiling control plane at {address} refused the {token_source}: {err.message}\n\n"
            "Use the admin token that `agentceiling serve` wrote to <data-dir>/admin-token.",
            token_path,
        )
    elif err.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        why = (
            err.message if err.code == grpc.StatusCode.UNAVAILABLE else "no answer within the connect timeout"
        )
        diags.error(
            "Cannot reach the agentceiling control plane",
            f"Nothing answered at {address} ({address_source}): {why}.\n\n"
            "Start the control plane with `agentceiling serve --data-dir DIR --listen HOST:PORT`, or point the "
            "provider's address (or VAULT_ADDR) at a running one.",
            address_path,
        )
    elif err.code == grpc.StatusCode.UNIMPLEMENTED:
        diags.error(
            "Not an agentceiling control plane",
            f"The server at {address} ({address_source}) does not serve the agentceiling control-plane API "
            f"({err.message}). Is the address pointing at a real Vault server, or at the authorization endpoint?",
            address_path,
        )
    else:
        diags.error(
            "Cannot use the agentceiling control plane",
            f"Checking the control plane at {address} ({address_source}) failed: {err}",
            address_path,
        )


def build_provider() -> Provider:
    return VaultProvider()
