"""agentceiling.dev_ports: the ports the harnesses start servers on."""

from __future__ import annotations

import socket

from agentceiling.dev_ports import _ephemeral_low, free_port, port_free


def test_never_the_same_port_twice_and_never_a_busy_one() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(20000 <= p < _ephemeral_low() for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))
        s.listen()
        assert not port_free(ports[0])


def test_a_preferred_port_is_used_once_and_only_while_free() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        busy = int(s.getsockname()[1])
        s.listen()
        assert free_port(busy) != busy
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        idle = int(s.getsockname()[1])
    assert free_port(idle) == idle
    preferred = free_port()
    # Handed out already: a second harness asking for it gets another.
    assert free_port(preferred) != preferred
