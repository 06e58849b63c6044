"""Build the authorization endpoint from its collaborators (directory, validator, audit log)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from agentceiling.store.db import Database


def audit_log_path(data_dir: Path) -> Path:
    return data_dir / "audit" / "audit.log"


def build_authz(db: Database, cfg: Any) -> tuple[Callable[[grpc.Server], list[str]], Callable[[], None]]:
    from agentceiling.api import authz as api
    from agentceiling.service.authz import Authorizer
    from agentceiling.service.directory import Directory
    from agentceiling.store.audit_log import AuditLog
    from agentceiling.tokens import KeySourceRegistry, TokenValidator

    audit = AuditLog.open(audit_log_path(cfg.data_dir))
    directory = Directory(db)
    validator = TokenValidator(KeySourceRegistry())

    def sink(record: dict[str, Any]) -> None:
        audit.append(record)

    authorizer = Authorizer(directory, validator, sink)

    def register(server: grpc.Server) -> list[str]:
        return api.register(server, authorizer)

    def close() -> None:
        directory.close()
        audit.close()

    return register, close
