"""The go-plugin handshake: environment checks, the ephemeral server certificate, the line.

Terraform starts the provider with ``TF_PLUGIN_MAGIC_COOKIE``, ``PLUGIN_PROTOCOL_VERSIONS`` and,
under AutoMTLS, ``PLUGIN_CLIENT_CERT`` (its own ECDSA P-521 certificate, PEM). The provider
answers with one stdout line ``1|6|tcp|127.0.0.1:PORT|grpc|<cert>`` where ``<cert>`` is the DER
server certificate in *unpadded* standard base64 (go-plugin decodes it with RawStdEncoding).

Only the standard library is imported here: this module is on the start-up path, which
terraform pays 3 to 5 times per command. The certificate is built as DER by hand (about 40 lines)
and signed with ``p256`` instead of through ``cryptography``, which costs 20-35 ms to import.
"""

from __future__ import annotations

import base64
import os
import time

from agentceiling.tfprovider.framework.p256 import der, der_int

MAGIC_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"
CORE_PROTOCOL_VERSION = 1
APP_PROTOCOL_VERSION = 6

NOT_A_COMMAND = (
    "This program is a Terraform provider plugin (agentceiling's implementation of the vault\n"
    "provider's agent resources). It is started by terraform, not by hand.\n"
    "\n"
    "To use it, install it into a filesystem mirror and point terraform at it:\n"
    "\n"
    "    agentceiling provider install          # prints: export TF_CLI_CONFIG_FILE=...\n"
    '    eval "$(agentceiling provider install)"\n'
    "    agentceiling provider lock .            # in your terraform working directory\n"
    "    terraform init\n"
    "\n"
    "For debugging, `python -m agentceiling.tfprovider --debug` serves the provider in the\n"
    "foreground and prints a TF_REATTACH_PROVIDERS value.\n"
)


class HandshakeError(Exception):
    """The environment is not one terraform would create; the message is for a human."""


class PluginEnv:
    """What terraform told us through the environment."""

    def __init__(self, client_cert_pem: str | None, unix_socket_dir: str | None) -> None:
        self.client_cert_pem = client_cert_pem
        """``PLUGIN_CLIENT_CERT``; None when terraform runs with ``TF_DISABLE_PLUGIN_TLS``."""
        self.unix_socket_dir = unix_socket_dir


def check_environment(environ: dict[str, str] | os._Environ[str]) -> PluginEnv:
    """Validate the go-plugin environment; raise HandshakeError with a human message."""
    if environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        raise HandshakeError(NOT_A_COMMAND)
    versions = environ.get("PLUGIN_PROTOCOL_VERSIONS", "").strip()
    if versions:
        offered = {v.strip() for v in versions.split(",")}
        if str(APP_PROTOCOL_VERSION) not in offered:
            raise HandshakeError(
                f"This provider speaks plugin protocol {APP_PROTOCOL_VERSION} (Terraform 1.0 or later); "
                f"the host offered protocol version(s) {versions}. Upgrade Terraform.\n"
            )
    cert = environ.get("PLUGIN_CLIENT_CERT") or None
    return PluginEnv(client_cert_pem=cert, unix_socket_dir=environ.get("PLUGIN_UNIX_SOCKET_DIR") or None)


def handshake_line(network: str, address: str, cert_der: bytes | None) -> str:
    """The go-plugin handshake line, newline included. The certificate field is unpadded base64."""
    cert = base64.b64encode(cert_der).decode("ascii").rstrip("=") if cert_der else ""
    return f"{CORE_PROTOCOL_VERSION}|{APP_PROTOCOL_VERSION}|{network}|{address}|grpc|{cert}\n"


# ---------------------------------------------------------------------------------------------
# The server certificate: ECDSA P-256, self-signed, SAN DNS:localhost, shaped like go-plugin's own
# (CA:TRUE, key usages incl. certSign, EKU serverAuth+clientAuth) because the client trusts it as
# its own root. notBefore is back-dated 30 s against clock skew.


def _seq(*parts: bytes) -> bytes:
    return der(0x30, b"".join(parts))


_OID_ECDSA_SHA256 = bytes.fromhex("06082a8648ce3d040302")
_OID_CN = bytes.fromhex("0603550403")
_OID_O = bytes.fromhex("060355040a")
_OID_BASIC_CONSTRAINTS = bytes.fromhex("0603551d13")
_OID_KEY_USAGE = bytes.fromhex("0603551d0f")
_OID_EXT_KEY_USAGE = bytes.fromhex("0603551d25")
_OID_SUBJECT_ALT_NAME = bytes.fromhex("0603551d11")
_OID_SERVER_AUTH = bytes.fromhex("06082b06010505070301")
_OID_CLIENT_AUTH = bytes.fromhex("06082b06010505070302")
_TRUE = b"\x01\x01\xff"
# digitalSignature | keyEncipherment | keyAgreement | keyCertSign, 2 unused bits.
_KEY_USAGE_BITS = bytes.fromhex("030202ac")


def _utc_time(t: float) -> bytes:
    return der(0x17, time.strftime("%y%m%d%H%M%SZ", time.gmtime(t)).encode("ascii"))


def _name() -> bytes:
    return _seq(
        der(0x31, _seq(_OID_O, der(0x0C, b"agentceiling"))),
        der(0x31, _seq(_OID_CN, der(0x0C, b"localhost"))),
    )


def _tbs_certificate(spki_der: bytes, now: float, lifetime: float) -> bytes:
    serial = int.from_bytes(os.urandom(16), "big") >> 1 | 1  # positive, at most 127 bits
    extensions = _seq(
        _seq(_OID_BASIC_CONSTRAINTS, _TRUE, der(0x04, _seq(b"\x01\x01\xff"))),
        _seq(_OID_KEY_USAGE, _TRUE, der(0x04, _KEY_USAGE_BITS)),
        _seq(_OID_EXT_KEY_USAGE, der(0x04, _seq(_OID_SERVER_AUTH, _OID_CLIENT_AUTH))),
        _seq(_OID_SUBJECT_ALT_NAME, der(0x04, _seq(der(0x82, b"localhost")))),
    )
    return _seq(
        der(0xA0, der(0x02, b"\x02")),
        der_int(serial),  # minimal encoding: a fixed 16 bytes is invalid DER 1 time in 256
        _seq(_OID_ECDSA_SHA256),
        _name(),
        _seq(_utc_time(now - 30), _utc_time(now + lifetime)),
        _name(),
        spki_der,
        der(0xA3, extensions),
    )


class ServerCertificate:
    def __init__(self, cert_der: bytes, cert_pem: str, key_pem: bytes) -> None:
        self.cert_der = cert_der
        self.cert_pem = cert_pem
        self.key_pem = key_pem


def generate_server_certificate(lifetime: float = 30 * 86400.0) -> ServerCertificate:
    """An ephemeral ECDSA P-256 certificate for ``localhost`` (about 2 ms)."""
    import ssl

    from agentceiling.tfprovider.framework.p256 import PrivateKey

    key = PrivateKey.generate()
    tbs = _tbs_certificate(key.spki_der(), time.time(), lifetime)
    cert = _seq(tbs, _seq(_OID_ECDSA_SHA256), der(0x03, b"\x00" + key.sign_sha256(tbs)))
    return ServerCertificate(cert_der=cert, cert_pem=ssl.DER_cert_to_PEM_cert(cert), key_pem=key.sec1_pem())
