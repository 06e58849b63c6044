"""Evaluate a set of policies the way Vault's ``vault/acl.go`` does.

Rule selection for a request path (leading ``/`` stripped):

1. an exact rule for the path; for ``list``, also the path without one trailing ``/``;
2. otherwise the highest-priority glob rule that matches. Candidates are the *longest* matching
   prefix rule and every matching ``+`` rule; P1 has lower priority than P2 if its first ``+``/``*``
   comes earlier, if it ends in ``*`` and P2 does not, if it has more ``+`` segments, if it is
   shorter, or if it is lexicographically smaller;
3. for ``list`` on a path ending in ``/``, candidates come from both the path and the path
   without the slash (current Vault): the most specific ``deny`` wins if it outranks the most
   specific candidate granting ``list``; else that candidate; else the most specific candidate.

Only the selected rule applies. A pattern present in several policies is one rule: capabilities
are unioned, ``deny`` anywhere leaves only ``deny``, parameter maps are merged (an empty value
list, meaning any value, wins), required parameters are unioned and the smaller wrapping TTLs
are kept. Identity templates are rendered at build time; a granting rule whose template cannot
be rendered (a missing or empty value, or one containing ``*``, ``+``, ``{{`` or ``}}``) is
dropped, so it grants nothing. A ``deny`` rule is dropped only when a value is missing: an
empty value renders as ``""`` and any other value is inserted verbatim as literal text, so a
``*`` or ``+`` in it is an ordinary character (``_pattern`` "literal offsets"), never a glob.

Operations map to capabilities one to one (``revoke``/``renew``/``rollback`` need ``update``;
``sudo`` checks the ``sudo`` capability). Parameter constraints apply to read, create, update,
patch and recover. A rule with ``min_wrapping_ttl``/``max_wrapping_ttl`` only admits requests
whose response-wrapping TTL (``wrap_ttl``, seconds) is within the bounds. Vault's ``root``
policy and ``help`` operation are not modelled.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentceiling.policy._params import (
    PARAM_OPERATIONS,
    ParamMap,
    check_parameters,
    merge_param_maps,
)
from agentceiling.policy._pattern import (
    CompiledPattern,
    PatternKind,
    compile_pattern,
    effective_literal,
    pattern_problem,
)
from agentceiling.policy.parser import PathRule, Policy
from agentceiling.policy.templates import TemplateContext, render_template_spans, render_templates

__all__ = [
    "ACL",
    "OPERATION_CAPABILITY",
    "AclResult",
    "AclRule",
]

#: request operation -> capability it needs
OPERATION_CAPABILITY: Mapping[str, str] = types.MappingProxyType(
    {
        "create": "create",
        "read": "read",
        "update": "update",
        "patch": "patch",
        "delete": "delete",
        "list": "list",
        "sudo": "sudo",
        "subscribe": "subscribe",
        "recover": "recover",
        "revoke": "update",
        "renew": "update",
        "rollback": "update",
    }
)


@dataclass(frozen=True, slots=True)
class AclRule:
    """A pattern's merged permissions across all policies of an ACL."""

    pattern: str
    capabilities: frozenset[str]
    allowed_parameters: ParamMap
    denied_parameters: ParamMap
    required_parameters: tuple[str, ...]
    min_wrapping_ttl: float | None
    max_wrapping_ttl: float | None
    granting_policies: Mapping[str, tuple[str, ...]]  #: capability -> policies granting it
    denying_policies: tuple[str, ...]
    compiled: CompiledPattern = field(repr=False, compare=False)

    @property
    def kind(self) -> PatternKind:
        return self.compiled.kind

    @property
    def is_deny(self) -> bool:
        return "deny" in self.capabilities


@dataclass(frozen=True, slots=True)
class AclResult:
    allowed: bool
    granting_policies: tuple[str, ...] = ()
    denying_policies: tuple[str, ...] = ()
    reason: str = ""
    #: ALLOWED, NO_MATCHING_RULE, EXPLICIT_DENY, CAPABILITY_NOT_GRANTED, SUDO_REQUIRED,
    #: WRAPPING_REQUIRED, PARAMETER_REJECTED or UNSUPPORTED_OPERATION
    code: str = ""
    matched_pattern: str | None = None


@dataclass(slots=True)
class _Draft:
    pattern: str
    caps: set[str]
    allowed: dict[str, tuple[Any, ...]]
    denied: dict[str, tuple[Any, ...]]
    required: list[str]
    min_ttl: float | None
    max_ttl: float | None
    grants: dict[str, list[str]]
    deniers: list[str]
    literal: tuple[int, ...] = ()

    @classmethod
    def start(cls, pattern: str, rule: PathRule, policy: str, literal: tuple[int, ...] = ()) -> _Draft:
        d = cls(pattern, set(), {}, {}, [], None, None, {}, [], literal)
        if rule.is_deny:
            d.caps = {"deny"}
            d.deniers.append(policy)
            return d
        d.caps = set(rule.capabilities)
        d.allowed = dict(rule.allowed_parameters)
        d.denied = dict(rule.denied_parameters)
        d.required = list(rule.required_parameters)
        d.min_ttl, d.max_ttl = rule.min_wrapping_ttl, rule.max_wrapping_ttl
        d._grant(rule.capabilities, policy)
        return d

    def _grant(self, caps: Iterable[str], policy: str) -> None:
        for cap in caps:
            names = self.grants.setdefault(cap, [])
            if policy not in names:
                names.append(policy)

    def merge(self, rule: PathRule, policy: str) -> None:
        if rule.is_deny:
            if policy not in self.deniers:
                self.deniers.append(policy)
            self.caps = {"deny"}
            self.allowed, self.denied = {}, {}
            return
        if "deny" in self.caps:
            return
        self.caps |= rule.capabilities
        self._grant(rule.capabilities, policy)
        self.max_ttl = _smaller(self.max_ttl, rule.max_wrapping_ttl)
        self.min_ttl = _smaller(self.min_ttl, rule.min_wrapping_ttl)
        self.allowed = merge_param_maps(self.allowed, rule.allowed_parameters)
        self.denied = merge_param_maps(self.denied, rule.denied_parameters)
        self.required.extend(r for r in rule.required_parameters if r not in self.required)

    def freeze(self) -> AclRule:
        deny = "deny" in self.caps
        return AclRule(
            pattern=self.pattern,
            capabilities=frozenset(self.caps),
            allowed_parameters=types.MappingProxyType(dict(self.allowed)),
            denied_parameters=types.MappingProxyType(dict(self.denied)),
            required_parameters=tuple(self.required),
            min_wrapping_ttl=self.min_ttl,
            max_wrapping_ttl=self.max_ttl,
            granting_policies=types.MappingProxyType({} if deny else {k: tuple(v) for k, v in self.grants.items()}),
            denying_policies=tuple(self.deniers),
            compiled=compile_pattern(self.pattern, self.literal),
        )


def _smaller(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def best_rule(candidates: Iterable[AclRule]) -> AclRule | None:
    """The highest-priority glob rule among ``candidates``."""
    return max(candidates, key=lambda r: r.compiled.priority, default=None)


def resolve_list_candidates(candidates: Sequence[AclRule]) -> AclRule | None:
    """Vault's ``resolveACLPermsForListOp`` for a LIST on a path with a trailing slash."""
    if not candidates:
        return None
    best_deny = best_rule(r for r in candidates if r.is_deny)
    best_list = best_rule(r for r in candidates if "list" in r.capabilities)
    if best_deny is not None and (best_list is None or best_list.compiled.priority < best_deny.compiled.priority):
        return best_deny
    if best_list is not None:
        return best_list
    return best_rule(candidates)


_NO_MATCH = AclResult(False, reason="no policy rule matches the path", code="NO_MATCHING_RULE")


class _SegNode:
    """Segment trie for ``+`` rules: literal children, a ``+`` child, rules ending here, and
    prefix rules whose last (partial) segment is tested against the next path segment."""

    __slots__ = ("children", "plus", "tail_lengths", "tails", "terminal")

    def __init__(self) -> None:
        self.children: dict[str, _SegNode] = {}
        self.plus: _SegNode | None = None
        self.terminal: AclRule | None = None
        self.tails: dict[str, AclRule] = {}
        self.tail_lengths: tuple[int, ...] = ()

    def insert(self, rule: AclRule) -> None:
        parts = rule.compiled.parts
        wild = rule.compiled.wild
        last = len(parts) - 1 if rule.compiled.is_prefix else len(parts)
        node = self
        for index, part in enumerate(parts[:last]):
            if wild[index]:
                if node.plus is None:
                    node.plus = _SegNode()
                node = node.plus
            else:
                node = node.children.setdefault(part, _SegNode())
        if rule.compiled.is_prefix:
            node.tails[parts[-1]] = rule
            node.tail_lengths = tuple(sorted({len(k) for k in node.tails}))
        else:
            node.terminal = rule

    def collect(self, parts: list[str], i: int, out: list[AclRule]) -> None:
        if i == len(parts):
            if self.terminal is not None:
                out.append(self.terminal)
            return
        seg = parts[i]
        if self.tails:
            for length in self.tail_lengths:
                if length > len(seg):
                    break
                hit = self.tails.get(seg[:length])
                if hit is not None:
                    out.append(hit)
        child = self.children.get(seg)
        if child is not None:
            child.collect(parts, i + 1, out)
        if self.plus is not None:
            self.plus.collect(parts, i + 1, out)


class ACL:
    """An immutable, pre-indexed set of policies. Build with :meth:`ACL.build`."""

    __slots__ = ("_exact", "_prefix", "_prefix_lengths", "_results", "_rules", "_segment", "policy_names")

    _segment: _SegNode | None

    def __init__(self, rules: Sequence[AclRule], policy_names: Sequence[str] = ()) -> None:
        self._rules = tuple(rules)
        self.policy_names = tuple(policy_names)
        # immutable results shared between checks: (pattern, capability) -> allowed result
        self._results: dict[tuple[str, str], AclResult] = {}
        self._exact: dict[str, AclRule] = {}
        self._prefix: dict[str, AclRule] = {}
        segment: list[AclRule] = []
        for rule in self._rules:
            kind = rule.compiled.kind
            if kind == "exact":
                self._exact[rule.pattern] = rule
            elif kind == "prefix":
                self._prefix[rule.compiled.wc_path] = rule
            else:
                segment.append(rule)
        self._prefix_lengths = tuple(sorted({len(k) for k in self._prefix}, reverse=True))
        self._segment = None
        if segment:
            self._segment = _SegNode()
            for rule in segment:
                self._segment.insert(rule)

    @classmethod
    def build(cls, policies: Sequence[Policy], ctx: TemplateContext | None = None) -> ACL:
        # keyed by (text, effective literal offsets): a deny rendered from ``secret/{{...}}`` with
        # the value ``a*`` is the exact path ``secret/a*``, not the glob ``secret/a*``
        drafts: dict[tuple[str, tuple[int, ...]], _Draft] = {}
        for policy in policies:
            for rule in policy.rules:
                pattern = rule.pattern
                literal: tuple[int, ...] = ()
                if rule.is_templated:
                    rendered = _render_rule(rule, ctx)
                    if rendered is None:
                        continue
                    pattern, literal = rendered
                key = (pattern, literal)
                draft = drafts.get(key)
                if draft is None:
                    drafts[key] = _Draft.start(pattern, rule, policy.name, literal)
                else:
                    draft.merge(rule, policy.name)
        return cls([d.freeze() for d in drafts.values()], [p.name for p in policies])

    @property
    def rules(self) -> tuple[AclRule, ...]:
        return self._rules

    def rule(self, pattern: str) -> AclRule | None:
        return next((r for r in self._rules if r.pattern == pattern), None)

    # ------------------------------------------------------------ selection

    def _glob_candidates(self, path: str) -> list[AclRule]:
        """Vault's candidates: the longest matching prefix rule and every matching ``+`` rule."""
        out: list[AclRule] = []
        n = len(path)
        for length in self._prefix_lengths:
            if length <= n:
                hit = self._prefix.get(path[:length])
                if hit is not None:
                    out.append(hit)
                    break
        if self._segment is not None:
            self._segment.collect(path.split("/"), 0, out)
        return out

    def _best_glob(self, path: str) -> AclRule | None:
        candidates = self._glob_candidates(path)
        if len(candidates) == 1:
            return candidates[0]
        return best_rule(candidates)

    def select(self, path: str, operation: str = "read") -> AclRule | None:
        """The one rule that governs ``operation`` on ``path`` (``None``: nothing matches)."""
        path = path.lstrip("/")
        rule = self._exact.get(path)
        if rule is not None:
            return rule
        if operation == "list" and path.endswith("/"):
            rule = self._exact.get(path[:-1])
            if rule is not None:
                return rule
            return resolve_list_candidates(self._glob_candidates(path[:-1]) + self._glob_candidates(path))
        return self._best_glob(path)

    def capabilities(self, path: str) -> tuple[str, ...]:
        """Capabilities on ``path`` as ``sys/capabilities-self`` reports them (``("deny",)`` if none)."""
        rule = self.select(path, "list")
        if rule is None or rule.is_deny or not rule.capabilities:
            return ("deny",)
        return tuple(sorted(rule.capabilities))

    # ------------------------------------------------------------ decision

    def check(
        self,
        path: str,
        operation: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        wrap_ttl: float | None = None,
        require_sudo: bool = False,
    ) -> AclResult:
        cap = OPERATION_CAPABILITY.get(operation)
        if cap is None:
            return AclResult(False, reason=f"unsupported operation {operation!r}", code="UNSUPPORTED_OPERATION")
        rule = self.select(path, operation)
        if rule is None:
            return _NO_MATCH
        pattern = rule.pattern
        if rule.is_deny:
            return AclResult(
                False,
                denying_policies=rule.denying_policies,
                reason=f"denied by the deny capability on {pattern!r}",
                code="EXPLICIT_DENY",
                matched_pattern=pattern,
            )
        if cap not in rule.capabilities:
            return AclResult(
                False,
                reason=f"capability {cap!r} is not granted on {pattern!r}",
                code="CAPABILITY_NOT_GRANTED",
                matched_pattern=pattern,
            )
        if require_sudo and "sudo" not in rule.capabilities:
            return AclResult(
                False,
                reason=f"capability 'sudo' is not granted on {pattern!r}",
                code="SUDO_REQUIRED",
                matched_pattern=pattern,
            )
        problem = _wrapping_problem(rule, wrap_ttl)
        if problem:
            return AclResult(False, reason=problem, code="WRAPPING_REQUIRED", matched_pattern=pattern)
        if operation in PARAM_OPERATIONS and (
            rule.allowed_parameters or rule.denied_parameters or rule.required_parameters
        ):
            problem = check_parameters(
                rule.allowed_parameters, rule.denied_parameters, rule.required_parameters, parameters
            )
            if problem:
                return AclResult(
                    False,
                    reason=f"{problem} (rule {pattern!r})",
                    code="PARAMETER_REJECTED",
                    matched_pattern=pattern,
                )
        result = self._results.get((pattern, cap))
        if result is None:
            result = AclResult(
                True,
                granting_policies=rule.granting_policies.get(cap, ()),
                reason="allowed",
                code="ALLOWED",
                matched_pattern=pattern,
            )
            self._results[(pattern, cap)] = result
        return result


def _render_rule(rule: PathRule, ctx: TemplateContext | None) -> tuple[str, tuple[int, ...]] | None:
    """The rendered pattern of a templated rule and its effective literal offsets; ``None`` drops it.

    A granting rule is dropped when a value is missing, empty or contains ``*``/``+``/braces
    (rendered, it could only widen). A ``deny`` rule must not vanish where Vault's would apply: it
    renders an empty value as ``""`` and any other value verbatim, its characters literal."""
    if not rule.is_deny:
        text = render_templates(rule.pattern, ctx)
        if text is None:
            return None
        if text.startswith("/"):
            text = text[1:]
        return None if pattern_problem(text) else (text, ())
    rendered = render_template_spans(rule.pattern, ctx, empty_ok=True)
    if rendered is None:
        return None
    text, spans = rendered
    offsets = [i for start, end in spans for i in range(start, end)]
    if text.startswith("/"):
        text = text[1:]
        offsets = [i - 1 for i in offsets if i]
    if text == "":
        return "", ()  # Vault keeps it too: an exact rule on the empty path
    if pattern_problem(text, offsets):
        return None  # cannot happen for a parsed policy (its template text was validated)
    return text, effective_literal(text, offsets)


def _wrapping_problem(rule: AclRule, wrap_ttl: float | None) -> str | None:
    lo, hi = rule.min_wrapping_ttl, rule.max_wrapping_ttl
    if lo is None and hi is None:
        return None
    if lo is not None and hi is not None and hi < lo:
        return f"rule {rule.pattern!r} has max_wrapping_ttl below min_wrapping_ttl"
    if wrap_ttl is None:
        return f"rule {rule.pattern!r} requires response wrapping"
    if hi is not None and wrap_ttl > hi:
        return f"wrapping TTL above max_wrapping_ttl of {rule.pattern!r}"
    if lo is not None and wrap_ttl < lo:
        return f"wrapping TTL below min_wrapping_ttl of {rule.pattern!r}"
    return None
