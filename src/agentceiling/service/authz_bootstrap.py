"""Build the authorization endpoint: the authorization worker process (which decides and audits)
and the event loop's side of it.

Imports are deferred so that `agentceiling audit ...` (which only needs :func:`audit_log_path`)
starts quickly."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable
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
    from agentceiling.api.authz_worker import MODULE, WorkerConfig
    from agentceiling.store.audit_writer import AuditWriter
    from agentceiling.tokens.validator import DEFAULT_MAX_LIFETIME

    # The authorization worker process decides and writes the audit log (it holds its lock); this
    # process's event loop hands it the requests (api/authz_worker.py).
    config = WorkerConfig(
        database_url=db.url.render_as_string(hide_password=False),
        max_token_lifetime=cfg.max_token_lifetime or DEFAULT_MAX_LIFETIME,
        poll_interval=_poll_interval(),
        workers=cfg.workers,
    )
    audit = AuditWriter.start(
        audit_log_path(cfg.data_dir),
        rotate_bytes=cfg.audit_rotate_bytes,
        timeout=AUDIT_TIMEOUT,
        decider=(MODULE, config.encode()),
    )
    health: list[Callable[[bool], None]] = []

    def rotate() -> None:
        log.info("rotating the audit log %s", audit.path)
        audit.rotate()

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

    def on_directory(stale: bool) -> None:  # the worker could (not) confirm its directory is current
        set_unhealthy("directory", stale)

    def register(
        server: grpc.aio.Server, mark_health: Callable[[bool], None], on_hangup: Callable[[Hook], None]
    ) -> list[str]:
        # In the event loop's thread.
        health.append(mark_health)
        on_hangup(rotate)
        audit.bind(asyncio.get_running_loop(), on_audit_failure, on_audit_recovery, on_directory)
        services = api.register(server, audit)
        tune_gc()  # last thing before serving
        return services

    def close() -> None:
        audit.close(AUDIT_TIMEOUT)

    return register, close
