"""The declarative surface that resources are written against.

Values crossing this boundary are plain Python: ``None`` is null, ``UNKNOWN`` is an unknown value,
str/bool/int (int64 numbers)/float, ``list`` for lists and sets (sets compare unordered),
``dict`` for maps and objects (an object always carries every attribute of its schema).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final


class _Unknown:
    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __bool__(self) -> bool:
        raise TypeError("an unknown value has no truth value")


UNKNOWN: Final = _Unknown()

# cty type expressions, written as their JSON form: "string", "bool", "number",
# ["list", T], ["set", T], ["map", T], ["object", {name: T}].
CtyType = Any
STRING: Final = "string"
BOOL: Final = "bool"
NUMBER: Final = "number"


def list_of(t: CtyType) -> CtyType:
    return ["list", t]


def set_of(t: CtyType) -> CtyType:
    return ["set", t]


def map_of(t: CtyType) -> CtyType:
    return ["map", t]


AttributePath = tuple[str | int, ...]
"""("public_keys", 0, "pem"): attribute names and list indexes / map keys."""

Validator = Callable[[Any], "str | None"]
"""Given a known, non-null value, return an error message or None."""


@dataclass(frozen=True)
class Attribute:
    name: str
    type: CtyType
    description: str = ""
    required: bool = False
    optional: bool = False
    computed: bool = False
    sensitive: bool = False
    # Marked deprecated in the schema (terraform shows it so); the resource warns when it is set.
    deprecated: bool = False
    # Static default for an optional+computed attribute, applied at plan time when config is null.
    default: Any = None
    requires_replace: bool = False
    # Keep the prior state's value in the plan instead of planning it unknown on update.
    use_state_for_unknown: bool = False
    validators: tuple[Validator, ...] = ()


@dataclass(frozen=True)
class Block:
    """A nested block (NestingMode LIST by default)."""

    name: str
    attributes: tuple[Attribute, ...]
    description: str = ""
    nesting: str = "list"  # "list" | "set" | "single"
    min_items: int = 0
    max_items: int = 0
    requires_replace: bool = False


@dataclass(frozen=True)
class Schema:
    attributes: tuple[Attribute, ...]
    blocks: tuple[Block, ...] = ()
    version: int = 0
    description: str = ""


@dataclass(frozen=True)
class Diagnostic:
    severity: str  # "error" | "warning"
    summary: str
    detail: str = ""
    path: AttributePath | None = None


@dataclass
class Diagnostics:
    items: list[Diagnostic] = field(default_factory=list)

    def error(self, summary: str, detail: str = "", path: AttributePath | None = None) -> None:
        self.items.append(Diagnostic("error", summary, detail, path))

    def warning(self, summary: str, detail: str = "", path: AttributePath | None = None) -> None:
        self.items.append(Diagnostic("warning", summary, detail, path))

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.items)


class Resource(abc.ABC):
    """One managed resource type. Implementations are stateless; ``client`` comes from
    ``Provider.configure`` and must be safe to use from several threads (terraform applies up
    to 10 resources concurrently)."""

    type_name: str
    schema: Schema

    def validate(self, config: dict[str, Any], diags: Diagnostics) -> None:
        """ValidateResourceConfig: config values may be UNKNOWN; check only known ones."""

    def modify_plan(
        self,
        client: Any,
        prior: dict[str, Any] | None,
        planned: dict[str, Any],
        config: dict[str, Any],
        diags: Diagnostics,
    ) -> dict[str, Any]:
        """Hook after the framework applied defaults, unknowns and use_state_for_unknown."""
        return planned

    @abc.abstractmethod
    def create(self, client: Any, planned: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        """Return the full new state (every attribute), or None after adding an error."""

    @abc.abstractmethod
    def read(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        """Return the refreshed full state, or None when the remote object is gone."""

    @abc.abstractmethod
    def update(
        self, client: Any, prior: dict[str, Any], planned: dict[str, Any], diags: Diagnostics
    ) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def delete(self, client: Any, state: dict[str, Any], diags: Diagnostics) -> None: ...

    def import_state(self, client: Any, import_id: str, diags: Diagnostics) -> dict[str, Any] | None:
        """Return a state that ``read`` can complete (unset attributes None), or None + error."""
        diags.error("Resource Import Not Implemented", f"{self.type_name} cannot be imported")
        return None

    def upgrade_state(self, version: int, state: dict[str, Any], diags: Diagnostics) -> dict[str, Any]:
        """UpgradeResourceState for a state written with an older ``schema.version``: ``state`` is
        the stored JSON object as written then; return it in the current shape. Keys outside the
        current schema are dropped and missing ones become null afterwards, so only renames and
        value conversions need code here. Not called when the version is current."""
        return state


class DataSource(abc.ABC):
    """One data source type (optional; a provider lists them in ``Provider.data_sources``)."""

    type_name: str
    schema: Schema

    def validate(self, config: dict[str, Any], diags: Diagnostics) -> None:
        """ValidateDataResourceConfig: config values may be UNKNOWN; check only known ones."""

    @abc.abstractmethod
    def read(self, client: Any, config: dict[str, Any], diags: Diagnostics) -> dict[str, Any] | None:
        """Return the full state (config values unchanged, computed ones filled), or None + error."""


class Provider(abc.ABC):
    type_name: str  # "vault"
    schema: Schema  # the provider block

    @abc.abstractmethod
    def resources(self) -> Sequence[Resource]: ...

    def validate(self, config: dict[str, Any], diags: Diagnostics) -> None:
        """ValidateProviderConfig."""

    @abc.abstractmethod
    def configure(self, config: dict[str, Any], diags: Diagnostics) -> Any:
        """ConfigureProvider: return the client handed to every resource call."""

    def data_sources(self) -> Sequence[DataSource]:
        """Data source types; none by default."""
        return ()
