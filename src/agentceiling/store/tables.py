"""SQLAlchemy Core tables. The schema is created and changed only through Alembic (migrations/)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _times() -> list[sa.Column[str]]:
    return [
        sa.Column("creation_time", sa.String(40), nullable=False),
        sa.Column("last_updated_time", sa.String(40), nullable=False),
    ]


meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

admin_tokens = sa.Table(
    "admin_tokens",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("creation_time", sa.String(40), nullable=False),
)

policies = sa.Table(
    "policies",
    metadata,
    sa.Column("namespace", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(512), primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("builtin", sa.Boolean, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    *_times(),
)

profiles = sa.Table(
    "profiles",
    metadata,
    sa.Column("config_id", sa.String(36), primary_key=True),
    sa.Column("namespace", sa.String(255), nullable=False),
    sa.Column("profile_name", sa.String(512), nullable=False),
    sa.Column("issuer_id", sa.Text, nullable=False),
    sa.Column("issuer_norm", sa.String(1024), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    *_times(),
    sa.UniqueConstraint("namespace", "profile_name"),
    sa.UniqueConstraint("namespace", "issuer_norm"),
)

entities = sa.Table(
    "entities",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("namespace", sa.String(255), nullable=False),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("policies", sa.JSON, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    *_times(),
    sa.UniqueConstraint("namespace", "name"),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("namespace", sa.String(255), nullable=False),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column(
        "canonical_id", sa.String(36), sa.ForeignKey("entities.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("mount_accessor", sa.String(512), nullable=False),
    # The accessor of the alias's profile, whether the client named it or only the issuer.
    sa.Column("accessor_key", sa.String(512), nullable=False),
    sa.Column("issuer", sa.Text, nullable=False),
    sa.Column("issuer_norm", sa.String(1024), nullable=False),
    sa.Column("external_id", sa.String(1024), nullable=False),
    sa.Column("custom_metadata", sa.JSON, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    *_times(),
    sa.UniqueConstraint("accessor_key", "name"),
)
sa.Index(
    "uq_aliases_issuer_external_id",
    aliases.c.namespace,
    aliases.c.issuer_norm,
    aliases.c.external_id,
    unique=True,
    sqlite_where=aliases.c.external_id != "",
    postgresql_where=aliases.c.external_id != "",
)

registrations = sa.Table(
    "registrations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("namespace", sa.String(255), nullable=False),
    sa.Column("display_name", sa.String(512), nullable=False),
    sa.Column(
        "entity_id", sa.String(36), sa.ForeignKey("entities.id", ondelete="RESTRICT"), nullable=False, unique=True
    ),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("requested_ceiling_policies", sa.JSON, nullable=False),
    sa.Column("no_default_ceiling_policy", sa.Boolean, nullable=False),
    sa.Column("optional_authorization_details", sa.Boolean, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    *_times(),
    sa.UniqueConstraint("namespace", "display_name"),
)

# One row per effective ceiling policy: the foreign key makes the database itself refuse to drop a
# policy that still caps an agent.
registration_ceilings = sa.Table(
    "registration_ceilings",
    metadata,
    sa.Column(
        "registration_id", sa.String(36), sa.ForeignKey("registrations.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("namespace", sa.String(255), nullable=False),
    sa.Column("policy_name", sa.String(512), nullable=False),
    sa.ForeignKeyConstraint(
        ["namespace", "policy_name"],
        ["policies.namespace", "policies.name"],
        ondelete="RESTRICT",
        name="fk_registration_ceilings_policy",
    ),
    sa.Index("ix_registration_ceilings_policy", "namespace", "policy_name"),
)

activation_flags = sa.Table(
    "activation_flags",
    metadata,
    sa.Column("feature", sa.String(255), primary_key=True),
    sa.Column("activated_time", sa.String(40), nullable=False),
)
