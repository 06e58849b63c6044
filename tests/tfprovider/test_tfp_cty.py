"""The cty codec: msgpack/JSON round trips for every type, null vs empty, unknowns (plain and
refined), unordered sets, whole objects, numbers, the dynamic pseudo-type."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentceiling.tfprovider.framework import cty
from agentceiling.tfprovider.framework.cty import TypedValue, parse_type, schema_type
from agentceiling.tfprovider.framework.types import (
    NUMBER,
    STRING,
    UNKNOWN,
    Attribute,
    Block,
    Schema,
    list_of,
    map_of,
    set_of,
)

# ---------------------------------------------------------------------------------------------
# Strategies: a random cty type, then a random value of it (nulls and unknowns anywhere).

_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=6)
primitive_types = st.sampled_from(["string", "number", "bool"])
cty_types = st.recursive(
    primitive_types,
    lambda inner: st.one_of(
        st.tuples(st.sampled_from(["list", "set", "map"]), inner).map(list),
        st.dictionaries(_names, inner, min_size=1, max_size=4).map(lambda d: ["object", d]),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: ["tuple", xs]),
    ),
    max_leaves=8,
)

_numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.integers(min_value=2**64, max_value=2**80),  # sent as a decimal string
    st.floats(allow_nan=False, allow_infinity=False, width=64).filter(lambda f: not f.is_integer()),
)


def values_of(t: Any, *, unknowns: bool = True, nulls: bool = True) -> st.SearchStrategy[Any]:
    def wrap(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        extra = []
        if nulls:
            extra.append(st.none())
        if unknowns:
            extra.append(st.just(UNKNOWN))
        return st.one_of(*extra, s) if extra else s

    if t == "string":
        return wrap(st.text(max_size=8))
    if t == "number":
        return wrap(_numbers)
    if t == "bool":
        return wrap(st.booleans())
    kind = t[0]
    if kind == "list":
        return wrap(st.lists(values_of(t[1], unknowns=unknowns, nulls=nulls), max_size=3))
    if kind == "set":
        # set elements: known and non-null (cty allows both, but terraform config never produces them)
        return wrap(st.lists(values_of(t[1], unknowns=False, nulls=False), max_size=3))
    if kind == "map":
        return wrap(st.dictionaries(_names, values_of(t[1], unknowns=unknowns, nulls=nulls), max_size=3))
    if kind == "object":
        return wrap(
            st.fixed_dictionaries({k: values_of(v, unknowns=unknowns, nulls=nulls) for k, v in t[1].items()})
        )
    if kind == "tuple":
        return wrap(st.tuples(*(values_of(x, unknowns=unknowns, nulls=nulls) for x in t[1])).map(list))
    raise AssertionError(t)


def same(t: Any, a: Any, b: Any) -> bool:
    """Equality that treats UNKNOWN as equal to UNKNOWN, sets as unordered, numbers by value."""
    if a is UNKNOWN or b is UNKNOWN:
        return a is b
    if a is None or b is None:
        return a is b
    if t in ("string", "bool"):
        return bool(a == b) and type(a) is type(b)
    if t == "number":
        return bool(a == b)
    kind = t[0]
    if kind == "list":
        return len(a) == len(b) and all(same(t[1], x, y) for x, y in zip(a, b, strict=True))
    if kind == "set":
        elem = parse_type(t[1])
        return {elem.key(x) for x in a} == {elem.key(x) for x in b}
    if kind == "map":
        return a.keys() == b.keys() and all(same(t[1], a[k], b[k]) for k in a)
    if kind == "object":
        return all(same(v, a.get(k), b.get(k)) for k, v in t[1].items())
    if kind == "tuple":
        return all(same(x, p, q) for x, p, q in zip(t[1], a, b, strict=True))
    raise AssertionError(t)


@st.composite
def typed_values(draw: st.DrawFn, unknowns: bool = True) -> tuple[Any, Any]:
    t = draw(cty_types)
    return t, draw(values_of(t, unknowns=unknowns))


# ---------------------------------------------------------------------------------------------
# Property tests


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed_values())
def test_msgpack_round_trip_every_type(tv: tuple[Any, Any]) -> None:
    t, v = tv
    data = cty.encode_msgpack(t, v)
    back = cty.decode_msgpack(t, data)
    assert same(t, v, back), (t, v, back)
    # re-encoding what we decoded gives the same bytes (what terraform echoes, we send again)
    again = cty.encode_msgpack(t, back)
    assert cty.encode_msgpack(t, cty.decode_msgpack(t, again)) == again


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed_values(unknowns=False))
def test_json_round_trip_every_known_type(tv: tuple[Any, Any]) -> None:
    t, v = tv
    back = cty.decode_json(t, cty.encode_json(t, v))
    assert same(t, v, back), (t, v, back)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=4), max_size=6), st.randoms())
def test_sets_are_unordered(items: list[str], rnd: Any) -> None:
    t = set_of(STRING)
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert parse_type(t).equal(items, shuffled)
    a = cty.decode_msgpack(t, cty.encode_msgpack(t, items))
    b = cty.decode_msgpack(t, cty.encode_msgpack(t, shuffled))
    assert sorted(a) == sorted(b) == sorted(set(items))


def test_set_duplicates_collapse_when_encoding() -> None:
    assert msgpack.unpackb(cty.encode_msgpack(set_of(STRING), ["a", "b", "a"])) == ["a", "b"]
    assert msgpack.unpackb(cty.encode_msgpack(set_of(NUMBER), [1, 1.0, 2])) == [1, 2]


# ---------------------------------------------------------------------------------------------
# Exact wire forms


def test_unknown_is_ext0_and_null_is_nil() -> None:
    assert cty.encode_msgpack(STRING, UNKNOWN) == b"\xd4\x00\x00"
    assert cty.encode_msgpack(STRING, None) == b"\xc0"
    assert cty.decode_msgpack(STRING, b"\xd4\x00\x00") is UNKNOWN
    assert cty.decode_msgpack(STRING, b"") is None  # an empty DynamicValue is null


def test_refined_unknown_ext12_decodes_as_unknown() -> None:
    # terraform 1.11 and 1.15 send e.g. "not null, string prefix 'beta-'" as extension 12
    refinements = msgpack.packb({1: False, 2: "beta-"})
    data = msgpack.packb(msgpack.ExtType(12, refinements))
    assert cty.decode_msgpack(STRING, data) is UNKNOWN
    obj = msgpack.packb(
        {"name": msgpack.ExtType(12, refinements), "n": msgpack.ExtType(12, msgpack.packb({3: [1, True]}))}
    )
    t = ["object", {"name": "string", "n": "number"}]
    assert cty.decode_msgpack(t, obj) == {"name": UNKNOWN, "n": UNKNOWN}
    # planning it back as a plain unknown
    assert cty.encode_msgpack(STRING, cty.decode_msgpack(STRING, data)) == b"\xd4\x00\x00"


def test_null_is_distinct_from_empty() -> None:
    for t, empty in ((map_of(STRING), {}), (list_of(STRING), []), (set_of(STRING), []), (STRING, "")):
        assert cty.decode_msgpack(t, cty.encode_msgpack(t, None)) is None
        assert cty.decode_msgpack(t, cty.encode_msgpack(t, empty)) == empty
        assert cty.encode_msgpack(t, None) != cty.encode_msgpack(t, empty)
        assert cty.decode_json(t, cty.encode_json(t, empty)) == empty


def test_numbers() -> None:
    # terraform sends int, float64, or a decimal string
    assert cty.decode_msgpack(NUMBER, msgpack.packb(5)) == 5
    assert cty.decode_msgpack(NUMBER, msgpack.packb(5.0)) == 5 and isinstance(
        cty.decode_msgpack(NUMBER, msgpack.packb(5.0)), int
    )
    assert cty.decode_msgpack(NUMBER, msgpack.packb(1.5)) == 1.5
    assert cty.decode_msgpack(NUMBER, msgpack.packb("0.1")) == 0.1
    assert cty.decode_msgpack(NUMBER, msgpack.packb("12345678901234567890123")) == 12345678901234567890123
    # we send integral values as ints, big ones as decimal strings, others as float64
    assert msgpack.unpackb(cty.encode_msgpack(NUMBER, 3.0)) == 3
    assert msgpack.unpackb(cty.encode_msgpack(NUMBER, 2**70)) == str(2**70)
    assert msgpack.unpackb(cty.encode_msgpack(NUMBER, 2**64 - 1)) == 2**64 - 1
    assert cty.encode_msgpack(NUMBER, 0.25)[0] == 0xCB  # float64, never float32
    assert msgpack.unpackb(cty.encode_msgpack(NUMBER, Decimal("0.1"))) == "0.1"
    assert math.isinf(cty.decode_msgpack(NUMBER, cty.encode_msgpack(NUMBER, math.inf)))
    with pytest.raises(cty.CtyError):
        cty.encode_msgpack(NUMBER, math.nan)
    with pytest.raises(cty.CtyError):
        cty.encode_msgpack(NUMBER, True)  # a bool is not a number


def test_objects_carry_every_attribute() -> None:
    t = ["object", {"a": "string", "b": "number", "c": ["map", "string"]}]
    # missing attributes are sent as null: terraform rejects "an object with 3 attributes is required (2 given)"
    assert msgpack.unpackb(cty.encode_msgpack(t, {"a": "x"})) == {"a": "x", "b": None, "c": None}
    with pytest.raises(cty.CtyError, match="unsupported attribute 'zzz'"):
        cty.encode_msgpack(t, {"a": "x", "zzz": 1})
    # a zero-attribute-looking value is never sent as an empty map for a non-empty object type
    assert msgpack.unpackb(cty.encode_msgpack(t, {})) == {"a": None, "b": None, "c": None}


def test_type_errors_carry_a_path() -> None:
    t = ["object", {"rules": ["list", ["object", {"port": "number"}]]}]
    with pytest.raises(cty.CtyError) as err:
        cty.encode_msgpack(t, {"rules": [{"port": 1}, {"port": "x"}]})
    assert err.value.path == ("rules", 1, "port")
    assert "rules[1].port" in str(err.value)


def test_schema_type_blocks_are_empty_collections_not_null() -> None:
    schema = Schema(
        attributes=(Attribute("id", STRING, computed=True),),
        blocks=(
            Block("rule", (Attribute("port", NUMBER, required=True),)),
            Block("tag", (Attribute("k", STRING, required=True),), nesting="set"),
            Block("one", (Attribute("v", STRING, optional=True),), nesting="single"),
        ),
    )
    t = schema_type(schema)
    assert t is schema_type(schema)  # cached
    raw = msgpack.unpackb(cty.encode_msgpack(t, {"id": "x"}))
    assert raw == {"id": "x", "rule": [], "tag": [], "one": None}
    assert cty.decode_msgpack(t, msgpack.packb({"id": None, "rule": None, "tag": None, "one": None})) == {
        "id": None,
        "rule": [],
        "tag": [],
        "one": None,
    }
    assert t.json_type == [
        "object",
        {
            "id": "string",
            "one": ["object", {"v": "string"}],
            "rule": ["list", ["object", {"port": "number"}]],
            "tag": ["set", ["object", {"k": "string"}]],
        },
    ]


def test_json_objects_are_lenient_for_stored_state() -> None:
    t = ["object", {"a": "string", "b": "number"}]
    assert cty.decode_json(t, b'{"a": "x", "old": 1}') == {"a": "x", "b": None}


# ---------------------------------------------------------------------------------------------
# dynamic


def test_dynamic_wire_form_and_round_trip() -> None:
    data = msgpack.packb([b'["object",{"k":"number"}]', {"k": 1}])
    v = cty.decode_msgpack("dynamic", data)
    assert v == TypedValue(["object", {"k": "number"}], {"k": 1})
    assert msgpack.unpackb(cty.encode_msgpack("dynamic", v)) == [b'["object",{"k":"number"}]', {"k": 1}]
    # type JSON may arrive as str as well as bin
    assert cty.decode_msgpack("dynamic", msgpack.packb(['"string"', "x"])) == TypedValue("string", "x")
    # null with no type / wholly unknown are bare
    assert cty.encode_msgpack("dynamic", None) == b"\xc0"
    assert cty.encode_msgpack("dynamic", UNKNOWN) == b"\xd4\x00\x00"
    # an unknown of known type
    assert cty.decode_msgpack(
        "dynamic", msgpack.packb([b'"string"', msgpack.ExtType(0, b"\x00")])
    ) == TypedValue("string", UNKNOWN)
    # plain values get an inferred type
    assert msgpack.unpackb(cty.encode_msgpack("dynamic", {"a": [1, "x"]})) == [
        b'["object",{"a":["tuple",["number","string"]]}]',
        {"a": [1, "x"]},
    ]
    # JSON form, as in state files
    j = json.loads(cty.encode_json("dynamic", v))
    assert j == {"value": {"k": 1}, "type": ["object", {"k": "number"}]}
    assert cty.decode_json("dynamic", json.dumps(j)) == v


def test_invalid_types_are_rejected() -> None:
    for bad in ("strng", ["list"], ["object", []], ["nope", "string"], 5):
        with pytest.raises(cty.CtyError):
            parse_type(bad)


def test_same_matches_unknowns_in_the_same_place() -> None:
    from agentceiling.tfprovider.framework.cty import equal, same
    from agentceiling.tfprovider.framework.types import UNKNOWN

    for t, a in (
        (["list", "string"], ["x", UNKNOWN]),
        (["set", "string"], [UNKNOWN, "y"]),
        (["map", "string"], {"k": UNKNOWN, "j": "v"}),
        (["object", {"a": ["list", "number"]}], {"a": [1, UNKNOWN]}),
        ("string", UNKNOWN),
    ):
        assert same(t, a, a) and not equal(t, a, a)
    assert not same(["list", "string"], ["x", UNKNOWN], [UNKNOWN, "x"])
    assert not same(["list", "string"], ["x", UNKNOWN], ["x", "y"])
    assert not same(["map", "string"], {"k": UNKNOWN}, {"j": UNKNOWN})
    assert same(["set", "string"], ["a", "b"], ["b", "a"]) and same(["list", "number"], [1], [1.0])


def test_same_with_a_wholly_unknown_collection_at_any_depth() -> None:
    """A collection can be unknown as a whole (`metadata = terraform_data.x.output`), not only its
    elements: `same` compares it without treating the unknown as a list or a map."""
    from agentceiling.tfprovider.framework.cty import same

    for t, known in (
        (["list", "string"], ["x"]),
        (["set", "string"], ["x"]),
        (["map", "string"], {"k": "v"}),
        (["object", {"a": ["list", "number"]}], {"a": [1]}),
        (["list", ["map", "string"]], [{"k": "v"}]),
        (["set", ["list", "string"]], [["x"]]),
        (["map", ["set", "string"]], {"k": ["x"]}),
        (["tuple", [["list", "string"]]], [["x"]]),
    ):
        assert same(t, UNKNOWN, UNKNOWN), t
        assert not same(t, UNKNOWN, known) and not same(t, known, UNKNOWN), t
        assert not same(t, UNKNOWN, None) and not same(t, None, UNKNOWN), t
    # ... and nested: an element that is itself a wholly unknown collection
    assert same(["list", ["map", "string"]], [UNKNOWN, {"k": "v"}], [UNKNOWN, {"k": "v"}])
    assert not same(["list", ["map", "string"]], [UNKNOWN], [{"k": "v"}])
    assert same(["set", ["list", "string"]], [UNKNOWN, ["x"]], [["x"], UNKNOWN])
    assert same(["map", ["set", "string"]], {"k": UNKNOWN}, {"k": UNKNOWN})
    assert not same(["map", ["set", "string"]], {"k": UNKNOWN}, {"k": ["x"]})


def test_a_set_keeps_every_unknown_element() -> None:
    """`policies = [vault_policy.a.id, vault_policy.b.id]` on create: two unknowns, which may turn
    out different, so the set keeps both (one was dropped, and terraform refused the plan)."""
    t = parse_type(["set", "string"])
    for value in ([UNKNOWN, UNKNOWN], [UNKNOWN, "x", UNKNOWN], [UNKNOWN, UNKNOWN, UNKNOWN]):
        back = cty.decode_msgpack(t, cty.encode_msgpack(t, value))
        assert sorted(back, key=lambda v: v is UNKNOWN) == sorted(value, key=lambda v: v is UNKNOWN)
    assert len({t.key([UNKNOWN]), t.key([UNKNOWN])}) == 2
    assert len(cty.decode_msgpack(t, cty.encode_msgpack(t, ["x", "x", UNKNOWN, UNKNOWN]))) == 3
