"""Validation and advisory warnings for control-plane objects. Pure functions, no I/O.

Error texts follow Vault's where Vault publishes them (vault-semantics §2.1)."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from agentceiling.domain.errors import FieldViolation, InvalidArgument, Violations
from agentceiling.domain.models import (
    ALL_ALGORITHMS,
    JWT_TYPES,
    ROOT_POLICY,
    Alias,
    Entity,
    Profile,
    Registration,
    normalize_issuer,
)

NAME_MAX = 512
NAMESPACE_MAX = 255
URL_MAX = 1024
ID_MAX = 36  # every id the control plane assigns is a UUID
FEATURE_MAX = 255
# PostgreSQL refuses a btree index entry over ~2700 bytes, whatever the column's character limit; the
# unique keys (namespace, name), (namespace, issuer) and (namespace, issuer, external_id) stay under
# it with these UTF-8 byte bounds.
NAMESPACE_MAX_BYTES = 2 * NAMESPACE_MAX
NAME_MAX_BYTES = 2 * NAME_MAX
URL_MAX_BYTES = URL_MAX
ECHO_MAX = 100  # the most of a user's value an error message repeats
CLAIM_MAX = 256
TEXT_MAX = 16 * 1024
POLICY_MAX = 3584 * 1024  # a reply carrying it still fits the 4 MiB message limit
POLICY_MAX_BYTES = POLICY_MAX  # ... which counts bytes: a policy of "é"s is half as many characters
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


# ---------------------------------------------------------------- echoing values


def clip(value: str, limit: int = ECHO_MAX) -> str:
    """``value`` cut to ``limit`` characters (marked with "…"), for repeating it in a message."""
    return value if len(value) <= limit else value[:limit] + "…"


def shown(value: str, limit: int = ECHO_MAX) -> str:
    """``value`` as an error message may repeat it: clipped, invisible characters escaped."""
    return "".join(c.encode("unicode_escape").decode() if is_invisible(c) else c for c in clip(value, limit))


# ---------------------------------------------------------------- characters


_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def is_invisible(c: str) -> bool:
    """C0/C1 controls and DEL (Cc), zero-width and bidi formatting characters (Cf), U+2028/2029."""
    return unicodedata.category(c) in _INVISIBLE


def invisible_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a name, a namespace or a feature: a control character, or a
    character that cannot be seen (which would let two different names look the same)."""
    for c in value:
        if unicodedata.category(c) == "Cc":
            return "must not contain control characters"
        if is_invisible(c):
            return f"must not contain invisible formatting or separator characters (found U+{ord(c):04X})"
    return None


# ---------------------------------------------------------------- shared checks


def check_text(v: Violations, field: str, value: str, max_len: int, max_bytes: int = 0) -> bool:
    """Length and NUL checks shared by every free-text field; True when the value passed.
    ``max_bytes`` also bounds the UTF-8 length (for values in a unique index)."""
    if "\x00" in value:
        v.add(field, "must not contain NUL characters")
        return False
    if len(value) > max_len:
        v.add(field, f"must be at most {max_len} characters")
        return False
    if max_bytes and len(value.encode()) > max_bytes:
        v.add(field, f"must be at most {max_bytes} bytes in UTF-8")
        return False
    return True


def check_key(field: str, value: str, max_len: int = NAME_MAX) -> None:
    """A lookup key (a name or an id a request reads, updates or deletes by): present, no NUL, not
    longer than any stored key can be. Raise InvalidArgument naming ``field``."""
    v = Violations()
    if not value:
        v.add(field, f"{field} is required")
    else:
        check_text(v, field, value, max_len)
    v.raise_if_any()


def check_list(v: Violations, field: str, values: tuple[str, ...], max_items: int, max_len: int) -> bool:
    if len(values) > max_items:
        v.add(field, f"must have at most {max_items} entries")
        return False
    ok = True
    for i, value in enumerate(values):
        ok = check_text(v, f"{field}[{i}]", value, max_len) and ok
    return ok


def map_entry_problem(key: str, value: str) -> str | None:
    """What is wrong with one entry of a metadata map (shared with the Terraform provider's
    plan-time checks), None when nothing is."""
    if "\x00" in key:
        return "key must not contain NUL characters"
    if len(key) > MAP_KEY_MAX:
        return f"key must be at most {MAP_KEY_MAX} characters"
    if "\x00" in value:
        return "must not contain NUL characters"
    if len(value) > MAP_VALUE_MAX:
        return f"must be at most {MAP_VALUE_MAX} characters"
    return None


def check_map(v: Violations, field: str, values: dict[str, str]) -> None:
    if len(values) > LIST_MAX:
        v.add(field, f"must have at most {LIST_MAX} entries")
        return
    for key, value in values.items():
        if problem := map_entry_problem(key, value):
            v.add(f"{field}[{shown(key, 64)}]", problem)


def check_namespace(namespace: str, field: str = "namespace", *, creating: bool = False) -> None:
    """``creating``: the request may add the namespace's first row, so the UTF-8 bound of the
    unique indexes and the character rules apply too (a lookup needs neither, and so still
    reaches rows written before those rules)."""
    if not namespace:
        raise InvalidArgument.one(field, "value cannot be empty")
    v = Violations()
    if (
        check_text(v, field, namespace, NAMESPACE_MAX, NAMESPACE_MAX_BYTES if creating else 0)
        and creating
        and (problem := invisible_problem(namespace))
    ):
        v.add(field, problem)
    v.raise_if_any()
    if namespace.startswith("/") or namespace.endswith("/"):
        raise InvalidArgument.one(field, f'value {shown(namespace)} contains leading/trailing "/"')
    if any(not part for part in namespace.split("/")) or any(c.isspace() for c in namespace):
        raise InvalidArgument.one(field, "invalid Vault path")


def url_problem(value: str, *, ascii_only: bool = False, credentials: bool = True) -> str | None:
    """None when ``value`` is an absolute http(s) URL that an HTTP client can use as it is;
    otherwise what is wrong (without repeating the value)."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return "must be an absolute http or https URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http or https URL"
    # urlsplit quietly drops tabs and newlines and strips the ends; an HTTP client would not.
    for c in value:
        if c.isspace() or is_invisible(c):
            return f"must not contain whitespace or control characters (found U+{ord(c):04X})"
        if ascii_only and ord(c) > 0x7E:
            return f"must contain only ASCII characters; percent-encode U+{ord(c):04X}"
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = 0
    if port == 0:  # ("host:" is the default port, as in Go: port None)
        return "has an invalid port: it must be a number from 1 to 65535"
    if not credentials and (parts.username is not None or parts.password is not None):
        return "must not carry credentials (user:password@)"
    return None


def is_http_url(value: str) -> bool:
    return url_problem(value) is None


def _check_name(v: Violations, field: str, value: str) -> None:
    if not check_text(v, field, value, NAME_MAX, NAME_MAX_BYTES):
        return
    if not value or not value.strip():
        v.add(field, "is required and cannot be empty")
    elif value != value.strip():
        v.add(field, "must not begin or end with whitespace")
    else:
        problem = invisible_problem(value)
        if problem:
            v.add(field, problem)


class UnusableKey(ValueError):
    """A PEM public key that parses but that no supported algorithm can use."""


KEY_RULES = "accepted: RSA of 2048 to 8192 bits, EC P-256, P-384 or P-521, Ed25519"


def pem_kind(pem: str) -> str:
    """Return "public", "certificate" or "private"; raise ValueError when it is none of them
    (``UnusableKey`` for a public key or certificate that the token validator would refuse: the
    same rules, from ``agentceiling.tokens.keys``). Shared with the Terraform provider's plan-time
    checks."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from agentceiling.tokens.keys import load_pem_key  # pure: parsing only, no I/O

    data = pem.strip().encode()
    if b"PRIVATE KEY" in data:
        return "private"
    kind = ""
    try:
        load_pem_public_key(data)
        kind = "public"
    except UnsupportedAlgorithm as exc:
        raise UnusableKey(str(exc)) from None
    except (ValueError, TypeError):
        pass
    if not kind:
        try:
            x509.load_pem_x509_certificate(data)
            kind = "certificate"
        except ValueError:
            raise ValueError("not a PEM public key or certificate") from None
    try:
        load_pem_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UnusableKey(str(exc) or "the key type is not supported") from None
    return kind


def validate_profile(p: Profile, prior: Profile | None = None) -> list[str]:
    """Raise InvalidArgument listing every problem; return Vault's advisory warnings."""
    v = Violations()
    _check_name(v, "profile_name", p.profile_name)
    if not p.issuer_id:
        v.add("issuer_id", "issuer_id is required")
    elif not check_text(v, "issuer_id", p.issuer_id, URL_MAX):
        pass
    elif problem := url_problem(p.issuer_id):
        v.add("issuer_id", f"issuer_id {clip(p.issuer_id)!r} {problem}")
    elif prior is not None and p.issuer_id != prior.issuer_id:
        v.add("issuer_id", f"issuer_id cannot be changed after creation (currently {clip(prior.issuer_id)!r})")
    elif prior is None and not check_text(v, "issuer_id", normalize_issuer(p.issuer_id), URL_MAX, URL_MAX_BYTES):
        # Lower-casing can lengthen a string ("\u0130" becomes two characters); the stored
        # comparison key must still fit. Replace the generic text with what was measured.
        v.items[-1] = FieldViolation(
            "issuer_id",
            f"issuer_id must be at most {URL_MAX} characters and {URL_MAX_BYTES} UTF-8 bytes once normalised "
            '(lower-cased, trailing "/" removed)',
        )
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
    elif (
        p.jwks_uri
        and check_text(v, "jwks_uri", p.jwks_uri, URL_MAX)
        # The JWKS client sends the URL as it is: ASCII only, no credentials in it.
        and (problem := url_problem(p.jwks_uri, ascii_only=True, credentials=False))
    ):
        v.add("jwks_uri", f"jwks_uri {clip(p.jwks_uri)!r} {problem}")
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
            v.add(f"public_keys[{i}].key_id", f'duplicate key_id "{shown(key.key_id)}"')
        seen.add(key.key_id)
        if not key.pem.strip():
            v.add(f"public_keys[{i}].pem", "pem is required")
            continue
        try:
            kind = pem_kind(key.pem)
        except UnusableKey as exc:
            v.add(f"public_keys[{i}].pem", f"pem holds a key that cannot verify tokens: {exc} ({KEY_RULES})")
            continue
        except ValueError:
            v.add(f"public_keys[{i}].pem", "pem must be a PEM-encoded public key or certificate")
            continue
        if kind == "private":
            v.add(f"public_keys[{i}].pem", "pem is a private key; only public keys or certificates are accepted")

    check_list(v, "audiences", p.audiences, LIST_MAX, URL_MAX)
    for i, aud in enumerate(p.audiences):
        if not aud:
            v.add(f"audiences[{i}]", "audience cannot be empty")
    for name in ("user_claim", "unique_id_claim", "actor_claim"):
        check_text(v, name, getattr(p, name), CLAIM_MAX)
    algs_seen: set[str] = set()
    if len(p.supported_algorithms) > len(ALL_ALGORITHMS):
        v.add(
            "supported_algorithms",
            f"must have at most {len(ALL_ALGORITHMS)} entries (each supported algorithm once)",
        )
    else:
        for i, alg in enumerate(p.supported_algorithms):
            if alg not in ALL_ALGORITHMS:
                v.add(
                    f"supported_algorithms[{i}]",
                    f'unsupported algorithm "{shown(alg, 64)}"; supported: {", ".join(ALL_ALGORITHMS)}',
                )
            elif alg in algs_seen:
                v.add(f"supported_algorithms[{i}]", f'duplicate algorithm "{alg}"')
            algs_seen.add(alg)
    if p.jwt_type not in JWT_TYPES:
        v.add(
            "jwt_type",
            f'jwt_type must be one of "access_token", "transaction_token", got "{shown(p.jwt_type, 64)}"',
        )
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
    warnings.extend(_keys_without_algorithm(p))
    return warnings


def _keys_without_algorithm(p: Profile) -> list[str]:
    """A public key that fits none of the supported algorithms can never verify a token: say so
    (a warning, as the algorithms or the keys may be about to change in a later write)."""
    if p.use_jwks or not p.supported_algorithms:
        return []
    from agentceiling.tokens.keys import load_pem_key  # pure: parsing only, no I/O

    allowed = set(p.supported_algorithms)
    out = []
    for key in p.public_keys:
        try:
            loaded = load_pem_key(key.pem)
        except ValueError:
            continue  # refused by validate_profile already
        if not allowed & set(loaded.algorithms):
            out.append(
                f'public key "{shown(key.key_id, 64)}" ({loaded.description}) fits none of supported_algorithms '
                f"({', '.join(p.supported_algorithms)}): tokens signed with it will be refused; it needs one of "
                f"{', '.join(sorted(loaded.algorithms))}"
            )
    return out


def validate_registration(r: Registration) -> None:
    v = Violations()
    _check_name(v, "display_name", r.display_name)
    if not r.entity_id:
        v.add("entity_id", "entity_id is required")
    check_text(v, "entity_id", r.entity_id, CLAIM_MAX)
    check_text(v, "description", r.description, TEXT_MAX)
    check_text(v, "owner", r.owner, TEXT_MAX)
    _check_policy_names(
        v, "ceiling_policies", r.requested_ceiling_policies, '"root" cannot be used as a ceiling policy'
    )
    v.raise_if_any()


_POLICY_NAME = re.compile(r"^[^\s/][^\s]*$")
POLICY_LIST_MAX = 256


def policy_name_problem(name: str) -> str | None:
    """What is wrong with a non-empty policy name of a valid length (None when nothing)."""
    if not _POLICY_NAME.match(name) or name.endswith("/"):
        return f'invalid policy name "{shown(name)}"'
    return invisible_problem(name)


def _check_policy_names(v: Violations, field: str, names: tuple[str, ...], root_message: str) -> None:
    """A list of policy names (an entity's policies, a registration's ceiling): each a valid name,
    each at most once. Vault keeps such lists as given, so a repeated name is refused rather than
    silently dropped (a dropped one would come back as a change Terraform did not plan)."""
    if len(names) > POLICY_LIST_MAX:
        v.add(field, f"must have at most {POLICY_LIST_MAX} entries")
        return
    seen: set[str] = set()
    for i, name in enumerate(names):
        where = f"{field}[{i}]"
        if not check_text(v, where, name, NAME_MAX):
            continue
        if not name:
            v.add(where, "policy name cannot be empty")
        elif name == ROOT_POLICY:
            v.add(where, root_message)
        elif problem := policy_name_problem(name):
            v.add(where, problem)
        elif name in seen:
            v.add(where, f'duplicate policy "{shown(name)}"')
        seen.add(name)


def validate_policy_name(name: str) -> None:
    v = Violations()
    _check_name(v, "name", name)
    v.raise_if_any()
    if not _POLICY_NAME.match(name) or name.endswith("/"):
        raise InvalidArgument.one("name", f'invalid policy name "{shown(name)}"')


def validate_policy_text(text: str) -> None:
    v = Violations()
    check_text(v, "policy", text, POLICY_MAX, POLICY_MAX_BYTES)
    v.raise_if_any()


def validate_feature(feature: str) -> None:
    """An activation-flag name: one path segment, visible characters only."""
    v = Violations()
    if not feature:
        v.add("feature", "feature is required")
    elif check_text(v, "feature", feature, FEATURE_MAX, 4 * FEATURE_MAX):
        if problem := invisible_problem(feature):
            v.add("feature", problem)
        elif "/" in feature or feature != feature.strip():
            v.add("feature", f'invalid feature name "{shown(feature)}"')
    v.raise_if_any()


def validate_entity(e: Entity) -> None:
    v = Violations()
    if e.name:
        _check_name(v, "name", e.name)
    _check_policy_names(v, "policies", e.policies, '"root" cannot be attached to an entity')
    check_map(v, "metadata", e.metadata)
    v.raise_if_any()


def validate_alias(a: Alias) -> None:
    v = Violations()
    _check_name(v, "name", a.name)
    if not a.canonical_id:
        v.add("canonical_id", "canonical_id is required")
    check_text(v, "canonical_id", a.canonical_id, CLAIM_MAX)
    check_text(v, "mount_accessor", a.mount_accessor, NAME_MAX)
    check_text(v, "external_id", a.external_id, URL_MAX, URL_MAX_BYTES)
    check_map(v, "custom_metadata", a.custom_metadata)
    if not a.mount_accessor and not a.issuer:
        v.add("mount_accessor", "an alias needs a mount_accessor, an issuer, or both")
    if a.issuer and check_text(v, "issuer", a.issuer, URL_MAX) and (problem := url_problem(a.issuer)):
        v.add("issuer", f"issuer {clip(a.issuer)!r} {problem}")
    v.raise_if_any()
