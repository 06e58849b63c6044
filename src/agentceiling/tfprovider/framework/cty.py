"""cty values on the wire: the msgpack and JSON encodings of ``DynamicValue``, driven by types.

Python side (see ``types.py``): ``None`` is null, ``UNKNOWN`` is unknown, ``str``/``bool``, numbers
are ``int`` when integral and ``float`` otherwise, ``list`` for lists, sets and tuples, ``dict`` for
maps and objects. A value of the ``dynamic`` pseudo-type decodes to a :class:`TypedValue`, which
re-encodes exactly; a plain Python value in a dynamic position is encoded with an inferred type.

Wire side (terraform ``docs/plugin-protocol/object-wire-format.md``, go-cty ``cty/msgpack``):

* null is msgpack nil; unknown is extension type 0 with one zero byte (``d4 00 00``). Terraform
  also sends *refined* unknowns (extension 12); every extension decodes as ``UNKNOWN``.
* numbers arrive as int, float64 or a decimal string; we send int64/uint64 ints, float64, or a
  decimal string for integers out of range.
* an object carries every attribute: missing ones are filled with null (an absent nested-block
  collection with ``[]``), names outside the type are an error.
* a set is an array in any order; duplicates are removed when encoding (cty would collapse them
  and the element count would change).
* dynamic is ``[type JSON bytes, value]``, or bare nil / bare unknown.

Types are the JSON form used in schemas (``"string"``, ``["list", "string"]``, ...); they are
compiled once into :class:`CtyType` objects (cached) that do the conversion.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import msgpack

from agentceiling.tfprovider.framework.types import UNKNOWN, Block, CtyType, Schema

__all__ = [
    "UNKNOWN_EXT",
    "CompiledType",
    "CtyError",
    "TypedValue",
    "decode_json",
    "decode_msgpack",
    "encode_json",
    "encode_msgpack",
    "equal",
    "format_path",
    "is_wholly_known",
    "parse_type",
    "schema_type",
]

UNKNOWN_EXT = msgpack.ExtType(0, b"\x00")
_INT64_MIN = -(1 << 63)
_UINT64_MAX = (1 << 64) - 1


class CtyError(ValueError):
    """A value does not conform to its type. ``path`` locates it (attribute names, indexes, keys)."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        if not self.path:
            return self.message
        return f"{self.message} (at {format_path(self.path)})"


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif out:
            out += f".{step}"
        else:
            out = step
    return out or "<root>"


@dataclass(frozen=True)
class TypedValue:
    """A value of the ``dynamic`` pseudo-type together with its concrete cty type (JSON form)."""

    type: CtyType
    value: Any


# ---------------------------------------------------------------------------------------------
# Compiled types


class _Mark:
    """An unknown as a value equal only to itself, so that :func:`same` can reuse ``equal``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unknown>"


_MARK = _Mark()


def _unknown_in(a: Any, b: Any) -> bool:
    """Whether either side is an unknown: UNKNOWN (equal to nothing) or :func:`same`'s mark (equal
    only to a mark). Every ``equal`` asks this first, at every depth: a whole collection can be
    unknown, not only its elements."""
    return a is UNKNOWN or b is UNKNOWN or a is _MARK or b is _MARK


#: Set keys of unknown elements: each unknown is its own element (two unknown policies in a set
#: may turn out different), so no two may share a key.
_UNKNOWN_KEYS = itertools.count()


class CompiledType:
    """One cty type. ``to_wire``/``from_wire`` convert between Python values and the structures
    msgpack packs/unpacks; ``to_json``/``from_json`` do the same for the JSON encoding."""

    json_type: CtyType

    def to_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        raise NotImplementedError

    def from_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        raise NotImplementedError

    def to_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        raise NotImplementedError

    def from_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        raise NotImplementedError

    def equal(self, a: Any, b: Any) -> bool:
        """cty equality for known values; an unknown is equal to nothing (not even UNKNOWN)."""
        if _unknown_in(a, b):
            return a is _MARK and b is _MARK
        if a is None or b is None:
            return a is None and b is None
        return bool(a == b)

    def key(self, v: Any) -> Any:
        """A hashable form of a value, equal for equal values (used for sets)."""
        if v is UNKNOWN:
            return ("?", next(_UNKNOWN_KEYS))
        return v

    def __repr__(self) -> str:
        return f"CtyType({json.dumps(self.json_type)})"


class _String(CompiledType):
    json_type = "string"

    def to_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None:
            return None
        if v is UNKNOWN:
            return UNKNOWN_EXT
        if isinstance(v, str):
            return v
        raise CtyError(f"string required, got {type(v).__name__}", path)

    def from_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None or v is UNKNOWN or isinstance(v, str):
            return v
        if isinstance(v, bytes):
            return v.decode("utf-8")
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return _number_text(v)
        raise CtyError(f"string required, got {type(v).__name__}", path)

    def to_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        return self.to_wire(_no_unknown(v, path), path)

    def from_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        return self.from_wire(v, path)


def _number_text(v: int | float) -> str:
    if isinstance(v, float) and v.is_integer() and math.isfinite(v):
        return str(int(v))
    return repr(v) if isinstance(v, float) else str(v)


def _number_from_text(s: str, path: tuple[str | int, ...]) -> int | float:
    try:
        d = Decimal(s.strip())
    except InvalidOperation:
        raise CtyError(f"a number is required, got {s!r}", path) from None
    if d.is_nan():
        raise CtyError("NaN is not a valid number", path)
    if d.is_infinite():
        return float(d)
    if d == d.to_integral_value():
        return int(d)
    return float(d)


class _Number(CompiledType):
    json_type = "number"

    def to_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None:
            return None
        if v is UNKNOWN:
            return UNKNOWN_EXT
        if isinstance(v, bool):
            raise CtyError("number required, got bool", path)
        if isinstance(v, int):
            return v if _INT64_MIN <= v <= _UINT64_MAX else str(v)
        if isinstance(v, float):
            if math.isnan(v):
                raise CtyError("NaN is not a valid number", path)
            if v.is_integer() and _INT64_MIN <= v <= _UINT64_MAX:
                return int(v)
            return v
        if isinstance(v, Decimal):
            if not v.is_finite():
                return self.to_wire(float(v), path)
            return self.to_wire(int(v), path) if v == v.to_integral_value() else str(v)
        if isinstance(v, str):
            return self.to_wire(_number_from_text(v, path), path)
        raise CtyError(f"number required, got {type(v).__name__}", path)

    def from_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None or v is UNKNOWN:
            return v
        if isinstance(v, bool):
            raise CtyError("number required, got bool", path)
        if isinstance(v, int):
            return v
        if isinstance(v, float):
            return int(v) if v.is_integer() else v
        if isinstance(v, str | bytes):
            return _number_from_text(v.decode() if isinstance(v, bytes) else v, path)
        raise CtyError(f"number required, got {type(v).__name__}", path)

    def to_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        w = self.to_wire(_no_unknown(v, path), path)
        if isinstance(w, str):  # big integer: JSON numbers have arbitrary precision
            return int(w)
        if isinstance(w, float) and math.isinf(w):
            raise CtyError("an infinite number cannot be encoded as JSON", path)
        return w

    def from_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        return self.from_wire(v, path)

    def equal(self, a: Any, b: Any) -> bool:
        if _unknown_in(a, b):
            return a is _MARK and b is _MARK
        if a is None or b is None:
            return a is None and b is None
        return bool(a == b)


class _Bool(CompiledType):
    json_type = "bool"

    def to_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None:
            return None
        if v is UNKNOWN:
            return UNKNOWN_EXT
        if isinstance(v, bool):
            return v
        raise CtyError(f"bool required, got {type(v).__name__}", path)

    def from_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None or v is UNKNOWN or isinstance(v, bool):
            return v
        if isinstance(v, str) and v in ("true", "false"):
            return v == "true"
        raise CtyError(f"bool required, got {type(v).__name__}", path)

    def to_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        return self.to_wire(_no_unknown(v, path), path)

    def from_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        return self.from_wire(v, path)


def _no_unknown(v: Any, path: tuple[str | int, ...]) -> Any:
    if v is UNKNOWN:
        raise CtyError("an unknown value cannot be encoded as JSON", path)
    return v


class _Sequence(CompiledType):
    """list(T) or set(T). ``block`` marks a LIST/SET nested block: null is sent as ``[]``."""

    kind = "list"

    def __init__(self, elem: CompiledType, block: bool = False) -> None:
        self.elem = elem
        self.block = block
        self.json_type = [self.kind, elem.json_type]

    def _items(self, v: Any, path: tuple[str | int, ...]) -> list[Any]:
        if isinstance(v, list | tuple):
            return list(v)
        if self.kind == "set" and isinstance(v, set | frozenset):
            return list(v)
        raise CtyError(f"{self.kind} required, got {type(v).__name__}", path)

    def _prepare(self, items: list[Any]) -> list[Any]:
        return items

    def to_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None:
            return [] if self.block else None
        if v is UNKNOWN:
            return UNKNOWN_EXT
        items = self._prepare(self._items(v, path))
        return [self.elem.to_wire(x, (*path, i)) for i, x in enumerate(items)]

    def from_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is UNKNOWN:
            return v
        if v is None:
            return [] if self.block else None
        if not isinstance(v, list):
            raise CtyError(f"{self.kind} required, got {type(v).__name__}", path)
        return [self.elem.from_wire(x, (*path, i)) for i, x in enumerate(v)]

    def to_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None:
            return [] if self.block else None
        items = self._prepare(self._items(_no_unknown(v, path), path))
        return [self.elem.to_json(x, (*path, i)) for i, x in enumerate(items)]

    def from_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None:
            return [] if self.block else None
        if not isinstance(v, list):
            raise CtyError(f"{self.kind} required, got {type(v).__name__}", path)
        return [self.elem.from_json(x, (*path, i)) for i, x in enumerate(v)]

    def equal(self, a: Any, b: Any) -> bool:
        if _unknown_in(a, b):
            return a is _MARK and b is _MARK
        if self.block:
            a, b = a or [], b or []
        if a is None or b is None:
            return a is None and b is None
        if len(a) != len(b):
            return False
        return all(self.elem.equal(x, y) for x, y in zip(a, b, strict=True))

    def key(self, v: Any) -> Any:
        if v is UNKNOWN or v is _MARK:
            return super().key(v)
        if v is None:
            return () if self.block else None
        return tuple(self.elem.key(x) for x in v)


class _List(_Sequence):
    kind = "list"


class _Set(_Sequence):
    kind = "set"

    def _prepare(self, items: list[Any]) -> list[Any]:
        seen: set[Any] = set()
        out = []
        for x in items:
            k = self.elem.key(x)
            if k in seen:
                continue
            seen.add(k)
            out.append(x)
        return out

    def equal(self, a: Any, b: Any) -> bool:
        if _unknown_in(a, b):
            return a is _MARK and b is _MARK
        if self.block:
            a, b = a or [], b or []
        if a is None or b is None:
            return a is None and b is None
        if any(x is UNKNOWN for x in a) or any(x is UNKNOWN for x in b):
            return False
        return {self.elem.key(x) for x in a} == {self.elem.key(x) for x in b}

    def key(self, v: Any) -> Any:
        if v is UNKNOWN or v is _MARK:
            return super().key(v)
        if v is None:
            return frozenset() if self.block else None
        return frozenset(self.elem.key(x) for x in v)


class _Map(CompiledType):
    def __init__(self, elem: CompiledType) -> None:
        self.elem = elem
        self.json_type = ["map", elem.json_type]

    def _check(self, v: Any, path: tuple[str | int, ...]) -> Mapping[str, Any]:
        if not isinstance(v, Mapping):
            raise CtyError(f"map required, got {type(v).__name__}", path)
        for k in v:
            if not isinstance(k, str):
                raise CtyError(f"map keys must be strings, got {type(k).__name__}", path)
        return v

    def to_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None:
            return None
        if v is UNKNOWN:
            return UNKNOWN_EXT
        return {k: self.elem.to_wire(x, (*path, k)) for k, x in sorted(self._check(v, path).items())}

    def from_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None or v is UNKNOWN:
            return v
        return {str(k): self.elem.from_wire(x, (*path, str(k))) for k, x in self._check(v, path).items()}

    def to_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None:
            return None
        return {
            k: self.elem.to_json(x, (*path, k)) for k, x in self._check(_no_unknown(v, path), path).items()
        }

    def from_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None:
            return None
        return {k: self.elem.from_json(x, (*path, k)) for k, x in self._check(v, path).items()}

    def equal(self, a: Any, b: Any) -> bool:
        if _unknown_in(a, b):
            return a is _MARK and b is _MARK
        if a is None or b is None:
            return a is None and b is None
        if a.keys() != b.keys():
            return False
        return all(self.elem.equal(a[k], b[k]) for k in a)

    def key(self, v: Any) -> Any:
        if v is UNKNOWN or v is _MARK or v is None:
            return super().key(v)
        return ("map", tuple(sorted((k, self.elem.key(x)) for k, x in v.items())))


class _Object(CompiledType):
    """object({...}). For a schema's implied type, nested-block attributes are block sequences
    (``[]`` for absence) and SINGLE blocks are plain nullable objects."""

    def __init__(self, attrs: dict[str, CompiledType]) -> None:
        self.attrs = attrs
        self.names = sorted(attrs)
        self.json_type = ["object", {k: attrs[k].json_type for k in self.names}]

    def _check(self, v: Any, path: tuple[str | int, ...]) -> Mapping[str, Any]:
        if not isinstance(v, Mapping):
            raise CtyError(f"object required, got {type(v).__name__}", path)
        extra = [k for k in v if k not in self.attrs]
        if extra:
            raise CtyError(f"unsupported attribute {sorted(map(str, extra))[0]!r}", path)
        return v

    def to_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None:
            return None
        if v is UNKNOWN:
            return UNKNOWN_EXT
        m = self._check(v, path)
        return {k: self.attrs[k].to_wire(m.get(k), (*path, k)) for k in self.names}

    def from_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None or v is UNKNOWN:
            return v
        if not isinstance(v, Mapping):
            raise CtyError(f"object required, got {type(v).__name__}", path)
        return {k: self.attrs[k].from_wire(v.get(k), (*path, k)) for k in self.names}

    def to_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None:
            return None
        m = self._check(_no_unknown(v, path), path)
        return {k: self.attrs[k].to_json(m.get(k), (*path, k)) for k in self.names}

    def from_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        """Lenient, for stored state: attributes not in the type are dropped, missing ones null."""
        if v is None:
            return None
        if not isinstance(v, Mapping):
            raise CtyError(f"object required, got {type(v).__name__}", path)
        return {k: self.attrs[k].from_json(v.get(k), (*path, k)) for k in self.names}

    def equal(self, a: Any, b: Any) -> bool:
        if _unknown_in(a, b):
            return a is _MARK and b is _MARK
        if a is None or b is None:
            return a is None and b is None
        return all(self.attrs[k].equal(a.get(k), b.get(k)) for k in self.names)

    def key(self, v: Any) -> Any:
        if v is UNKNOWN or v is _MARK or v is None:
            return super().key(v)
        return ("obj", tuple(self.attrs[k].key(v.get(k)) for k in self.names))


class _Tuple(CompiledType):
    def __init__(self, elems: list[CompiledType]) -> None:
        self.elems = elems
        self.json_type = ["tuple", [e.json_type for e in elems]]

    def _check(self, v: Any, path: tuple[str | int, ...]) -> list[Any]:
        if not isinstance(v, list | tuple):
            raise CtyError(f"tuple required, got {type(v).__name__}", path)
        if len(v) != len(self.elems):
            raise CtyError(f"tuple of {len(self.elems)} elements required, got {len(v)}", path)
        return list(v)

    def to_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None:
            return None
        if v is UNKNOWN:
            return UNKNOWN_EXT
        return [
            t.to_wire(x, (*path, i))
            for i, (t, x) in enumerate(zip(self.elems, self._check(v, path), strict=True))
        ]

    def from_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None or v is UNKNOWN:
            return v
        return [
            t.from_wire(x, (*path, i))
            for i, (t, x) in enumerate(zip(self.elems, self._check(v, path), strict=True))
        ]

    def to_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None:
            return None
        items = self._check(_no_unknown(v, path), path)
        return [t.to_json(x, (*path, i)) for i, (t, x) in enumerate(zip(self.elems, items, strict=True))]

    def from_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None:
            return None
        return [
            t.from_json(x, (*path, i))
            for i, (t, x) in enumerate(zip(self.elems, self._check(v, path), strict=True))
        ]

    def equal(self, a: Any, b: Any) -> bool:
        if _unknown_in(a, b):
            return a is _MARK and b is _MARK
        if a is None or b is None:
            return a is None and b is None
        return all(t.equal(x, y) for t, x, y in zip(self.elems, a, b, strict=True))

    def key(self, v: Any) -> Any:
        if v is UNKNOWN or v is _MARK or v is None:
            return super().key(v)
        return ("tuple", tuple(t.key(x) for t, x in zip(self.elems, v, strict=True)))


def infer_type(v: Any) -> CtyType:
    """The cty type of a plain Python value (for the dynamic pseudo-type)."""
    if isinstance(v, TypedValue):
        return v.type
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float | Decimal):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list | tuple):
        return ["tuple", [infer_type(x) for x in v]]
    if isinstance(v, Mapping):
        return ["object", {str(k): infer_type(x) for k, x in v.items()}]
    if v is None or v is UNKNOWN:
        return "dynamic"
    raise CtyError(f"cannot infer a cty type for {type(v).__name__}")


class _Dynamic(CompiledType):
    json_type = "dynamic"

    def _typed(self, v: Any) -> tuple[CompiledType, Any]:
        if isinstance(v, TypedValue):
            return parse_type(v.type), v.value
        return parse_type(infer_type(v)), v

    def to_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None:
            return None
        if v is UNKNOWN:
            return UNKNOWN_EXT
        t, inner = self._typed(v)
        if isinstance(t, _Dynamic):
            return t.to_wire(inner, path)
        return [_type_bytes(t.json_type), t.to_wire(inner, path)]

    def from_wire(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None or v is UNKNOWN:
            return v
        if not isinstance(v, list) or len(v) != 2 or not isinstance(v[0], bytes | str):
            raise CtyError("dynamic value must be [type, value]", path)
        raw = v[0].encode() if isinstance(v[0], str) else v[0]
        type_json = json.loads(raw)
        return TypedValue(type_json, parse_type(type_json).from_wire(v[1], path))

    def to_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None:
            return None
        t, inner = self._typed(_no_unknown(v, path))
        return {"value": t.to_json(inner, path), "type": t.json_type}

    def from_json(self, v: Any, path: tuple[str | int, ...]) -> Any:
        if v is None:
            return None
        if not isinstance(v, Mapping) or "type" not in v:
            raise CtyError('dynamic value must be {"value": ..., "type": ...}', path)
        return TypedValue(v["type"], parse_type(v["type"]).from_json(v.get("value"), path))

    def equal(self, a: Any, b: Any) -> bool:
        if _unknown_in(a, b):
            return a is _MARK and b is _MARK
        if a is None or b is None:
            return a is None and b is None
        ta, va = self._typed(a)
        tb, vb = self._typed(b)
        return ta.json_type == tb.json_type and ta.equal(va, vb)

    def key(self, v: Any) -> Any:
        if v is UNKNOWN or v is _MARK or v is None:
            return super().key(v)
        t, inner = self._typed(v)
        return ("dyn", _type_bytes(t.json_type), t.key(inner))


def _type_bytes(t: CtyType) -> bytes:
    return json.dumps(t, separators=(",", ":"), sort_keys=True).encode()


_PRIMITIVES: dict[str, CompiledType] = {
    "string": _String(),
    "number": _Number(),
    "bool": _Bool(),
    "dynamic": _Dynamic(),
}
_TYPE_CACHE: dict[bytes, CompiledType] = {}


def parse_type(t: CtyType) -> CompiledType:
    """Compile a cty type in JSON form (``"string"``, ``["set", "string"]``, ...)."""
    if isinstance(t, CompiledType):
        return t
    if isinstance(t, str):
        try:
            return _PRIMITIVES[t]
        except KeyError:
            raise CtyError(f"unknown cty type {t!r}") from None
    key = _type_bytes(t)
    cached = _TYPE_CACHE.get(key)
    if cached is not None:
        return cached
    compiled = _compile(t)
    _TYPE_CACHE[key] = compiled
    return compiled


def _compile(t: CtyType) -> CompiledType:
    if not isinstance(t, list | tuple) or not t:
        raise CtyError(f"invalid cty type {t!r}")
    kind = t[0]
    if kind in ("list", "set", "map") and len(t) == 2:
        elem = parse_type(t[1])
        return _List(elem) if kind == "list" else _Set(elem) if kind == "set" else _Map(elem)
    if kind == "object" and len(t) in (2, 3) and isinstance(t[1], Mapping):
        return _Object({str(k): parse_type(v) for k, v in t[1].items()})
    if kind == "tuple" and len(t) == 2 and isinstance(t[1], list | tuple):
        return _Tuple([parse_type(x) for x in t[1]])
    raise CtyError(f"invalid cty type {t!r}")


_SCHEMA_CACHE: dict[int, tuple[Schema | Block, _Object]] = {}


def schema_type(schema: Schema | Block) -> _Object:
    """The object type implied by a schema (or a nested block): every attribute, plus one
    attribute per nested block (LIST/SET: a collection, ``[]`` when absent; SINGLE: an object or
    null). Cached per schema object."""
    hit = _SCHEMA_CACHE.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    attrs: dict[str, CompiledType] = {a.name: parse_type(a.type) for a in schema.attributes}
    for b in schema.blocks if isinstance(schema, Schema) else ():
        attrs[b.name] = block_type(b)
    compiled = _Object(attrs)
    _SCHEMA_CACHE[id(schema)] = (schema, compiled)
    return compiled


def block_type(block: Block) -> CompiledType:
    elem = schema_type(block)
    if block.nesting == "single":
        return elem
    if block.nesting == "set":
        return _Set(elem, block=True)
    if block.nesting == "list":
        return _List(elem, block=True)
    raise CtyError(f"block {block.name!r}: unsupported nesting {block.nesting!r}")


# ---------------------------------------------------------------------------------------------
# Entry points


def _ext_hook(code: int, data: bytes) -> Any:
    return UNKNOWN  # ext 0 = unknown, ext 12 = refined unknown; refinements are dropped


def encode_msgpack(t: CtyType | CompiledType, value: Any) -> bytes:
    """Encode a Python value of type ``t`` (a compiled type or its JSON form)."""
    packed: bytes = msgpack.packb(parse_type(t).to_wire(value, ()), use_bin_type=True)
    return packed


def decode_msgpack(t: CtyType | CompiledType, data: bytes) -> Any:
    """Decode msgpack bytes; empty bytes decode as null (terraform's convention)."""
    if not data:
        return None
    raw = msgpack.unpackb(data, raw=False, ext_hook=_ext_hook, strict_map_key=False)
    return parse_type(t).from_wire(raw, ())


def encode_json(t: CtyType | CompiledType, value: Any) -> bytes:
    return json.dumps(parse_type(t).to_json(value, ()), separators=(",", ":")).encode()


def decode_json(t: CtyType | CompiledType, data: bytes | str) -> Any:
    """Decode the JSON encoding. Objects are lenient: unknown attributes are dropped and missing
    ones become null, as stored state needs (UpgradeResourceState)."""
    if not data:
        return None
    return parse_type(t).from_json(json.loads(data), ())


def is_wholly_known(v: Any) -> bool:
    if v is UNKNOWN:
        return False
    if isinstance(v, TypedValue):
        return is_wholly_known(v.value)
    if isinstance(v, Mapping):
        return all(is_wholly_known(x) for x in v.values())
    if isinstance(v, list | tuple):
        return all(is_wholly_known(x) for x in v)
    return True


def _marked(v: Any) -> Any:
    if v is UNKNOWN:
        return _MARK
    if isinstance(v, list):
        return [_marked(x) for x in v]
    if isinstance(v, dict):
        return {k: _marked(x) for k, x in v.items()}
    return v


def same(t: CtyType | CompiledType, a: Any, b: Any) -> bool:
    """Equal as far as known: like :func:`equal`, but an unknown equals an unknown in the same
    place (``[x, UNKNOWN]`` is the same as ``[x, UNKNOWN]``). What terraform requires between a
    configuration value and its planned value."""
    return parse_type(t).equal(_marked(a), _marked(b))


def equal(t: CtyType | CompiledType, a: Any, b: Any) -> bool:
    """cty equality of two values of type ``t``: sets unordered, numbers by value; any unknown
    makes the result False."""
    return parse_type(t).equal(a, b)
