"""Fixtures for the authorization-endpoint tests (helpers live in authz_support.py).

``authz_server`` is one real ``agentceiling serve`` per module and per database (SQLite and
PostgreSQL); ``world`` gives each test its own namespace on it, with a profile for the module's
identity provider, so tests never see each other's objects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from authz_support import Idp, World, make_world, module_server


@pytest.fixture(scope="module")
def idp() -> Iterator[Idp]:
    i = Idp()
    yield i
    i.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def authz_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_server(request, tmp_path_factory)


@pytest.fixture
def world(authz_server: Any, idp: Idp) -> World:
    return make_world(authz_server, idp)
