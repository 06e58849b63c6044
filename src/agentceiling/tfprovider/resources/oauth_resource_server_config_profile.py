"""``vault_oauth_resource_server_config_profile``: an OAuth resource-server profile that tells the
authorization endpoint which issuer's JWTs to accept and how to verify them.

Schema, defaults and import follow terraform-provider-vault 5.10+ attribute for attribute
(vault-semantics §1.3). Better than the original: every rule the control plane enforces is checked
at plan time on the attribute it concerns (key-source conflicts with Vault's own messages,
algorithm names, ``jwt_type``, ``clock_skew_leeway``, URLs, and each ``pem``), and reads never
turn an empty list into null or back, so no "Provider produced inconsistent result"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentceiling.domain.models import ALL_ALGORITHMS, JWT_TYPES
from agentceiling.tfprovider.client import ControlPlaneClient
from agentceiling.tfprovider.framework.types import (
    BOOL,
    NUMBER,
    STRING,
    UNKNOWN,
    Attribute,
    AttributePath,
    Block,
    Diagnostics,
    Schema,
    list_of,
)
from agentceiling.tfprovider.resources._common import (
    NAMESPACE_ATTRIBUTE,
    VaultResource,
    check_namespace,
    http_url_problem,
    import_namespace,
    known,
    list_back,
    str_back,
    value_or,
)

# terraform-provider-vault's default (and order). The accepted algorithms and token types are the
# control plane's own lists: its OneOf list plus EdDSA, which the control plane (like Vault 2.2) accepts.
DEFAULT_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]
ALGORITHMS = ALL_ALGORITHMS

MAX_INT64 = 2**63 - 1
"""The attribute is an Int64 in terraform-provider-vault."""

SCHEMA = Schema(
    description=(
        "Manages an OAuth resource-server configuration profile: the issuer whose JWTs AI agents "
        "present, and how to verify them (JWKS or static public keys)."
    ),
    attributes=(
        Attribute(
            "id",
            STRING,
            "The profile's config_id (a UUID, stable across updates).",
            computed=True,
            use_state_for_unknown=True,
        ),
        NAMESPACE_ATTRIBUTE,
        Attribute(
            "profile_name",
            STRING,
            "Name of the profile, unique in its namespace. Changing it forces a new resource.",
            required=True,
            requires_replace=True,
        ),
        Attribute(
            "issuer_id",
            STRING,
            "The issuer (`iss` claim) this profile accepts: an absolute http(s) "
            "URL, stored exactly as written. Changing it forces a new resource.",
            required=True,
            requires_replace=True,
        ),
        Attribute(
            "use_jwks",
            BOOL,
            "Fetch verification keys from `jwks_uri` (true) or use the static `public_keys` blocks (false).",
            optional=True,
            computed=True,
            default=True,
        ),
        Attribute(
            "jwks_uri",
            STRING,
            "JWKS endpoint. Required when `use_jwks` is true; not allowed otherwise.",
            optional=True,
        ),
        Attribute(
            "jwks_ca_pem",
            STRING,
            "PEM CA certificate(s) to trust for the JWKS endpoint's TLS.",
            optional=True,
        ),
        Attribute(
            "audiences",
            list_of(STRING),
            "Accepted `aud` values; when set a token must carry at least one of them.",
            optional=True,
        ),
        Attribute(
            "no_default_policy",
            BOOL,
            "Do not attach the `default` policy to agent requests.",
            optional=True,
            computed=True,
            default=False,
        ),
        Attribute(
            "user_claim", STRING, "Claim that names the subject.", optional=True, computed=True, default="sub"
        ),
        Attribute(
            "supported_algorithms",
            list_of(STRING),
            "Accepted signing algorithms (RS/ES/PS 256/384/512, EdDSA).",
            optional=True,
            computed=True,
            default=list(DEFAULT_ALGORITHMS),
        ),
        Attribute(
            "jwt_type",
            STRING,
            "`access_token` or `transaction_token`.",
            optional=True,
            computed=True,
            default="access_token",
        ),
        Attribute(
            "clock_skew_leeway",
            NUMBER,
            "Seconds of leeway for `exp`, `iat` and `nbf` (30-60 is typically sufficient).",
            optional=True,
            computed=True,
            default=0,
        ),
        Attribute(
            "enabled",
            BOOL,
            "Disabled profiles are ignored when tokens are validated.",
            optional=True,
            computed=True,
            default=True,
        ),
        Attribute(
            "optional_authorization_details",
            BOOL,
            "Make RAR `authorization_details` optional for every agent of this issuer.",
            optional=True,
            computed=True,
            default=False,
        ),
    ),
    blocks=(
        Block(
            "public_keys",
            (
                Attribute("key_id", STRING, "Key identifier (`kid`), unique in the profile.", required=True),
                Attribute("pem", STRING, "PEM public key or certificate.", required=True),
            ),
            description="Static verification keys; required when `use_jwks` is false.",
        ),
    ),
)

_WARNING_PATHS = (
    ("fits none of supported_algorithms", ("public_keys",)),
    ("algorithm", ("supported_algorithms",)),
    ("jwks uri", ("jwks_uri",)),
    ("user_claim", ("user_claim",)),
    ("disabled profile", ("enabled",)),
    ("profile name", ("profile_name",)),
)


def _warning_path(text: str) -> AttributePath | None:
    low = text.lower()
    for needle, path in _WARNING_PATHS:
        if needle in low:
            return path
    return None


def pem_problem(pem: str) -> str | None:
    """None when ``pem`` is a PEM public key or certificate; otherwise what is wrong."""
    data = pem.strip().encode()
    if b"PRIVATE KEY" in data:
        return (
            "This is a private key. Give the matching public key or a certificate: a private key must "
            "never be stored in Terraform configuration or state."
        )
    if not data.startswith(b"-----BEGIN "):
        return "Expected a PEM block starting with -----BEGIN PUBLIC KEY----- or -----BEGIN CERTIFICATE-----."
    from agentceiling.domain.validation import UnusableKey, pem_kind  # the control plane's own check

    try:
        pem_kind(pem)
        return None
    except UnusableKey as exc:
        return f"The public key is not usable: {exc}"
    except ValueError:
        return "The value does not parse as a PEM public key or X.509 certificate."


class OAuthResourceServerConfigProfile(VaultResource):
    type_name = "vault_oauth_resource_server_config_profile"
    schema = SCHEMA
    import_hint = "terraform import vault_oauth_resource_server_config_profile.<name> <profile_name>"
    service = "OAuthResourceServerProfiles"
    api_field = "profile"

    def subject(self, values: Mapping[str, Any]) -> str:
        return f'profile "{values.get("profile_name")}"'

    # ------------------------------------------------------------------ plan time

    def validate(self, config: dict[str, Any], diags: Diagnostics) -> None:
        check_namespace(config, diags)
        name = config.get("profile_name")
        if isinstance(name, str) and not name.strip():
            diags.error("Invalid profile_name", "profile_name cannot be empty.", ("profile_name",))

        issuer = config.get("issuer_id")
        if isinstance(issuer, str):
            problem = http_url_problem(issuer)
            if problem:
                diags.error(
                    "Invalid issuer_id",
                    f'issuer_id must be an absolute http(s) URL such as "https://idp.example.com/", '
                    f'but "{issuer}" is not: {problem}.',
                    ("issuer_id",),
                )

        self._validate_key_source(config, diags)

        for i, alg in enumerate(_as_list(config.get("supported_algorithms"))):
            if isinstance(alg, str) and alg not in ALGORITHMS:
                hint = ""
                if alg.upper() in (a.upper() for a in ALGORITHMS):
                    hint = " Algorithm names are case-sensitive."
                elif alg.upper().startswith("HS") or alg.lower() == "none":
                    hint = " HMAC and unsigned tokens are not supported."
                diags.error(
                    "Invalid supported_algorithms",
                    f'"{alg}" is not a supported algorithm; use one of {", ".join(ALGORITHMS)}.{hint}',
                    ("supported_algorithms", i),
                )
        algs = config.get("supported_algorithms")
        if isinstance(algs, list):
            seen: set[str] = set()
            for i, alg in enumerate(algs):
                if isinstance(alg, str) and alg in seen:
                    diags.error(
                        "Invalid supported_algorithms",
                        f'"{alg}" is listed twice.',
                        ("supported_algorithms", i),
                    )
                if isinstance(alg, str):
                    seen.add(alg)

        jwt_type = config.get("jwt_type")
        if isinstance(jwt_type, str) and jwt_type not in JWT_TYPES:
            diags.error(
                "Invalid jwt_type",
                f'jwt_type must be one of "access_token", "transaction_token", got "{jwt_type}".',
                ("jwt_type",),
            )

        leeway = config.get("clock_skew_leeway")
        if isinstance(leeway, int | float) and not isinstance(leeway, bool):
            if leeway != int(leeway):
                diags.error(
                    "Invalid clock_skew_leeway",
                    f"clock_skew_leeway is a whole number of seconds, got {leeway}.",
                    ("clock_skew_leeway",),
                )
            elif leeway < 0:
                diags.error(
                    "Invalid clock_skew_leeway",
                    f"clock_skew_leeway must be at least 0 seconds, got {int(leeway)}.",
                    ("clock_skew_leeway",),
                )
            elif leeway > MAX_INT64:
                diags.error(
                    "Invalid clock_skew_leeway",
                    f"clock_skew_leeway must be at most {MAX_INT64} seconds (a 64-bit integer), got {int(leeway)}.",
                    ("clock_skew_leeway",),
                )

        user_claim = config.get("user_claim")
        if isinstance(user_claim, str) and not user_claim.strip():
            diags.error("Invalid user_claim", "user_claim cannot be empty.", ("user_claim",))

        for i, aud in enumerate(_as_list(config.get("audiences"))):
            if isinstance(aud, str) and not aud:
                diags.error("Invalid audiences", "An audience cannot be the empty string.", ("audiences", i))

    def _validate_key_source(self, config: dict[str, Any], diags: Diagnostics) -> None:
        use_jwks = config.get("use_jwks")
        if use_jwks is UNKNOWN:
            use_jwks_known = False
        else:
            use_jwks_known = True
            use_jwks = True if use_jwks is None else bool(use_jwks)
        jwks_uri = config.get("jwks_uri")
        keys = config.get("public_keys")
        keys_known = keys is not UNKNOWN and isinstance(keys, list | type(None))
        has_keys = bool(keys) if keys_known else None

        if use_jwks_known:
            # Vault's four checks (validateConfiguration), in Vault's order, with its messages.
            if use_jwks and (jwks_uri is None or jwks_uri == ""):
                diags.error(
                    "Configuration Validation Error", "jwks_uri is required when use_jwks=true", ("jwks_uri",)
                )
            elif not use_jwks and has_keys is False:
                diags.error(
                    "Configuration Validation Error",
                    "public_keys is required when use_jwks=false",
                    ("use_jwks",),
                )
            elif use_jwks and has_keys:
                diags.error(
                    "Configuration Validation Error",
                    "cannot specify both use_jwks=true and public_keys",
                    ("public_keys",),
                )
            elif not use_jwks and jwks_uri is not None and jwks_uri is not UNKNOWN and jwks_uri != "":
                diags.error(
                    "Configuration Validation Error",
                    "cannot specify both use_jwks=false and jwks_uri",
                    ("jwks_uri",),
                )
            ca = config.get("jwks_ca_pem")
            if not use_jwks and isinstance(ca, str) and ca:
                diags.error(
                    "Configuration Validation Error",
                    "jwks_ca_pem can only be used with use_jwks=true",
                    ("jwks_ca_pem",),
                )

        if isinstance(jwks_uri, str) and jwks_uri:
            problem = http_url_problem(jwks_uri, ascii_only=True, credentials=False)
            if problem:
                diags.error(
                    "Invalid jwks_uri",
                    f'jwks_uri must be an absolute http(s) URL, but "{jwks_uri}" is not: {problem}.',
                    ("jwks_uri",),
                )

        ca = config.get("jwks_ca_pem")
        if isinstance(ca, str) and ca.strip():
            from cryptography import x509

            try:
                x509.load_pem_x509_certificates(ca.strip().encode())
            except ValueError:
                diags.error(
                    "Invalid jwks_ca_pem",
                    "jwks_ca_pem must contain one or more PEM certificates (-----BEGIN CERTIFICATE-----).",
                    ("jwks_ca_pem",),
                )

        if isinstance(keys, list):
            seen: dict[str, int] = {}
            for i, key in enumerate(keys):
                if not isinstance(key, dict):
                    continue
                kid = key.get("key_id")
                if isinstance(kid, str):
                    if not kid:
                        diags.error("Invalid key_id", "key_id cannot be empty.", ("public_keys", i, "key_id"))
                    elif kid in seen:
                        diags.error(
                            "Invalid key_id",
                            f'key_id "{kid}" is already used by public_keys[{seen[kid]}]; '
                            "each key needs its own key_id.",
                            ("public_keys", i, "key_id"),
                        )
                    else:
                        seen[kid] = i
                pem = key.get("pem")
                if isinstance(pem, str):
                    problem = pem_problem(pem)
                    if problem:
                        diags.error("Invalid public key", problem, ("public_keys", i, "pem"))

    # ------------------------------------------------------------------ API mapping

    def _to_api(self, client: ControlPlaneClient, values: dict[str, Any], current: Any = None) -> Any:
        pb = client.pb
        profile = pb.OAuthResourceServerProfile(
            namespace=client.namespace(values.get("namespace")),
            profile_name=values["profile_name"],
            issuer_id=values["issuer_id"],
            use_jwks=bool(value_or(values.get("use_jwks"), True)),
            jwks_uri=value_or(values.get("jwks_uri"), ""),
            jwks_ca_pem=value_or(values.get("jwks_ca_pem"), ""),
            public_keys=[
                pb.PublicKey(key_id=k["key_id"], pem=k["pem"]) for k in values.get("public_keys") or []
            ],
            audiences=list(value_or(values.get("audiences"), [])),
            no_default_policy=bool(value_or(values.get("no_default_policy"), False)),
            user_claim=value_or(values.get("user_claim"), "sub"),
            supported_algorithms=list(value_or(values.get("supported_algorithms"), DEFAULT_ALGORITHMS)),
            jwt_type=value_or(values.get("jwt_type"), "access_token"),
            clock_skew_leeway=int(value_or(values.get("clock_skew_leeway"), 0)),
            enabled=bool(value_or(values.get("enabled"), True)),
            optional_authorization_details=bool(
                value_or(values.get("optional_authorization_details"), False)
            ),
        )
        if current is not None:
            # Not managed by this resource: keep what the stored profile has (unique_id_claim is
            # immutable, and an update replaces the whole object).
            if current.HasField("unique_id_claim"):
                profile.unique_id_claim = current.unique_id_claim
            if current.HasField("actor_claim"):
                profile.actor_claim = current.actor_claim
        return profile

    def _from_api(self, p: Any, previous: dict[str, Any]) -> dict[str, Any]:
        """State from the stored profile. ``previous`` (plan or prior state) decides between null
        and empty where the API cannot tell them apart."""
        issuer = p.issuer_id
        return {
            "id": p.config_id,
            "namespace": previous.get("namespace"),
            "profile_name": p.profile_name,
            "issuer_id": issuer,
            "use_jwks": bool(p.use_jwks) if p.HasField("use_jwks") else True,
            "jwks_uri": str_back(p.jwks_uri, previous.get("jwks_uri")),
            "jwks_ca_pem": str_back(p.jwks_ca_pem, previous.get("jwks_ca_pem")),
            "public_keys": [{"key_id": k.key_id, "pem": k.pem} for k in p.public_keys],
            "audiences": list_back(p.audiences, previous.get("audiences")),
            "no_default_policy": bool(p.no_default_policy),
            "user_claim": p.user_claim or _keep(previous.get("user_claim"), "sub"),
            # Exactly as stored: [] means "whatever the keys support", so a list cleared behind
            # Terraform's back is drift to show (upstream keeps the plan's list, hiding it).
            "supported_algorithms": list(p.supported_algorithms),
            "jwt_type": p.jwt_type or _keep(previous.get("jwt_type"), "access_token"),
            "clock_skew_leeway": int(p.clock_skew_leeway),
            "enabled": bool(p.enabled) if p.HasField("enabled") else True,
            "optional_authorization_details": bool(p.optional_authorization_details),
        }

    def warning_path(self, text: str) -> AttributePath | None:
        return _warning_path(text)

    def _read_request(self, cp: ControlPlaneClient, values: dict[str, Any]) -> Any:
        return cp.pb.ReadProfileRequest(
            namespace=cp.namespace(values.get("namespace")), profile_name=values["profile_name"]
        )

    # ------------------------------------------------------------------ CRUD

    def create(self, client: Any, planned: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return None
        return self.written(
            cp,
            diags,
            action="create",
            method="Create",
            request=cp.pb.CreateProfileRequest(profile=self._to_api(cp, planned)),
            values=planned,
            hint=f"If Terraform should manage the existing profile, import it: {self.import_hint}",
        )

    def read(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return state
        return self.read_back(cp, diags, self._read_request(cp, state), state)

    def update(
        self, client: Any, prior: dict[str, Any], planned: dict[str, Any], diags: Diagnostics
    ) -> dict[str, Any] | None:
        cp = self.client(client, diags)
        if cp is None:
            return None
        current = self.fetch(cp, diags, self._read_request(cp, prior), prior, action="update")
        if current is None:
            if not diags.has_errors:
                diags.error(
                    "Unable to Update Resource",
                    f"{self.subject(planned)} no longer exists in the control plane; run terraform apply again "
                    "to re-create it.",
                )
            return None
        return self.written(
            cp,
            diags,
            action="update",
            method="Update",
            request=cp.pb.UpdateProfileRequest(profile=self._to_api(cp, planned, current.profile)),
            values=planned,
        )

    def delete(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> None:
        cp = self.client(client, diags)
        if cp is None:
            return
        request = cp.pb.DeleteProfileRequest(
            namespace=cp.namespace(state.get("namespace")), profile_name=state["profile_name"]
        )
        self.remove(
            cp,
            diags,
            request,
            state,
            hint="A profile that entity aliases still use cannot be deleted: delete those aliases first. "
            "When a new profile_name (or namespace) replaces the profile, replace its aliases with it: give "
            "each vault_identity_entity_alias that uses it `lifecycle { replace_triggered_by = "
            "[vault_oauth_resource_server_config_profile.<name>.id] }`. Terraform then deletes the aliases "
            "before the profile and creates them again after the new one.",
        )

    def import_state(self, client: Any, import_id: str, diags: Diagnostics) -> dict[str, Any] | None:
        if not import_id.strip():
            diags.error(
                "Invalid import ID", f"Import a profile by its profile_name, e.g. `{self.import_hint}`."
            )
            return None
        return self.empty_state(profile_name=import_id, namespace=import_namespace())


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _keep(previous: Any, default: Any) -> Any:
    return previous if previous is not None and known(previous) else default
