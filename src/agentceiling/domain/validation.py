"""Validation and advisory warnings for control-plane objects. Pure functions, no I/O.

Error texts follow Vault's where Vault publishes them (vault-semantics §2.1)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from agentceiling.domain.errors import InvalidArgument, Violations
from agentceiling.domain.models import (
    ALL_ALGORITHMS,
    JWT_TYPES,
    ROOT_POLICY,
    Alias,
    Entity,
    Profile,
    Registration,
)

NAME_MAX = 512
NAMESPACE_MAX = 255
URL_MAX = 1024
CLAIM_MAX = 256
TEXT_MAX = 16 * 1024
POLICY_MAX = 3584 * 1024  # a reply carrying it still fits the 4 MiB message limit
PEM_MAX = 16 * 1024
CA_PEM_MAX = 256 * 1024
LIST_MAX = 64
MAP_KEY_MAX = 256
MAP_VALUE_MAX = 4096
_STANDARD_USER_CLAIMS = frozenset(
    {"sub", "email", "preferred_username", "name", "upn", "username", "client_id", "azp", "appid"}
)
_FAMILIES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}

WARN_HTTP_JWKS = "JWKS URI uses HTTP instead of HTTPS. This is insecure and should only be used in development."
WARN_LONG_NAME = "Profile name exceeds 64 characters. Consider using a shorter name for better readability."
WARN_DISABLED = "Creating a disabled profile. Enable it with enabled=true when ready."
WARN_ONE_FAMILY = "profile supports only one algorithm family - consider supporting multiple families for flexibility"


def warn_rsa_pkcs1(alg: str) -> str:
    return f'algorithm "{alg}" is functional but consider using PS{alg[2:]} (RSA-PSS) for better security'


def warn_user_claim(claim: str) -> str:
    return f'user_claim "{claim}" is not a standard JWT claim - ensure this claim exists in your JWTs'


def check_text(v: Violations, field: str, value: str, max_len: int) -> bool:
    """Length and NUL checks shared by every free-text field; True when the value passed."""
    if "\x00" in value:
        v.add(field, "must not contain NUL characters")
        return False
    if len(value) > max_len:
        v.add(field, f"must be at most {max_len} characters")
        return False
    return True


def check_list(v: Violations, field: str, values: tuple[str, ...], max_items: int, max_len: int) -> None:
    if len(values) > max_items:
        v.add(field, f"must have at most {max_items} entries")
        return
    for i, value in enumerate(values):
        check_text(v, f"{field}[{i}]", value, max_len)


def check_map(v: Violations, field: str, values: dict[str, str]) -> None:
    if len(values) > LIST_MAX:
        v.add(field, f"must have at most {LIST_MAX} entries")
        return
    for key, value in values.items():
        if check_text(v, field, key, MAP_KEY_MAX):
            check_text(v, f"{field}[{key}]", value, MAP_VALUE_MAX)


def check_namespace(namespace: str, field: str = "namespace") -> None:
    if not namespace:
        raise InvalidArgument.one(field, "value cannot be empty")
    v = Violations()
    check_text(v, field, namespace, NAMESPACE_MAX)
    v.raise_if_any()
    if namespace.startswith("/") or namespace.endswith("/"):
        raise InvalidArgument.one(field, f'value {namespace} contains leading/trailing "/"')
    if any(not part for part in namespace.split("/")) or any(c.isspace() for c in namespace):
        raise InvalidArgument.one(field, "invalid Vault path")


def is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _check_name(v: Violations, field: str, value: str) -> None:
    if not check_text(v, field, value, NAME_MAX):
        return
    if not value or not value.strip():
        v.add(field, "is required and cannot be empty")
    elif value != value.strip():
        v.add(field, "must not begin or end with whitespace")
    elif any(ord(c) < 32 for c in value):
        v.add(field, "must not contain control characters")


class UnusableKey(ValueError):
    """A PEM public key that parses but that no supported algorithm can use."""


def pem_kind(pem: str) -> str:
    """Return "public", "certificate" or "private"; raise ValueError when it is none of them
    (``UnusableKey`` for a public key of a type we cannot use). Shared with the Terraform
    provider's plan-time checks."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = pem.strip().encode()
    if b"PRIVATE KEY" in data:
        return "private"
    try:
        load_pem_public_key(data)
        return "public"
    except UnsupportedAlgorithm as exc:
        raise UnusableKey(str(exc)) from None
    except (ValueError, TypeError):
        pass
    try:
        x509.load_pem_x509_certificate(data)
        return "certificate"
    except ValueError:
        pass
    raise ValueError("not a PEM public key or certificate")


def validate_profile(p: Profile, prior: Profile | None = None) -> list[str]:
    """Raise InvalidArgument listing every problem; return Vault's advisory warnings."""
    v = Violations()
    _check_name(v, "profile_name", p.profile_name)
    if not p.issuer_id:
        v.add("issuer_id", "issuer_id is required")
    elif not check_text(v, "issuer_id", p.issuer_id, URL_MAX):
        pass
    elif not is_http_url(p.issuer_id):
        v.add("issuer_id", f"issuer_id {p.issuer_id!r} must be an absolute http or https URL")
    elif prior is not None and p.issuer_id != prior.issuer_id:
        v.add("issuer_id", f"issuer_id cannot be changed after creation (currently {prior.issuer_id!r})")
    if prior is not None and p.unique_id_claim != prior.unique_id_claim:
        v.add("unique_id_claim", "unique_id_claim cannot be changed after creation")

    # The key source: Vault's four errors, in Vault's order. One violation per field: a field
    # caught in a conflict is not also checked for its format.
    if p.use_jwks and not p.jwks_uri:
        v.add("jwks_uri", "jwks_uri is required when use_jwks=true")
    elif not p.use_jwks and not p.public_keys:
        v.add("public_keys", "public_keys is required when use_jwks=false")
    elif p.use_jwks and p.public_keys:
        v.add("public_keys", "cannot specify both use_jwks=true and public_keys")
    elif not p.use_jwks and p.jwks_uri:
        v.add("jwks_uri", "cannot specify both use_jwks=false and jwks_uri")
    elif p.jwks_uri and check_text(v, "jwks_uri", p.jwks_uri, URL_MAX) and not is_http_url(p.jwks_uri):
        v.add("jwks_uri", f"jwks_uri {p.jwks_uri!r} must be an absolute http or https URL")
    if not p.use_jwks and p.jwks_ca_pem:
        v.add("jwks_ca_pem", "jwks_ca_pem can only be used with use_jwks=true")
    elif p.jwks_ca_pem and check_text(v, "jwks_ca_pem", p.jwks_ca_pem, CA_PEM_MAX):
        try:
            from cryptography import x509

            x509.load_pem_x509_certificates(p.jwks_ca_pem.strip().encode())
        except ValueError:
            v.add("jwks_ca_pem", "jwks_ca_pem must contain one or more PEM certificates")

    seen: set[str] = set()
    if len(p.public_keys) > LIST_MAX:
        v.add("public_keys", f"must have at most {LIST_MAX} entries")
    for i, key in enumerate(p.public_keys[:LIST_MAX]):
        if not check_text(v, f"public_keys[{i}].key_id", key.key_id, CLAIM_MAX) or not check_text(
            v, f"public_keys[{i}].pem", key.pem, PEM_MAX
        ):
            continue
        if not key.key_id:
            v.add(f"public_keys[{i}].key_id", "key_id is required")
        elif key.key_id in seen:
            v.add(f"public_keys[{i}].key_id", f'duplicate key_id "{key.key_id}"')
        seen.add(key.key_id)
        if not key.pem.strip():
            v.add(f"public_keys[{i}].pem", "pem is required")
            continue
        try:
            kind = pem_kind(key.pem)
        except ValueError:
            v.add(f"public_keys[{i}].pem", "pem must be a PEM-encoded public key or certificate")
            continue
        if kind == "private":
            v.add(f"public_keys[{i}].pem", "pem is a private key; only public keys or certificates are accepted")

    check_list(v, "audiences", p.audiences, LIST_MAX, URL_MAX)
    for i, aud in enumerate(p.audiences):
        if not aud:
            v.add(f"audiences[{i}]", "audience cannot be empty")
    for name in ("user_claim", "unique_id_claim", "actor_claim", "jwt_type"):
        check_text(v, name, getattr(p, name), CLAIM_MAX)
    algs_seen: set[str] = set()
    for i, alg in enumerate(p.supported_algorithms):
        if alg not in ALL_ALGORITHMS:
            v.add(
                f"supported_algorithms[{i}]",
                f'unsupported algorithm "{alg}"; supported: {", ".join(ALL_ALGORITHMS)}',
            )
        elif alg in algs_seen:
            v.add(f"supported_algorithms[{i}]", f'duplicate algorithm "{alg}"')
        algs_seen.add(alg)
    if p.jwt_type not in JWT_TYPES:
        v.add("jwt_type", f'jwt_type must be one of "access_token", "transaction_token", got "{p.jwt_type}"')
    if p.clock_skew_leeway < 0:
        v.add("clock_skew_leeway", "clock_skew_leeway must be at least 0")
    if not p.user_claim:
        v.add("user_claim", "user_claim cannot be empty")
    if not p.unique_id_claim:
        v.add("unique_id_claim", "unique_id_claim cannot be empty")
    if not p.actor_claim or any(not part for part in p.actor_claim.split(".")):
        v.add("actor_claim", "actor_claim must be a claim name or a dotted path such as act.sub")
    v.raise_if_any()
    return profile_warnings(p, creating=prior is None)


def profile_warnings(p: Profile, creating: bool) -> list[str]:
    warnings: list[str] = []
    if len(p.profile_name) > 64:
        warnings.append(WARN_LONG_NAME)
    if p.use_jwks and p.jwks_uri.lower().startswith("http://"):
        warnings.append(WARN_HTTP_JWKS)
    if creating and not p.enabled:
        warnings.append(WARN_DISABLED)
    algs = set(p.supported_algorithms)
    for alg in p.supported_algorithms:
        # Advice only where the RSA-PSS twin is not already accepted.
        if alg.startswith("RS") and f"PS{alg[2:]}" not in algs:
            warnings.append(warn_rsa_pkcs1(alg))
    families = {_FAMILIES[a[:2]] for a in p.supported_algorithms if a[:2] in _FAMILIES}
    if len(families) == 1:
        warnings.append(WARN_ONE_FAMILY)
    if p.user_claim and p.user_claim not in _STANDARD_USER_CLAIMS:
        warnings.append(warn_user_claim(p.user_claim))
    return warnings


def validate_registration(r: Registration) -> None:
    v = Violations()
    _check_name(v, "display_name", r.display_name)
    if not r.entity_id:
        v.add("entity_id", "entity_id is required")
    check_text(v, "entity_id", r.entity_id, CLAIM_MAX)
    check_text(v, "description", r.description, TEXT_MAX)
    check_text(v, "owner", r.owner, TEXT_MAX)
    check_list(v, "ceiling_policies", r.requested_ceiling_policies, 256, NAME_MAX)
    for i, name in enumerate(r.requested_ceiling_policies):
        if name == ROOT_POLICY:
            v.add(f"ceiling_policies[{i}]", '"root" cannot be used as a ceiling policy')
        elif not name:
            v.add(f"ceiling_policies[{i}]", "policy name cannot be empty")
    v.raise_if_any()


_POLICY_NAME = re.compile(r"^[^\s/][^\s]*$")


def validate_policy_name(name: str) -> None:
    v = Violations()
    _check_name(v, "name", name)
    v.raise_if_any()
    if not _POLICY_NAME.match(name) or name.endswith("/"):
        raise InvalidArgument.one("name", f'invalid policy name "{name}"')


def validate_policy_text(text: str) -> None:
    v = Violations()
    check_text(v, "policy", text, POLICY_MAX)
    v.raise_if_any()


def validate_entity(e: Entity) -> None:
    v = Violations()
    if e.name:
        _check_name(v, "name", e.name)
    check_list(v, "policies", e.policies, 256, NAME_MAX)
    check_map(v, "metadata", e.metadata)
    for i, name in enumerate(e.policies):
        if not name:
            v.add(f"policies[{i}]", "policy name cannot be empty")
        elif name == ROOT_POLICY:
            v.add(f"policies[{i}]", '"root" cannot be attached to an entity')
    v.raise_if_any()


def validate_alias(a: Alias) -> None:
    v = Violations()
    _check_name(v, "name", a.name)
    if not a.canonical_id:
        v.add("canonical_id", "canonical_id is required")
    check_text(v, "canonical_id", a.canonical_id, CLAIM_MAX)
    check_text(v, "mount_accessor", a.mount_accessor, NAME_MAX)
    check_text(v, "external_id", a.external_id, URL_MAX)
    check_map(v, "custom_metadata", a.custom_metadata)
    if not a.mount_accessor and not a.issuer:
        v.add("mount_accessor", "an alias needs a mount_accessor, an issuer, or both")
    if a.issuer and check_text(v, "issuer", a.issuer, URL_MAX) and not is_http_url(a.issuer):
        v.add("issuer", f"issuer {a.issuer!r} must be an absolute http or https URL")
    v.raise_if_any()
