"""Control-plane objects. Plain dataclasses: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_NAMESPACE = "root"
DEFAULT_POLICY = "default"
DEFAULT_CEILING_POLICY = "default-ceiling"
ROOT_POLICY = "root"
BUILTIN_POLICIES = (DEFAULT_POLICY, DEFAULT_CEILING_POLICY)

ALL_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
JWT_TYPES = ("access_token", "transaction_token")


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    pem: str


@dataclass(frozen=True)
class Profile:
    namespace: str
    profile_name: str
    issuer_id: str
    use_jwks: bool = True
    jwks_uri: str = ""
    jwks_ca_pem: str = ""
    public_keys: tuple[PublicKey, ...] = ()
    audiences: tuple[str, ...] = ()
    no_default_policy: bool = False
    user_claim: str = "sub"
    supported_algorithms: tuple[str, ...] = ()
    jwt_type: str = "access_token"
    clock_skew_leeway: int = 0
    enabled: bool = True
    optional_authorization_details: bool = False
    unique_id_claim: str = "jti"
    actor_claim: str = "act.sub"
    # Read-only, assigned by the store.
    config_id: str = ""
    version: int = 0
    creation_time: str = ""
    last_updated_time: str = ""

    @property
    def mount_accessor(self) -> str:
        return mount_accessor(self.namespace, self.config_id)


def mount_accessor(namespace: str, config_id: str) -> str:
    return f"oauth-resource-server_{namespace}_{config_id}"


def normalize_issuer(issuer: str) -> str:
    """Issuer comparison key: lower-cased, trailing "/" trimmed (Vault's normalisation)."""
    return issuer.strip().lower().rstrip("/")


@dataclass(frozen=True)
class Registration:
    namespace: str
    display_name: str
    entity_id: str
    description: str = ""
    owner: str = ""
    # What the user asked for, in order; the effective list adds the defaults.
    requested_ceiling_policies: tuple[str, ...] = ()
    no_default_ceiling_policy: bool = False
    optional_authorization_details: bool = False
    id: str = ""
    version: int = 0
    creation_time: str = ""
    last_updated_time: str = ""

    @property
    def ceiling_policies(self) -> tuple[str, ...]:
        return effective_ceiling(self.requested_ceiling_policies, self.no_default_ceiling_policy)


def effective_ceiling(requested: tuple[str, ...], no_default: bool) -> tuple[str, ...]:
    """The user's policies in order, each once, then ``default`` and ``default-ceiling`` unless
    opted out (Vault appends them after the user's list, once each)."""
    out: list[str] = []
    for name in requested:
        if name not in out:
            out.append(name)
    if not no_default:
        for name in BUILTIN_POLICIES:
            if name not in out:
                out.append(name)
    return tuple(out)


@dataclass(frozen=True)
class PolicyDoc:
    namespace: str
    name: str
    text: str
    builtin: bool = False
    version: int = 0
    creation_time: str = ""
    last_updated_time: str = ""


@dataclass(frozen=True)
class Entity:
    namespace: str
    name: str
    policies: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    disabled: bool = False
    id: str = ""
    version: int = 0
    creation_time: str = ""
    last_updated_time: str = ""


@dataclass(frozen=True)
class Alias:
    namespace: str
    name: str
    canonical_id: str
    mount_accessor: str = ""
    issuer: str = ""
    external_id: str = ""
    custom_metadata: dict[str, str] = field(default_factory=dict)
    id: str = ""
    version: int = 0
    creation_time: str = ""
    last_updated_time: str = ""


@dataclass(frozen=True)
class ActivationFlag:
    feature: str
    activated_time: str
