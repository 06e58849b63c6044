"""The hot path's audit record encoder writes exactly what the generic canonical encoder would."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import re
import uuid
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentceiling.service import audit_record
from agentceiling.service.authz import _rar_audit_json, _scrub
from agentceiling.store.audit_log import AuditLog, _canonical, verify

# Any Unicode, lone surrogates and control characters included (they reach the record from paths,
# namespaces and claims).
TEXT = st.text(st.characters(codec=None, categories=None), max_size=40)
STRINGS = st.lists(TEXT, max_size=4)


def _metadata_kwargs() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "unique_id": TEXT,
            "issuer": TEXT,
            "audiences": STRINGS,
            "authorization_details": st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
                lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                max_leaves=12,
            ),
            "transaction": TEXT,
            "actor_entity_id": TEXT,
            "actor_entity_name": TEXT,
        }
    )


@settings(max_examples=300, deadline=None)
@given(
    meta=_metadata_kwargs(),
    time=TEXT,
    decision_id=TEXT,
    code=TEXT,
    allowed=st.booleans(),
    reason=TEXT,
    namespace=TEXT,
    path=TEXT,
    operation=TEXT,
    entity_id=TEXT,
    actor_entity_id=TEXT,
    registration_id=TEXT,
    granting=STRINGS,
    refusing=STRINGS,
    token_sha256=TEXT,
)
def test_record_json_is_the_canonical_encoding(meta: dict[str, Any], **fields: Any) -> None:
    metadata = audit_record.metadata_json(
        unique_id=meta["unique_id"],
        issuer=meta["issuer"],
        audiences_json=audit_record.strings_json(meta["audiences"]),
        authorization_details_json=audit_record.canonical_json(meta["authorization_details"]),
        transaction=meta["transaction"],
        actor_entity_id=meta["actor_entity_id"],
        actor_entity_name=meta["actor_entity_name"],
    )
    granting, refusing = fields.pop("granting"), fields.pop("refusing")
    text = audit_record.record_json(
        **fields, granting_policies=iter(granting), refusing_policies=iter(refusing), metadata=metadata
    )
    expected = {
        **fields,
        "granting_policies": granting,
        "refusing_policies": refusing,
        "metadata": {
            "jwt_unique_id": meta["unique_id"],
            "jwt_issuer": meta["issuer"],
            "jwt_audience_claim": meta["audiences"],
            "jwt_authorization_details": meta["authorization_details"],
            "jwt_transaction_claim": meta["transaction"],
            "actor_entity_id": meta["actor_entity_id"],
            "actor_entity_name": meta["actor_entity_name"],
        },
    }
    assert text == _canonical(expected)
    assert text.isascii()


def test_empty_metadata_names_every_vault_field() -> None:
    assert json.loads(audit_record.EMPTY_METADATA_JSON) == {
        "jwt_unique_id": "",
        "jwt_issuer": "",
        "jwt_audience_claim": [],
        "jwt_authorization_details": [],
        "jwt_transaction_claim": "",
        "actor_entity_id": "",
        "actor_entity_name": "",
    }


def test_non_finite_numbers_in_a_claim_are_audited_as_text(tmp_path: Path) -> None:
    # "1e999" in a signed token parses as inf; JSON (and so the audit log) has no such number. It
    # must neither break the record nor take the audit log down.
    claim = json.loads('[{"type":"x","n":1e999,"m":-1e999,"ok":1.5}]')
    assert math.isinf(claim[0]["n"])
    scrubbed = _scrub(claim)
    assert scrubbed == [{"type": "x", "n": "inf", "m": "-inf", "ok": 1.5}]
    text = _rar_audit_json(claim, True)
    assert json.loads(text) == scrubbed
    with AuditLog.open(tmp_path / "audit.log") as log:
        log.append_canonical(
            audit_record.record_json(
                time="t",
                decision_id="d",
                code="ALLOWED",
                allowed=True,
                reason="r",
                namespace="root",
                path="p",
                operation="read",
                entity_id="",
                actor_entity_id="",
                registration_id="",
                granting_policies=[],
                refusing_policies=[],
                token_sha256="0" * 64,
                metadata=audit_record.metadata_json(
                    unique_id="j",
                    issuer="i",
                    audiences_json="[]",
                    authorization_details_json=text,
                    transaction="",
                    actor_entity_id="",
                    actor_entity_name="",
                ),
            )
        )
    assert verify(tmp_path / "audit.log").ok


def test_append_canonical_refuses_what_is_not_a_canonical_object_or_holds_a_token(tmp_path: Path) -> None:
    jws = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
    with AuditLog.open(tmp_path / "audit.log") as log:
        for bad in ("[1]", '{"a":"é"}', "", f'{{"a":"{jws}"}}'):
            try:
                log.append_canonical(bad)
            except ValueError:
                pass
            else:
                raise AssertionError(f"accepted {bad!r}")
        log.append_canonical('{"a":1}')
        assert log.last_seq == 1


_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_decision_ids_are_random_version_4_uuids() -> None:
    ids = [audit_record.decision_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(_UUID4.fullmatch(i) and uuid.UUID(i).version == 4 for i in ids)
    # Every one of the 122 random bits varies.
    ones = 0
    for i in ids[:2000]:
        ones |= uuid.UUID(i).int
    assert bin(ones).count("1") == 128 - 4  # version bits 0100 and variant 10 fix 4 zeros


def _child_ids(_: int) -> list[str]:
    return [audit_record.decision_id() for _ in range(100)]


def test_forked_processes_do_not_repeat_each_others_decision_ids() -> None:
    if not hasattr(os, "fork"):
        return
    audit_record.decision_id()  # the parent's generator is in use before the fork
    with mp.get_context("fork").Pool(2) as pool:
        a, b = pool.map(_child_ids, [0, 1], chunksize=1)
    mine = _child_ids(0)
    assert not (set(a) & set(b)) and not (set(a) & set(mine)) and not (set(b) & set(mine))
