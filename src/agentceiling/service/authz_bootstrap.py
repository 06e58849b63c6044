"""Build the authorization endpoint from its collaborators (directory, validator, audit log).

Imports are deferred so that `agentceiling audit ...` (which only needs :func:`audit_log_path`)
starts quickly."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc

    from agentceiling.store.db import Database

log = logging.getLogger(__name__)

#: Seconds between two reads of the directory's generation counter (the freshness bound).
DEFAULT_POLL_INTERVAL = 0.25


#: Longest wait for the audit log to make a decision durable before answering UNAVAILABLE.
AUDIT_TIMEOUT = 30.0


def audit_log_path(data_dir: Path) -> Path:
    return data_dir / "audit" / "audit.log"


def _poll_interval() -> float:
    raw = os.environ.get("AGENTCEILING_DIRECTORY_POLL_INTERVAL", "")
    try:
        value = float(raw) if raw else DEFAULT_POLL_INTERVAL
    except ValueError:
        value = DEFAULT_POLL_INTERVAL
    return min(max(value, 0.01), 1.0)


#: Young-generation threshold of the cyclic garbage collector in a serving process (CPython's
#: default is 700). The hot path allocates many short-lived containers that reference counting
#: frees; collecting every 700 allocations mostly rescans live objects for nothing.
GC_GEN0_THRESHOLD = 20_000


def tune_gc() -> None:
    """Move everything allocated at start-up (SQLAlchemy, gRPC, protobuf, Alembic: hundreds of
    thousands of objects) out of the collector's sight and collect the young generation less
    often. Measured in docs/performance.md; process-wide, harmless for the control plane."""
    gc.collect()
    gc.freeze()
    g0, g1, g2 = gc.get_threshold()
    gc.set_threshold(max(g0, GC_GEN0_THRESHOLD), max(g1, 20), max(g2, 20))


Hook = Callable[[], None]


def build_authz(
    db: Database, cfg: Any
) -> tuple[Callable[[grpc.aio.Server, Callable[[bool], None], Callable[[Hook], None]], list[str]], Hook]:
    import asyncio

    from agentceiling.api import authz as api
    from agentceiling.service.authz import Authorizer
    from agentceiling.service.directory import Directory
    from agentceiling.store.audit_writer import AuditWriter
    from agentceiling.store.db import Database
    from agentceiling.tokens import KeySourceRegistry, TokenValidator
    from agentceiling.tokens.validator import DEFAULT_MAX_LIFETIME

    # The log is written by a process of its own (store/audit_writer.py); it holds the lock.
    audit = AuditWriter.start(audit_log_path(cfg.data_dir), rotate_bytes=cfg.audit_rotate_bytes, timeout=AUDIT_TIMEOUT)
    # Connections of the endpoint's own: control-plane calls blocked on the database (a lock held
    # by a stuck writer, say) cannot take the ones the directory needs to confirm its counter.
    own_db = Database(db.url.render_as_string(hide_password=False), pool_size=4)
    try:
        directory = Directory(own_db, poll_interval=_poll_interval())
    except BaseException:
        own_db.dispose()
        audit.close()
        raise
    validator = TokenValidator(KeySourceRegistry(), max_lifetime=cfg.max_token_lifetime or DEFAULT_MAX_LIFETIME)
    authorizer = Authorizer(directory, validator)
    health: list[Callable[[bool], None]] = []

    def rotate() -> None:
        log.info("rotating the audit log %s", audit.path)
        audit.rotate()

    # Decisions that need the database or a JWKS fetch run here, not on the event loop.
    blocking = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="authz-blocking")

    # Why no decision can be made now ("audit", "directory"): while there is a reason, health
    # checks say NOT_SERVING, so that load balancers stop sending agents here.
    unhealthy: set[str] = set()

    def set_unhealthy(reason: str, bad: bool) -> None:
        was = bool(unhealthy)
        if bad:
            unhealthy.add(reason)
        else:
            unhealthy.discard(reason)
        if bool(unhealthy) != was or (bad and reason == "audit"):
            for mark in health:
                mark(not unhealthy)

    def on_audit_failure() -> None:
        set_unhealthy("audit", True)

    def on_audit_recovery() -> None:  # the audit disk hung for a while, and is back
        set_unhealthy("audit", False)

    watch: list[asyncio.TimerHandle] = []
    closing: list[bool] = []

    def watch_directory() -> None:
        if closing:  # close() runs in another thread: no read on a pool being disposed
            return
        # On the event loop, every half second: a directory that cannot confirm its counter answers
        # every decision UNAVAILABLE; say so, and start a read when the poller's is overdue (with no
        # agents sent here meanwhile, nothing else would).
        stale = directory.is_stale()
        if stale:
            directory.kick()
        if stale != ("directory" in unhealthy):
            log.warning(
                "the directory %s", "cannot confirm it is current: NOT_SERVING" if stale else "is current again"
            )
            set_unhealthy("directory", stale)
        watch[:] = [asyncio.get_running_loop().call_later(0.5, watch_directory)]

    def register(
        server: grpc.aio.Server, mark_health: Callable[[bool], None], on_hangup: Callable[[Hook], None]
    ) -> list[str]:
        # In the event loop's thread.
        health.append(mark_health)
        on_hangup(rotate)
        audit.bind(asyncio.get_running_loop(), on_audit_failure, on_audit_recovery)
        services = api.register(server, authorizer, audit, blocking)
        watch_directory()
        tune_gc()  # last thing before serving
        return services

    def close() -> None:
        closing.append(True)
        for handle in watch:
            handle.cancel()
        blocking.shutdown(wait=False, cancel_futures=True)
        directory.close()
        own_db.dispose()
        audit.close(AUDIT_TIMEOUT)

    return register, close
