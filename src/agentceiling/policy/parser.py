"""Parse Vault ACL policies written in HCL (v1 syntax) or JSON.

We use our own small tokenizer/parser instead of ``hcl.loads`` because pyhcl keeps only the last
of several ``path "x" {}`` blocks with the same pattern, and because we want line/column numbers
for every error. The accepted subset is what Vault policies use: ``#``, ``//`` and ``/* */``
comments; double-quoted strings with escapes; heredocs (``<<EOF`` / ``<<-EOF``); numbers;
``true``/``false``; lists with optional trailing comma; nested objects; ``key = value``,
``key: value`` and ``key "label" { ... }`` items, optionally separated by commas.

Semantics follow Vault's ``vault/policy.go``:

* top-level keys ``path`` and ``name`` (ignored); anything else is an error;
* path block keys ``capabilities``, ``policy`` (legacy), ``allowed_parameters``,
  ``denied_parameters``, ``required_parameters``, ``min_wrapping_ttl``, ``max_wrapping_ttl`` and
  ``comment``. ``mfa_methods`` and ``control_group`` are rejected (they are Enterprise
  restrictions we cannot enforce, and accepting them silently would grant more than Vault);
  ``subscribe_event_types`` is accepted, and since a decision carries no event type to check
  against it, a block that restricts the event types (anything but ``["*"]``) does not grant
  ``subscribe`` here (fail closed);
* legacy ``policy``: ``deny`` -> [deny]; ``read`` -> [read, list];
  ``write`` -> [create, read, update, delete, list]; ``sudo`` -> write + [sudo]
  (exactly Vault's mapping: ``write`` does not include ``patch``);
* ``deny`` among the capabilities keeps only ``deny``; parameter names are lower-cased;
  a single leading ``/`` of a pattern is stripped;
* several blocks for the same pattern are merged with Vault's ACL merge rules (capability union,
  ``deny`` wins, parameter maps merged with "empty list = any value" winning, required
  parameters unioned, the smaller wrapping TTLs kept);
* ``*`` only as the last character, ``+`` only as a whole segment; identity templates are
  validated here and rendered when an ACL is built.

A key repeated inside one path block is an error (Vault's decoder keeps one of them).
"""

from __future__ import annotations

import json
import re
import types
from dataclasses import dataclass, field
from typing import Any, Literal

from agentceiling.policy._params import ParamMap, merge_param_maps
from agentceiling.policy._pattern import compile_pattern, pattern_problem
from agentceiling.policy.errors import POLICY_INVALID, PolicyParseError
from agentceiling.policy.templates import TemplateError, validate_templates

__all__ = [
    "CAPABILITIES",
    "PathRule",
    "Policy",
    "parse_policy",
]

#: Vault's ten ACL capabilities
CAPABILITIES = frozenset(
    {"create", "read", "update", "patch", "delete", "list", "sudo", "deny", "subscribe", "recover"}
)

_LEGACY = {
    "deny": ("deny",),
    "read": ("read", "list"),
    "write": ("create", "read", "update", "delete", "list"),
    "sudo": ("create", "read", "update", "delete", "list", "sudo"),
}

_BLOCK_KEYS = frozenset(
    {
        "capabilities",
        "policy",
        "allowed_parameters",
        "denied_parameters",
        "required_parameters",
        "min_wrapping_ttl",
        "max_wrapping_ttl",
        "comment",
        "subscribe_event_types",
    }
)

_EMPTY: ParamMap = types.MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PathRule:
    """One (merged) ``path`` block of a policy."""

    pattern: str
    capabilities: frozenset[str]
    allowed_parameters: ParamMap = field(default_factory=lambda: _EMPTY)
    denied_parameters: ParamMap = field(default_factory=lambda: _EMPTY)
    required_parameters: tuple[str, ...] = ()
    min_wrapping_ttl: float | None = None  #: seconds
    max_wrapping_ttl: float | None = None  #: seconds
    is_glob: bool = False  #: ends with ``*``
    has_plus: bool = False  #: has a ``+`` segment
    is_templated: bool = False  #: contains identity templates
    line: int = 0  #: position of the (first) block
    column: int = 0

    @property
    def kind(self) -> Literal["exact", "prefix", "segment"]:
        return compile_pattern(self.pattern).kind

    @property
    def is_deny(self) -> bool:
        return "deny" in self.capabilities

    def __hash__(self) -> int:
        return hash(
            (
                self.pattern,
                self.capabilities,
                frozenset(self.allowed_parameters.items()),
                frozenset(self.denied_parameters.items()),
                self.required_parameters,
                self.min_wrapping_ttl,
                self.max_wrapping_ttl,
            )
        )


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    rules: tuple[PathRule, ...] = ()

    @property
    def templated(self) -> bool:
        return any(r.is_templated for r in self.rules)

    def rule(self, pattern: str) -> PathRule | None:
        return next((r for r in self.rules if r.pattern == pattern), None)


# ---------------------------------------------------------------- tokens


@dataclass(slots=True)
class _Tok:
    kind: str  # str num ident { } [ ] = : , eof
    value: Any
    line: int
    col: int


@dataclass(slots=True)
class _Item:
    keys: list[_Tok]
    value: _Node
    line: int
    col: int


@dataclass(slots=True)
class _Node:
    kind: str  # str num bool null list object
    value: Any
    line: int
    col: int
    items: list[_Item] = field(default_factory=list)


class _Syntax(Exception):
    def __init__(self, msg: str, line: int, col: int) -> None:
        super().__init__(msg)
        self.msg = msg
        self.line = line
        self.col = col


_SIMPLE_ESC = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    '"': '"',
    "\\": "\\",
    "/": "/",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}
_NUM = re.compile(r"-?(?:0|[0-9]+)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_IDENT_START = re.compile(r"[A-Za-z_]")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_\-.]*")


class _Lexer:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.line = 1
        self.col = 1

    def _adv(self, n: int = 1) -> None:
        for _ in range(n):
            if self.s[self.i] == "\n":
                self.line += 1
                self.col = 1
            else:
                self.col += 1
            self.i += 1

    def tokens(self) -> list[_Tok]:
        out: list[_Tok] = []
        s = self.s
        while True:
            self._skip()
            if self.i >= len(s):
                out.append(_Tok("eof", None, self.line, self.col))
                return out
            c = s[self.i]
            line, col = self.line, self.col
            if c in "{}[]=:,":
                out.append(_Tok(c, c, line, col))
                self._adv()
            elif c == '"':
                out.append(_Tok("str", self._string(), line, col))
            elif s.startswith("<<", self.i):
                out.append(_Tok("str", self._heredoc(), line, col))
            elif c == "-" or c.isdigit():
                m = _NUM.match(s, self.i)
                if not m:
                    raise _Syntax(f"unexpected character {c!r}", line, col)
                text = m.group(0)
                value: Any = float(text) if any(ch in text for ch in ".eE") else int(text)
                out.append(_Tok("num", value, line, col))
                self._adv(len(text))
            elif _IDENT_START.match(c):
                m = _IDENT.match(s, self.i)
                assert m is not None
                out.append(_Tok("ident", m.group(0), line, col))
                self._adv(len(m.group(0)))
            else:
                raise _Syntax(f"unexpected character {c!r}", line, col)

    def _skip(self) -> None:
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c in " \t\r\n\ufeff":
                self._adv()
            elif c == "#" or s.startswith("//", self.i):
                while self.i < len(s) and s[self.i] != "\n":
                    self._adv()
            elif s.startswith("/*", self.i):
                line, col = self.line, self.col
                end = s.find("*/", self.i + 2)
                if end == -1:
                    raise _Syntax("unterminated block comment", line, col)
                self._adv(end + 2 - self.i)
            else:
                return

    def _string(self) -> str:
        s = self.s
        line, col = self.line, self.col
        self._adv()  # opening quote
        out: list[str] = []
        while True:
            if self.i >= len(s) or s[self.i] == "\n":
                raise _Syntax("unterminated string", line, col)
            c = s[self.i]
            if c == '"':
                self._adv()
                return "".join(out)
            if c == "\\":
                eline, ecol = self.line, self.col
                nxt = s[self.i + 1] if self.i + 1 < len(s) else ""
                if nxt in _SIMPLE_ESC:
                    out.append(_SIMPLE_ESC[nxt])
                    self._adv(2)
                elif nxt in ("u", "U"):
                    width = 4 if nxt == "u" else 8
                    digits = s[self.i + 2 : self.i + 2 + width]
                    if len(digits) != width or not all(ch in "0123456789abcdefABCDEF" for ch in digits):
                        raise _Syntax(f"invalid \\{nxt} escape in string", eline, ecol)
                    code = int(digits, 16)
                    self._adv(2 + width)
                    if 0xD800 <= code < 0xDC00 and s.startswith("\\u", self.i):
                        low = s[self.i + 2 : self.i + 6]
                        if len(low) == 4 and all(ch in "0123456789abcdefABCDEF" for ch in low):
                            lcode = int(low, 16)
                            if 0xDC00 <= lcode < 0xE000:
                                code = 0x10000 + ((code - 0xD800) << 10) + (lcode - 0xDC00)
                                self._adv(6)
                    if code > 0x10FFFF:
                        raise _Syntax("invalid unicode escape in string", eline, ecol)
                    out.append(chr(code))
                else:
                    raise _Syntax(f"invalid escape sequence '\\{nxt}' in string", eline, ecol)
            else:
                out.append(c)
                self._adv()

    def _heredoc(self) -> str:
        s = self.s
        line, col = self.line, self.col
        m = re.compile(r"<<(-?)([A-Za-z_][A-Za-z0-9_\-]*)[ \t]*\r?\n").match(s, self.i)
        if not m:
            raise _Syntax("invalid heredoc: expected <<MARKER followed by a newline", line, col)
        indent, marker = m.group(1) == "-", m.group(2)
        self._adv(m.end() - self.i)
        lines: list[str] = []
        while True:
            if self.i >= len(s):
                raise _Syntax(f"unterminated heredoc (missing {marker!r})", line, col)
            end = s.find("\n", self.i)
            raw = s[self.i :] if end == -1 else s[self.i : end]
            self._adv(len(raw) + (0 if end == -1 else 1))
            text = raw.rstrip("\r")
            if text.strip() == marker:
                break
            lines.append(text)
        if indent:
            widths = [len(x) - len(x.lstrip(" \t")) for x in lines if x.strip()]
            cut = min(widths, default=0)
            lines = [x[cut:] for x in lines]
        return "".join(x + "\n" for x in lines)


# ---------------------------------------------------------------- syntax tree


#: Deepest nesting of lists and objects a policy may have. Real policies nest three or four levels
#: (path block, parameter map, value list); the parser is recursive, so it needs a bound.
MAX_NESTING = 64


class _Parser:
    def __init__(self, tokens: list[_Tok]) -> None:
        self.t = tokens
        self.i = 0
        self.depth = 0

    def peek(self) -> _Tok:
        return self.t[self.i]

    def next(self) -> _Tok:
        tok = self.t[self.i]
        self.i += 1
        return tok

    def _describe(self, tok: _Tok) -> str:
        if tok.kind == "eof":
            return "end of input"
        if tok.kind == "str":
            return f"string {tok.value!r}"
        return f"{tok.value!r}"

    def body(self) -> list[_Item]:
        items: list[_Item] = []
        while self.peek().kind != "eof":
            if self.peek().kind in ("}", "]"):
                tok = self.peek()
                raise _Syntax(f"unexpected {tok.value!r}", tok.line, tok.col)
            items.append(self.item())
            if self.peek().kind == ",":
                self.next()
        return items

    def document_json(self) -> list[_Item]:
        node = self.value()
        if node.kind != "object":
            raise _Syntax("a JSON policy must be an object", node.line, node.col)
        tok = self.peek()
        if tok.kind != "eof":
            raise _Syntax(f"unexpected {self._describe(tok)} after the JSON object", tok.line, tok.col)
        return node.items

    def item(self) -> _Item:
        first = self.peek()
        keys: list[_Tok] = []
        while self.peek().kind in ("ident", "str"):
            keys.append(self.next())
        if not keys:
            raise _Syntax(f"expected a key, found {self._describe(first)}", first.line, first.col)
        tok = self.peek()
        if tok.kind in ("=", ":"):
            self.next()
            value = self.value()
        elif tok.kind == "{":
            value = self.value()
        else:
            raise _Syntax(
                f"expected '=' or '{{' after {keys[-1].value!r}, found {self._describe(tok)}",
                tok.line,
                tok.col,
            )
        if len(keys) > 1 and value.kind != "object":
            raise _Syntax(f"{keys[0].value!r} with a label must be followed by a {{ }} block", first.line, first.col)
        return _Item(keys, value, first.line, first.col)

    def value(self) -> _Node:
        tok = self.peek()
        if tok.kind not in ("[", "{"):
            return self._value()
        if self.depth >= MAX_NESTING:
            raise _Syntax(f"lists and objects nested more than {MAX_NESTING} levels deep", tok.line, tok.col)
        self.depth += 1
        try:
            return self._value()
        finally:
            self.depth -= 1

    def _value(self) -> _Node:
        tok = self.next()
        if tok.kind == "str":
            return _Node("str", tok.value, tok.line, tok.col)
        if tok.kind == "num":
            return _Node("num", tok.value, tok.line, tok.col)
        if tok.kind == "ident" and tok.value in ("true", "false"):
            return _Node("bool", tok.value == "true", tok.line, tok.col)
        if tok.kind == "ident" and tok.value == "null":
            return _Node("null", None, tok.line, tok.col)
        if tok.kind == "[":
            elems: list[_Node] = []
            while self.peek().kind != "]":
                elems.append(self.value())
                if self.peek().kind == ",":
                    self.next()
                elif self.peek().kind != "]":
                    bad = self.peek()
                    raise _Syntax(f"expected ',' or ']', found {self._describe(bad)}", bad.line, bad.col)
            self.next()
            return _Node("list", elems, tok.line, tok.col)
        if tok.kind == "{":
            items: list[_Item] = []
            while self.peek().kind != "}":
                if self.peek().kind == "eof":
                    raise _Syntax("unclosed '{'", tok.line, tok.col)
                items.append(self.item())
                if self.peek().kind == ",":
                    self.next()
            self.next()
            return _Node("object", None, tok.line, tok.col, items)
        if tok.kind == "eof":
            raise _Syntax("expected a value, found end of input", tok.line, tok.col)
        raise _Syntax(f"expected a value, found {self._describe(tok)}", tok.line, tok.col)


# ---------------------------------------------------------------- semantics


class _Invalid(Exception):
    def __init__(self, msg: str, line: int, col: int) -> None:
        super().__init__(msg)
        self.msg = msg
        self.line = line
        self.col = col


_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h|d)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(node: _Node) -> float:
    if node.kind == "num":
        return float(node.value)
    if node.kind == "str":
        text = node.value.strip()
        if re.fullmatch(r"[0-9]+", text):
            return float(text)
        pos, total = 0, 0.0
        while pos < len(text):
            m = _DURATION.match(text, pos)
            if not m:
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if text and pos == len(text):
            return total
    raise _Invalid("invalid duration (use seconds or a duration string like '5m')", node.line, node.col)


def _scalar(node: _Node, what: str) -> Any:
    if node.kind in ("str", "num", "bool"):
        return node.value
    raise _Invalid(f"{what} must be strings, numbers or booleans", node.line, node.col)


def _string_list(node: _Node, what: str) -> list[tuple[str, _Node]]:
    if node.kind != "list":
        raise _Invalid(f"{what} must be a list of strings", node.line, node.col)
    out = []
    for el in node.value:
        if el.kind != "str":
            raise _Invalid(f"{what} must be a list of strings", el.line, el.col)
        out.append((el.value, el))
    return out


def _param_map(node: _Node, what: str) -> dict[str, tuple[Any, ...]]:
    if node.kind != "object":
        raise _Invalid(f"{what} must be a map of parameter name to a list of values", node.line, node.col)
    out: dict[str, tuple[Any, ...]] = {}
    for item in node.items:
        if len(item.keys) != 1:
            raise _Invalid(f"{what}: unexpected block", item.line, item.col)
        key = str(item.keys[0].value).lower()
        if key in out:
            raise _Invalid(f"{what}: duplicate parameter {key!r}", item.line, item.col)
        if item.value.kind != "list":
            raise _Invalid(f"{what}: {key!r} must be a list of values", item.value.line, item.value.col)
        values: list[Any] = []
        for el in item.value.value:
            values.append(_scalar(el, f"{what} values"))
        out[key] = tuple(values)
    return out


@dataclass(slots=True)
class _Draft:
    pattern: str
    capabilities: set[str]
    allowed: dict[str, tuple[Any, ...]]
    denied: dict[str, tuple[Any, ...]]
    required: list[str]
    min_ttl: float | None
    max_ttl: float | None
    line: int
    col: int

    def merge(self, other: _Draft) -> None:
        """Vault's NewACL merge of two rules for the same pattern."""
        if "deny" in self.capabilities:
            return
        if "deny" in other.capabilities:
            self.capabilities = {"deny"}
            self.allowed, self.denied = {}, {}
            return
        self.capabilities |= other.capabilities
        self.max_ttl = _min_ttl(self.max_ttl, other.max_ttl)
        self.min_ttl = _min_ttl(self.min_ttl, other.min_ttl)
        self.allowed = merge_param_maps(self.allowed, other.allowed)
        self.denied = merge_param_maps(self.denied, other.denied)
        self.required.extend(r for r in other.required if r not in self.required)

    def freeze(self) -> PathRule:
        cp = compile_pattern(self.pattern)
        return PathRule(
            pattern=self.pattern,
            capabilities=frozenset(self.capabilities),
            allowed_parameters=types.MappingProxyType(dict(self.allowed)),
            denied_parameters=types.MappingProxyType(dict(self.denied)),
            required_parameters=tuple(self.required),
            min_wrapping_ttl=self.min_ttl,
            max_wrapping_ttl=self.max_ttl,
            is_glob=cp.is_prefix,
            has_plus=cp.wildcards > 0,
            is_templated="{{" in self.pattern,
            line=self.line,
            column=self.col,
        )


def _min_ttl(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _block(pattern: str, key_tok: _Tok, node: _Node) -> _Draft:
    """Build one path block; errors are raised at the offending element (re-anchored later)."""
    problem = pattern_problem(pattern)
    if problem:
        raise _Invalid(problem, key_tok.line, key_tok.col)
    try:
        validate_templates(pattern)
    except TemplateError as exc:
        raise _Invalid(str(exc), key_tok.line, key_tok.col) from None
    if node.kind != "object":
        raise _Invalid("a path must be followed by a { } block", node.line, node.col)
    seen: dict[str, _Item] = {}
    caps: set[str] = set()
    event_types: list[str] | None = None
    draft = _Draft(pattern, caps, {}, {}, [], None, None, key_tok.line, key_tok.col)
    for item in node.items:
        if len(item.keys) != 1:
            raise _Invalid(f"unexpected block {item.keys[0].value!r}", item.line, item.col)
        key = str(item.keys[0].value)
        if key in seen:
            first = seen[key]
            raise _Invalid(
                f"duplicate key {key!r} (first set at line {first.line}, column {first.col})",
                item.line,
                item.col,
            )
        seen[key] = item
        value = item.value
        if key == "capabilities":
            for cap, el in _string_list(value, "capabilities"):
                if cap not in CAPABILITIES:
                    raise _Invalid(f"unknown capability {json.dumps(cap)}", el.line, el.col)
                caps.add(cap)
        elif key == "policy":
            if value.kind != "str":
                raise _Invalid("policy must be a string", value.line, value.col)
            if value.value not in _LEGACY:
                raise _Invalid(
                    f"invalid policy {value.value!r} (expected deny, read, write or sudo)",
                    value.line,
                    value.col,
                )
            caps.update(_LEGACY[value.value])
        elif key in ("allowed_parameters", "denied_parameters"):
            params = _param_map(value, key)
            if key == "allowed_parameters":
                draft.allowed = params
            else:
                draft.denied = params
        elif key == "required_parameters":
            for name, _ in _string_list(value, "required_parameters"):
                if name.lower() not in draft.required:
                    draft.required.append(name.lower())
        elif key in ("min_wrapping_ttl", "max_wrapping_ttl"):
            seconds = _duration(value)
            if seconds < 0:
                raise _Invalid(f"{key} cannot be negative", value.line, value.col)
            if key == "min_wrapping_ttl":
                draft.min_ttl = seconds or None
            else:
                draft.max_ttl = seconds or None
        elif key == "comment":
            if value.kind != "str":
                raise _Invalid("comment must be a string", value.line, value.col)
        elif key == "subscribe_event_types":
            event_types = [name for name, _ in _string_list(value, "subscribe_event_types")]
        elif key in ("mfa_methods", "control_group"):
            raise _Invalid(f"{key!r} is not supported", item.line, item.col)
        else:
            raise _Invalid(
                f"unknown key {key!r} (expected one of {', '.join(sorted(_BLOCK_KEYS))})",
                item.line,
                item.col,
            )
    if draft.min_ttl and draft.max_ttl and draft.max_ttl < draft.min_ttl:
        raise _Invalid("max_wrapping_ttl cannot be less than min_wrapping_ttl", node.line, node.col)
    if event_types is not None and "*" not in event_types:
        # A decision has no event type to check against the list: grant nothing rather than more.
        caps.discard("subscribe")
    if "deny" in caps:
        draft.capabilities = {"deny"}
        draft.allowed, draft.denied = {}, {}
    return draft


def _path_blocks(items: list[_Item]) -> list[tuple[str, _Tok, _Node]]:
    """Flatten the HCL block form and the JSON/nested-object forms into (pattern, anchor, body).

    The anchor (where semantic errors point) is the ``path`` keyword of an HCL block, or the
    pattern key of the JSON form."""
    out: list[tuple[str, _Tok, _Node]] = []
    for item in items:
        head = item.keys[0]
        if head.value == "name":
            if len(item.keys) != 1 or item.value.kind != "str":
                raise _Invalid("name must be a string", item.line, item.col)
            continue
        if head.value != "path":
            raise _Invalid(f"unknown top-level key {head.value!r} (expected path)", head.line, head.col)
        if len(item.keys) == 2:
            out.append((str(item.keys[1].value), head, item.value))
        elif len(item.keys) > 2:
            extra = item.keys[2]
            raise _Invalid(f"unexpected label {extra.value!r} after path pattern", extra.line, extra.col)
        else:
            groups = item.value.value if item.value.kind == "list" else [item.value]
            for group in groups:
                if group.kind != "object":
                    raise _Invalid(
                        'path must map patterns to blocks: path "<pattern>" { ... }',
                        group.line,
                        group.col,
                    )
                for sub in group.items:
                    if len(sub.keys) != 1:
                        raise _Invalid("unexpected label after path pattern", sub.line, sub.col)
                    out.append((str(sub.keys[0].value), sub.keys[0], sub.value))
    return out


def _looks_like_json(text: str) -> bool:
    return text.lstrip().startswith("{")


def parse_policy(text: str, name: str = "") -> Policy:
    """Parse an ACL policy in HCL or JSON. Raises :class:`PolicyParseError`."""
    json_mode = _looks_like_json(text)
    if json_mode:
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicyParseError(f"invalid JSON: {exc.msg}", exc.lineno, exc.colno, policy_name=name) from None
        except RecursionError:
            raise PolicyParseError(
                f"invalid JSON: lists and objects nested more than {MAX_NESTING} levels deep", 1, 1, policy_name=name
            ) from None
    try:
        parser = _Parser(_Lexer(text).tokens())
        items = parser.document_json() if json_mode else parser.body()
    except _Syntax as exc:
        raise PolicyParseError(exc.msg, exc.line, exc.col, policy_name=name) from None
    try:
        blocks = _path_blocks(items)
    except _Invalid as exc:
        raise PolicyParseError(exc.msg, exc.line, exc.col, policy_name=name, code=POLICY_INVALID) from None
    drafts: dict[str, _Draft] = {}
    for raw_pattern, key_tok, node in blocks:
        pattern = raw_pattern[1:] if raw_pattern.startswith("/") else raw_pattern
        try:
            draft = _block(pattern, key_tok, node)
        except _Invalid as exc:
            where = ""
            if (exc.line, exc.col) != (key_tok.line, key_tok.col):
                where = f" (at line {exc.line}, column {exc.col})"
            raise PolicyParseError(
                f"path {json.dumps(raw_pattern)}: {exc.msg}{where}",
                key_tok.line,
                key_tok.col,
                policy_name=name,
                code=POLICY_INVALID,
            ) from None
        if pattern in drafts:
            drafts[pattern].merge(draft)
        else:
            drafts[pattern] = draft
    return Policy(name=name, rules=tuple(d.freeze() for d in drafts.values()))
