"""A toy provider on the framework contract, for framework tests (not shipped).

``toy_thing`` keeps its objects in a JSON file (``TOY_STORE``, or the provider's ``store_path``),
exercising every attribute kind the framework handles: computed ids, defaults, requires_replace,
maps/sets with null distinct from empty, nested blocks, import. ``name = "boom"`` makes create
raise (the framework must turn it into a diagnostic). Reads return sets in reverse order.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentceiling.tfprovider.framework.types import (
    NUMBER,
    STRING,
    Attribute,
    Block,
    DataSource,
    Diagnostics,
    Provider,
    Resource,
    Schema,
    map_of,
    set_of,
)

if os.environ.get("TOY_PRINT_ON_IMPORT"):
    print("toy provider module imported: this must not reach terraform's stdout")

THING_SCHEMA = Schema(
    attributes=(
        Attribute("id", STRING, "Identifier.", computed=True, use_state_for_unknown=True),
        Attribute("name", STRING, "Name.", required=True),
        Attribute("kind", STRING, optional=True, requires_replace=True),
        Attribute("tags", map_of(STRING), optional=True),
        Attribute("labels", set_of(STRING), optional=True),
        Attribute("size", NUMBER, optional=True, computed=True, default=1),
        Attribute("created", STRING, computed=True, use_state_for_unknown=True),
        Attribute("revision", NUMBER, computed=True),
        Attribute("secret", STRING, optional=True, sensitive=True),
    ),
    blocks=(
        Block(
            "rule",
            (
                Attribute("port", NUMBER, required=True),
                Attribute("proto", STRING, optional=True, computed=True, default="tcp"),
            ),
        ),
    ),
)


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _locked(self, fn: Any) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(str(self.path) + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = json.loads(self.path.read_text()) if self.path.exists() else {}
            result = fn(data)
            self.path.write_text(json.dumps(data, indent=1, sort_keys=True))
            return result

    def put(self, obj: dict[str, Any]) -> None:
        self._locked(lambda d: d.__setitem__(obj["id"], obj))

    def get(self, key: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._locked(lambda d: d.get(key))
        return result

    def delete(self, key: str) -> None:
        self._locked(lambda d: d.pop(key, None))


class Thing(Resource):
    type_name = "toy_thing"
    schema = THING_SCHEMA

    def validate(self, config: dict[str, Any], diags: Diagnostics) -> None:
        name = config.get("name")
        if isinstance(name, str) and not name.strip():
            diags.error("Invalid name", "name cannot be blank", ("name",))

    def _stored(self, planned: dict[str, Any], obj_id: str, created: str, revision: int) -> dict[str, Any]:
        return {**planned, "id": obj_id, "created": created, "revision": revision}

    def create(self, client: Store, planned: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        if planned["name"] == "boom":
            raise RuntimeError("boom from the toy provider")
        obj = self._stored(
            planned, uuid.uuid4().hex[:12], time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), 1
        )
        client.put(obj)
        return obj

    def read(self, client: Store, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        obj = client.get(state["id"])
        if obj is None:
            return None
        if obj.get("labels") is not None:
            obj["labels"] = sorted(obj["labels"], reverse=True)  # sets come back in any order
        return obj

    def update(
        self, client: Store, prior: dict[str, Any], planned: dict[str, Any], diags: Diagnostics
    ) -> dict[str, Any] | None:
        obj = self._stored(planned, prior["id"], prior["created"], int(prior["revision"]) + 1)
        client.put(obj)
        return obj

    def delete(self, client: Store, state: dict[str, Any], diags: Diagnostics) -> None:
        client.delete(state["id"])

    def import_state(self, client: Store, import_id: str, diags: Diagnostics) -> dict[str, Any] | None:
        if client.get(import_id) is None:
            diags.error("Cannot import non-existent remote object", f"no toy_thing {import_id!r}")
            return None
        return {"id": import_id}  # the framework fills the rest with null; read completes it


class Echo(DataSource):
    type_name = "toy_echo"
    schema = Schema(
        attributes=(Attribute("input", STRING, required=True), Attribute("output", STRING, computed=True))
    )

    def read(self, client: Store, config: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        return {"input": config["input"], "output": config["input"].upper()}


class ToyProvider(Provider):
    type_name = "toy"
    schema = Schema(attributes=(Attribute("store_path", STRING, optional=True),))

    def resources(self) -> Sequence[Resource]:
        return [Thing()]

    def data_sources(self) -> Sequence[DataSource]:
        return [Echo()]

    def configure(self, config: dict[str, Any], diags: Diagnostics) -> Store:
        path = config.get("store_path") or os.environ.get("TOY_STORE") or "toy-store.json"
        return Store(Path(path))


def build() -> Provider:
    return ToyProvider()
