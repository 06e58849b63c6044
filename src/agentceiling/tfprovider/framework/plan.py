"""Planning rules for PlanResourceChange, as terraform-plugin-framework applies them.

Terraform builds ``proposed`` itself (config values; for computed attributes whose config is
null, the prior value). The provider may then only (a) leave values as proposed, (b) set
computed attributes whose config is null, or (c) return the prior value instead of a non-null
config value. ``plan_resource_change`` does, in order:

1. destroy (``proposed`` is None, capability ``plan_destroy``): the plan is null;
2. static defaults: an optional+computed attribute with ``default`` gets it when config is null;
3. if the object changes (create, or planned != prior): every computed attribute whose config
   is null and which has no default becomes UNKNOWN ("known after apply"), except the
   ``use_state_for_unknown`` ones, which keep the prior value. When nothing changes, prior
   values stay, so an unchanged resource never shows a diff (no perpetual "known after apply");
4. ``Resource.modify_plan`` (may set computed attributes, e.g. UNKNOWN for a timestamp that an
   update will change);
5. a guard: values that come from config must still equal config (or prior);
6. ``requires_replace``: the paths of ``requires_replace`` attributes and blocks whose value
   changed from a (known) prior value.

Nested blocks get the same treatment element by element (list: by index; set: by the
element's non-computed attributes; single: the object).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentceiling.tfprovider.framework.cty import format_path, parse_type, same, schema_type
from agentceiling.tfprovider.framework.types import (
    UNKNOWN,
    Attribute,
    AttributePath,
    Block,
    Diagnostics,
    Resource,
    Schema,
)

Obj = dict[str, Any]


@dataclass
class PlanResult:
    planned: Obj | None
    requires_replace: list[AttributePath] = field(default_factory=list)


def plan_resource_change(
    resource: Resource,
    client: Any,
    prior: Obj | None,
    proposed: Obj | None,
    config: Obj | None,
    diags: Diagnostics,
) -> PlanResult:
    if proposed is None:
        return PlanResult(None)
    schema = resource.schema
    config = config or {}
    check_null_elements(schema, config, diags)
    if diags.has_errors:
        return PlanResult(proposed)
    planned = copy.deepcopy(proposed)
    _apply_defaults(schema.attributes, schema.blocks, planned, config)
    changed = prior is None or not schema_type(schema).equal(planned, prior)
    if changed:
        _mark_unknowns(schema.attributes, schema.blocks, planned, config, prior)
    result = resource.modify_plan(client, prior, planned, config, diags)
    if not isinstance(result, dict):
        diags.error(
            "Invalid plan from the provider",
            f"{type(resource).__name__}.modify_plan returned {type(result).__name__}, not a dict",
        )
        return PlanResult(planned)
    check_config_preserved(schema, prior, result, config, diags)
    return PlanResult(result, requires_replace(schema, prior, result))


# ---------------------------------------------------------------------------------------------
# Steps


def _apply_defaults(
    attributes: Sequence[Attribute], blocks: Sequence[Block], planned: Obj, config: Obj
) -> None:
    for a in attributes:
        if a.default is not None and a.optional and a.computed and config.get(a.name) is None:
            planned[a.name] = copy.deepcopy(a.default)
    for b in blocks:
        for el, cfg_el, _ in _block_elements(b, planned, config, None):
            _apply_defaults(b.attributes, (), el, cfg_el)


def _mark_unknowns(
    attributes: Sequence[Attribute], blocks: Sequence[Block], planned: Obj, config: Obj, prior: Obj | None
) -> None:
    for a in attributes:
        if not a.computed or config.get(a.name) is not None:
            continue
        if a.default is not None and a.optional:
            continue
        if a.use_state_for_unknown and prior is not None:
            planned[a.name] = copy.deepcopy(prior.get(a.name))
        else:
            planned[a.name] = UNKNOWN
    for b in blocks:
        for el, cfg_el, prior_el in _block_elements(b, planned, config, prior):
            _mark_unknowns(b.attributes, (), el, cfg_el, prior_el)


def _block_elements(
    b: Block, planned: Obj, config: Obj, prior: Obj | None
) -> list[tuple[Obj, Obj, Obj | None]]:
    """(planned element, matching config element, matching prior element) for one block."""
    value = planned.get(b.name)
    cfg_value = config.get(b.name)
    prior_value = prior.get(b.name) if prior is not None else None
    if b.nesting == "single":
        if not isinstance(value, dict):
            return []
        return [(value, cfg_value if isinstance(cfg_value, dict) else {}, _as_obj(prior_value))]
    if not isinstance(value, list):
        return []
    cfg_items = [x for x in cfg_value if isinstance(x, dict)] if isinstance(cfg_value, list) else []
    prior_items = [x for x in prior_value if isinstance(x, dict)] if isinstance(prior_value, list) else []
    out: list[tuple[Obj, Obj, Obj | None]] = []
    for i, el in enumerate(value):
        if not isinstance(el, dict):
            continue
        if b.nesting == "list":
            cfg_el = cfg_items[i] if i < len(cfg_items) else {}
            prior_el = prior_items[i] if i < len(prior_items) else None
        else:
            cfg_el = _match(b, el, cfg_items) or {}
            prior_el = _match(b, el, prior_items)
        out.append((el, cfg_el, prior_el))
    return out


def _as_obj(v: Any) -> Obj | None:
    return v if isinstance(v, dict) else None


def _match(b: Block, el: Obj, candidates: list[Obj]) -> Obj | None:
    """The candidate whose non-computed attributes equal ``el``'s (set elements have no index)."""
    keys = [a for a in b.attributes if not a.computed]
    for c in candidates:
        if all(parse_type(a.type).equal(el.get(a.name), c.get(a.name)) for a in keys):
            return c
    return None


def check_config_preserved(
    schema: Schema, prior: Obj | None, planned: Obj, config: Obj, diags: Diagnostics
) -> None:
    """A value that comes from config must be planned as config (or as the prior value when both
    are non-null); otherwise terraform fails with "Provider produced invalid plan"."""
    for a in schema.attributes:
        cfg = config.get(a.name)
        if cfg is None and a.computed:
            continue
        t = parse_type(a.type)
        value = planned.get(a.name)
        if same(t, value, cfg):
            continue
        before = prior.get(a.name) if prior is not None else None
        if cfg is not None and before is not None and same(t, value, before):
            continue
        diags.error(
            "Invalid plan from the provider",
            # No values in the message: they may be sensitive, and terraform cannot redact our text.
            f"The plan changed {format_path((a.name,))}, which comes from the configuration. Only "
            "computed attributes that are not set in the configuration may be changed by a plan.",
            (a.name,),
        )


def requires_replace(schema: Schema, prior: Obj | None, planned: Obj) -> list[AttributePath]:
    """Paths of ``requires_replace`` attributes/blocks whose planned value differs from prior."""
    if prior is None:
        return []
    paths: list[AttributePath] = []
    for a in schema.attributes:
        if a.requires_replace and not parse_type(a.type).equal(prior.get(a.name), planned.get(a.name)):
            paths.append((a.name,))
    for b in schema.blocks:
        before, after = prior.get(b.name), planned.get(b.name)
        if b.requires_replace:
            if not schema_type(schema).attrs[b.name].equal(before, after):
                paths.append((b.name,))
            continue
        nested = [a for a in b.attributes if a.requires_replace]
        if nested:
            paths += _nested_replace(b, nested, before, after)
    return paths


def _nested_replace(b: Block, attrs: list[Attribute], before: Any, after: Any) -> list[AttributePath]:
    out: list[AttributePath] = []
    if b.nesting == "single":
        x, y = _as_obj(before) or {}, _as_obj(after) or {}
        for a in attrs:
            if not parse_type(a.type).equal(x.get(a.name), y.get(a.name)):
                out.append((b.name, a.name))
        return out
    xs = before if isinstance(before, list) else []
    ys = after if isinstance(after, list) else []
    if b.nesting == "list":
        for i in range(max(len(xs), len(ys))):
            x = xs[i] if i < len(xs) and isinstance(xs[i], dict) else {}
            y = ys[i] if i < len(ys) and isinstance(ys[i], dict) else {}
            for a in attrs:
                if not parse_type(a.type).equal(x.get(a.name), y.get(a.name)):
                    out.append((b.name, i, a.name))
        return out

    # set: there is no path step into a set element; the path stops at the set.
    def projection(items: list[Any]) -> list[Any]:
        return [{a.name: el.get(a.name) for a in attrs} for el in items if isinstance(el, dict)]

    proj = parse_type(["set", ["object", {a.name: a.type for a in attrs}]])
    if not proj.equal(projection(xs), projection(ys)):
        out.append((b.name,))
    return out


def _objects(schema: Schema, config: Obj) -> Iterator[tuple[Sequence[Attribute], Obj, AttributePath, bool]]:
    """Every object of a configuration with its attributes, its path and whether attribute paths
    can step into it (no path step exists into a set element: report at the set)."""
    yield schema.attributes, config, (), True
    for b in schema.blocks:
        value = config.get(b.name)
        if b.nesting == "single":
            if isinstance(value, dict):
                yield b.attributes, value, (b.name,), True
        elif isinstance(value, list):
            for i, el in enumerate(value):
                if isinstance(el, dict):
                    if b.nesting == "list":
                        yield b.attributes, el, (b.name, i), True
                    else:
                        yield b.attributes, el, (b.name,), False


def validate_config(schema: Schema, config: Obj, diags: Diagnostics) -> None:
    """Run attribute validators on known, non-null values (config may hold UNKNOWN)."""
    check_null_elements(schema, config, diags)
    for attributes, obj, base, leaf in _objects(schema, config):
        _validate_attributes(attributes, obj, base, leaf, diags)


def check_null_elements(schema: Schema, config: Obj, diags: Diagnostics) -> None:
    """A null element in a list, set or map of a primitive type (``audiences = [null]``) is an error
    on that element: the control plane's fields cannot hold one. Checked when validating, and
    again when planning, where values unknown at validation are known."""
    for attributes, obj, base, leaf in _objects(schema, config):
        _null_elements(attributes, obj, base, leaf, diags)


def _null_elements(
    attributes: Sequence[Attribute], obj: Obj, base: AttributePath, leaf: bool, diags: Diagnostics
) -> None:
    for a in attributes:
        t = a.type
        if not (isinstance(t, list) and len(t) == 2 and t[0] in ("list", "set", "map") and isinstance(t[1], str)):
            continue
        value = obj.get(a.name)
        if isinstance(value, list):
            items: list[tuple[str | int, Any]] = list(enumerate(value))
        elif isinstance(value, dict):
            items = list(value.items())
        else:
            continue
        for key, el in items:
            if el is not None:
                continue
            where = f"{a.name}[{key}]" if isinstance(key, int) else f'{a.name}["{key}"]'
            path: AttributePath = (*base, a.name, key) if leaf and t[0] != "set" else (*base, a.name)
            diags.error(
                "Invalid attribute value",
                f"{where} is null: the {t[0]} {a.name} cannot hold null elements.",
                path if leaf else base,
            )


def _validate_attributes(
    attributes: Sequence[Attribute], obj: Obj, base: AttributePath, leaf: bool, diags: Diagnostics
) -> None:
    for a in attributes:
        value = obj.get(a.name)
        if value is None or value is UNKNOWN or not a.validators:
            continue
        for validator in a.validators:
            message = validator(value)
            if message:
                diags.error("Invalid attribute value", message, (*base, a.name) if leaf else base)
