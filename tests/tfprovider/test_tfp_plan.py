"""Planning rules (framework/plan.py) on the contract types, plus validators and schema checks."""

from __future__ import annotations

import copy
from typing import Any

from agentceiling.tfprovider.framework.plan import plan_resource_change, requires_replace, validate_config
from agentceiling.tfprovider.framework.schema import check_schema, schema_to_proto
from agentceiling.tfprovider.framework.types import (
    BOOL,
    NUMBER,
    STRING,
    UNKNOWN,
    Attribute,
    Block,
    Diagnostics,
    Resource,
    Schema,
    map_of,
    set_of,
)

SCHEMA = Schema(
    attributes=(
        Attribute("id", STRING, computed=True, use_state_for_unknown=True),
        Attribute("name", STRING, required=True),
        Attribute("kind", STRING, optional=True, requires_replace=True),
        Attribute("tags", map_of(STRING), optional=True),
        Attribute("labels", set_of(STRING), optional=True),
        Attribute("enabled", BOOL, optional=True, computed=True, default=True),
        Attribute("size", NUMBER, optional=True, computed=True),
        Attribute("revision", NUMBER, computed=True),
        Attribute(
            "email",
            STRING,
            optional=True,
            validators=(lambda v: None if "@" in v else f"{v!r} is not an email",),
        ),
    ),
    blocks=(
        Block(
            "rule",
            (
                Attribute("port", NUMBER, required=True, requires_replace=True),
                Attribute("proto", STRING, optional=True, computed=True, default="tcp"),
                Attribute("rid", STRING, computed=True),
            ),
        ),
        Block("key", (Attribute("pem", STRING, required=True),), nesting="set", requires_replace=True),
    ),
)


class Thing(Resource):
    type_name = "toy_thing"
    schema = SCHEMA

    def __init__(self) -> None:
        self.modify_calls: list[tuple[Any, Any, Any]] = []

    def modify_plan(
        self,
        client: Any,
        prior: dict[str, Any] | None,
        planned: dict[str, Any],
        config: dict[str, Any],
        diags: Diagnostics,
    ) -> dict[str, Any]:
        self.modify_calls.append((prior, copy.deepcopy(planned), config))
        return planned

    def create(self, client: Any, planned: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        raise NotImplementedError

    def read(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        raise NotImplementedError

    def update(
        self, client: Any, prior: dict[str, Any], planned: dict[str, Any], diags: Diagnostics
    ) -> dict[str, Any] | None:
        raise NotImplementedError

    def delete(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> None:
        raise NotImplementedError


def config(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {a.name: None for a in SCHEMA.attributes}
    base.update(rule=[], key=[])
    base.update(values)
    return base


def proposed_from(cfg: dict[str, Any], prior: dict[str, Any] | None) -> dict[str, Any]:
    """What terraform proposes: config, and prior values for computed attributes left null."""
    out = copy.deepcopy(cfg)
    for a in SCHEMA.attributes:
        if a.computed and cfg.get(a.name) is None:
            out[a.name] = prior.get(a.name) if prior else None
    if prior:
        for i, el in enumerate(out["rule"]):
            if i < len(prior["rule"]):
                for a in SCHEMA.blocks[0].attributes:
                    if a.computed and el.get(a.name) is None:
                        el[a.name] = prior["rule"][i].get(a.name)
    return out


def plan(cfg: dict[str, Any], prior: dict[str, Any] | None = None, resource: Resource | None = None):  # type: ignore[no-untyped-def]
    diags = Diagnostics()
    result = plan_resource_change(resource or Thing(), None, prior, proposed_from(cfg, prior), cfg, diags)
    return result, diags


STATE = {
    "id": "t-1",
    "name": "alpha",
    "kind": "a",
    "tags": None,
    "labels": ["x", "y"],
    "enabled": True,
    "size": 3,
    "revision": 1,
    "email": None,
    "rule": [{"port": 80, "proto": "tcp", "rid": "r-1"}],
    "key": [],
}


def state_config(**changes: Any) -> dict[str, Any]:
    cfg = config(name="alpha", kind="a", labels=["y", "x"], rule=[{"port": 80, "proto": None, "rid": None}])
    cfg.update(changes)
    return cfg


# ---------------------------------------------------------------------------------------------
# create


def test_create_marks_computed_unset_unknown_and_applies_defaults() -> None:
    result, diags = plan(config(name="alpha", rule=[{"port": 80, "proto": None, "rid": None}]))
    assert not diags.items
    p = result.planned
    assert p is not None
    assert p["id"] is UNKNOWN and p["revision"] is UNKNOWN and p["size"] is UNKNOWN  # P8
    assert p["enabled"] is True  # static default, known at plan time
    assert p["name"] == "alpha" and p["tags"] is None  # config unchanged, null stays null (P9)
    assert p["rule"] == [{"port": 80, "proto": "tcp", "rid": UNKNOWN}]  # defaults and unknowns in blocks
    assert result.requires_replace == []  # nothing to replace on create


def test_create_keeps_configured_computed_values() -> None:
    result, _ = plan(config(name="a", size=7, enabled=False))
    assert result.planned is not None
    assert result.planned["size"] == 7 and result.planned["enabled"] is False


def test_unknown_config_stays_unknown() -> None:
    result, diags = plan(config(name=UNKNOWN, size=UNKNOWN))
    assert not diags.items
    assert result.planned is not None
    assert result.planned["name"] is UNKNOWN and result.planned["size"] is UNKNOWN


# ---------------------------------------------------------------------------------------------
# update


def test_no_change_keeps_every_prior_value() -> None:
    # labels in another order: a set, so no change; computed values stay (no "known after apply")
    result, diags = plan(state_config(), STATE)
    assert not diags.items
    assert result.planned == {**STATE, "labels": ["y", "x"]}
    assert result.requires_replace == []


def test_update_marks_computed_unknown_except_use_state_for_unknown() -> None:
    result, _ = plan(state_config(name="beta"), STATE)
    p = result.planned
    assert p is not None
    assert p["name"] == "beta"
    assert p["id"] == "t-1"  # use_state_for_unknown
    assert p["revision"] is UNKNOWN  # computed, changes with the update
    assert p["size"] is UNKNOWN  # optional+computed, not configured
    assert p["enabled"] is True  # default
    assert p["rule"] == [{"port": 80, "proto": "tcp", "rid": UNKNOWN}]
    assert result.requires_replace == []


def test_default_applies_when_config_goes_back_to_null() -> None:
    prior = {**STATE, "enabled": False}
    result, _ = plan(state_config(), prior)
    assert result.planned is not None and result.planned["enabled"] is True


def test_requires_replace_only_when_changed() -> None:
    result, _ = plan(state_config(kind="b"), STATE)
    assert result.requires_replace == [("kind",)]
    result, _ = plan(state_config(kind=None), STATE)
    assert result.requires_replace == [("kind",)]  # prior known, now null: a change
    result, _ = plan(state_config(kind=UNKNOWN), STATE)
    assert result.requires_replace == [("kind",)]  # unknown compares as changed
    result, _ = plan(state_config(name="other"), STATE)
    assert result.requires_replace == []


def test_requires_replace_in_blocks() -> None:
    result, _ = plan(state_config(rule=[{"port": 81, "proto": None, "rid": None}]), STATE)
    assert result.requires_replace == [("rule", 0, "port")]
    result, _ = plan(
        state_config(
            rule=[{"port": 80, "proto": None, "rid": None}, {"port": 22, "proto": None, "rid": None}]
        ),
        STATE,
    )
    assert result.requires_replace == [("rule", 1, "port")]
    # a whole block marked requires_replace: the path is the block
    result, _ = plan(state_config(key=[{"pem": "P"}]), STATE)
    assert result.requires_replace == [("key",)]
    prior = {**STATE, "key": [{"pem": "A"}, {"pem": "B"}]}
    result, _ = plan(state_config(key=[{"pem": "B"}, {"pem": "A"}]), prior)
    assert result.requires_replace == []  # same set, other order


def test_requires_replace_function_direct() -> None:
    assert requires_replace(SCHEMA, None, STATE) == []


# ---------------------------------------------------------------------------------------------
# destroy, modify_plan, guard


def test_destroy_plans_null() -> None:
    diags = Diagnostics()
    thing = Thing()
    result = plan_resource_change(thing, None, STATE, None, None, diags)
    assert result.planned is None and result.requires_replace == []
    assert thing.modify_calls == []


def test_modify_plan_sees_the_framework_plan_and_may_set_computed_values() -> None:
    class Stamp(Thing):
        def modify_plan(self, client, prior, planned, config, diags):  # type: ignore[no-untyped-def]
            planned["revision"] = (prior or {}).get("revision", 0) + 1 if planned["name"] != "same" else 0
            return planned

    result, diags = plan(state_config(name="beta"), STATE, Stamp())
    assert not diags.items
    assert result.planned is not None and result.planned["revision"] == 2


def test_modify_plan_may_not_change_config_values() -> None:
    class Bad(Thing):
        def modify_plan(self, client, prior, planned, config, diags):  # type: ignore[no-untyped-def]
            planned["name"] = planned["name"].lower()
            return planned

    _result, diags = plan(config(name="Alpha"), None, Bad())
    assert diags.has_errors
    assert diags.items[0].path == ("name",)

    # returning the prior value for a configured attribute is allowed (semantic equality)
    class Prior(Thing):
        def modify_plan(self, client, prior, planned, config, diags):  # type: ignore[no-untyped-def]
            planned["name"] = prior["name"]
            return planned

    _, diags = plan(state_config(name="ALPHA"), STATE, Prior())
    assert not diags.items


def test_modify_plan_returning_garbage_is_a_diagnostic() -> None:
    class Garbage(Thing):
        def modify_plan(self, client, prior, planned, config, diags):  # type: ignore[no-untyped-def]
            return None

    _, diags = plan(config(name="a"), None, Garbage())
    assert diags.has_errors and "modify_plan returned NoneType" in diags.items[0].detail


def test_config_and_proposed_are_not_mutated() -> None:
    cfg = config(name="alpha", rule=[{"port": 80, "proto": None, "rid": None}])
    frozen = copy.deepcopy(cfg)
    plan(cfg)
    assert cfg == frozen


# ---------------------------------------------------------------------------------------------
# validators, schema checks, schema protobuf


def test_validators_run_on_known_values_with_paths() -> None:
    schema = Schema(
        attributes=(
            Attribute("email", STRING, optional=True, validators=(lambda v: None if "@" in v else "bad",)),
        ),
        blocks=(
            Block("l", (Attribute("email", STRING, optional=True, validators=(lambda v: "bad",)),)),
            Block(
                "s",
                (Attribute("email", STRING, optional=True, validators=(lambda v: "bad",)),),
                nesting="set",
            ),
        ),
    )
    diags = Diagnostics()
    validate_config(
        schema, {"email": "nope", "l": [{"email": "x"}, {"email": UNKNOWN}], "s": [{"email": "x"}]}, diags
    )
    assert [d.path for d in diags.items] == [("email",), ("l", 0, "email"), ("s",)]
    diags = Diagnostics()
    validate_config(schema, {"email": UNKNOWN, "l": [], "s": []}, diags)
    assert not diags.items


def test_null_elements_in_collections_are_errors_on_the_element() -> None:
    schema = Schema(
        attributes=(
            Attribute("tags", map_of(STRING), optional=True),
            Attribute("labels", set_of(STRING), optional=True),
            Attribute("names", ["list", STRING], optional=True),
        ),
        blocks=(Block("l", (Attribute("names", ["list", STRING], optional=True),)),),
    )
    diags = Diagnostics()
    config = {"tags": {"a": "x", "b": None}, "labels": [None], "names": ["x", None], "l": [{"names": [None]}]}
    validate_config(schema, config, diags)
    assert [d.path for d in diags.items] == [("tags", "b"), ("labels",), ("names", 1), ("l", 0, "names", 0)]
    assert 'tags["b"] is null' in diags.items[0].detail and "names[1] is null" in diags.items[2].detail
    diags = Diagnostics()
    validate_config(schema, {"tags": {"a": UNKNOWN}, "labels": [UNKNOWN], "names": [], "l": []}, diags)
    assert not diags.items


def test_null_elements_that_were_unknown_at_validation_are_refused_by_the_plan() -> None:
    diags = Diagnostics()
    cfg = {"name": "a", "tags": {"k": None}}
    plan_resource_change(Thing(), None, None, {**_null_config(), **cfg}, {**_null_config(), **cfg}, diags)
    assert [(d.severity, d.path) for d in diags.items] == [("error", ("tags", "k"))]


def _null_config() -> dict[str, Any]:
    out: dict[str, Any] = {a.name: None for a in SCHEMA.attributes}
    out.update({b.name: [] for b in SCHEMA.blocks})
    return out


def test_check_schema_finds_terraform_rejections() -> None:
    bad = Schema(
        attributes=(
            Attribute("a", STRING),
            Attribute("b", STRING, required=True, optional=True),
            Attribute("c", STRING, required=True, computed=True),
            Attribute("d", STRING, optional=True, default="x"),
            Attribute("e", STRING, optional=True, use_state_for_unknown=True),
            Attribute("f", "strng", optional=True),
            Attribute("g", NUMBER, optional=True, computed=True, default="not a number"),
        ),
        blocks=(Block("Bad-Name", (Attribute("x", STRING, optional=True),)),),
    )
    problems = check_schema(bad, "t")
    text = "\n".join(problems)
    for fragment in (
        "t.a: one of required",
        "t.b: cannot be both required and optional",
        "t.c: cannot be both required and computed",
        "t.d: a default needs",
        "t.e: use_state_for_unknown needs",
        "t.f: unknown cty type",
        "t.g: a number is required",
        "Bad-Name",
    ):
        assert fragment in text
    assert check_schema(SCHEMA, "toy_thing") == []


def test_schema_proto_types_are_json() -> None:
    """A bare b'string' makes terraform panic while loading the schema (pitfall P7)."""
    import json

    proto = schema_to_proto(SCHEMA)
    types = {a.name: json.loads(a.type) for a in proto.block.attributes}
    assert (
        types["name"] == "string"
        and types["tags"] == ["map", "string"]
        and types["labels"] == ["set", "string"]
    )
    assert [(b.type_name, b.nesting) for b in proto.block.block_types] == [("rule", 2), ("key", 3)]
    rule = proto.block.block_types[0].block
    assert {a.name: (a.required, a.optional, a.computed) for a in rule.attributes}["proto"] == (
        False,
        True,
        True,
    )
