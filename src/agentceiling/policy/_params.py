"""Parameter constraints (``allowed_parameters``, ``denied_parameters``, ``required_parameters``).

Mirrors Vault's ``AllowOperation`` (vault/acl.go): constraints apply to read, create, update,
patch and recover; required parameters are looked up as ``lower(name)`` in the request data;
no data -> allowed; a ``"*"`` key in denied_parameters denies any non-empty data; denied beats
allowed; an empty value list means "any value"; ``"*"`` as the only allowed key allows
everything, otherwise it allows keys that are not listed; values of ``policies`` and
``token_policies`` are lower-cased before matching; string values match Vault's
``GlobbedStringsMatch`` (``foo*``, ``*foo``, ``*foo*``); list values and comma-separated strings
are checked element-wise (allowed: every element, denied: any element), as current Vault does.

One deliberate difference: non-string values compare by JSON value (``1 == 1.0``, booleans only
equal booleans), where Vault's ``reflect.DeepEqual`` of an HCL ``int`` against a decoded JSON
number never matches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ParamMap = Mapping[str, tuple[Any, ...]]

#: operations whose parameters are checked (Vault: read, update, create, patch, recover)
PARAM_OPERATIONS = frozenset({"read", "create", "update", "patch", "recover"})


def globbed_match(item: str, val: str) -> bool:
    if len(item) < 2:
        return val == item
    starts = item.startswith("*")
    ends = item.endswith("*")
    if starts and ends:
        return item[1:-1] in val
    if starts:
        return val.endswith(item[1:])
    if ends:
        return val.startswith(item[:-1])
    return val == item


def values_equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    return False


def value_in_list(value: Any, values: Sequence[Any]) -> bool:
    for el in values:
        if isinstance(el, str):
            if isinstance(value, str) and globbed_match(el, value):
                return True
        elif values_equal(el, value):
            return True
    return False


def _comma_slice(value: str) -> list[str]:
    return [] if value == "" else [p.strip() for p in value.split(",")]


def value_allowed(value: Any, values: Sequence[Any]) -> bool:
    if not values or value_in_list(value, values):
        return True
    if isinstance(value, list | tuple):
        return all(value_in_list(v, values) for v in value)
    if isinstance(value, str):
        return all(value_in_list(v, values) for v in _comma_slice(value))
    return False


def value_denied(value: Any, values: Sequence[Any]) -> bool:
    if not values or value_in_list(value, values):
        return True
    if isinstance(value, list | tuple):
        return any(value_in_list(v, values) for v in value)
    if isinstance(value, str):
        return any(value_in_list(v, values) for v in _comma_slice(value))
    return False


def normalize_value(param: str, value: Any) -> Any:
    if param.lower() not in ("policies", "token_policies"):
        return value
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, list | tuple):
        return [v.lower() if isinstance(v, str) else v for v in value]
    return value


def check_parameters(
    allowed: ParamMap,
    denied: ParamMap,
    required: Sequence[str],
    data: Mapping[str, Any] | None,
) -> str | None:
    """``None`` when ``data`` satisfies the constraints, else a reason."""
    data = data or {}
    for name in required:
        if name.lower() not in data:
            return f"required parameter {name.lower()!r} is missing"
    if not data:
        return None
    if denied:
        if "*" in denied:
            return "all parameters are denied"
        for key, value in data.items():
            dvals = denied.get(key.lower())
            if dvals is not None and value_denied(normalize_value(key, value), dvals):
                return f"parameter {key!r} has a denied value"
    if not allowed:
        return None
    allow_all = "*" in allowed
    if allow_all and len(allowed) == 1:
        return None
    for key, value in data.items():
        avals = allowed.get(key.lower())
        if avals is None:
            if not allow_all:
                return f"parameter {key!r} is not allowed"
            continue
        if not value_allowed(normalize_value(key, value), avals):
            return f"parameter {key!r} has a value that is not allowed"
    return None


def merge_param_maps(a: ParamMap, b: ParamMap) -> dict[str, tuple[Any, ...]]:
    """Vault's merge of two allowed (or denied) maps: keys unioned, value lists concatenated,
    an empty list (= any value) on either side wins."""
    out = dict(a)
    for key, values in b.items():
        if key in out:
            if not values or not out[key]:
                out[key] = ()
            else:
                merged = list(out[key])
                merged.extend(v for v in values if not any(_same(v, m) for m in merged))
                out[key] = tuple(merged)
        else:
            out[key] = tuple(values)
    return out


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and values_equal(a, b)


# ---------------------------------------------------------------- containment of constraints


def _glob_kind(value: str) -> tuple[str, str]:
    """('literal'|'prefix'|'suffix'|'contains', core) as GlobbedStringsMatch reads ``value``."""
    if len(value) < 2:
        return "literal", value
    starts, ends = value.startswith("*"), value.endswith("*")
    if starts and ends:
        return "contains", value[1:-1]
    if starts:
        return "suffix", value[1:]
    if ends:
        return "prefix", value[:-1]
    return "literal", value


def value_pattern_covers(big: Any, small: Any) -> bool:
    """Every request value matched by list element ``small`` is matched by element ``big``."""
    if not isinstance(small, str):
        return not isinstance(big, str) and values_equal(big, small)
    if not isinstance(big, str):
        return False
    skind, score = _glob_kind(small)
    if skind == "literal":
        return globbed_match(big, small)
    bkind, bcore = _glob_kind(big)
    if bkind == "contains":
        return bcore in score
    if bkind == skind == "prefix":
        return score.startswith(bcore)
    if bkind == skind == "suffix":
        return score.endswith(bcore)
    return False


def _list_covers(big: Sequence[Any], small: Sequence[Any]) -> bool:
    """The value list ``big`` admits every value the list ``small`` admits."""
    if not big:
        return True
    if not small:
        return False
    return all(any(value_pattern_covers(b, s) for b in big) for s in small)


def _plain(value: Any) -> bool:
    """A list element that matches one request value only: not a glob, no comma and no leading or
    trailing blank (a request string is also matched element by element, split at commas and
    stripped), not the empty string (which every allowed list admits: ``""`` splits into no
    elements)."""
    if not isinstance(value, str):
        return True
    # Not padded either: a request string's comma-separated elements are compared stripped.
    return value != "" and value == value.strip() and "," not in value and _glob_kind(value)[0] == "literal"


def _left_out(allowed: Sequence[Any], denied: Any) -> bool:
    """No request value the non-empty ``allowed`` list admits is denied by the element ``denied``:
    exact only for plain elements (see :func:`_plain`), where an admitted value is one of them, or
    a list or comma-separated string of them; ``False`` (not proven) otherwise."""
    if not allowed or not _plain(denied) or not all(_plain(a) for a in allowed):
        return False
    return not any(values_equal(a, denied) for a in allowed)


def params_within(
    e_allowed: ParamMap,
    e_denied: ParamMap,
    e_required: Sequence[str],
    c_allowed: ParamMap,
    c_denied: ParamMap,
    c_required: Sequence[str],
) -> str | None:
    """``None`` when every request data the entry constraints admit is admitted by the ceiling's;
    otherwise a reason. Sound, and conservative where exactness would need glob intersection."""
    e_req = {r.lower() for r in e_required}
    missing = sorted({r.lower() for r in c_required} - e_req)
    if missing:
        return f"ceiling requires parameters {missing} that the entry does not require"
    if "*" in e_denied:
        return None  # the entry admits only requests without data
    if c_denied:
        if "*" in c_denied:
            return "ceiling denies all parameters but the entry does not"
        e_restricted = bool(e_allowed) and "*" not in e_allowed
        for key, cvals in c_denied.items():
            if e_restricted and key not in e_allowed:
                continue  # the entry never admits this parameter at all
            evals = e_denied.get(key)
            if evals is not None and _list_covers(evals, cvals):
                continue
            avals = e_allowed.get(key, ())
            if cvals and all(
                (evals is not None and _list_covers(evals, (c,))) or _left_out(avals, c) for c in cvals
            ):
                continue  # each denied value is denied by the entry too, or never among its allowed ones
            return (
                f"ceiling denies values of parameter {key!r} that the entry does not deny "
                "(nor leave out of its allowed_parameters)"
            )
    if not c_allowed or (len(c_allowed) == 1 and "*" in c_allowed):
        return None
    if not e_allowed or (len(e_allowed) == 1 and "*" in e_allowed):
        return "the entry declares no allowed_parameters while the ceiling restricts parameters"
    c_all = "*" in c_allowed
    if "*" in e_allowed:
        if not c_all:
            return "the entry allows any parameter ('*') while the ceiling restricts parameter names"
        # A parameter literally named "*" is looked up under the "*" key on both sides
        # (check_parameters, like Vault's AllowOperation), so its value lists must nest too.
        if not _list_covers(c_allowed["*"], e_allowed["*"]):
            return "the entry allows values of a parameter named '*' that the ceiling does not allow"
        for key, cvals in c_allowed.items():
            if key != "*" and key not in e_allowed and cvals:
                return f"the entry allows any value of parameter {key!r} that the ceiling restricts"
    for key, evals in e_allowed.items():
        if key == "*":
            continue
        allowed_vals = c_allowed.get(key)
        if allowed_vals is None:
            if c_all:
                continue
            return f"the entry allows parameter {key!r} that the ceiling does not allow"
        if not _list_covers(allowed_vals, evals):
            return f"the entry allows values of parameter {key!r} that the ceiling does not allow"
    return None
