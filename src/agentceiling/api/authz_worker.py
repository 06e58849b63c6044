"""The authorization worker: the process that decides and audits for the endpoint.

``python -m agentceiling.api.authz_worker`` is the audit writer process
(:mod:`agentceiling.store.audit_writer`) with a decider. The endpoint's event loop hands it each
Authorize request as the bytes it arrived in (with a decision id and the call's bearer token); this
process decodes it, decides, writes the decision's record in its next group commit, and answers
with the serialized ``AuthorizeResponse`` once the record is durable. The serving process then only
pays gRPC's own cost and one pipe hand-off per call: deciding (the token's signature and claims,
the directory's caches, the policies) no longer takes the event loop's thread and GIL
(docs/performance.md, eighth pass).

Here, as in the endpoint before: a decision whose inputs are all in memory is made at once, in
the serving thread (:func:`agentceiling.domain.blocking.never_block`); one that needs the database
or a JWKS fetch is made again in a pool of threads, so one slow lookup never holds up the others or
the group commits. A thread watches the directory every half second and tells the endpoint when it
can (no longer) confirm that it is current; the endpoint's health follows.

The configuration (:class:`WorkerConfig`, the database URL among it) arrives through a pipe of its
own, never the command line or the environment."""

from __future__ import annotations

import json
import logging
import struct
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from agentceiling._gen.agentceiling.v1 import authorization_pb2 as pb
from agentceiling.api.errors import Undecodable, tolerant_decoder
from agentceiling.domain.blocking import WouldBlock, never_block
from agentceiling.domain.errors import InvalidArgument
from agentceiling.service.authz import AuthorizeInput, Authorizer, BadRequest, Decision
from agentceiling.store import audit_writer
from agentceiling.store.audit_writer import Decided

log = logging.getLogger(__name__)

MODULE = "agentceiling.api.authz_worker"  # not __name__: "__main__" in the worker process

#: How often the directory's freshness is checked for the endpoint's health.
WATCH_SECONDS = 0.5

_DECISION_ID_BYTES = 36
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class WorkerConfig:
    database_url: str
    max_token_lifetime: int
    poll_interval: float
    workers: int
    pool_size: int = 4
    """Connections of the worker's own: control-plane calls blocked on the database (a lock held by
    a stuck writer, say) cannot take the ones the directory needs to confirm its counter."""

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, data: bytes) -> WorkerConfig:
        return cls(**json.loads(data))


def encode_request(decision_id: str, request: bytes, bearer: str) -> bytes:
    """A ``D`` frame's body: the decision id, the request as it arrived, the bearer token."""
    ident = decision_id.encode("ascii")
    if len(ident) != _DECISION_ID_BYTES:
        raise ValueError("a decision id is a UUID in text")
    return ident + _U32.pack(len(request)) + request + bearer.encode("utf-8", "surrogatepass")


def _decode_request(body: bytes) -> tuple[str, bytes, str]:
    decision_id = body[:_DECISION_ID_BYTES].decode("ascii")
    (length,) = _U32.unpack_from(body, _DECISION_ID_BYTES)
    start = _DECISION_ID_BYTES + _U32.size
    return decision_id, body[start : start + length], body[start + length :].decode("utf-8", "surrogatepass")


#: Longer tokens are a malformed request (INVALID_ARGUMENT, not audited). Tokens between the
#: validator's 8 KiB cap and this are refused as TOKEN_INVALID (and audited) like any bad token.
MAX_TOKEN_CHARS = 64 * 1024

#: Requests whose parameters are larger are converted and decided in a thread of the pool, not in
#: the serving thread, where they would hold up every other decision.
INLINE_PARAMETERS_BYTES = 64 * 1024


def input_from(request: pb.AuthorizeRequest | Undecodable, bearer: str) -> AuthorizeInput:
    """The request as the service takes it; malformed requests raise InvalidArgument."""
    from google.protobuf import json_format

    if isinstance(request, Undecodable):
        raise InvalidArgument.one(
            "parameters",
            "the request could not be decoded (protobuf allows 100 levels of nesting; "
            "parameters are probably nested deeper)",
        )
    token = request.token or bearer
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidArgument.one("token", f"token is longer than {MAX_TOKEN_CHARS} characters")
    params: dict[str, Any] | None = None
    if request.HasField("parameters"):
        try:
            params = json_format.MessageToDict(request.parameters)
        except ValueError:  # NaN or an infinity in a number_value: JSON has no such number
            raise InvalidArgument.one(
                "parameters", "parameters hold a number JSON cannot represent (NaN or an infinity)"
            ) from None
    return AuthorizeInput(
        token=token,
        namespace=request.namespace or "root",
        path=request.path,
        operation=request.operation,
        parameters=params,
    )


def encode_answer(d: Decision) -> bytes:
    return pb.AuthorizeResponse(
        allowed=d.allowed,
        code=d.code,
        reason=d.reason,
        decision_id=d.decision_id,
        entity_id=d.entity_id,
        actor_entity_id=d.actor_entity_id,
        registration_id=d.registration_id,
        authorization_details=d.authorization_details_json,
    ).SerializeToString()


def _bad(ident: int, field: str, message: str) -> Decided:
    return Decided(ident, None, json.dumps({"field": field, "message": message}).encode())


def _internal(ident: int, decision_id: str) -> Decided:
    """A bug while deciding: INTERNAL for this call alone (the log names the decision id)."""
    log.exception("decision %s failed", decision_id)
    return Decided(ident, None, f"internal error while deciding {decision_id}".encode(), reply=b"I")


def _decided(ident: int, decision: Decision, record: str) -> Decided:
    return Decided(
        ident, record, encode_answer(decision), lambda exc: encode_answer(Authorizer.unavailable(decision, exc))
    )


class AuthzDecider:
    """The worker's :class:`~agentceiling.store.audit_writer.Decider`."""

    def __init__(self, cfg: WorkerConfig, wake: Callable[[], None]) -> None:
        from agentceiling.service.directory import Directory
        from agentceiling.store.db import Database
        from agentceiling.tokens import KeySourceRegistry, TokenValidator

        self._wake = wake
        self._db = Database(cfg.database_url, pool_size=cfg.pool_size)
        try:
            self._directory = Directory(self._db, poll_interval=cfg.poll_interval)
        except BaseException:
            self._db.dispose()
            raise
        validator = TokenValidator(KeySourceRegistry(), max_lifetime=cfg.max_token_lifetime)
        self.authorizer = Authorizer(self._directory, validator)
        # Decisions that need the database or a JWKS fetch run here, not in the serving thread.
        self._pool = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="authz-blocking")
        self._decode = tolerant_decoder(pb.AuthorizeRequest)
        self._done: deque[Decided] = deque()
        self._lock = threading.Lock()
        self._pending: set[int] = set()  # handed to the pool, not yet through ready()
        self._abandoned: set[int] = set()  # of those, the ones the server gave up on
        self._stale = False
        self._health_changed = False
        self._closing = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="directory-watch", daemon=True)
        self._watcher.start()

    # -- in the serving thread -------------------------------------------------------------------

    def decide(self, ident: int, body: bytes) -> Decided | None:
        try:
            decision_id, raw, bearer = _decode_request(body)
        except (ValueError, struct.error):
            return Decided(ident, None, b"malformed decide request", reply=b"I")
        try:
            request = self._decode(raw)
            if not isinstance(request, Undecodable) and request.parameters.ByteSize() > INLINE_PARAMETERS_BYTES:
                # Converting megabytes of parameters takes the CPU for a while (and any caller can
                # send them): not in the serving thread.
                self._to_pool(ident, request, bearer, decision_id)
                return None
            with never_block():
                return self._attempt(ident, request, bearer, decision_id)
        except WouldBlock:
            self._to_pool(ident, request, bearer, decision_id)
            return None
        except Exception:  # a bug fails this call, never the process that decides every call
            return _internal(ident, decision_id)

    def ready(self) -> list[Decided]:
        done = []
        while self._done:
            item = self._done.popleft()
            with self._lock:
                self._pending.discard(item.ident)
                dropped = item.ident in self._abandoned
                self._abandoned.discard(item.ident)
            if not dropped:
                done.append(item)
        return done

    def abandon(self, idents: set[int]) -> None:
        with self._lock:
            self._abandoned |= idents & self._pending

    def _to_pool(self, ident: int, request: pb.AuthorizeRequest | Undecodable, bearer: str, decision_id: str) -> None:
        with self._lock:
            self._pending.add(ident)
        self._pool.submit(self._in_thread, ident, request, bearer, decision_id)

    def health(self) -> bool | None:
        if not self._health_changed:
            return None
        self._health_changed = False
        return self._stale

    def close(self) -> None:
        self._closing.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._directory.close()
        self._db.dispose()

    # -- in other threads ------------------------------------------------------------------------

    def _attempt(
        self, ident: int, request: pb.AuthorizeRequest | Undecodable, bearer: str, decision_id: str
    ) -> Decided:
        """The decision, or a malformed request's reply; raises what ``decide`` lets through
        (:class:`WouldBlock`, and bugs: it turns every other failure into a refusal)."""
        try:
            decision, record = self.authorizer.decide(input_from(request, bearer), decision_id=decision_id)
        except InvalidArgument as exc:
            return _bad(ident, exc.violations[0].field, exc.violations[0].description)
        except BadRequest as exc:
            return _bad(ident, exc.field, str(exc))
        return _decided(ident, decision, record)

    def _in_thread(self, ident: int, request: pb.AuthorizeRequest | Undecodable, bearer: str, decision_id: str) -> None:
        done = None
        try:
            done = self._attempt(ident, request, bearer, decision_id)
        except Exception:
            done = _internal(ident, decision_id)
        finally:  # even on the way out of a BaseException, the call gets its answer
            self._done.append(done if done is not None else _internal(ident, decision_id))
            self._wake()

    def _watch(self) -> None:
        # Every half second: a directory that cannot confirm its counter answers every decision
        # UNAVAILABLE; say so, and start a read when the poller's is overdue (with no agents sent
        # here meanwhile, nothing else would).
        while not self._closing.wait(WATCH_SECONDS):
            stale = self._directory.is_stale()
            if stale:
                self._directory.kick()
            if stale != self._stale:
                log.warning(
                    "the directory %s", "cannot confirm it is current: NOT_SERVING" if stale else "is current again"
                )
                self._stale = stale
                self._health_changed = True
                self._wake()


def _factory(config: bytes, wake: Callable[[], None]) -> AuthzDecider:
    from agentceiling.service.authz_bootstrap import tune_gc

    decider = AuthzDecider(WorkerConfig.decode(config), wake)
    tune_gc()
    return decider


def main(argv: Sequence[str] | None = None) -> int:
    return audit_writer.main(argv, decider_factory=_factory)


if __name__ == "__main__":  # pragma: no cover - the worker process
    audit_writer.run(main)
