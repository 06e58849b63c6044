"""RFC 9396 ``authorization_details`` entries of type ``vault:path_access``.

Parsing is strict (any defect -> :class:`RarError` with code ``RAR_INVALID``): the claim must be
an array of objects with a non-empty string ``type``. ``vault:path_access`` entries must have a
non-empty ``path`` (valid pattern: ``*`` only last, ``+`` only as a whole segment, balanced
identity templates), a non-empty list of unique known ``capabilities`` (read, create, update,
delete, list, sudo, patch, subscribe, recover -- ``deny`` is rejected as in the JSON schema) and
may carry ``allowed_parameters``/``denied_parameters`` (object: name -> array of strings,
numbers or booleans) and ``required_parameters`` (array of strings); any other member is an
error, because unknown members could be restrictions we would silently ignore. Entries of any
other type are kept as :class:`ForeignEntry` and grant nothing.

Matching (:func:`rar_allows`) uses ACL path semantics per entry, independently: exact, trailing
``*`` prefix, ``+`` segment; for ``list`` a trailing ``/`` on the request path is tolerated.
A request is allowed iff at least one entry matches path and capability and its parameter
constraints admit the request data. RAR only narrows: callers must also check the ACLs.
Templated paths must be rendered with :func:`render_entry` first; unrendered entries never match.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentceiling.policy._params import PARAM_OPERATIONS, ParamMap, check_parameters
from agentceiling.policy._pattern import compile_pattern, pattern_problem, segment_problem
from agentceiling.policy.acl import OPERATION_CAPABILITY
from agentceiling.policy.errors import RAR_INVALID, RarError
from agentceiling.policy.templates import (
    TemplateContext,
    TemplateError,
    has_templates,
    render_templates,
    validate_templates,
)

__all__ = [
    "PATH_ACCESS_TYPE",
    "RAR_CAPABILITIES",
    "ForeignEntry",
    "RarEntry",
    "parse_authorization_details",
    "rar_allows",
    "render_entry",
]

PATH_ACCESS_TYPE = "vault:path_access"
RAR_CAPABILITIES = frozenset({"read", "create", "update", "delete", "list", "sudo", "patch", "subscribe", "recover"})
_MEMBERS = frozenset({"type", "path", "capabilities", "allowed_parameters", "denied_parameters", "required_parameters"})
_EMPTY: ParamMap = types.MappingProxyType({})


def _typed(params: ParamMap) -> frozenset[tuple[str, tuple[tuple[str, Any], ...]]]:
    """Parameter values with their JSON type: ``true``, ``1`` and ``1.0`` are equal in Python but
    are different constraints (Vault compares parameter values by type and value)."""
    return frozenset((k, tuple((type(v).__name__, v) for v in vs)) for k, vs in params.items())


@dataclass(frozen=True, slots=True, eq=False)
class RarEntry:
    """A ``vault:path_access`` entry. Equal (and hashed alike) only when every member is, parameter
    values compared with their JSON type, so that entries can key caches of ceiling verdicts."""

    path: str
    capabilities: frozenset[str]
    allowed_parameters: ParamMap = dataclasses.field(default_factory=lambda: _EMPTY)
    denied_parameters: ParamMap = dataclasses.field(default_factory=lambda: _EMPTY)
    required_parameters: tuple[str, ...] = ()
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def templated(self) -> bool:
        return has_templates(self.path)

    def _identity(self) -> tuple[Any, ...]:
        return (
            self.path,
            self.capabilities,
            _typed(self.allowed_parameters),
            _typed(self.denied_parameters),
            self.required_parameters,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RarEntry):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())


@dataclass(frozen=True, slots=True)
class ForeignEntry:
    """An entry of another ``type``: kept for audit, grants nothing here."""

    raw: Mapping[str, Any]

    @property
    def type(self) -> str:
        return str(self.raw.get("type", ""))


def _fail(index: int, message: str) -> RarError:
    return RarError(RAR_INVALID, f"authorization_details[{index}]: {message}")


def _is_scalar(value: Any) -> bool:
    # A number beyond float range (1e999) decodes to infinity, which no JSON answer can carry.
    return isinstance(value, str | bool | int) or (isinstance(value, float) and math.isfinite(value))


def _params(index: int, name: str, value: Any) -> ParamMap:
    if not isinstance(value, dict):
        raise _fail(index, f"{name} must be an object mapping parameter names to arrays")
    out: dict[str, tuple[Any, ...]] = {}
    for key, values in value.items():
        if not isinstance(key, str):
            raise _fail(index, f"{name} keys must be strings")
        if not isinstance(values, list) or not all(_is_scalar(v) for v in values):
            raise _fail(index, f"{name}.{key} must be an array of strings, finite numbers or booleans")
        low = key.lower()
        if low in out:
            raise _fail(index, f"{name} has duplicate parameter {low!r}")
        out[low] = tuple(values)
    return types.MappingProxyType(out)


def _entry(index: int, obj: Mapping[str, Any]) -> RarEntry:
    unknown = sorted(k for k in obj if k not in _MEMBERS)
    if unknown:
        raise _fail(index, f"unknown member {unknown[0]!r} in {PATH_ACCESS_TYPE} entry")
    path = obj.get("path")
    if not isinstance(path, str) or not path:
        raise _fail(index, "path must be a non-empty string")
    pattern = path.lstrip("/")  # as a request path's leading slashes are
    problem = pattern_problem(pattern) or segment_problem(pattern)
    if problem is None:
        try:
            validate_templates(pattern)
        except TemplateError as exc:
            problem = str(exc)
    if problem:
        raise _fail(index, f"invalid path {path!r}: {problem}")
    caps = obj.get("capabilities")
    if not isinstance(caps, list) or not caps:
        raise _fail(index, "capabilities must be a non-empty array")
    for cap in caps:
        if not isinstance(cap, str):
            raise _fail(index, "capabilities must be strings")
        if cap not in RAR_CAPABILITIES:
            raise _fail(index, f"unknown capability {cap!r}")
    if len(set(caps)) != len(caps):
        raise _fail(index, "capabilities must be unique")
    allowed = _EMPTY
    if "allowed_parameters" in obj:
        allowed = _params(index, "allowed_parameters", obj["allowed_parameters"])
    denied = _EMPTY
    if "denied_parameters" in obj:
        denied = _params(index, "denied_parameters", obj["denied_parameters"])
    required: list[str] = []
    if "required_parameters" in obj:
        req = obj["required_parameters"]
        if not isinstance(req, list) or not all(isinstance(r, str) for r in req):
            raise _fail(index, "required_parameters must be an array of strings")
        for r in req:
            if r.lower() not in required:
                required.append(r.lower())
    return RarEntry(
        path=pattern,
        capabilities=frozenset(caps),
        allowed_parameters=allowed,
        denied_parameters=denied,
        required_parameters=tuple(required),
        raw=obj,
    )


def parse_authorization_details(value: Any) -> tuple[RarEntry | ForeignEntry, ...]:
    """Strictly parse a decoded ``authorization_details`` claim."""
    if not isinstance(value, list):
        raise RarError(RAR_INVALID, "authorization_details must be a JSON array")
    out: list[RarEntry | ForeignEntry] = []
    for index, obj in enumerate(value):
        if not isinstance(obj, dict):
            raise _fail(index, "entry must be a JSON object")
        kind = obj.get("type")
        if not isinstance(kind, str) or not kind:
            raise _fail(index, "type must be a non-empty string")
        if kind == PATH_ACCESS_TYPE:
            out.append(_entry(index, obj))
        else:
            out.append(ForeignEntry(raw=obj))
    return tuple(out)


def render_entry(entry: RarEntry, ctx: TemplateContext | None) -> RarEntry | None:
    """Render identity templates in ``entry.path``; ``None`` (skip the entry) when impossible."""
    if not entry.templated:
        return entry
    path = render_templates(entry.path, ctx)
    if path is not None:
        path = path.lstrip("/")
    if path is None or pattern_problem(path) or segment_problem(path):
        return None
    return dataclasses.replace(entry, path=path)


def rar_allows(
    entries: Sequence[RarEntry | ForeignEntry],
    path: str,
    operation: str,
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bool, tuple[RarEntry, ...]]:
    """Whether some entry admits ``operation`` on ``path``; also the entries that do."""
    cap = OPERATION_CAPABILITY.get(operation)
    if cap is None:
        return False, ()
    p = path.lstrip("/")
    trimmed = p[:-1] if operation == "list" and p.endswith("/") else None
    parts = p.split("/")
    tparts = trimmed.split("/") if trimmed is not None else None
    matched: list[RarEntry] = []
    denied = False
    for entry in entries:
        if not isinstance(entry, RarEntry) or entry.templated:
            continue
        cp = compile_pattern(entry.path)
        if not (cp.matches(p, parts) or (trimmed is not None and tparts is not None and cp.matches(trimmed, tparts))):
            continue
        if "deny" in entry.capabilities:
            denied = True
            continue
        if cap not in entry.capabilities:
            continue
        if operation in PARAM_OPERATIONS and check_parameters(
            entry.allowed_parameters, entry.denied_parameters, entry.required_parameters, parameters
        ):
            continue
        matched.append(entry)
    if denied:
        return False, ()
    return bool(matched), tuple(matched)
