"""Path patterns shared by ACL rules and RAR entries: syntax, classification, matching, priority.

A pattern is one of

* ``exact``   -- no ``*`` and no ``+`` segment: matches that one path;
* ``prefix``  -- ends in ``*``, no ``+`` segment: matches every path starting with the text before
  the ``*`` (``secret/zip-*`` matches ``secret/zip-zap/zong``);
* ``segment`` -- has at least one ``+`` segment (optionally ending in ``*``): ``+`` matches exactly
  one path segment (possibly empty), the final ``*`` is a prefix match on the last segment
  followed by anything, exactly like Vault's ``segmentWildcardPaths``.

Unlike Vault (which treats them literally) we reject ``*`` anywhere but at the end and ``+``
anywhere but as a whole segment (``a/+b``, ``a/+*``), and a lone ``+`` is a wildcard segment.

A rendered ``deny`` rule may carry *literal* offsets (``literal``): characters inserted from an
identity value, which are ordinary characters wherever they are -- a ``*`` there is never a glob,
a ``+`` never a wildcard segment, braces are just braces. Such a pattern matches exactly the paths
that contain those characters literally; its automaton items are plain characters there.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from agentceiling.policy.templates import TemplateError, mask_templates

PatternKind = Literal["exact", "prefix", "segment"]
Priority = tuple[int, int, int, int, str]

#: automaton items for the ceiling containment check
PLUS = -1
ANY = -2
DEAD = -1
Item = str | int


def segment_problem(path: str) -> str | None:
    """What is wrong with a path that has a "." or ".." segment, or an empty one before its end
    (leading slashes are not segments: they are stripped). Vault never serves such a request path
    (its HTTP layer cleans it, its storage refuses parent references): a caller that cleaned it
    after the decision would reach another path, and an entry declaring one would never match."""
    if "." not in path and "//" not in path:
        return None
    segments = path.lstrip("/").split("/")
    for i, segment in enumerate(segments):
        if segment in (".", ".."):
            return f'path has a "{segment}" segment; send the path as it is meant, without dot segments'
        if not segment and i < len(segments) - 1:
            return 'path has an empty segment ("//")'
    return None


def pattern_problem(pattern: str, literal: Collection[int] = ()) -> str | None:
    """Describe what is wrong with ``pattern`` (templates allowed), ``None`` when it is valid.

    Characters at the offsets in ``literal`` are ordinary characters (see the module docstring)."""
    if pattern == "":
        return "empty path"
    if literal:
        chars = list(pattern)
        for i in literal:
            if chars[i] != "/":
                chars[i] = "t"
        pattern = "".join(chars)
    try:
        masked = mask_templates(pattern)
    except TemplateError as exc:
        return str(exc)
    star = masked.find("*")
    if star != -1 and star != len(masked) - 1:
        return f"'*' is only allowed as the last character of a path (found at offset {star})"
    glob = masked.endswith("*")
    body = masked[:-1] if glob else masked
    segments = body.split("/")
    for index, seg in enumerate(segments):
        if "+" in seg and seg != "+":
            return "'+' must be a whole path segment"
        if seg == "+" and glob and index == len(segments) - 1:
            return "'+' must be a whole path segment ('+*' is not allowed; use '+/*')"
    return None


@dataclass(frozen=True, slots=True)
class CompiledPattern:
    pattern: str
    kind: PatternKind
    wc_path: str  #: pattern without the trailing ``*``
    parts: tuple[str, ...]  #: ``wc_path`` split on ``/`` (segment patterns)
    wild: tuple[bool, ...]  #: per part: is it a ``+`` wildcard (a literal ``+`` part is not)
    is_prefix: bool
    wildcards: int
    priority: Priority  #: higher wins (only meaningful for prefix/segment patterns)
    items: tuple[Item, ...]  #: deterministic automaton, see :mod:`agentceiling.policy.ceiling`
    #: offsets of the characters that would be a glob ``*`` or a ``+`` segment but are literal
    literal: tuple[int, ...] = ()

    def matches(self, path: str, path_parts: Sequence[str] | None = None) -> bool:
        if self.kind == "exact":
            return path == self.pattern
        if self.kind == "prefix":
            return path.startswith(self.wc_path)
        pp = path.split("/") if path_parts is None else path_parts
        parts = self.parts
        n = len(parts)
        if len(pp) < n or (not self.is_prefix and len(pp) != n):
            return False
        last = n - 1
        wild = self.wild
        for i, part in enumerate(parts):
            seg = pp[i]
            if wild[i] or part == seg:
                continue
            if self.is_prefix and i == last and seg.startswith(part):
                continue
            return False
        return True


def compile_pattern(pattern: str, literal: Collection[int] = ()) -> CompiledPattern:
    """Compile a syntactically valid (see :func:`pattern_problem`), rendered pattern.

    Characters at the offsets in ``literal`` are ordinary characters (a rendered identity value)."""
    if not literal:
        return _compile(pattern, ())
    return _compile(pattern, effective_literal(pattern, literal))


def effective_literal(pattern: str, literal: Collection[int]) -> tuple[int, ...]:
    """The offsets in ``literal`` that change how ``pattern`` is read: a final ``*`` and ``+``
    parts. Two rules with equal text and equal effective offsets are the same rule."""
    if not literal:
        return ()
    last = len(pattern) - 1
    out = []
    if pattern.endswith("*") and last in literal:
        out.append(last)
        wc_path = pattern
    else:
        wc_path = pattern[:-1] if pattern.endswith("*") else pattern
    offset = 0
    for part in wc_path.split("/"):
        if part == "+" and offset in literal:
            out.append(offset)
        offset += len(part) + 1
    return tuple(sorted(out))


@lru_cache(maxsize=8192)
def _compile(pattern: str, literal: tuple[int, ...]) -> CompiledPattern:
    is_glob = pattern.endswith("*") and len(pattern) - 1 not in literal
    wc_path = pattern[:-1] if is_glob else pattern
    parts = tuple(wc_path.split("/"))
    wild_list: list[bool] = []
    offsets: list[int] = []
    offset = 0
    for part in parts:
        offsets.append(offset)
        wild_list.append(part == "+" and offset not in literal)
        offset += len(part) + 1
    wild = tuple(wild_list)
    wildcards = sum(wild)
    items: list[Item]
    if wildcards:
        kind: PatternKind = "segment"
        first = offsets[wild.index(True)]
        items = []
        for index, part in enumerate(parts):
            if index:
                items.append("/")
            if wild[index]:
                items.append(PLUS)
            else:
                items.extend(part)
        if is_glob:
            items.append(ANY)
    elif is_glob:
        kind = "prefix"
        first = len(wc_path)
        items = [*wc_path, ANY]
    else:
        kind = "exact"
        first = len(pattern)
        items = list(pattern)
    priority: Priority = (first, 0 if is_glob else 1, -wildcards, len(wc_path), wc_path)
    return CompiledPattern(
        pattern=pattern,
        kind=kind,
        wc_path=wc_path,
        parts=parts,
        wild=wild,
        is_prefix=is_glob,
        wildcards=wildcards,
        priority=priority,
        items=tuple(items),
        literal=literal,
    )


def step(items: tuple[Item, ...], state: int, char: str) -> int:
    """Advance the automaton of a pattern by one character (``DEAD`` when it cannot match)."""
    if state >= len(items):
        return DEAD
    item = items[state]
    if item == ANY:
        return state
    if item == PLUS:
        if char != "/":
            return state
        if state + 1 < len(items) and items[state + 1] == "/":
            return state + 2
        return DEAD
    return state + 1 if item == char else DEAD


def accepts(items: tuple[Item, ...], state: int) -> bool:
    n = len(items)
    if state == n:
        return True
    item = items[state]
    return item == ANY or (item == PLUS and state == n - 1)
