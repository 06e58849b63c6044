"""`vault_identity_entity` with `external_policies = true` against a real `agentceiling serve`: an
update carries the policies other resources manage, and must not lose one written meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import root_conftest

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb
from agentceiling.tfprovider.client import ClientSettings, ControlPlaneClient, parse_address
from agentceiling.tfprovider.framework.types import Diagnostics
from agentceiling.tfprovider.resources import IdentityEntity


class _Interleaving(ControlPlaneClient):
    """The real client, with a real write by another writer made just before the first entity
    update this client sends (what `vault_identity_entity_policies` does in a parallel apply)."""

    def __init__(self, settings: ClientSettings, other_write: Any) -> None:
        super().__init__(settings)
        self.other_write = other_write
        self.updates = 0

    def call(self, service: str, method: str, request: Any, *, timeout: float | None = None) -> Any:
        if service == "IdentityEntities" and method == "Update":
            self.updates += 1
            if self.updates == 1:
                self.other_write()
        return super().call(service, method, request, timeout=timeout)


RunningServer = root_conftest.root.RunningServer
start_server = root_conftest.root.start_server


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningServer]:
    srv = start_server(tmp_path / "data")
    try:
        yield srv
    finally:
        srv.stop()


def test_an_update_does_not_lose_policies_written_meanwhile(running: RunningServer) -> None:
    settings = ClientSettings(endpoint=parse_address(running.address), token=running.token)
    plain = ControlPlaneClient(settings)
    resource = IdentityEntity()
    config = {a.name: None for a in resource.schema.attributes}
    config.update(name="racer", external_policies=True, metadata={"v": "1"})
    diags = Diagnostics()
    state = resource.create(plain, dict(config), diags)
    assert state is not None and not diags.items, diags.items
    entity_id = state["id"]

    def set_policies(names: list[str]) -> None:
        entity = plain.call("IdentityEntities", "Read", pb.ReadEntityRequest(id=entity_id)).entity
        del entity.policies[:]
        entity.policies.extend(names)
        plain.call("IdentityEntities", "Update", pb.UpdateEntityRequest(entity=entity, expected_version=entity.version))

    set_policies(["mine"])  # what the policies resource had put there before this apply
    client = _Interleaving(settings, lambda: set_policies(["mine", "theirs"]))
    planned = dict(state, metadata={"v": "2"})
    diags = Diagnostics()
    new = resource.update(client, state, planned, diags)
    assert new is not None and not diags.items, diags.items
    stored = plain.call("IdentityEntities", "Read", pb.ReadEntityRequest(id=entity_id)).entity
    assert sorted(stored.policies) == ["mine", "theirs"]  # the other writer's policy survived
    assert dict(stored.metadata) == {"v": "2"}
    assert client.updates == 2  # refused once for the stale version, then read again
