"""The tfplugin6 servicer in-process: decode -> framework -> encode, diagnostics instead of RPC
errors, state upgrade, read/import/apply edge cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
import toyprovider

from agentceiling._gen.tfplugin6 import tfplugin6_pb2 as pb
from agentceiling.tfprovider.framework import cty
from agentceiling.tfprovider.framework.server import ProviderServer, path_to_proto
from agentceiling.tfprovider.framework.types import (
    STRING,
    UNKNOWN,
    Attribute,
    Diagnostics,
    Provider,
    Resource,
    Schema,
    map_of,
    set_of,
)

T = cty.schema_type(toyprovider.THING_SCHEMA)
CTX: Any = None  # the servicer does not use the grpc context


def dv(value: Any, t: Any = T) -> pb.DynamicValue:
    return pb.DynamicValue(msgpack=cty.encode_msgpack(t, value))


def thing(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {a.name: None for a in toyprovider.THING_SCHEMA.attributes}
    base["rule"] = []
    base.update(values)
    return base


@pytest.fixture
def server(tmp_path: Path) -> ProviderServer:
    srv = ProviderServer(toyprovider.build)
    cfg = {"store_path": str(tmp_path / "store.json")}
    resp = srv.ConfigureProvider(
        pb.ConfigureProvider.Request(
            terraform_version="1.11.4", config=dv(cfg, cty.schema_type(srv.provider.schema))
        ),
        CTX,
    )
    assert not resp.diagnostics
    return srv


def test_schema_and_capabilities(server: ProviderServer) -> None:
    resp = server.GetProviderSchema(pb.GetProviderSchema.Request(), CTX)
    assert not resp.diagnostics
    assert resp.server_capabilities.plan_destroy and resp.server_capabilities.get_provider_schema_optional
    assert set(resp.resource_schemas) == {"toy_thing"} and set(resp.data_source_schemas) == {"toy_echo"}
    attrs = {a.name: a for a in resp.resource_schemas["toy_thing"].block.attributes}
    assert json.loads(attrs["labels"].type) == ["set", "string"]
    assert attrs["secret"].sensitive and attrs["id"].computed and not attrs["id"].optional
    assert server.GetProviderSchema(pb.GetProviderSchema.Request(), CTX) is resp  # built once
    meta = server.GetMetadata(pb.GetMetadata.Request(), CTX)
    assert [r.type_name for r in meta.resources] == ["toy_thing"] and meta.server_capabilities.plan_destroy


def test_invalid_schema_is_reported_as_diagnostics() -> None:
    class Broken(toyprovider.ToyProvider):
        schema = Schema(attributes=(Attribute("x", STRING),))

    resp = ProviderServer(Broken()).GetProviderSchema(pb.GetProviderSchema.Request(), CTX)
    assert [d.summary for d in resp.diagnostics] == ["Invalid provider schema"]
    assert "provider.x: one of required, optional, computed" in resp.diagnostics[0].detail


def test_full_cycle_through_the_servicer(server: ProviderServer) -> None:
    config = thing(name="alpha", labels=["b", "a"], rule=[{"port": 80, "proto": None}])
    plan = server.PlanResourceChange(
        pb.PlanResourceChange.Request(
            type_name="toy_thing", prior_state=dv(None), proposed_new_state=dv(config), config=dv(config)
        ),
        CTX,
    )
    assert not plan.diagnostics
    planned = cty.decode_msgpack(T, plan.planned_state.msgpack)
    assert (
        planned["id"] is UNKNOWN
        and planned["size"] == 1
        and planned["rule"] == [{"port": 80, "proto": "tcp"}]
    )
    applied = server.ApplyResourceChange(
        pb.ApplyResourceChange.Request(
            type_name="toy_thing",
            prior_state=dv(None),
            planned_state=plan.planned_state,
            config=dv(config),
            planned_private=b'{"p":1}',
        ),
        CTX,
    )
    assert not applied.diagnostics and applied.private == b'{"p":1}'
    state = cty.decode_msgpack(T, applied.new_state.msgpack)
    assert state["id"] and state["revision"] == 1 and state["tags"] is None  # null stays null

    read = server.ReadResource(
        pb.ReadResource.Request(type_name="toy_thing", current_state=applied.new_state, private=b"keep"), CTX
    )
    assert not read.diagnostics and read.private == b"keep"
    assert cty.decode_msgpack(T, read.new_state.msgpack)["labels"] == ["b", "a"]

    # destroy: plan null, apply null
    plan = server.PlanResourceChange(
        pb.PlanResourceChange.Request(type_name="toy_thing", prior_state=read.new_state), CTX
    )
    assert plan.planned_state.msgpack == b"\xc0"
    applied = server.ApplyResourceChange(
        pb.ApplyResourceChange.Request(type_name="toy_thing", prior_state=read.new_state), CTX
    )
    assert not applied.diagnostics and applied.new_state.msgpack == b"\xc0"
    # gone: read returns null so terraform plans a create
    read = server.ReadResource(pb.ReadResource.Request(type_name="toy_thing", current_state=dv(state)), CTX)
    assert read.new_state.msgpack == b"\xc0"


def test_exceptions_become_error_diagnostics(server: ProviderServer) -> None:
    config = thing(name="boom")
    resp = server.ApplyResourceChange(
        pb.ApplyResourceChange.Request(
            type_name="toy_thing",
            prior_state=dv(None),
            planned_state=dv({**config, "id": UNKNOWN}),
            config=dv(config),
        ),
        CTX,
    )
    assert len(resp.diagnostics) == 1
    d = resp.diagnostics[0]
    assert d.severity == pb.Diagnostic.ERROR and "boom from the toy provider" in d.detail
    assert "RuntimeError" in d.detail


def test_unknown_type_name_and_bad_values_are_diagnostics(server: ProviderServer) -> None:
    resp = server.ValidateResourceConfig(
        pb.ValidateResourceConfig.Request(type_name="toy_nope", config=dv(None)), CTX
    )
    assert "no resource type 'toy_nope'" in resp.diagnostics[0].detail
    bad = msgpack.packb({**thing(name="x"), "rule": [{"port": "eighty", "proto": None}]})
    resp = server.ValidateResourceConfig(
        pb.ValidateResourceConfig.Request(type_name="toy_thing", config=pb.DynamicValue(msgpack=bad)), CTX
    )
    d = resp.diagnostics[0]
    assert d.summary == "Invalid value" and "a number is required" in d.detail
    steps = [s.WhichOneof("selector") for s in d.attribute.steps]
    assert steps == ["attribute_name", "element_key_int", "attribute_name"]


def test_validate_resource_config_runs_resource_validate(server: ProviderServer) -> None:
    resp = server.ValidateResourceConfig(
        pb.ValidateResourceConfig.Request(type_name="toy_thing", config=dv(thing(name=" ", kind=UNKNOWN))),
        CTX,
    )
    assert [(d.summary, d.attribute.steps[0].attribute_name) for d in resp.diagnostics] == [
        ("Invalid name", "name")
    ]


def test_apply_result_with_unknowns_is_an_error() -> None:
    class Lazy(toyprovider.Thing):
        def create(self, client: Any, planned: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
            return planned  # forgot to resolve id/created/revision

    class P(toyprovider.ToyProvider):
        def resources(self) -> list[Resource]:
            return [Lazy()]

    srv = ProviderServer(P())
    planned = thing(name="a", id=UNKNOWN, created=UNKNOWN, revision=UNKNOWN, size=1)
    resp = srv.ApplyResourceChange(
        pb.ApplyResourceChange.Request(
            type_name="toy_thing", prior_state=dv(None), planned_state=dv(planned)
        ),
        CTX,
    )
    assert {d.attribute.steps[0].attribute_name for d in resp.diagnostics} == {"id", "created", "revision"}


def test_update_failure_keeps_prior_state(server: ProviderServer) -> None:
    class Failing(toyprovider.Thing):
        def update(self, client: Any, prior: Any, planned: Any, diags: Diagnostics) -> dict[str, Any] | None:
            diags.error("Update failed", "nope")
            return None

    class P(toyprovider.ToyProvider):
        def resources(self) -> list[Resource]:
            return [Failing()]

    srv = ProviderServer(P())
    prior = thing(name="a", id="x", created="c", revision=1, size=1)
    resp = srv.ApplyResourceChange(
        pb.ApplyResourceChange.Request(
            type_name="toy_thing", prior_state=dv(prior), planned_state=dv({**prior, "name": "b"})
        ),
        CTX,
    )
    assert resp.diagnostics[0].summary == "Update failed"
    assert cty.decode_msgpack(T, resp.new_state.msgpack) == prior


def test_upgrade_resource_state(server: ProviderServer) -> None:
    stored = {"id": "x", "name": "a", "gone_attribute": 1, "labels": ["a"], "rule": None}
    resp = server.UpgradeResourceState(
        pb.UpgradeResourceState.Request(
            type_name="toy_thing", version=0, raw_state=pb.RawState(json=json.dumps(stored).encode())
        ),
        CTX,
    )
    assert not resp.diagnostics
    # keys not in the schema dropped, missing ones null, absent blocks empty (P16)
    assert msgpack.unpackb(resp.upgraded_state.msgpack) == {
        **thing(id="x", name="a", labels=["a"]),
        "rule": [],
    }

    resp = server.UpgradeResourceState(
        pb.UpgradeResourceState.Request(type_name="toy_thing", version=3, raw_state=pb.RawState(json=b"{}")),
        CTX,
    )
    assert "newer provider" in resp.diagnostics[0].summary
    resp = server.UpgradeResourceState(
        pb.UpgradeResourceState.Request(type_name="toy_thing", raw_state=pb.RawState(flatmap={"id": "x"})),
        CTX,
    )
    assert "flatmap" in resp.diagnostics[0].detail


def test_upgrade_state_hook_for_old_versions() -> None:
    class V1(toyprovider.Thing):
        schema = Schema(
            attributes=toyprovider.THING_SCHEMA.attributes, blocks=toyprovider.THING_SCHEMA.blocks, version=1
        )

        def upgrade_state(self, version: int, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any]:
            assert version == 0
            state["name"] = state.pop("title")
            return state

    class P(toyprovider.ToyProvider):
        def resources(self) -> list[Resource]:
            return [V1()]

    srv = ProviderServer(P())
    resp = srv.UpgradeResourceState(
        pb.UpgradeResourceState.Request(
            type_name="toy_thing", version=0, raw_state=pb.RawState(json=b'{"id": "x", "title": "old"}')
        ),
        CTX,
    )
    assert not resp.diagnostics
    assert msgpack.unpackb(resp.upgraded_state.msgpack)["name"] == "old"


def test_import(server: ProviderServer, tmp_path: Path) -> None:
    toyprovider.Store(tmp_path / "store.json").put({**thing(name="ext", size=1, revision=1), "id": "ext-1"})
    resp = server.ImportResourceState(pb.ImportResourceState.Request(type_name="toy_thing", id="ext-1"), CTX)
    assert not resp.diagnostics
    (imported,) = resp.imported_resources
    assert imported.type_name == "toy_thing"
    assert cty.decode_msgpack(T, imported.state.msgpack) == thing(id="ext-1")
    resp = server.ImportResourceState(pb.ImportResourceState.Request(type_name="toy_thing", id="nope"), CTX)
    assert not resp.imported_resources
    assert resp.diagnostics[0].summary == "Cannot import non-existent remote object"


def test_import_returning_none_without_diagnostics_gets_one() -> None:
    class Quiet(toyprovider.Thing):
        def import_state(self, client: Any, import_id: str, diags: Diagnostics) -> dict[str, Any] | None:
            return None

    class P(toyprovider.ToyProvider):
        def resources(self) -> list[Resource]:
            return [Quiet()]

    resp = ProviderServer(P()).ImportResourceState(
        pb.ImportResourceState.Request(type_name="toy_thing", id="z"), CTX
    )
    assert resp.diagnostics[0].summary == "Cannot import non-existent remote object"


def test_data_source(server: ProviderServer) -> None:
    t = cty.schema_type(toyprovider.Echo.schema)
    resp = server.ReadDataSource(
        pb.ReadDataSource.Request(type_name="toy_echo", config=dv({"input": "hi", "output": None}, t)), CTX
    )
    assert not resp.diagnostics
    assert cty.decode_msgpack(t, resp.state.msgpack) == {"input": "hi", "output": "HI"}


def test_requires_replace_paths_in_the_response(server: ProviderServer) -> None:
    prior = thing(name="a", kind="k1", id="x", created="c", revision=1, size=1)
    config = thing(name="a", kind="k2")
    proposed = {**config, "id": "x", "created": "c", "revision": 1, "size": 1}
    resp = server.PlanResourceChange(
        pb.PlanResourceChange.Request(
            type_name="toy_thing",
            prior_state=dv(prior),
            proposed_new_state=dv(proposed),
            config=dv(config),
            prior_private=b"priv",
        ),
        CTX,
    )
    assert not resp.diagnostics and resp.planned_private == b"priv"
    assert [[s.attribute_name for s in p.steps] for p in resp.requires_replace] == [["kind"]]


def test_path_conversion_follows_the_type() -> None:
    t = cty.parse_type(
        ["object", {"m": map_of(STRING), "s": set_of(STRING), "l": ["list", ["object", {"x": "string"}]]}]
    )
    steps = path_to_proto(("m", "key"), t).steps
    assert steps[1].element_key_string == "key"
    steps = path_to_proto(("m", 7), t).steps  # a map's key, even as a number, is a string key
    assert (steps[1].WhichOneof("selector"), steps[1].element_key_string) == ("element_key_string", "7")
    assert len(path_to_proto(("s", 0), t).steps) == 1  # no step into a set element
    steps = path_to_proto(("l", 2, "x"), t).steps
    assert (steps[1].element_key_int, steps[2].attribute_name) == (2, "x")
    assert [s.WhichOneof("selector") for s in path_to_proto(("a", 1)).steps] == [
        "attribute_name",
        "element_key_int",
    ]


def test_provider_is_built_lazily_once() -> None:
    built: list[int] = []

    def factory() -> Provider:
        built.append(1)
        return toyprovider.build()

    srv = ProviderServer(factory)
    assert built == []
    srv.warm_up()
    srv.GetProviderSchema(pb.GetProviderSchema.Request(), CTX)
    assert built == [1]


def test_a_provider_that_cannot_be_built_answers_with_diagnostics() -> None:
    def factory() -> Provider:
        raise ImportError("No module named 'missing_dependency'")

    srv = ProviderServer(factory)
    srv.warm_up()  # logs, does not raise
    resp = srv.GetProviderSchema(pb.GetProviderSchema.Request(), CTX)
    assert resp.diagnostics[0].severity == pb.Diagnostic.ERROR
    assert "ImportError: No module named 'missing_dependency'" in resp.diagnostics[0].detail
    resp = srv.ReadResource(pb.ReadResource.Request(type_name="toy_thing"), CTX)
    assert "missing_dependency" in resp.diagnostics[0].detail


def test_stop_provider_is_not_shutdown(server: ProviderServer) -> None:
    assert server.StopProvider(pb.StopProvider.Request(), CTX).Error == ""
    assert server.stopping.is_set()
    assert not server.GetProviderSchema(pb.GetProviderSchema.Request(), CTX).diagnostics  # still serving


def test_identity_schemas_are_empty(server: ProviderServer) -> None:
    assert not server.GetResourceIdentitySchemas(
        pb.GetResourceIdentitySchemas.Request(), CTX
    ).identity_schemas
