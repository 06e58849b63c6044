"""Initial schema: profiles, registrations, policies, entities, aliases, generation counter.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _times() -> list[sa.Column[str]]:
    return [
        sa.Column("creation_time", sa.String(40), nullable=False),
        sa.Column("last_updated_time", sa.String(40), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_meta"),
    )
    op.bulk_insert(sa.table("meta", sa.column("key"), sa.column("value")), [{"key": "generation", "value": 0}])
    op.create_table(
        "admin_tokens",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("creation_time", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admin_tokens"),
        sa.UniqueConstraint("token_sha256", name="uq_admin_tokens_token_sha256"),
    )
    op.create_table(
        "policies",
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("builtin", sa.Boolean, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        *_times(),
        sa.PrimaryKeyConstraint("namespace", "name", name="pk_policies"),
    )
    op.create_table(
        "profiles",
        sa.Column("config_id", sa.String(36), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("profile_name", sa.String(512), nullable=False),
        sa.Column("issuer_id", sa.Text, nullable=False),
        sa.Column("issuer_norm", sa.String(1024), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        *_times(),
        sa.PrimaryKeyConstraint("config_id", name="pk_profiles"),
        sa.UniqueConstraint("namespace", "profile_name", name="uq_profiles_namespace_profile_name"),
        sa.UniqueConstraint("namespace", "issuer_norm", name="uq_profiles_namespace_issuer_norm"),
    )
    op.create_table(
        "entities",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("policies", sa.JSON, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        *_times(),
        sa.PrimaryKeyConstraint("id", name="pk_entities"),
        sa.UniqueConstraint("namespace", "name", name="uq_entities_namespace_name"),
    )
    op.create_table(
        "aliases",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("canonical_id", sa.String(36), nullable=False),
        sa.Column("mount_accessor", sa.String(512), nullable=False),
        sa.Column("accessor_key", sa.String(512), nullable=False),
        sa.Column("issuer", sa.Text, nullable=False),
        sa.Column("issuer_norm", sa.String(1024), nullable=False),
        sa.Column("external_id", sa.String(1024), nullable=False),
        sa.Column("custom_metadata", sa.JSON, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        *_times(),
        sa.PrimaryKeyConstraint("id", name="pk_aliases"),
        sa.ForeignKeyConstraint(
            ["canonical_id"], ["entities.id"], ondelete="CASCADE", name="fk_aliases_canonical_id_entities"
        ),
        sa.UniqueConstraint("accessor_key", "name", name="uq_aliases_accessor_key_name"),
    )
    op.create_index("ix_aliases_canonical_id", "aliases", ["canonical_id"])
    op.create_index(
        "uq_aliases_issuer_external_id",
        "aliases",
        ["namespace", "issuer_norm", "external_id"],
        unique=True,
        sqlite_where=sa.text("external_id != ''"),
        postgresql_where=sa.text("external_id != ''"),
    )
    op.create_table(
        "registrations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("display_name", sa.String(512), nullable=False),
        sa.Column("entity_id", sa.String(36), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("requested_ceiling_policies", sa.JSON, nullable=False),
        sa.Column("no_default_ceiling_policy", sa.Boolean, nullable=False),
        sa.Column("optional_authorization_details", sa.Boolean, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        *_times(),
        sa.PrimaryKeyConstraint("id", name="pk_registrations"),
        sa.ForeignKeyConstraint(
            ["entity_id"], ["entities.id"], ondelete="RESTRICT", name="fk_registrations_entity_id_entities"
        ),
        sa.UniqueConstraint("entity_id", name="uq_registrations_entity_id"),
        sa.UniqueConstraint("namespace", "display_name", name="uq_registrations_namespace_display_name"),
    )
    op.create_table(
        "registration_ceilings",
        sa.Column("registration_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("policy_name", sa.String(512), nullable=False),
        sa.PrimaryKeyConstraint("registration_id", "position", name="pk_registration_ceilings"),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["registrations.id"],
            ondelete="CASCADE",
            name="fk_registration_ceilings_registration_id_registrations",
        ),
        sa.ForeignKeyConstraint(
            ["namespace", "policy_name"],
            ["policies.namespace", "policies.name"],
            ondelete="RESTRICT",
            name="fk_registration_ceilings_policy",
        ),
    )
    op.create_index("ix_registration_ceilings_policy", "registration_ceilings", ["namespace", "policy_name"])
    op.create_table(
        "activation_flags",
        sa.Column("feature", sa.String(255), nullable=False),
        sa.Column("activated_time", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("feature", name="pk_activation_flags"),
    )


def downgrade() -> None:
    for table in (
        "activation_flags",
        "registration_ceilings",
        "registrations",
        "aliases",
        "entities",
        "profiles",
        "policies",
        "admin_tokens",
        "meta",
    ):
        op.drop_table(table)
