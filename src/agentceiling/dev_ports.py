"""Loopback ports for development harnesses: `make run`, the benchmarks and the tests.

Handing a harness a port and starting a server on it later is a race. Two things lose it:

* ``bind(("127.0.0.1", 0))`` may return the port it returned a moment ago, once that socket is
  closed. A harness that asks twice (control plane, then authorization endpoint) can get the same
  port for both, and the second listener fails with "address already in use".
* Ports from the kernel's ephemeral range are also what outgoing connections take, so any client
  on the machine may occupy the port before the server binds it.

``free_port`` avoids both: it picks below the ephemeral range, checks the port can be bound, and
never hands out the same port twice in one process. Not imported by the server or the provider.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

__all__ = ["free_port", "port_free"]

_LOW = 20000
#: Used when the kernel does not say (Linux and macOS both start theirs at or above this).
_DEFAULT_EPHEMERAL_LOW = 32768
_given: set[int] = set()
_lock = threading.Lock()


def _ephemeral_low() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _DEFAULT_EPHEMERAL_LOW
    return low if low > _LOW + 1000 else _DEFAULT_EPHEMERAL_LOW


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` on ``host`` can be bound right now."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """A port on ``host`` that nothing listens on and this process has not handed out before.

    ``preferred`` is returned when it qualifies (the demo's 8250 and 8251)."""
    with _lock:
        if preferred is not None and preferred not in _given and port_free(preferred, host):
            _given.add(preferred)
            return preferred
        high = _ephemeral_low()
        rng = random.SystemRandom()
        for _ in range(200):
            port = rng.randrange(_LOW, high)
            if port not in _given and port_free(port, host):
                _given.add(port)
                return port
        # The whole range is busy: fall back to the kernel's choice, still never a repeat.
        for _ in range(200):
            with socket.socket() as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
            if port not in _given:
                _given.add(port)
                return port
    raise OSError(f"no free port on {host}")
