"""Is a declared RAR entry contained in a ceiling ACL?

An entry is within the ceiling iff for **every** concrete request path ``q`` the entry admits
(its pattern matches ``q``; for ``list``, whose request paths always end in ``/`` because Vault's
HTTP layer adds one, ``q`` ends in ``/`` and is matched itself or as ``p + "/"`` with ``p``
matched) and every capability ``c`` it declares, the rule the ceiling ACL
selects for operation ``c`` on ``q`` (exact first, then glob priority, Vault's list/trailing-slash
resolution, ``deny`` wins) grants ``c``, does not require response wrapping, and -- for the
parameter-checked capabilities read/create/update/patch/recover -- has parameter constraints the
entry's constraints are at least as strict as (``_params.params_within``: ceiling-required ⊆
entry-required, ceiling-denied values are denied by the entry, entry-allowed values are covered by
ceiling-allowed values, an unrestricted entry under a restricting ceiling fails).

Algorithm (exact, not sampling). Every pattern -- the entry's and each ceiling rule's -- is a
deterministic automaton over characters: literal characters, ``+`` = "any run of non-``/``
characters", a final ``*`` = "anything". Which rule the ceiling selects for ``q``, and whether
the entry admits ``q``, depend only on the tuple of automaton states after reading ``q`` (plus,
for ``list`` on a path ending in ``/``, which automata accepted ``q`` without that slash). All
characters that occur in no pattern behave identically, so the alphabet is the pattern
characters, ``/`` and one fresh character. A breadth-first search over the product automaton
visits every reachable state tuple once; each tuple stands for a class of concrete paths that
cannot be told apart, and the BFS string that reached it is the shortest *representative path*
of that class (a path instantiating the entry's pattern with characters/segments that do or do
not extend each overlapping ceiling pattern's literal part, or a fresh character). The decision
is evaluated on every representative, so "contained" is proven, and the first failing
representative is returned as ``witness_path``. Exact entries are checked directly. Dead
automata are dropped, so the state space is roughly the overlap between the entry's pattern and
the ceiling's patterns; ``max_states`` bounds the work (exceeding it fails closed).

Request paths are never empty: the endpoint drops their leading slashes and refuses a path that is
only slashes, so the empty path (which ``+`` would match) is no request that needs a grant.

Parameter containment is sound but conservative: a ceiling-denied value counts as handled when
the entry denies it too, never admits the parameter, or allows only plain values (no globs, no
commas) and not that one; where a glob would have to be intersected with the entry's allowed
values, it does not.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agentceiling.policy._params import PARAM_OPERATIONS, params_within
from agentceiling.policy._pattern import DEAD, CompiledPattern, accepts, compile_pattern, pattern_problem, step
from agentceiling.policy.acl import ACL, AclRule, best_rule, resolve_list_candidates
from agentceiling.policy.rar import RarEntry

__all__ = ["CeilingResult", "entry_within_ceiling"]


@dataclass(frozen=True, slots=True)
class CeilingResult:
    ok: bool
    reason: str
    witness_path: str | None = None
    capability: str | None = None


_OK = CeilingResult(True, "entry is within the ceiling")


def _judge(entry: RarEntry, rule: AclRule | None, cap: str) -> str | None:
    if rule is None:
        return "no ceiling rule matches"
    if rule.is_deny:
        return f"ceiling rule {rule.pattern!r} denies"
    if cap not in rule.capabilities:
        return f"ceiling rule {rule.pattern!r} does not grant {cap!r}"
    if rule.min_wrapping_ttl is not None or rule.max_wrapping_ttl is not None:
        return f"ceiling rule {rule.pattern!r} requires response wrapping"
    if cap in PARAM_OPERATIONS:
        problem = params_within(
            entry.allowed_parameters,
            entry.denied_parameters,
            entry.required_parameters,
            rule.allowed_parameters,
            rule.denied_parameters,
            rule.required_parameters,
        )
        if problem:
            return f"ceiling rule {rule.pattern!r}: {problem}"
    return None


def _fail(cap: str, path: str, problem: str) -> CeilingResult:
    return CeilingResult(False, f"{cap!r} on {path!r}: {problem}", path, cap)


def _vault_candidates(rules: Sequence[AclRule], idxs: Iterable[int]) -> list[AclRule]:
    """Glob candidates the way Vault collects them: longest prefix rule + all ``+`` rules."""
    longest: AclRule | None = None
    out: list[AclRule] = []
    for i in idxs:
        rule = rules[i]
        kind = rule.compiled.kind
        if kind == "prefix":
            if longest is None or len(rule.compiled.wc_path) > len(longest.compiled.wc_path):
                longest = rule
        elif kind == "segment":
            out.append(rule)
    if longest is not None:
        out.append(longest)
    return out


def _winner(rules: Sequence[AclRule], acc: Sequence[int], trim: frozenset[int] | None, list_op: bool) -> AclRule | None:
    for i in acc:
        if rules[i].compiled.kind == "exact":
            return rules[i]
    if list_op and trim is not None:
        for i in trim:
            if rules[i].compiled.kind == "exact":
                return rules[i]
        return resolve_list_candidates(_vault_candidates(rules, acc) + _vault_candidates(rules, trim))
    return best_rule(rules[i] for i in acc if rules[i].compiled.kind != "exact")


def _fresh(used: set[str]) -> str:
    for ch in "xyzqjkw0123456789_-.~":
        if ch not in used:
            return ch
    code = 0x100
    while chr(code) in used:
        code += 1
    return chr(code)


def _exact_entry(entry: RarEntry, ceiling: ACL, caps: Sequence[str]) -> CeilingResult:
    q = entry.path
    if q.startswith("/"):
        return _OK  # no canonical request path starts with '/'
    for cap in caps:
        # A list request path always ends in "/": the entry admits list on q itself if q does,
        # else on q + "/" (list tolerates the missing slash).
        at = q if cap != "list" or q.endswith("/") else q + "/"
        problem = _judge(entry, ceiling.select(at, cap), cap)
        if problem:
            return _fail(cap, at, problem)
    return _OK


#: (entry automaton state, live ceiling automata, trailing-slash info, path is non-empty)
State = tuple[int, tuple[tuple[int, int], ...], tuple[bool, frozenset[int]] | None, bool]


def entry_within_ceiling(entry: RarEntry, ceiling: ACL, *, max_states: int = 200_000) -> CeilingResult:
    """Check that the ceiling grants everything ``entry`` declares, on every path it can match."""
    if entry.templated:
        return CeilingResult(False, "entry path has unrendered identity templates")
    problem = pattern_problem(entry.path)
    if problem:
        return CeilingResult(False, f"invalid entry path: {problem}")
    caps = sorted(c for c in entry.capabilities if c != "deny")
    if not caps:
        return CeilingResult(True, "entry grants nothing")
    pattern = compile_pattern(entry.path)
    if pattern.kind == "exact":
        return _exact_entry(entry, ceiling, caps)
    return _search(entry, pattern, ceiling.rules, caps, max_states)


def _search(
    entry: RarEntry,
    pattern: CompiledPattern,
    rules: Sequence[AclRule],
    caps: Sequence[str],
    max_states: int,
) -> CeilingResult:
    e_items = pattern.items
    r_items = [r.compiled.items for r in rules]
    used = {c for c in e_items if isinstance(c, str)}
    for items in r_items:
        used.update(c for c in items if isinstance(c, str))
    used.add("/")
    alphabet = [*sorted(used), _fresh(used)]
    track_trim = "list" in caps

    def evaluate(state: State, q: str) -> CeilingResult | None:
        e_state, live, trim, _ = state
        e_acc = e_state != DEAD and accepts(e_items, e_state)
        # list: only a path ending in "/" is a request (trim is set exactly then), admitted when
        # the entry matches it or matches it without that slash
        list_admitted = trim is not None and (e_acc or trim[0])
        if not e_acc and not list_admitted:
            return None
        acc = [i for i, s in live if accepts(r_items[i], s)]
        for cap in caps:
            if not (list_admitted if cap == "list" else e_acc):
                continue
            rule = _winner(rules, acc, trim[1] if trim is not None else None, cap == "list")
            problem = _judge(entry, rule, cap)
            if problem:
                return _fail(cap, q, problem)
        return None

    start: State = (0, tuple((i, 0) for i in range(len(rules))), None, False)
    failure = evaluate(start, "")
    if failure:
        return failure
    seen = {start}
    queue: deque[tuple[State, str]] = deque([(start, "")])
    while queue:
        state, q = queue.popleft()
        e_state, live, _, started = state
        if e_state == DEAD:
            continue
        e_acc = accepts(e_items, e_state)
        for ch in alphabet:
            if ch == "/" and not started:
                continue  # request paths never start with '/'
            ne = step(e_items, e_state, ch)
            if ne == DEAD and not (ch == "/" and e_acc and track_trim):
                continue
            nlive = tuple((i, s2) for i, s in live if (s2 := step(r_items[i], s, ch)) != DEAD)
            trim: tuple[bool, frozenset[int]] | None = None
            if ch == "/" and track_trim:
                trim = (e_acc, frozenset(i for i, s in live if accepts(r_items[i], s)))
            nstate: State = (ne, nlive, trim, True)
            if nstate in seen:
                continue
            if len(seen) >= max_states:
                return CeilingResult(False, f"ceiling too complex to verify (more than {max_states} path classes)")
            seen.add(nstate)
            nq = q + ch
            failure = evaluate(nstate, nq)
            if failure:
                return failure
            queue.append((nstate, nq))
    return _OK
