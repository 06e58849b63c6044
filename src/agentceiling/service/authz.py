"""The decision pipeline of the authorization endpoint.

Vault's request-time pipeline (vault-semantics §3.1) with one deliberate difference: the ceiling
applies to every registered agent, in direct and in on-behalf-of calls alike.

    token -> profile (by normalised iss) -> signature and claims -> subject entity (alias) ->
    actor entity (act.sub, on-behalf-of) -> registration -> authorization_details required? ->
    parse RAR -> every declared entry within the ceiling -> operation allowed by RAR, by the
    subject's ACL and by the ceiling -> audit (before answering) -> answer

Every refusal carries a stable code; every decision, refusals and invalid tokens included, is
appended to the audit log before the answer leaves. If the audit log cannot be written the answer
is UNAVAILABLE (fail closed, as Vault does when no audit device works)."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agentceiling.domain.models import DEFAULT_POLICY, Entity, Profile, Registration, normalize_issuer
from agentceiling.policy import (
    ACL,
    AliasInfo,
    ForeignEntry,
    RarEntry,
    RarError,
    TemplateContext,
    entry_within_ceiling,
    parse_authorization_details,
    parse_policy,
    rar_allows,
    render_entry,
)
from agentceiling.service.directory import Directory
from agentceiling.tokens import TokenError, TokenValidator, TrustConfig, ValidatedToken, peek_issuer

log = logging.getLogger(__name__)

OPERATIONS = frozenset({"read", "create", "update", "patch", "delete", "list", "sudo", "subscribe", "recover"})
RAR_NO_MATCH_TEXT = "No valid authorization_details claim found matching this request."


class Code:
    ALLOWED = "ALLOWED"
    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    ISSUER_UNKNOWN = "ISSUER_UNKNOWN"
    SUBJECT_UNKNOWN = "SUBJECT_UNKNOWN"
    AGENT_NOT_REGISTERED = "AGENT_NOT_REGISTERED"
    ENTITY_DISABLED = "ENTITY_DISABLED"
    RAR_REQUIRED = "RAR_REQUIRED"
    RAR_INVALID = "RAR_INVALID"
    CEILING_EXCEEDED = "CEILING_EXCEEDED"
    RAR_NO_MATCH = "RAR_NO_MATCH"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAVAILABLE = "UNAVAILABLE"


class BadRequest(ValueError):
    """A malformed request (not a refusal): the API answers INVALID_ARGUMENT."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class AuthorizeInput:
    token: str
    namespace: str = "root"
    path: str = ""
    operation: str = ""
    parameters: Mapping[str, Any] | None = None


@dataclass
class Decision:
    allowed: bool
    code: str
    reason: str
    decision_id: str
    entity_id: str = ""
    actor_entity_id: str = ""
    registration_id: str = ""
    authorization_details: list[dict[str, Any]] = field(default_factory=list)
    granting_policies: list[str] = field(default_factory=list)
    refusing_policies: list[str] = field(default_factory=list)


class Refusal(Exception):
    def __init__(self, code: str, reason: str, policies: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.policies = list(policies)


AuditSink = Callable[[dict[str, Any]], None]
"""Appends one decision record durably; raises when it cannot (the decision becomes UNAVAILABLE)."""


@dataclass
class _Trace:
    """What the pipeline learnt so far, for the audit record."""

    token_sha256: str = ""
    token: ValidatedToken | None = None
    subject: Entity | None = None
    actor: Entity | None = None
    registration: Registration | None = None
    rar_raw: Any = None


def _trust(profile: Profile) -> TrustConfig:
    return TrustConfig(
        issuer=profile.issuer_id,
        use_jwks=profile.use_jwks,
        jwks_uri=profile.jwks_uri,
        jwks_ca_pem=profile.jwks_ca_pem or None,
        public_keys=tuple((k.key_id, k.pem) for k in profile.public_keys),
        audiences=profile.audiences,
        supported_algorithms=profile.supported_algorithms,
        jwt_type="transaction_token" if profile.jwt_type == "transaction_token" else "access_token",
        clock_skew_leeway=profile.clock_skew_leeway,
        user_claim=profile.user_claim,
        unique_id_claim=profile.unique_id_claim,
        actor_claim=profile.actor_claim,
    )


class _LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[Any, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self.lock:
            value = self.data.get(key)
            if value is not None:
                self.data.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)


class Authorizer:
    def __init__(
        self,
        directory: Directory,
        validator: TokenValidator,
        audit: AuditSink,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.validator = validator
        self.audit = audit
        self.clock = clock
        self._tokens = _LRU(50_000)

    # ---------------------------------------------------------------- entry point

    def authorize(self, req: AuthorizeInput) -> Decision:
        namespace = req.namespace or "root"
        if req.path and req.operation not in OPERATIONS:
            raise BadRequest(
                "operation", f'operation must be one of {", ".join(sorted(OPERATIONS))}, got "{req.operation}"'
            )
        if not req.path and req.operation and req.operation not in OPERATIONS:
            raise BadRequest("operation", f'unknown operation "{req.operation}"')
        decision_id = str(uuid.uuid4())
        trace = _Trace()
        try:
            decision = self._decide(req, namespace, decision_id, trace)
        except Refusal as refusal:
            decision = Decision(False, refusal.code, refusal.reason, decision_id, refusing_policies=refusal.policies)
        except Exception:  # a bug refuses, it never allows
            log.exception("decision %s failed", decision_id)
            decision = Decision(False, Code.UNAVAILABLE, "internal error while deciding", decision_id)
        if trace.subject:
            decision.entity_id = trace.subject.id
        if trace.actor:
            decision.actor_entity_id = trace.actor.id
        if trace.registration:
            decision.registration_id = trace.registration.id
        record = self._audit_record(req, namespace, decision, trace)
        try:
            self.audit(record)
        except Exception as exc:
            log.error("audit log unavailable, refusing decision %s: %s", decision_id, exc)
            return Decision(
                False,
                Code.UNAVAILABLE,
                "the audit log cannot be written; no decision can be made",
                decision_id,
                entity_id=decision.entity_id,
                actor_entity_id=decision.actor_entity_id,
                registration_id=decision.registration_id,
            )
        return decision

    # ---------------------------------------------------------------- the pipeline

    def _validate_token(self, token: str, namespace: str, trace: _Trace) -> tuple[Profile, ValidatedToken]:
        if not token:
            raise Refusal(Code.TOKEN_INVALID, "no token was presented")
        try:
            issuer = peek_issuer(token)
        except TokenError as exc:
            raise Refusal(Code.TOKEN_INVALID, exc.reason) from None
        profile = self.directory.profile_for_issuer(namespace, normalize_issuer(issuer))
        if profile is None:
            raise Refusal(
                Code.ISSUER_UNKNOWN,
                f'no OAuth resource-server profile for issuer "{issuer[:200]}" in namespace "{namespace}"',
            )
        if not profile.enabled:
            raise Refusal(Code.ISSUER_UNKNOWN, f'the profile "{profile.profile_name}" of this issuer is disabled')
        trust = _trust(profile)
        digest = hashlib.sha256(token.encode()).hexdigest()
        trace.token_sha256 = digest
        key = (digest, trust.cache_key)
        cached: ValidatedToken | None = self._tokens.get(key)
        now = self.clock()
        if cached is not None and now <= cached.expires_at + trust.clock_skew_leeway:
            validated = cached
        else:
            try:
                validated = self.validator.validate(token, trust)
            except TokenError as exc:
                raise Refusal(str(exc.code), exc.reason) from None
            self._tokens.put(key, validated)
        trace.token = validated
        return profile, validated

    def _entity_for(self, namespace: str, profile: Profile, external_id: str, role: str) -> Entity:
        alias = self.directory.alias(namespace, normalize_issuer(profile.issuer_id), external_id)
        if alias is None:
            raise Refusal(
                Code.SUBJECT_UNKNOWN,
                f'no entity alias for {role} "{external_id[:200]}" of issuer "{profile.issuer_id}"',
            )
        entity = self.directory.entity(namespace, alias.canonical_id)
        if entity is None:
            raise Refusal(Code.SUBJECT_UNKNOWN, f'the alias of {role} "{external_id[:200]}" has no entity')
        return entity

    def _context(self, entity: Entity) -> TemplateContext:
        aliases = {
            a.mount_accessor: AliasInfo(id=a.id, name=a.name, metadata={}, custom_metadata=dict(a.custom_metadata))
            for a in self.directory.entity_aliases(entity.id)
            if a.mount_accessor
        }
        return TemplateContext(
            entity_id=entity.id, entity_name=entity.name, metadata=dict(entity.metadata), aliases=aliases
        )

    def _acl(self, namespace: str, names: Sequence[str], entity: Entity) -> ACL:
        def load() -> ACL:
            parsed = []
            for name in names:
                doc = self.directory.policy(namespace, name)
                if doc is not None:
                    parsed.append(parse_policy(doc.text, name=name))
            return ACL.build(parsed, self._context(entity))

        return self.directory.memo(("acl", namespace, tuple(names), entity.id), load)

    def _decide(self, req: AuthorizeInput, namespace: str, decision_id: str, trace: _Trace) -> Decision:
        profile, token = self._validate_token(req.token, namespace, trace)
        trace.rar_raw = token.authorization_details

        # Subject, actor, registration.
        subject = self._entity_for(namespace, profile, token.subject, "subject")
        trace.subject = subject
        if subject.disabled:
            raise Refusal(Code.ENTITY_DISABLED, f'entity "{subject.name}" is disabled')
        agent = subject
        if token.actor_subject is not None:
            actor = self._entity_for(namespace, profile, token.actor_subject, "actor")
            trace.actor = actor
            if actor.disabled:
                raise Refusal(Code.ENTITY_DISABLED, f'actor entity "{actor.name}" is disabled')
            agent = actor
        registration = self.directory.registration_for_entity(namespace, agent.id)
        if registration is None:
            role = "actor" if token.actor_subject is not None else "subject"
            raise Refusal(Code.AGENT_NOT_REGISTERED, f'the {role} entity "{agent.name}" has no agent registration')
        trace.registration = registration

        # authorization_details.
        entries: list[RarEntry] | None = None
        if token.authorization_details is None:
            if not (profile.optional_authorization_details or registration.optional_authorization_details):
                raise Refusal(
                    Code.RAR_REQUIRED,
                    "the authorization_details claim is required for this agent (neither the profile nor the "
                    "registration makes it optional)",
                )
        else:
            try:
                parsed = parse_authorization_details(token.authorization_details)
            except RarError as exc:
                raise Refusal(Code.RAR_INVALID, str(exc)) from None
            ctx = self._context(subject)
            entries = []
            for entry in parsed:
                if isinstance(entry, ForeignEntry):
                    continue  # a type we do not own grants nothing here
                rendered = render_entry(entry, ctx)
                if rendered is not None:
                    entries.append(rendered)

        # Every declared entry must lie within the ceiling.
        ceiling_names = list(registration.ceiling_policies)
        ceiling = self._acl(namespace, ceiling_names, agent)
        for entry in entries or ():
            result = self.directory.memo(
                ("within", namespace, tuple(ceiling_names), agent.id, json.dumps(_entry_json(entry), sort_keys=True)),
                lambda entry=entry: entry_within_ceiling(entry, ceiling),  # type: ignore[misc]
            )
            if not result.ok:
                raise Refusal(
                    Code.CEILING_EXCEEDED,
                    f"authorization_details entry {json.dumps(_entry_json(entry), sort_keys=True)} exceeds the "
                    f'ceiling of agent registration "{registration.display_name}": {result.reason}',
                    ceiling_names,
                )
        honoured = [_entry_json(e) for e in entries or ()]

        if not req.path:
            return Decision(
                True,
                Code.ALLOWED,
                "the token is valid and every declared authorization_details entry is within the ceiling",
                decision_id,
                authorization_details=honoured,
            )

        params = dict(req.parameters or {})
        if entries is not None:
            ok, _matched = rar_allows(entries, req.path, req.operation, params)
            if not ok:
                raise Refusal(Code.RAR_NO_MATCH, f"RAR_NO_MATCH: {RAR_NO_MATCH_TEXT}")
        own = list(subject.policies)
        if not profile.no_default_policy and DEFAULT_POLICY not in own:
            own.append(DEFAULT_POLICY)
        subject_acl = self._acl(namespace, own, subject)
        baseline = subject_acl.check(req.path, req.operation, params)
        if not baseline.allowed:
            raise Refusal(
                Code.PERMISSION_DENIED,
                f'permission denied: the policies of entity "{subject.name}" do not allow {req.operation} on '
                f'"{req.path}"',
                list(baseline.denying_policies) or own,
            )
        capped = ceiling.check(req.path, req.operation, params)
        if not capped.allowed:
            raise Refusal(
                Code.CEILING_EXCEEDED,
                f'{req.operation} on "{req.path}" exceeds the ceiling of agent registration '
                f'"{registration.display_name}"',
                list(capped.denying_policies) or ceiling_names,
            )
        return Decision(
            True,
            Code.ALLOWED,
            f'{req.operation} on "{req.path}" is allowed',
            decision_id,
            authorization_details=honoured,
            granting_policies=sorted(set(baseline.granting_policies) | set(capped.granting_policies)),
        )

    # ---------------------------------------------------------------- audit

    def _audit_record(self, req: AuthorizeInput, namespace: str, decision: Decision, trace: _Trace) -> dict[str, Any]:
        token = trace.token
        metadata: dict[str, Any] = {
            "jwt_unique_id": token.unique_id if token else "",
            "jwt_issuer": token.issuer if token else "",
            "jwt_audience_claim": list(token.audiences) if token else [],
            "jwt_authorization_details": _jsonable(trace.rar_raw) if trace.rar_raw is not None else [],
            "jwt_transaction_claim": (token.transaction_claim or "") if token else "",
            "actor_entity_id": trace.actor.id if trace.actor else "",
            "actor_entity_name": trace.actor.name if trace.actor else "",
        }
        return {
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "decision_id": decision.decision_id,
            "code": decision.code,
            "allowed": decision.allowed,
            "reason": decision.reason,
            "namespace": namespace,
            "path": req.path,
            "operation": req.operation,
            "entity_id": decision.entity_id,
            "actor_entity_id": decision.actor_entity_id,
            "registration_id": decision.registration_id,
            "granting_policies": decision.granting_policies,
            "refusing_policies": decision.refusing_policies,
            "token_sha256": trace.token_sha256,
            "metadata": metadata,
        }


def _entry_json(entry: RarEntry) -> dict[str, Any]:
    raw = getattr(entry, "raw", None)
    if isinstance(raw, Mapping):
        out = dict(raw)
        out["path"] = entry.path
        return out
    return {"type": "vault:path_access", "path": entry.path, "capabilities": sorted(entry.capabilities)}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)[:1000]
