"""The audit record of one decision, encoded straight to the audit log's canonical JSON.

The audit log stores each decision as ``json.dumps(decision, sort_keys=True, separators=(",", ":"))``
(ASCII). Every decision has the same shape, so the hot path writes that text from its parts instead
of building a dict for the generic encoder to sort and walk: the keys below are already in sorted
order and every string goes through the C string encoder ``json.dumps`` itself uses. The parts that
do not change between the decisions of one token or one token context (the token's metadata, the
declared ``authorization_details``) are encoded once and reused.

tests/authz/test_authz_audit_record.py checks that the result is byte for byte the generic
encoder's output, and ``agentceiling audit verify`` refuses any record that is not.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii
from typing import Any

__all__ = [
    "EMPTY_METADATA_JSON",
    "canonical_json",
    "decision_id",
    "metadata_json",
    "record_json",
    "strings_json",
]

_s = encode_basestring_ascii  # the C implementation when available, as json.dumps uses


def canonical_json(value: Any) -> str:
    """The audit log's canonical form of a JSON value (finite numbers only)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def strings_json(items: Iterable[str]) -> str:
    return "[" + ",".join(map(_s, items)) + "]"


def metadata_json(
    *,
    unique_id: str,
    issuer: str,
    audiences_json: str,
    authorization_details_json: str,
    transaction: str,
    actor_entity_id: str,
    actor_entity_name: str,
) -> str:
    """Vault's "OAuth JWT metadata" (vault-semantics §3.3), keys in sorted order."""
    return (
        f'{{"actor_entity_id":{_s(actor_entity_id)},"actor_entity_name":{_s(actor_entity_name)},'
        f'"jwt_audience_claim":{audiences_json},"jwt_authorization_details":{authorization_details_json},'
        f'"jwt_issuer":{_s(issuer)},"jwt_transaction_claim":{_s(transaction)},"jwt_unique_id":{_s(unique_id)}}}'
    )


EMPTY_METADATA_JSON = metadata_json(
    unique_id="",
    issuer="",
    audiences_json="[]",
    authorization_details_json="[]",
    transaction="",
    actor_entity_id="",
    actor_entity_name="",
)


def record_json(
    *,
    time: str,
    decision_id: str,
    code: str,
    allowed: bool,
    reason: str,
    namespace: str,
    path: str,
    operation: str,
    entity_id: str,
    actor_entity_id: str,
    registration_id: str,
    granting_policies: Iterable[str],
    refusing_policies: Iterable[str],
    token_sha256: str,
    metadata: str,
) -> str:
    """One decision record (``metadata`` already encoded, e.g. by :func:`metadata_json`)."""
    return (
        f'{{"actor_entity_id":{_s(actor_entity_id)},"allowed":{"true" if allowed else "false"},'
        f'"code":{_s(code)},"decision_id":{_s(decision_id)},"entity_id":{_s(entity_id)},'
        f'"granting_policies":{strings_json(granting_policies)},"metadata":{metadata},'
        f'"namespace":{_s(namespace)},"operation":{_s(operation)},"path":{_s(path)},"reason":{_s(reason)},'
        f'"refusing_policies":{strings_json(refusing_policies)},"registration_id":{_s(registration_id)},'
        f'"time":{_s(time)},"token_sha256":{_s(token_sha256)}}}'
    )


def finite(value: float) -> float | str:
    """JSON has no NaN or infinity (``1e999`` in a token parses as ``inf``): audit those as text."""
    return value if math.isfinite(value) else repr(value)


# ---------------------------------------------------------------- decision ids

# A decision id only has to be unique, not secret: it names a decision in the answer and in the
# audit log and grants nothing. uuid.uuid4() reads os.urandom on every call, a system call that
# releases the GIL, and under load every release is a thread switch (docs/performance.md). A
# process-local generator seeded from os.urandom gives the same 122 random bits without one; it
# is reseeded in a forked child so that two processes never share a sequence.
_rng = random.Random(os.urandom(32))
_rng_lock = threading.Lock()


def _reseed() -> None:
    _rng.seed(os.urandom(32))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


_VERSION_BITS = ~((0xF << 76) | (0x3 << 62))
_VERSION_4 = (0x4 << 76) | (0x2 << 62)  # version 4, RFC 4122 variant (what uuid.UUID(version=4) sets)


def decision_id() -> str:
    """A random (version 4) UUID, as text (``uuid.UUID`` would cost more than drawing the bits)."""
    with _rng_lock:  # Random.getrandbits is not atomic across threads in every Python build
        bits = _rng.getrandbits(128)
    h = f"{(bits & _VERSION_BITS) | _VERSION_4:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
