"""Row <-> domain conversion and queries. Every function takes an open Connection; transactions
belong to the service layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from agentceiling.domain.models import (
    BUILTIN_POLICIES,
    ActivationFlag,
    Alias,
    Entity,
    PolicyDoc,
    Profile,
    PublicKey,
    Registration,
)
from agentceiling.store.db import WRITE_OPTION
from agentceiling.store.tables import (
    activation_flags,
    admin_tokens,
    aliases,
    entities,
    meta,
    policies,
    profiles,
    registration_ceilings,
    registrations,
)

GENERATION = "generation"


def _first(conn: Connection, query: sa.Select[Any]) -> RowMapping | None:
    """First row of ``query``. Inside a write transaction on PostgreSQL the row is locked (FOR
    UPDATE), so a read-check-write sequence cannot interleave with a concurrent writer's."""
    if conn.dialect.name == "postgresql" and conn.get_execution_options().get(WRITE_OPTION):
        query = query.with_for_update()
    return conn.execute(query).mappings().first()


# ------------------------------------------------------------------ generation


def bump_generation(conn: Connection) -> int:
    row = conn.execute(
        sa.update(meta).where(meta.c.key == GENERATION).values(value=meta.c.value + 1).returning(meta.c.value)
    ).first()
    if row is None:
        conn.execute(sa.insert(meta).values(key=GENERATION, value=1))
        return 1
    return int(row[0])


def generation(conn: Connection) -> int:
    value = conn.execute(sa.select(meta.c.value).where(meta.c.key == GENERATION)).scalar()
    return int(value or 0)


# ------------------------------------------------------------------ admin tokens


def admin_token_count(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(admin_tokens)).scalar() or 0)


def insert_admin_token(conn: Connection, token_id: str, digest: str, created: str) -> None:
    conn.execute(sa.insert(admin_tokens).values(id=token_id, token_sha256=digest, creation_time=created))


def admin_token_hashes(conn: Connection) -> set[str]:
    return {str(r[0]) for r in conn.execute(sa.select(admin_tokens.c.token_sha256))}


# ------------------------------------------------------------------ policies


def _policy(row: RowMapping) -> PolicyDoc:
    return PolicyDoc(
        namespace=row["namespace"],
        name=row["name"],
        text=row["text"],
        builtin=bool(row["builtin"]),
        version=int(row["version"]),
        creation_time=row["creation_time"],
        last_updated_time=row["last_updated_time"],
    )


def get_policy(conn: Connection, namespace: str, name: str) -> PolicyDoc | None:
    row = _first(conn, sa.select(policies).where(policies.c.namespace == namespace, policies.c.name == name))
    return _policy(row) if row else None


def get_policies(conn: Connection, namespace: str, names: Sequence[str]) -> dict[str, PolicyDoc]:
    if not names:
        return {}
    rows = conn.execute(
        sa.select(policies).where(policies.c.namespace == namespace, policies.c.name.in_(list(set(names))))
    ).mappings()
    return {r["name"]: _policy(r) for r in rows}


def _bytewise(conn: Connection, column: Any) -> Any:
    """``column`` compared and ordered by code point, as Python compares strings and as page tokens
    assume. SQLite's default collation already is; a PostgreSQL database's may be a locale's
    (en_US, ICU), in which a page would not end where the next one starts."""
    return column.collate("C") if conn.dialect.name == "postgresql" else column


def list_policies(conn: Connection, namespace: str, after: str, limit: int) -> list[PolicyDoc]:
    name = _bytewise(conn, policies.c.name)
    rows = conn.execute(
        sa.select(policies).where(policies.c.namespace == namespace, name > after).order_by(name).limit(limit)
    ).mappings()
    return [_policy(r) for r in rows]


def insert_policy(conn: Connection, p: PolicyDoc) -> None:
    conn.execute(
        sa.insert(policies).values(
            namespace=p.namespace,
            name=p.name,
            text=p.text,
            builtin=p.builtin,
            version=p.version,
            creation_time=p.creation_time,
            last_updated_time=p.last_updated_time,
        )
    )


def update_policy(conn: Connection, p: PolicyDoc, prior_version: int) -> bool:
    res = conn.execute(
        sa.update(policies)
        .where(policies.c.namespace == p.namespace, policies.c.name == p.name, policies.c.version == prior_version)
        .values(text=p.text, version=p.version, last_updated_time=p.last_updated_time)
    )
    return res.rowcount == 1


def delete_policy(conn: Connection, namespace: str, name: str) -> bool:
    res = conn.execute(sa.delete(policies).where(policies.c.namespace == namespace, policies.c.name == name))
    return res.rowcount == 1


def ensure_builtin_policies(conn: Connection, namespace: str, texts: dict[str, str], now: str) -> None:
    """Create ``default`` and ``default-ceiling`` in a namespace the first time it is written to."""
    present = set(
        conn.execute(
            sa.select(policies.c.name).where(
                policies.c.namespace == namespace, policies.c.name.in_(list(BUILTIN_POLICIES))
            )
        ).scalars()
    )
    for name in BUILTIN_POLICIES:
        if name in present:
            continue
        stmt: Any
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt = pg_insert(policies).on_conflict_do_nothing()
        else:
            stmt = sa.insert(policies).prefix_with("OR IGNORE")
        conn.execute(
            stmt.values(
                namespace=namespace,
                name=name,
                text=texts[name],
                builtin=True,
                version=1,
                creation_time=now,
                last_updated_time=now,
            )
        )


def registrations_using_policy(conn: Connection, namespace: str, name: str) -> list[str]:
    rows = conn.execute(
        sa.select(registrations.c.display_name)
        .join(registration_ceilings, registration_ceilings.c.registration_id == registrations.c.id)
        .where(registration_ceilings.c.namespace == namespace, registration_ceilings.c.policy_name == name)
        .order_by(registrations.c.display_name)
    ).scalars()
    return sorted(set(rows))


# ------------------------------------------------------------------ profiles


def _profile(row: RowMapping) -> Profile:
    spec = row["spec"]
    return Profile(
        namespace=row["namespace"],
        profile_name=row["profile_name"],
        issuer_id=row["issuer_id"],
        use_jwks=bool(spec["use_jwks"]),
        jwks_uri=spec["jwks_uri"],
        jwks_ca_pem=spec["jwks_ca_pem"],
        public_keys=tuple(PublicKey(k["key_id"], k["pem"]) for k in spec["public_keys"]),
        audiences=tuple(spec["audiences"]),
        no_default_policy=bool(spec["no_default_policy"]),
        user_claim=spec["user_claim"],
        supported_algorithms=tuple(spec["supported_algorithms"]),
        jwt_type=spec["jwt_type"],
        clock_skew_leeway=int(spec["clock_skew_leeway"]),
        enabled=bool(spec["enabled"]),
        optional_authorization_details=bool(spec["optional_authorization_details"]),
        unique_id_claim=spec["unique_id_claim"],
        actor_claim=spec["actor_claim"],
        config_id=row["config_id"],
        version=int(row["version"]),
        creation_time=row["creation_time"],
        last_updated_time=row["last_updated_time"],
    )


def _profile_spec(p: Profile) -> dict[str, Any]:
    return {
        "use_jwks": p.use_jwks,
        "jwks_uri": p.jwks_uri,
        "jwks_ca_pem": p.jwks_ca_pem,
        "public_keys": [{"key_id": k.key_id, "pem": k.pem} for k in p.public_keys],
        "audiences": list(p.audiences),
        "no_default_policy": p.no_default_policy,
        "user_claim": p.user_claim,
        "supported_algorithms": list(p.supported_algorithms),
        "jwt_type": p.jwt_type,
        "clock_skew_leeway": p.clock_skew_leeway,
        "enabled": p.enabled,
        "optional_authorization_details": p.optional_authorization_details,
        "unique_id_claim": p.unique_id_claim,
        "actor_claim": p.actor_claim,
    }


def get_profile(
    conn: Connection, namespace: str, *, name: str | None = None, config_id: str | None = None
) -> Profile | None:
    q = sa.select(profiles).where(profiles.c.namespace == namespace)
    q = q.where(profiles.c.profile_name == name) if name is not None else q.where(profiles.c.config_id == config_id)
    row = _first(conn, q)
    return _profile(row) if row else None


def get_profile_by_issuer(conn: Connection, namespace: str, issuer_norm: str) -> Profile | None:
    row = _first(
        conn, sa.select(profiles).where(profiles.c.namespace == namespace, profiles.c.issuer_norm == issuer_norm)
    )
    return _profile(row) if row else None


def list_profiles(conn: Connection, namespace: str, after: str, limit: int) -> list[Profile]:
    name = _bytewise(conn, profiles.c.profile_name)
    rows = conn.execute(
        sa.select(profiles).where(profiles.c.namespace == namespace, name > after).order_by(name).limit(limit)
    ).mappings()
    return [_profile(r) for r in rows]


def all_profiles(conn: Connection) -> list[Profile]:
    return [_profile(r) for r in conn.execute(sa.select(profiles)).mappings()]


def insert_profile(conn: Connection, p: Profile, issuer_norm: str) -> None:
    conn.execute(
        sa.insert(profiles).values(
            config_id=p.config_id,
            namespace=p.namespace,
            profile_name=p.profile_name,
            issuer_id=p.issuer_id,
            issuer_norm=issuer_norm,
            spec=_profile_spec(p),
            version=p.version,
            creation_time=p.creation_time,
            last_updated_time=p.last_updated_time,
        )
    )


def update_profile(conn: Connection, p: Profile, prior_version: int) -> bool:
    res = conn.execute(
        sa.update(profiles)
        .where(profiles.c.config_id == p.config_id, profiles.c.version == prior_version)
        .values(spec=_profile_spec(p), version=p.version, last_updated_time=p.last_updated_time)
    )
    return res.rowcount == 1


def delete_profile(conn: Connection, config_id: str) -> bool:
    return conn.execute(sa.delete(profiles).where(profiles.c.config_id == config_id)).rowcount == 1


# ------------------------------------------------------------------ entities


def _entity(row: RowMapping) -> Entity:
    return Entity(
        namespace=row["namespace"],
        name=row["name"],
        policies=tuple(row["policies"]),
        metadata=dict(row["metadata"]),
        disabled=bool(row["disabled"]),
        id=row["id"],
        version=int(row["version"]),
        creation_time=row["creation_time"],
        last_updated_time=row["last_updated_time"],
    )


def get_entity(conn: Connection, namespace: str, *, id: str | None = None, name: str | None = None) -> Entity | None:
    q = sa.select(entities).where(entities.c.namespace == namespace)
    q = q.where(entities.c.id == id) if id is not None else q.where(entities.c.name == name)
    row = _first(conn, q)
    return _entity(row) if row else None


def list_entities(conn: Connection, namespace: str, after: str, limit: int) -> list[Entity]:
    rows = conn.execute(
        sa.select(entities)
        .where(entities.c.namespace == namespace, entities.c.id > after)
        .order_by(entities.c.id)
        .limit(limit)
    ).mappings()
    return [_entity(r) for r in rows]


def _entity_values(e: Entity) -> dict[str, Any]:
    return {
        "name": e.name,
        "policies": list(e.policies),
        "metadata": dict(e.metadata),
        "disabled": e.disabled,
        "version": e.version,
        "last_updated_time": e.last_updated_time,
    }


def insert_entity(conn: Connection, e: Entity) -> None:
    conn.execute(
        sa.insert(entities).values(id=e.id, namespace=e.namespace, creation_time=e.creation_time, **_entity_values(e))
    )


def update_entity(conn: Connection, e: Entity, prior_version: int) -> bool:
    res = conn.execute(
        sa.update(entities)
        .where(entities.c.id == e.id, entities.c.version == prior_version)
        .values(**_entity_values(e))
    )
    return res.rowcount == 1


def delete_entity(conn: Connection, id: str) -> bool:
    return conn.execute(sa.delete(entities).where(entities.c.id == id)).rowcount == 1


# ------------------------------------------------------------------ aliases


def _alias(row: RowMapping) -> Alias:
    return Alias(
        namespace=row["namespace"],
        name=row["name"],
        canonical_id=row["canonical_id"],
        # An alias named by its issuer only is answered with its profile's accessor (Vault
        # generates one for such an alias); a profile with aliases cannot be deleted, so it holds.
        mount_accessor=row["mount_accessor"] or row["accessor_key"],
        issuer=row["issuer"],
        external_id=row["external_id"],
        custom_metadata=dict(row["custom_metadata"]),
        id=row["id"],
        version=int(row["version"]),
        creation_time=row["creation_time"],
        last_updated_time=row["last_updated_time"],
    )


def get_alias(conn: Connection, namespace: str, id: str) -> Alias | None:
    row = _first(conn, sa.select(aliases).where(aliases.c.namespace == namespace, aliases.c.id == id))
    return _alias(row) if row else None


def find_alias(conn: Connection, namespace: str, issuer_norm: str, external_id: str) -> Alias | None:
    row = _first(
        conn,
        sa.select(aliases).where(
            aliases.c.namespace == namespace,
            aliases.c.issuer_norm == issuer_norm,
            aliases.c.external_id == external_id,
        ),
    )
    return _alias(row) if row else None


def find_alias_by_accessor_name(conn: Connection, accessor_key: str, name: str) -> Alias | None:
    row = _first(conn, sa.select(aliases).where(aliases.c.accessor_key == accessor_key, aliases.c.name == name))
    return _alias(row) if row else None


def aliases_of_entity(conn: Connection, entity_id: str) -> list[Alias]:
    rows = conn.execute(sa.select(aliases).where(aliases.c.canonical_id == entity_id)).mappings()
    return [_alias(r) for r in rows]


def aliases_of_accessor(conn: Connection, accessor_key: str, limit: int) -> tuple[list[Alias], int]:
    """Up to ``limit`` aliases bound to the profile with this mount accessor (by name), and how
    many more there are."""
    where = aliases.c.accessor_key == accessor_key
    rows = conn.execute(sa.select(aliases).where(where).order_by(aliases.c.name, aliases.c.id).limit(limit)).mappings()
    found = [_alias(r) for r in rows]
    more = 0
    if len(found) == limit:
        total = int(conn.execute(sa.select(sa.func.count()).select_from(aliases).where(where)).scalar() or 0)
        more = total - limit
    return found, more


def list_aliases(conn: Connection, namespace: str, after: str, limit: int) -> list[Alias]:
    rows = conn.execute(
        sa.select(aliases)
        .where(aliases.c.namespace == namespace, aliases.c.id > after)
        .order_by(aliases.c.id)
        .limit(limit)
    ).mappings()
    return [_alias(r) for r in rows]


def _alias_values(a: Alias, issuer_norm: str, accessor_key: str) -> dict[str, Any]:
    return {
        "name": a.name,
        "canonical_id": a.canonical_id,
        "mount_accessor": a.mount_accessor,
        "accessor_key": accessor_key,
        "issuer": a.issuer,
        "issuer_norm": issuer_norm,
        "external_id": a.external_id,
        "custom_metadata": dict(a.custom_metadata),
        "version": a.version,
        "last_updated_time": a.last_updated_time,
    }


def insert_alias(conn: Connection, a: Alias, issuer_norm: str, accessor_key: str) -> None:
    conn.execute(
        sa.insert(aliases).values(
            id=a.id, namespace=a.namespace, creation_time=a.creation_time, **_alias_values(a, issuer_norm, accessor_key)
        )
    )


def update_alias(conn: Connection, a: Alias, issuer_norm: str, accessor_key: str, prior_version: int) -> bool:
    res = conn.execute(
        sa.update(aliases)
        .where(aliases.c.id == a.id, aliases.c.version == prior_version)
        .values(**_alias_values(a, issuer_norm, accessor_key))
    )
    return res.rowcount == 1


def delete_alias(conn: Connection, id: str) -> bool:
    return conn.execute(sa.delete(aliases).where(aliases.c.id == id)).rowcount == 1


# ------------------------------------------------------------------ registrations


def _registration(row: RowMapping) -> Registration:
    return Registration(
        namespace=row["namespace"],
        display_name=row["display_name"],
        entity_id=row["entity_id"],
        description=row["description"],
        owner=row["owner"],
        requested_ceiling_policies=tuple(row["requested_ceiling_policies"]),
        no_default_ceiling_policy=bool(row["no_default_ceiling_policy"]),
        optional_authorization_details=bool(row["optional_authorization_details"]),
        id=row["id"],
        version=int(row["version"]),
        creation_time=row["creation_time"],
        last_updated_time=row["last_updated_time"],
    )


def get_registration(
    conn: Connection,
    namespace: str,
    *,
    id: str | None = None,
    display_name: str | None = None,
    entity_id: str | None = None,
) -> Registration | None:
    q = sa.select(registrations).where(registrations.c.namespace == namespace)
    if id is not None:
        q = q.where(registrations.c.id == id)
    elif display_name is not None:
        q = q.where(registrations.c.display_name == display_name)
    else:
        q = q.where(registrations.c.entity_id == entity_id)
    row = _first(conn, q)
    return _registration(row) if row else None


def list_registrations(conn: Connection, namespace: str, after: str, limit: int) -> list[Registration]:
    rows = conn.execute(
        sa.select(registrations)
        .where(registrations.c.namespace == namespace, registrations.c.id > after)
        .order_by(registrations.c.id)
        .limit(limit)
    ).mappings()
    return [_registration(r) for r in rows]


def _registration_values(r: Registration) -> dict[str, Any]:
    return {
        "display_name": r.display_name,
        "entity_id": r.entity_id,
        "description": r.description,
        "owner": r.owner,
        "requested_ceiling_policies": list(r.requested_ceiling_policies),
        "no_default_ceiling_policy": r.no_default_ceiling_policy,
        "optional_authorization_details": r.optional_authorization_details,
        "version": r.version,
        "last_updated_time": r.last_updated_time,
    }


def _write_ceilings(conn: Connection, r: Registration) -> None:
    conn.execute(sa.delete(registration_ceilings).where(registration_ceilings.c.registration_id == r.id))
    rows = [
        {"registration_id": r.id, "position": i, "namespace": r.namespace, "policy_name": name}
        for i, name in enumerate(r.ceiling_policies)
    ]
    if rows:
        conn.execute(sa.insert(registration_ceilings), rows)


def insert_registration(conn: Connection, r: Registration) -> None:
    conn.execute(
        sa.insert(registrations).values(
            id=r.id, namespace=r.namespace, creation_time=r.creation_time, **_registration_values(r)
        )
    )
    _write_ceilings(conn, r)


def update_registration(conn: Connection, r: Registration, prior_version: int) -> bool:
    res = conn.execute(
        sa.update(registrations)
        .where(registrations.c.id == r.id, registrations.c.version == prior_version)
        .values(**_registration_values(r))
    )
    if res.rowcount != 1:
        return False
    _write_ceilings(conn, r)
    return True


def delete_registration(conn: Connection, id: str) -> bool:
    return conn.execute(sa.delete(registrations).where(registrations.c.id == id)).rowcount == 1


# ------------------------------------------------------------------ activation flags


def activate_feature(conn: Connection, feature: str, now: str) -> ActivationFlag:
    row = _first(conn, sa.select(activation_flags).where(activation_flags.c.feature == feature))
    if row:
        return ActivationFlag(row["feature"], row["activated_time"])
    conn.execute(sa.insert(activation_flags).values(feature=feature, activated_time=now))
    return ActivationFlag(feature, now)


def list_activation_flags(conn: Connection) -> list[ActivationFlag]:
    rows = conn.execute(sa.select(activation_flags).order_by(activation_flags.c.feature)).mappings()
    return [ActivationFlag(r["feature"], r["activated_time"]) for r in rows]
