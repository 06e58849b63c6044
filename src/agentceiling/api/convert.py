"""Protobuf messages <-> domain objects."""

from __future__ import annotations

from agentceiling._gen.agentceiling.v1 import control_plane_pb2 as pb
from agentceiling.domain.models import Alias, Entity, PolicyDoc, Profile, PublicKey, Registration


def profile_from_pb(m: pb.OAuthResourceServerProfile) -> Profile:
    d = Profile(namespace=m.namespace, profile_name=m.profile_name, issuer_id=m.issuer_id)
    return Profile(
        namespace=m.namespace,
        profile_name=m.profile_name,
        issuer_id=m.issuer_id,
        use_jwks=m.use_jwks if m.HasField("use_jwks") else d.use_jwks,
        jwks_uri=m.jwks_uri,
        jwks_ca_pem=m.jwks_ca_pem,
        public_keys=tuple(PublicKey(k.key_id, k.pem) for k in m.public_keys),
        audiences=tuple(m.audiences),
        no_default_policy=m.no_default_policy,
        user_claim=m.user_claim if m.HasField("user_claim") else d.user_claim,
        supported_algorithms=tuple(m.supported_algorithms),
        jwt_type=m.jwt_type if m.HasField("jwt_type") else d.jwt_type,
        clock_skew_leeway=m.clock_skew_leeway if m.HasField("clock_skew_leeway") else d.clock_skew_leeway,
        enabled=m.enabled if m.HasField("enabled") else d.enabled,
        optional_authorization_details=m.optional_authorization_details,
        unique_id_claim=m.unique_id_claim if m.HasField("unique_id_claim") else d.unique_id_claim,
        actor_claim=m.actor_claim if m.HasField("actor_claim") else d.actor_claim,
    )


def profile_to_pb(p: Profile) -> pb.OAuthResourceServerProfile:
    return pb.OAuthResourceServerProfile(
        namespace=p.namespace,
        profile_name=p.profile_name,
        issuer_id=p.issuer_id,
        use_jwks=p.use_jwks,
        jwks_uri=p.jwks_uri,
        jwks_ca_pem=p.jwks_ca_pem,
        public_keys=[pb.PublicKey(key_id=k.key_id, pem=k.pem) for k in p.public_keys],
        audiences=list(p.audiences),
        no_default_policy=p.no_default_policy,
        user_claim=p.user_claim,
        supported_algorithms=list(p.supported_algorithms),
        jwt_type=p.jwt_type,
        clock_skew_leeway=p.clock_skew_leeway,
        enabled=p.enabled,
        optional_authorization_details=p.optional_authorization_details,
        unique_id_claim=p.unique_id_claim,
        actor_claim=p.actor_claim,
        config_id=p.config_id,
        mount_accessor=p.mount_accessor,
        version=p.version,
        creation_time=p.creation_time,
        last_updated_time=p.last_updated_time,
    )


def registration_from_pb(m: pb.AgentRegistration) -> Registration:
    return Registration(
        namespace=m.namespace,
        display_name=m.display_name,
        entity_id=m.entity_id,
        description=m.description,
        owner=m.owner,
        requested_ceiling_policies=tuple(m.ceiling_policies),
        no_default_ceiling_policy=m.no_default_ceiling_policy,
        optional_authorization_details=m.optional_authorization_details,
        id=m.id,
    )


def registration_to_pb(r: Registration) -> pb.AgentRegistration:
    return pb.AgentRegistration(
        namespace=r.namespace,
        id=r.id,
        display_name=r.display_name,
        entity_id=r.entity_id,
        description=r.description,
        owner=r.owner,
        ceiling_policies=list(r.ceiling_policies),
        no_default_ceiling_policy=r.no_default_ceiling_policy,
        optional_authorization_details=r.optional_authorization_details,
        creation_time=r.creation_time,
        last_updated_time=r.last_updated_time,
        requested_ceiling_policies=list(r.requested_ceiling_policies),
        version=r.version,
    )


def policy_to_pb(p: PolicyDoc) -> pb.Policy:
    return pb.Policy(
        namespace=p.namespace,
        name=p.name,
        policy=p.text,
        builtin=p.builtin,
        version=p.version,
        creation_time=p.creation_time,
        last_updated_time=p.last_updated_time,
    )


def entity_from_pb(m: pb.IdentityEntity) -> Entity:
    return Entity(
        namespace=m.namespace,
        name=m.name,
        policies=tuple(m.policies),
        metadata=dict(m.metadata),
        disabled=m.disabled,
        id=m.id,
    )


def entity_to_pb(e: Entity) -> pb.IdentityEntity:
    return pb.IdentityEntity(
        namespace=e.namespace,
        id=e.id,
        name=e.name,
        policies=list(e.policies),
        metadata=dict(e.metadata),
        disabled=e.disabled,
        version=e.version,
        creation_time=e.creation_time,
        last_updated_time=e.last_updated_time,
    )


def alias_from_pb(m: pb.EntityAlias) -> Alias:
    return Alias(
        namespace=m.namespace,
        name=m.name,
        canonical_id=m.canonical_id,
        mount_accessor=m.mount_accessor,
        issuer=m.issuer,
        external_id=m.external_id,
        custom_metadata=dict(m.custom_metadata),
        id=m.id,
    )


def alias_to_pb(a: Alias) -> pb.EntityAlias:
    return pb.EntityAlias(
        namespace=a.namespace,
        id=a.id,
        name=a.name,
        canonical_id=a.canonical_id,
        mount_accessor=a.mount_accessor,
        issuer=a.issuer,
        external_id=a.external_id,
        custom_metadata=dict(a.custom_metadata),
        version=a.version,
        creation_time=a.creation_time,
        last_updated_time=a.last_updated_time,
    )
