"""Work that must not block: the authorization worker decides in its serving thread (the one that
reads every request) when everything the decision needs is in memory, and in another thread when it
is not.

Code that would block (a database read, waiting for a JWKS fetch) calls :func:`check_may_block`
first; inside :func:`never_block` that raises :class:`WouldBlock`, and the caller runs the whole
decision again in a worker thread, where blocking is allowed. Deciding is free of side effects
until its audit record is written, so running it twice is safe."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_state = threading.local()


class WouldBlock(BaseException):
    """The work needs I/O. A BaseException, so that no ``except Exception`` on the way (which turns
    failures into refusals) mistakes it for a failure."""


@contextmanager
def never_block() -> Iterator[None]:
    previous = getattr(_state, "never", False)
    _state.never = True
    try:
        yield
    finally:
        _state.never = previous


def check_may_block(what: str) -> None:
    """Raise :class:`WouldBlock` inside :func:`never_block`; otherwise do nothing."""
    if getattr(_state, "never", False):
        raise WouldBlock(what)
