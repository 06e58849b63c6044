"""The wire contract of the authorization listener: its own health checking and reflection, no
admin token, only the Authorization service, stable codes and INVALID_ARGUMENT details."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from authz_support import World, path_access
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from agentceiling._gen.agentceiling.v1 import authorization_pb2 as apb
from agentceiling._gen.agentceiling.v1 import authorization_pb2_grpc as apbg
from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb
from agentceiling._gen.agentceiling.v1 import control_plane_pb2_grpc as pbg
from agentceiling.service.authz import ALL_CODES

SERVICE = "agentceiling.v1.Authorization"


def test_health_and_reflection_of_its_own(authz_server: Any) -> None:
    with grpc.insecure_channel(authz_server.authz_address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for name in ("", SERVICE):
            resp = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as err:
            health.Check(health_pb2.HealthCheckRequest(service="agentceiling.v1.Policies"), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        answers = list(
            stub.ServerReflectionInfo(
                iter(
                    [
                        reflection_pb2.ServerReflectionRequest(list_services=""),
                        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
                    ]
                ),
                timeout=5,
            )
        )
        services = {s.name for s in answers[0].list_services_response.service}
        assert SERVICE in services and "grpc.health.v1.Health" in services
        assert not any(s.startswith("agentceiling.v1.") and s != SERVICE for s in services), services
        assert answers[1].file_descriptor_response.file_descriptor_proto


def test_no_admin_token_and_no_control_plane_on_the_authz_listener(world: World) -> None:
    w, idp = world, world.idp
    w.agent("anon")
    with grpc.insecure_channel(w.server.authz_address) as ch:
        resp = apbg.AuthorizationStub(ch).Authorize(
            apb.AuthorizeRequest(
                token=idp.token("anon", [path_access("secret/data/ci/a", "read")]),
                namespace=w.ns,
                path="secret/data/ci/a",
                operation="read",
            ),
            timeout=10,
        )
        assert resp.code == "ALLOWED"
        with pytest.raises(grpc.RpcError) as err:
            pbg.PoliciesStub(ch).List(pb.ListRequest(namespace=w.ns), metadata=w.cc.md, timeout=5)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_bad_requests_are_invalid_argument_with_field_violations(world: World) -> None:
    w, idp = world, world.idp
    tok = idp.token("whoever")
    with grpc.insecure_channel(w.server.authz_address) as ch:
        for field, req in (
            ("operation", apb.AuthorizeRequest(token=tok, path="secret/x", operation="explode")),
            ("operation", apb.AuthorizeRequest(token=tok, path="secret/x")),
            ("token", apb.AuthorizeRequest(token="x" * 70_000, path="secret/x", operation="read")),
        ):
            with pytest.raises(grpc.RpcError) as err:
                apbg.AuthorizationStub(ch).Authorize(req, timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            status = rpc_status.from_call(err.value)
            assert status is not None
            bad = error_details_pb2.BadRequest()
            assert status.details[0].Unpack(bad)
            assert bad.field_violations[0].field == field


def test_refusals_are_normal_answers_with_stable_codes(world: World) -> None:
    w = world
    r = w.authorize("garbage", "secret/data/x", "read")
    assert (r.allowed, r.code) == (False, "TOKEN_INVALID")
    assert r.decision_id and r.reason and r.authorization_details == "[]"
    assert set(ALL_CODES) == {
        "ALLOWED",
        "TOKEN_INVALID",
        "TOKEN_EXPIRED",
        "ISSUER_UNKNOWN",
        "SUBJECT_UNKNOWN",
        "AGENT_NOT_REGISTERED",
        "ENTITY_DISABLED",
        "RAR_REQUIRED",
        "RAR_INVALID",
        "CEILING_EXCEEDED",
        "RAR_NO_MATCH",
        "PERMISSION_DENIED",
        "UNAVAILABLE",
    }
    # Every operation Vault knows is accepted.
    for op in ("read", "create", "update", "patch", "delete", "list", "sudo", "subscribe", "recover"):
        assert w.authorize("garbage", "secret/data/x", op).code == "TOKEN_INVALID"
