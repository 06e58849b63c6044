"""Fixtures shared by the control-plane tests (helpers live in test_cp_support.py).

``srv`` is one real ``agentceiling serve`` per test module and per database (SQLite and
PostgreSQL); ``c`` is a control-plane client of it. Tests use unique names, so a module's tests
share the server without seeing each other's objects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_cp_support import Client, client, module_server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from module_server(request, tmp_path_factory)


@pytest.fixture(scope="module")
def c(srv: Any) -> Iterator[Client]:
    with client(srv) as cl:
        yield cl
