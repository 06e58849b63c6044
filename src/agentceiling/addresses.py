"""Checks of the gRPC addresses given on the command line (``--listen``, ``--address``, ...).

gRPC itself parses a port modulo 65536 (``:99999`` is port 34463, ``:-1`` is 65535), so an out of
range port would silently listen on or dial another one: refuse it here, where the flag is known.
Kept free of heavy imports: the client commands use it before anything else."""

from __future__ import annotations

import re

MAX_PORT = 65535

# gRPC targets that are not HOST:PORT: passed through unchecked.
_PASS_THROUGH = re.compile(r"^(?:unix:|unix-abstract:|vsock:|xds:|google-c2p:)")
# Schemes followed by HOST:PORT (ipv4:/ipv6: may list several, comma-separated).
_SCHEME = re.compile(r"^(?:dns:(?://[^/]*/)?|ipv4:|ipv6:)")
_HOST_PORT = re.compile(r"^(\[[^\]]*\]|[^:\[\]]*):([^:\[\]]*)$")


def address_problem(address: str, *, listen: bool) -> str | None:
    """Why ``address`` is not a usable ``HOST:PORT`` (None when it is, or when it is a gRPC target
    of another kind, e.g. ``unix:/path``). ``listen``: a server address, where port 0 (any free
    port) is allowed and a port is required; a client needs a port in 1-65535 (or none: gRPC's
    default)."""
    text = address.strip()
    if not text:
        return "empty address: use HOST:PORT"
    if _PASS_THROUGH.match(text):
        return None
    for part in _SCHEME.sub("", text, count=1).split(","):
        m = _HOST_PORT.match(part)
        if m is None:
            if listen:
                return "not HOST:PORT (e.g. 127.0.0.1:8250 or [::1]:8250)"
            continue  # a host without a port, or a bare IPv6 address: gRPC's default port
        problem = _port_problem(m.group(2), 0 if listen else 1)
        if problem:
            return problem
    return None


def _port_problem(text: str, lowest: int) -> str | None:
    if not re.fullmatch(r"\d+", text):
        if re.fullmatch(r"[+-]\d+", text):
            return f"the port {text} is out of range ({lowest}-{MAX_PORT})"
        return f"the port {text!r} is not a number ({lowest}-{MAX_PORT})"
    if not lowest <= int(text) <= MAX_PORT:
        return f"the port {text} is out of range ({lowest}-{MAX_PORT})"
    return None
