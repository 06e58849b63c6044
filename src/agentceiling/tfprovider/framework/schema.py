"""Contract schemas (``types.Schema``) to ``tfplugin6.Schema``, and a sanity check of them.

Attribute types go on the wire as JSON (``b'"string"'``, ``b'["set","string"]'``): a bare
``b"string"`` makes terraform panic while loading the schema (pitfall P7).
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentceiling._gen.tfplugin6 import tfplugin6_pb2 as pb
from agentceiling.tfprovider.framework.cty import CtyError, parse_type
from agentceiling.tfprovider.framework.types import Attribute, Block, Schema

_NESTING = {
    "single": pb.Schema.NestedBlock.SINGLE,
    "list": pb.Schema.NestedBlock.LIST,
    "set": pb.Schema.NestedBlock.SET,
}
_BLOCK_NAME = re.compile(r"^[a-z0-9_]+$")


def type_json(t: Any) -> bytes:
    """The JSON bytes of a cty type expression, compact and with sorted object keys."""
    return json.dumps(t, separators=(",", ":"), sort_keys=True).encode()


def attribute_to_proto(a: Attribute) -> pb.Schema.Attribute:
    return pb.Schema.Attribute(
        name=a.name,
        type=type_json(a.type),
        description=a.description,
        description_kind=pb.MARKDOWN if a.description else pb.PLAIN,
        required=a.required,
        optional=a.optional,
        computed=a.computed,
        sensitive=a.sensitive,
        deprecated=a.deprecated,
    )


def block_to_proto(
    attributes: tuple[Attribute, ...], blocks: tuple[Block, ...], description: str
) -> pb.Schema.Block:
    return pb.Schema.Block(
        attributes=[attribute_to_proto(a) for a in attributes],
        block_types=[
            pb.Schema.NestedBlock(
                type_name=b.name,
                block=block_to_proto(b.attributes, (), b.description),
                nesting=_NESTING[b.nesting],
                min_items=b.min_items,
                max_items=b.max_items,
            )
            for b in blocks
        ],
        description=description,
        description_kind=pb.MARKDOWN if description else pb.PLAIN,
    )


def schema_to_proto(schema: Schema) -> pb.Schema:
    return pb.Schema(
        version=schema.version,
        block=block_to_proto(schema.attributes, schema.blocks, schema.description),
    )


def check_schema(schema: Schema, where: str) -> list[str]:
    """Problems terraform would reject (``InternalValidate``) or that would make our planning
    rules misbehave. ``where`` names the schema in the messages."""
    problems: list[str] = []
    seen: set[str] = set()
    for a in schema.attributes:
        problems += _check_attribute(a, where)
        if a.name in seen:
            problems.append(f"{where}: duplicate name {a.name!r}")
        seen.add(a.name)
    for b in schema.blocks:
        if b.name in seen:
            problems.append(f"{where}: duplicate name {b.name!r}")
        seen.add(b.name)
        if not _BLOCK_NAME.match(b.name):
            problems.append(f"{where}: block name {b.name!r} must match [a-z0-9_]+")
        if b.nesting not in _NESTING:
            problems.append(f"{where}: block {b.name!r}: nesting must be one of {sorted(_NESTING)}")
        if b.nesting == "single" and (b.min_items > 1 or b.max_items > 1 or b.min_items != b.max_items):
            problems.append(f"{where}: single block {b.name!r}: min_items/max_items must be 0 or 1 and equal")
        if b.min_items < 0 or b.max_items < 0 or (b.max_items and b.min_items > b.max_items):
            problems.append(f"{where}: block {b.name!r}: invalid min_items/max_items")
        inner: set[str] = set()
        for a in b.attributes:
            problems += _check_attribute(a, f"{where}.{b.name}")
            if a.name in inner:
                problems.append(f"{where}.{b.name}: duplicate name {a.name!r}")
            inner.add(a.name)
    if schema.version < 0:
        problems.append(f"{where}: schema version must be >= 0")
    return problems


def _check_attribute(a: Attribute, where: str) -> list[str]:
    out = []
    name = f"{where}.{a.name}"
    if not (a.required or a.optional or a.computed):
        out.append(f"{name}: one of required, optional, computed must be set")
    if a.required and a.optional:
        out.append(f"{name}: cannot be both required and optional")
    if a.required and a.computed:
        out.append(f"{name}: cannot be both required and computed")
    if a.default is not None and not (a.optional and a.computed):
        out.append(f"{name}: a default needs optional=True and computed=True")
    if a.use_state_for_unknown and not a.computed:
        out.append(f"{name}: use_state_for_unknown needs computed=True")
    try:
        t = parse_type(a.type)
        if a.default is not None:
            t.to_wire(a.default, (a.name,))
    except CtyError as e:
        out.append(f"{name}: {e}")
    return out
