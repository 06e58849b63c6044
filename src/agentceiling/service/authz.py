"""The decision pipeline of the authorization endpoint.

Vault's request-time pipeline (vault-semantics §3.1) with one deliberate difference: the ceiling
applies to every registered agent, in direct and in on-behalf-of calls alike.

    token -> profile (by normalised iss) -> signature and claims -> subject entity (alias) ->
    actor entity (act.sub, on-behalf-of) -> registration -> authorization_details required? ->
    parse RAR -> every declared entry within the ceiling -> operation allowed by RAR, by the
    subject's ACL and by the ceiling -> audit (before answering) -> answer

Every refusal carries a stable code; every decision, refusals and invalid tokens included, is
appended to the audit log before the answer leaves. If the audit log cannot be written the answer
is UNAVAILABLE (fail closed, as Vault does when no audit device works).

Hot path. The work splits in three stages with their own caches:

1. *token facts* (signature and claims checked), keyed by namespace and the token's SHA-256,
   admitted on a token's second sighting; reused while the token has not expired and its
   profile's trust configuration is unchanged (a changed profile has another digest);
2. *context* (subject, actor, registration, parsed and rendered RAR, the ceiling check of every
   declared entry, the two ACLs, or the refusal), keyed by (namespace, issuer, subject, actor,
   declared authorization_details) -- shared by all the tokens an agent is issued for the same
   task -- built from the directory and tagged with the directory's view it was built in: a
   control-plane change anywhere bumps the generation counter, which starts a new view (so does
   the counter going back, after a restore), and a context of another view is rebuilt;
3. the per-request check (RAR match, subject ACL, ceiling ACL), memoised per context for
   requests without parameters.

Nothing in stages 2 and 3 outlives a control-plane change by more than the directory's poll
interval, so a deleted registration or a disabled entity is enforced for tokens already seen."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from agentceiling.domain.models import DEFAULT_POLICY, Entity, Profile, Registration, normalize_issuer
from agentceiling.domain.validation import URL_MAX
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
    segment_problem,
)
from agentceiling.service import audit_record
from agentceiling.service.directory import Directory, StaleDirectory
from agentceiling.store.audit_log import looks_like_jwt, redact_jwts, redact_jwts_in_json
from agentceiling.tokens import TokenError, TokenValidator, TrustConfig, UnverifiedToken, ValidatedToken, peek

log = logging.getLogger(__name__)

OPERATIONS = frozenset({"read", "create", "update", "patch", "delete", "list", "sudo", "subscribe", "recover"})
RAR_NO_MATCH_TEXT = "No valid authorization_details claim found matching this request."
AUDIT_UNAVAILABLE_REASON = "the audit log cannot be written; no decision can be made"
MAX_PATH_CHARS = 8192
MAX_NAMESPACE_CHARS = 1024
MAX_ISSUER_CHARS = URL_MAX
"""A profile's normalised issuer is at most this long (domain/validation.py)."""


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


ALL_CODES = tuple(v for k, v in vars(Code).items() if k.isupper())


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
    authorization_details_json: str = "[]"
    """``authorization_details`` as the JSON the API returns (computed once per token context)."""


class Refusal(Exception):
    def __init__(self, code: str, reason: str, policies: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.policies = list(policies)


# ---------------------------------------------------------------- small immutable results


@dataclass(frozen=True, slots=True)
class _Outcome:
    """The part of a decision that does not depend on the individual request (shared, read-only)."""

    allowed: bool
    code: str
    reason: str
    granting: tuple[str, ...] = ()
    refusing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _TokenFacts:
    """A validated token and what the hot path needs from it (shared, read-only)."""

    digest: str
    issuer_norm: str
    trust_key: str
    token: ValidatedToken
    context_key: tuple[Any, ...]
    """Identifies the token's :class:`_Context`: every token of one agent with the same
    authorization_details shares it."""
    audit: tuple[str, str, str, str]
    """The token's part of the audit metadata, scrubbed: jwt_unique_id, jwt_issuer, the JSON of
    jwt_audience_claim, jwt_transaction_claim."""
    key_epoch: object
    """The profile's key epoch the signature was checked under: reused only while it holds (a key
    removed from the JWKS, or keys past their stale limit, make the token be checked again)."""


@dataclass(slots=True)
class _Context:
    """Everything that depends on the directory for one (issuer, subject, actor, declared
    authorization_details) in one namespace, for one directory view. Shared by every token
    that agrees on those (an agent's successive tokens differ in jti, iat and exp only)."""

    view: int
    rar_audit_json: str
    """The declared authorization_details as the audit records them (scrubbed, canonical JSON)."""
    subject: Entity | None = None
    actor: Entity | None = None
    registration: Registration | None = None
    refusal: _Outcome | None = None
    entries: tuple[RarEntry, ...] | None = None
    honoured: list[dict[str, Any]] = field(default_factory=list)
    honoured_json: str = "[]"
    token_only: _Outcome | None = None
    subject_acl: ACL | None = None
    ceiling: ACL | None = None
    own: tuple[str, ...] = ()
    ceiling_names: tuple[str, ...] = ()
    results: dict[tuple[str, str], _Outcome] = field(default_factory=dict)


_MAX_RESULTS_PER_CONTEXT = 256


@dataclass(slots=True)
class _Trace:
    """What the pipeline learnt so far, for the answer and the audit record."""

    token_sha256: str = ""
    facts: _TokenFacts | None = None
    ctx: _Context | None = None


class _BoundedCache:
    """A size-bounded map for the hot path: two generations of plain dicts, lock-free reads.

    Entries live in ``new``; when it is full it becomes ``old`` (the previous ``old`` is dropped).
    A hit in ``old`` is promoted. Reads race harmlessly with writes (the worst case is a miss)."""

    def __init__(self, size: int) -> None:
        self._half = max(1, size // 2)
        self._new: dict[Any, Any] = {}
        self._old: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        value = self._new.get(key)
        if value is None:
            value = self._old.get(key)
            if value is not None:
                self.put(key, value)
        return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            if len(self._new) >= self._half:
                self._old = self._new
                self._new = {}
            self._new[key] = value

    def clear(self) -> None:
        with self._lock:
            self._new = {}
            self._old = {}

    def __len__(self) -> int:
        return len(self._new) + len(self._old)


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


# ---------------------------------------------------------------- time stamps and scrubbing

_stamp: tuple[int, str] = (-1, "")  # (second, its formatted prefix): replaced whole, read once


def utc_timestamp(now: float | None = None) -> str:
    """RFC 3339 UTC with microseconds (``2025-01-01T00:00:00.000000Z``), cheap on the hot path."""
    global _stamp
    t = time.time() if now is None else now
    sec = int(t)
    micros = round((t - sec) * 1_000_000)  # rounded like datetime.fromtimestamp
    if micros >= 1_000_000:
        sec, micros = sec + 1, micros - 1_000_000
    cached_sec, prefix = _stamp
    if sec != cached_sec:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _stamp = (sec, prefix)
    return f"{prefix}.{micros:06d}Z"


# Anything that looks like a compact JWS/JWT (what the audit log refuses to store: it never holds
# a token). Requests and claims are attacker-influenced; their JWT-looking parts are redacted.
REDACTED = "[redacted: looks like a JWT]"
_MAX_AUDIT_DEPTH = 16


def _scrub(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of ``value`` with JWT-looking strings redacted and nesting bounded.

    Values come from JSON documents (exact ``dict``/``list``/``str``/numbers), so exact type tests
    are enough and much cheaper than ``isinstance`` against the ABCs; anything else is repr'd."""
    t = type(value)
    if t is str:
        return _text(value)
    if value is None or t is bool or t is int:
        return value
    if t is float:
        return audit_record.finite(value)
    if depth >= _MAX_AUDIT_DEPTH:
        return "[truncated: nested too deeply]"
    if t is dict:
        return {
            (k if type(k) is str and not looks_like_jwt(k) else _scrub(str(k))): _scrub(v, depth + 1)
            for k, v in value.items()
        }
    if t is list or t is tuple:
        return [_scrub(v, depth + 1) for v in value]
    return _scrub(repr(value)[:1000])


def _text(value: str) -> str:
    return redact_jwts(value, REDACTED)


_BAD_NAMESPACE = re.compile(r"//|\s|[\x00-\x1f\x7f]")


# ---------------------------------------------------------------- the authorizer


class Authorizer:
    def __init__(
        self,
        directory: Directory,
        validator: TokenValidator,
        *,
        clock: Callable[[], float] = time.time,
        token_cache_size: int = 16_384,
        context_cache_size: int = 16_384,
    ) -> None:
        self.directory = directory
        self.validator = validator
        self.clock = clock
        self._tokens = _BoundedCache(token_cache_size)
        self._seen = _BoundedCache(token_cache_size)
        self._contexts = _BoundedCache(context_cache_size)

    # ---------------------------------------------------------------- entry point

    @staticmethod
    def unavailable(decision: Decision, exc: BaseException) -> Decision:
        """The answer when ``decision``'s audit record could not be written: fail closed."""
        log.error("audit log unavailable, refusing decision %s: %s", decision.decision_id, exc)
        return Decision(
            False,
            Code.UNAVAILABLE,
            AUDIT_UNAVAILABLE_REASON,
            decision.decision_id,
            entity_id=decision.entity_id,
            actor_entity_id=decision.actor_entity_id,
            registration_id=decision.registration_id,
        )

    def decide(self, req: AuthorizeInput, decision_id: str = "") -> tuple[Decision, str]:
        """The decision and its audit record, not yet written: the caller writes the record
        durably before answering (the endpoint's worker process writes it in its next group
        commit). Free of side effects but for caches, so it may be run again (after
        :class:`WouldBlock`). ``decision_id``: the id to give it (the endpoint draws one before
        handing the request over, so that even an answer the worker never gave carries one)."""
        # Vault: "ns", "ns/" and "/ns" are one namespace (and "" is the root)
        namespace = req.namespace.strip("/") or "root"
        path, operation = req.path, req.operation
        if path:
            if operation not in OPERATIONS:
                raise BadRequest(
                    "operation", f'operation must be one of {", ".join(sorted(OPERATIONS))}, got "{operation[:64]}"'
                )
            if len(path) > MAX_PATH_CHARS:
                raise BadRequest("path", f"path is longer than {MAX_PATH_CHARS} characters")
            if problem := segment_problem(path):
                raise BadRequest("path", problem)
            if not path.lstrip("/"):
                # Leading slashes are dropped, as Vault's HTTP layer does: nothing would be left.
                raise BadRequest("path", "path is only slashes: it names nothing (send no path for the token check)")
            if operation == "list" and not path.endswith("/"):
                # Vault's HTTP layer gives every LIST path a trailing slash before any policy sees
                # it; "kv/private" and "kv/private/" must get the same answer (a deny on
                # "kv/private/*" included).
                req = replace(req, path=path + "/")
        elif operation and operation not in OPERATIONS:
            raise BadRequest("operation", f'unknown operation "{operation[:64]}"')
        if len(namespace) > MAX_NAMESPACE_CHARS:
            raise BadRequest("namespace", f"namespace is longer than {MAX_NAMESPACE_CHARS} characters")
        if _BAD_NAMESPACE.search(namespace):
            raise BadRequest("namespace", "namespace has an empty segment, whitespace or a control character")

        decision_id = decision_id or audit_record.decision_id()
        trace = _Trace()
        honoured: list[dict[str, Any]] = []
        honoured_json = "[]"
        try:
            outcome = self._decide(req, namespace, trace)
            ctx = trace.ctx
            if outcome.allowed and ctx is not None:
                honoured, honoured_json = ctx.honoured, ctx.honoured_json
        except Refusal as refusal:
            outcome = _Outcome(False, refusal.code, refusal.reason, refusing=tuple(refusal.policies))
        except SQLAlchemyError as exc:
            log.error("decision %s: the database is unavailable: %s", decision_id, exc)
            outcome = _Outcome(False, Code.UNAVAILABLE, "the directory (database) is unavailable")
        except Exception:  # a bug refuses, it never allows
            log.exception("decision %s failed", decision_id)
            outcome = _Outcome(False, Code.UNAVAILABLE, "internal error while deciding")

        ctx = trace.ctx
        decision = Decision(
            outcome.allowed,
            outcome.code,
            outcome.reason,
            decision_id,
            entity_id=ctx.subject.id if ctx is not None and ctx.subject is not None else "",
            actor_entity_id=ctx.actor.id if ctx is not None and ctx.actor is not None else "",
            registration_id=ctx.registration.id if ctx is not None and ctx.registration is not None else "",
            authorization_details=honoured,
            granting_policies=list(outcome.granting),
            refusing_policies=list(outcome.refusing),
            authorization_details_json=honoured_json,
        )
        return decision, self._audit_json(req, namespace, decision, trace)

    # ---------------------------------------------------------------- stage 1: the token

    def _profile(self, namespace: str, issuer_norm: str) -> tuple[Profile, TrustConfig | str] | None:
        """The profile of an issuer and its trust configuration (or why it is unusable)."""

        def load() -> tuple[Profile, TrustConfig | str] | None:
            profile = self.directory.profile_for_issuer(namespace, issuer_norm)
            if profile is None:
                return None
            try:
                return profile, _trust(profile)
            except ValueError as exc:
                return profile, str(exc)

        if len(issuer_norm) > MAX_ISSUER_CHARS:  # no profile can have it: no lookup, nothing cached
            return None
        return self.directory.memo(("trust", namespace, issuer_norm), load, few_misses=True)

    def _token(self, token: str, namespace: str, trace: _Trace) -> tuple[Profile, _TokenFacts]:
        if not token:
            raise Refusal(Code.TOKEN_INVALID, "no token was presented")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        trace.token_sha256 = digest
        cache_key = (namespace, digest)  # profiles, and so contexts, are per namespace
        facts: _TokenFacts | None = self._tokens.get(cache_key)
        unverified: str | UnverifiedToken = token
        if facts is None:
            try:
                unverified = peek(token)  # decoded once: the validator reuses it
                issuer = unverified.issuer
            except TokenError as exc:
                raise Refusal(Code.TOKEN_INVALID, exc.reason) from None
            issuer_norm = normalize_issuer(issuer)
        else:
            issuer, issuer_norm = facts.token.issuer, facts.issuer_norm
        found = self._profile(namespace, issuer_norm)
        if found is None:
            raise Refusal(
                Code.ISSUER_UNKNOWN,
                f'no OAuth resource-server profile for issuer "{issuer[:200]}" in namespace "{namespace}"',
            )
        profile, trust = found
        if not profile.enabled:
            raise Refusal(Code.ISSUER_UNKNOWN, f'the profile "{profile.profile_name}" of this issuer is disabled')
        if isinstance(trust, str):
            raise Refusal(Code.UNAVAILABLE, f'the profile "{profile.profile_name}" is unusable: {trust}')
        key = trust.cache_key
        try:
            epoch = self.validator.key_epoch(trust)  # read before validating: a rotation meanwhile re-checks
            if (
                facts is not None
                and facts.trust_key == key
                and facts.key_epoch == epoch
                and self.clock() < facts.token.expires_at + trust.clock_skew_leeway
            ):
                return profile, facts
            validated = self.validator.validate(unverified, trust)
        except TokenError as exc:
            raise Refusal(str(exc.code), exc.reason) from None
        raw = validated.authorization_details
        present = validated.has_authorization_details
        facts = _TokenFacts(
            digest,
            issuer_norm,
            key,
            validated,
            (namespace, issuer_norm, key, validated.subject, validated.actor_subject, _rar_key(raw, present)),
            (
                _text(validated.unique_id),
                _text(validated.issuer),
                audit_record.strings_json(map(_text, validated.audiences)),
                _text(validated.transaction_claim or ""),
            ),
            epoch,
        )
        # Admission on the second sighting: a token presented once costs no cache entry (no
        # objects for the garbage collector to scan), only a key in the "seen" set.
        if self._seen.get(cache_key) is None:
            self._seen.put(cache_key, True)
        else:
            self._tokens.put(cache_key, facts)
        return profile, facts

    # ---------------------------------------------------------------- stage 2: the token's context

    def _context(self, namespace: str, profile: Profile, facts: _TokenFacts) -> _Context:
        key = facts.context_key
        view = self.directory.view  # read BEFORE building: see the module docstring
        ctx: _Context | None = self._contexts.get(key)
        if ctx is not None and ctx.view == view:
            return ctx
        ctx = self._build_context(namespace, profile, facts.token, view)
        self._contexts.put(key, ctx)
        return ctx

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

    def _template_context(self, entity: Entity) -> TemplateContext:
        def load() -> TemplateContext:
            aliases: dict[str, AliasInfo] = {}
            for a in self.directory.entity_aliases(entity.id):
                accessor = a.mount_accessor
                if not accessor and a.issuer:  # an alias named by its issuer: the profile's accessor
                    profile = self.directory.profile_for_issuer(entity.namespace, normalize_issuer(a.issuer))
                    accessor = profile.mount_accessor if profile is not None else ""
                if accessor:
                    aliases[accessor] = AliasInfo(
                        id=a.id, name=a.name, metadata={}, custom_metadata=dict(a.custom_metadata)
                    )
            return TemplateContext(
                entity_id=entity.id, entity_name=entity.name, metadata=dict(entity.metadata), aliases=aliases
            )

        return self.directory.memo(("template-context", entity.namespace, entity.id), load)

    def _acl(self, namespace: str, names: Sequence[str], entity: Entity) -> ACL:
        def load() -> ACL:
            parsed = []
            for name in names:
                doc = self.directory.policy(namespace, name)
                if doc is not None:
                    parsed.append(parse_policy(doc.text, name=name))
            return ACL.build(parsed, self._template_context(entity))

        return self.directory.memo(("acl", namespace, tuple(names), entity.id), load)

    def _build_context(self, namespace: str, profile: Profile, token: ValidatedToken, view: int) -> _Context:
        raw = token.authorization_details
        ctx = _Context(view=view, rar_audit_json=_rar_audit_json(raw, token.has_authorization_details))
        try:
            self._fill_context(ctx, namespace, profile, token)
        except Refusal as refusal:
            ctx.refusal = _Outcome(False, refusal.code, _text(refusal.reason), refusing=tuple(refusal.policies))
        return ctx

    def _fill_context(self, ctx: _Context, namespace: str, profile: Profile, token: ValidatedToken) -> None:
        # Subject, actor, registration.
        subject = self._entity_for(namespace, profile, token.subject, "subject")
        ctx.subject = subject
        if subject.disabled:
            raise Refusal(Code.ENTITY_DISABLED, f'entity "{subject.name}" is disabled')
        agent = subject
        if token.actor_subject is not None:
            actor = self._entity_for(namespace, profile, token.actor_subject, "actor")
            ctx.actor = actor
            if actor.disabled:
                raise Refusal(Code.ENTITY_DISABLED, f'actor entity "{actor.name}" is disabled')
            agent = actor
        registration = self.directory.registration_for_entity(namespace, agent.id)
        if registration is None:
            role = "actor" if token.actor_subject is not None else "subject"
            raise Refusal(Code.AGENT_NOT_REGISTERED, f'the {role} entity "{agent.name}" has no agent registration')
        ctx.registration = registration

        # authorization_details: required unless the profile or the registration makes it optional;
        # when present, always enforced.
        entries: list[RarEntry] | None = None
        if not token.has_authorization_details:
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
            tctx = self._template_context(subject)
            entries = []
            for entry in parsed:
                if isinstance(entry, ForeignEntry):
                    continue  # a type we do not own grants nothing here
                rendered = render_entry(entry, tctx)
                if rendered is not None:  # an unrenderable template skips the entry (Vault)
                    entries.append(rendered)

        # Every declared entry must lie within the ceiling (the registration's list, defaults included).
        ceiling_names = tuple(registration.ceiling_policies)
        ceiling = self._acl(namespace, ceiling_names, agent)
        for entry in entries or ():
            result = self.directory.memo(
                ("within", namespace, ceiling_names, agent.id, entry),
                functools.partial(entry_within_ceiling, entry, ceiling),
            )
            if not result.ok:
                raise Refusal(
                    Code.CEILING_EXCEEDED,
                    f"authorization_details entry {json.dumps(_entry_json(entry), sort_keys=True)} exceeds the "
                    f'ceiling of agent registration "{registration.display_name}": {result.reason}',
                    ceiling_names,
                )
        own = list(subject.policies)
        if not profile.no_default_policy and DEFAULT_POLICY not in own:
            own.append(DEFAULT_POLICY)
        ctx.entries = tuple(entries) if entries is not None else None
        ctx.honoured = [_entry_json(e) for e in entries or ()]
        ctx.honoured_json = json.dumps(ctx.honoured, sort_keys=True)
        ctx.ceiling_names = ceiling_names
        ctx.ceiling = ceiling
        ctx.own = tuple(own)
        ctx.subject_acl = self._acl(namespace, ctx.own, subject)
        ctx.token_only = _Outcome(
            True,
            Code.ALLOWED,
            "the token is valid and every declared authorization_details entry is within the ceiling",
        )

    # ---------------------------------------------------------------- stage 3: the request

    def _decide(self, req: AuthorizeInput, namespace: str, trace: _Trace) -> _Outcome:
        try:
            self.directory.ensure_fresh()
        except StaleDirectory as exc:
            raise Refusal(
                Code.UNAVAILABLE,
                f"{exc}: the database cannot be read, so a recent change (a revoked registration, a "
                "tightened ceiling) might be missed; refusing until it can",
            ) from None
        profile, facts = self._token(req.token, namespace, trace)
        trace.facts = facts
        ctx = self._context(namespace, profile, facts)
        trace.ctx = ctx
        if ctx.refusal is not None:
            return ctx.refusal
        if not req.path:
            assert ctx.token_only is not None
            return ctx.token_only
        if req.parameters is None:
            key = (req.path, req.operation)
            outcome = ctx.results.get(key)
            if outcome is None:
                outcome = self._check(ctx, req.path, req.operation, None)
                if len(ctx.results) < _MAX_RESULTS_PER_CONTEXT:
                    ctx.results[key] = outcome
            return outcome
        return self._check(ctx, req.path, req.operation, dict(req.parameters))

    @staticmethod
    def _check(ctx: _Context, path: str, operation: str, params: Mapping[str, Any] | None) -> _Outcome:
        assert ctx.subject is not None and ctx.registration is not None
        assert ctx.subject_acl is not None and ctx.ceiling is not None
        if ctx.entries is not None:
            ok, _matched = rar_allows(ctx.entries, path, operation, params)
            if not ok:
                return _Outcome(False, Code.RAR_NO_MATCH, f"RAR_NO_MATCH: {RAR_NO_MATCH_TEXT}")
        baseline = ctx.subject_acl.check(path, operation, params)
        if not baseline.allowed:
            return _Outcome(
                False,
                Code.PERMISSION_DENIED,
                _text(
                    f'permission denied: the policies of entity "{ctx.subject.name}" do not allow {operation} on '
                    f'"{path[:1024]}" ({baseline.reason})'
                ),
                refusing=tuple(baseline.denying_policies) or ctx.own,
            )
        capped = ctx.ceiling.check(path, operation, params)
        if not capped.allowed:
            return _Outcome(
                False,
                Code.CEILING_EXCEEDED,
                _text(
                    f'{operation} on "{path[:1024]}" exceeds the ceiling of agent registration '
                    f'"{ctx.registration.display_name}" ({capped.reason})'
                ),
                granting=tuple(baseline.granting_policies),
                refusing=tuple(capped.denying_policies) or ctx.ceiling_names,
            )
        return _Outcome(
            True,
            Code.ALLOWED,
            _text(f'{operation} on "{path[:1024]}" is allowed'),
            granting=tuple(sorted(set(baseline.granting_policies) | set(capped.granting_policies))),
        )

    # ---------------------------------------------------------------- audit

    def _audit_json(self, req: AuthorizeInput, namespace: str, decision: Decision, trace: _Trace) -> str:
        facts, ctx = trace.facts, trace.ctx
        if facts is None:
            metadata = audit_record.EMPTY_METADATA_JSON
        else:
            unique_id, issuer, audiences_json, transaction = facts.audit
            actor = ctx.actor if ctx is not None else None
            metadata = audit_record.metadata_json(
                unique_id=unique_id,
                issuer=issuer,
                audiences_json=audiences_json,
                authorization_details_json=ctx.rar_audit_json if ctx is not None else "[]",
                transaction=transaction,
                actor_entity_id=actor.id if actor is not None else "",
                actor_entity_name=actor.name if actor is not None else "",
            )
        record = audit_record.record_json(
            time=utc_timestamp(),
            decision_id=decision.decision_id,
            code=decision.code,
            allowed=decision.allowed,
            reason=_text(decision.reason),
            namespace=_text(namespace),
            path=_text(req.path),
            operation=req.operation,
            entity_id=decision.entity_id,
            actor_entity_id=decision.actor_entity_id,
            registration_id=decision.registration_id,
            granting_policies=map(_text, decision.granting_policies),
            refusing_policies=map(_text, decision.refusing_policies),
            token_sha256=trace.token_sha256,
            metadata=metadata,
        )
        # The fields were redacted as text; escaping can still spell a token ("\u001e" + "yJ..."),
        # and the presented token may have a header no pattern knows. Every decision is audited, so
        # the record is made storable here rather than refused by the log.
        return redact_jwts_in_json(record, REDACTED, req.token)


def _rar_audit_json(raw: Any, present: bool) -> str:
    """The declared authorization_details as audited: scrubbed, canonical JSON (``[]`` when the
    token has no such claim)."""
    if not present:
        return "[]"
    try:
        return audit_record.canonical_json(_scrub(raw))
    except (TypeError, ValueError, RecursionError):  # defensive: _scrub leaves only JSON values
        return audit_record.canonical_json("[unencodable authorization_details]")


def _rar_key(raw: Any, present: bool) -> Any:
    """A cache key for a decoded authorization_details claim: ``repr`` tells JSON values apart
    (``1`` vs ``1.0`` vs ``True``, key order too, which only costs a miss; an absent claim from
    ``null``) and is cheaper than a canonical JSON dump."""
    return repr(raw) if present else None


def _entry_json(entry: RarEntry) -> dict[str, Any]:
    raw = getattr(entry, "raw", None)
    if isinstance(raw, Mapping):
        out = dict(raw)
        out["path"] = entry.path
        return out
    return {"type": "vault:path_access", "path": entry.path, "capabilities": sorted(entry.capabilities)}
