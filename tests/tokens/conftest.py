"""Fixtures for the tokens tests (helpers live in test_tokens_support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_tokens_support import (
    NOW,
    JwksServer,
    Keys,
    TlsMaterial,
    build_tls_material,
    generate_keys,
)

from agentceiling.tokens import KeySourceRegistry, TokenValidator


@pytest.fixture(scope="session")
def keys() -> Keys:
    return generate_keys()


@pytest.fixture
def validator() -> TokenValidator:
    return TokenValidator(KeySourceRegistry(), clock=lambda: float(NOW))


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return build_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_jwks_server(tls_material: TlsMaterial) -> Iterator[JwksServer]:
    server = JwksServer(tls=tls_material.server_context)
    yield server
    server.close()
