"""Vault identity templates (``{{identity.entity.id}}`` ...) in policy paths and RAR paths.

Supported expressions (whitespace inside the braces is ignored, as in Vault)::

    identity.entity.id
    identity.entity.name
    identity.entity.metadata.<key>
    identity.entity.aliases.<mount accessor>.id | .name | .metadata.<key> | .custom_metadata.<key>
    identity.groups.ids.<group id>.name | .metadata.<key>
    identity.groups.names.<group name>.id | .metadata.<key>

Brace balance follows Vault's ``identity.PopulateString``. Unlike Vault, an unknown expression is
a parse error (Vault only finds out at request time and silently drops the rule).

Rendering is fail-closed: a value that is missing **or empty** makes the whole string
unrenderable (``None``), and so does a rendered value containing ``*`` or ``+`` (it would widen
the pattern) or template braces. Vault renders a metadata value that is present but empty as an
empty string; we drop a granting rule instead, because ``secret/{{...}}*`` rendering to
``secret/*`` would grant far more, but render a ``deny`` rule as Vault does (``empty_ok``), because
dropping it would allow what Vault denies. A missing value (and an empty name, which Vault treats
as not found) drops the rule either way, as in Vault.

A ``deny`` rule is also kept when a value contains ``*``, ``+`` or braces: ``ACL.build`` renders it
with :func:`render_template_spans` and compiles the value's characters as literal text (a ``*``
or ``+`` from a value never acts as a glob or wildcard segment), so the deny still covers the path
that contains the value verbatim. Current Vault refuses such values (``ErrTemplatedWildcard``),
losing the deny; keeping it only denies more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "AliasInfo",
    "GroupInfo",
    "TemplateContext",
    "TemplateError",
    "has_templates",
    "mask_templates",
    "render_template_spans",
    "render_templates",
    "validate_templates",
]


class TemplateError(ValueError):
    """Malformed or unsupported identity template."""


@dataclass(frozen=True, slots=True)
class AliasInfo:
    """An entity alias, looked up by mount accessor."""

    id: str
    name: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    custom_metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A group the entity belongs to."""

    id: str
    name: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TemplateContext:
    """The authenticated entity a templated path is rendered for."""

    entity_id: str
    entity_name: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, AliasInfo] = field(default_factory=dict)
    groups: Sequence[GroupInfo] = ()


def _split(text: str) -> list[tuple[int, int, str]] | None:
    """Return ``(start, end, expression)`` for each ``{{...}}``; ``None`` when there is none.

    Raises TemplateError on unbalanced braces (Vault: ``ErrUnbalancedTemplatingCharacter``).
    """
    if "{{" not in text:
        if "}}" in text:
            raise TemplateError("unbalanced templating characters ('}}' without '{{')")
        return None
    pieces = text.split("{{")
    if "}}" in pieces[0]:
        raise TemplateError("unbalanced templating characters ('}}' without '{{')")
    out: list[tuple[int, int, str]] = []
    pos = len(pieces[0])
    for piece in pieces[1:]:
        inner = piece.split("}}")
        if len(inner) != 2:
            raise TemplateError("unbalanced templating characters in identity template")
        start = pos
        end = pos + 2 + len(inner[0]) + 2
        out.append((start, end, inner[0].strip()))
        pos += 2 + len(piece)
    return out


def has_templates(text: str) -> bool:
    return "{{" in text


def _check_expr(expr: str) -> None:
    parts = expr.split(".")
    bad = TemplateError(f"unsupported identity template {{{{{expr}}}}}")
    if len(parts) < 3 or parts[0] != "identity":
        raise bad
    if parts[1] == "entity":
        rest = parts[2:]
        if rest in (["id"], ["name"]):
            return
        if rest[0] == "metadata" and len(rest) >= 2 and ".".join(rest[1:]):
            return
        if rest[0] == "aliases" and len(rest) >= 3 and rest[1]:
            sel = rest[2:]
            if sel in (["id"], ["name"]):
                return
            if sel[0] in ("metadata", "custom_metadata") and len(sel) >= 2 and ".".join(sel[1:]):
                return
        raise bad
    if parts[1] == "groups" and len(parts) >= 5 and parts[2] in ("ids", "names") and parts[3]:
        sel = parts[4:]
        want = "name" if parts[2] == "ids" else "id"
        if sel == [want]:
            return
        if sel[0] == "metadata" and len(sel) >= 2 and ".".join(sel[1:]):
            return
    raise bad


def validate_templates(text: str) -> bool:
    """Check every template in ``text``; return whether there is at least one."""
    found = _split(text)
    if found is None:
        return False
    for _, _, expr in found:
        _check_expr(expr)
    return True


def mask_templates(text: str, fill: str = "t") -> str:
    """``text`` with every ``{{...}}`` replaced by ``fill`` characters of the same length."""
    found = _split(text)
    if not found:
        return text
    out = []
    last = 0
    for start, end, _ in found:
        out.append(text[last:start])
        out.append(fill * (end - start))
        last = end
    out.append(text[last:])
    return "".join(out)


def _resolve(expr: str, ctx: TemplateContext) -> str | None:
    parts = expr.split(".")
    if len(parts) < 3 or parts[0] != "identity":
        return None
    if parts[1] == "entity":
        rest = parts[2:]
        if rest == ["id"]:
            return ctx.entity_id
        if rest == ["name"]:
            return ctx.entity_name or None  # an empty name is "not found" (Vault)
        if rest[0] == "metadata":
            return ctx.metadata.get(".".join(rest[1:]))
        if rest[0] == "aliases" and len(rest) >= 3:
            alias = ctx.aliases.get(rest[1])
            if alias is None:
                return None
            sel = rest[2:]
            if sel == ["id"]:
                return alias.id
            if sel == ["name"]:
                return alias.name or None
            if sel[0] == "metadata":
                return alias.metadata.get(".".join(sel[1:]))
            if sel[0] == "custom_metadata":
                return alias.custom_metadata.get(".".join(sel[1:]))
        return None
    if parts[1] == "groups" and len(parts) >= 5:
        key = parts[3]
        group = next(
            (g for g in ctx.groups if (g.id if parts[2] == "ids" else g.name) == key),
            None,
        )
        if group is None:
            return None
        sel = parts[4:]
        if sel == ["name"] and parts[2] == "ids":
            return group.name or None
        if sel == ["id"] and parts[2] == "names":
            return group.id
        if sel[0] == "metadata":
            return group.metadata.get(".".join(sel[1:]))
    return None


def render_template_spans(
    text: str, ctx: TemplateContext | None, *, empty_ok: bool = False
) -> tuple[str, tuple[tuple[int, int], ...]] | None:
    """Render every template in ``text`` verbatim, as Vault's ACL templating does; also return the
    ``(start, end)`` offsets of each inserted value in the result. ``None`` when a value is missing
    (or empty, unless ``empty_ok``). Values are *not* checked for ``*``, ``+`` or braces: the caller
    must treat the characters inside the spans as ordinary characters."""
    try:
        found = _split(text)
    except TemplateError:
        return None
    if found is None:
        return text, ()
    if ctx is None:
        return None
    out = []
    spans = []
    last = 0
    length = 0
    for start, end, expr in found:
        value = _resolve(expr, ctx)
        if value is None or (not value and not empty_ok):
            return None
        out.append(text[last:start])
        length += start - last
        out.append(value)
        spans.append((length, length + len(value)))
        length += len(value)
        last = end
    out.append(text[last:])
    return "".join(out), tuple(spans)


def render_templates(text: str, ctx: TemplateContext | None) -> str | None:
    """Render every template in ``text``; ``None`` when any cannot be rendered safely: a value
    missing, empty, or containing ``*``, ``+``, ``{{`` or ``}}`` (it could widen the pattern). See
    :func:`render_template_spans` for deny rules, which render empty values and such values
    literally."""
    rendered = render_template_spans(text, ctx)
    if rendered is None:
        return None
    out, spans = rendered
    for start, end in spans:
        value = out[start:end]
        if "*" in value or "+" in value or "{{" in value or "}}" in value:
            return None
    return out
