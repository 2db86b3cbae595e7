"""The feature engine's value types: what it returns (violations, field changes) and its working state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from cpumodel.records import record

FieldKey = tuple[str, str]
Tri = bool | None
# A compact expression (see tools/gen_features.py): a feature name, a bool, or a tuple
# (op, operands...) with op one of "!", "&&", "||", "-->", "<->", or ("a", atom index).
Expr = Any
# A constraint's three-valued evaluator over feature values ``b`` and field region masks ``d``.
Eval = Callable[[list[Tri], list[int]], Tri]


class FeatureError(ValueError):
    """A feature or version name that the model does not know or cannot act on."""


class Constraint(NamedTuple):
    id: str  # ARCH-<owner>-<n>, ARCH-GLOBAL-<n> or EXTRA-<feature>-<n>
    owner: str  # parameter whose constraint list holds it
    text: str  # human-readable rendering
    source: str | None = None  # set for the EXTRA-* rules that cpumodel adds


@record(frozen=True)
class Violation:
    """A constraint of the feature model that a set of values breaks."""

    id: str  # rule id, e.g. ARCH-FEAT_SVE-2
    text: str  # the rendered constraint
    owner: str  # the feature/version whose constraint it is
    message: str  # plain-English explanation naming the fields and values
    fields: tuple[FieldKey, ...]  # (register, field) pairs involved, most relevant first

    @property
    def rule(self) -> str:
        return self.id

    @property
    def constraint(self) -> str:
        return self.text


class FieldChanges(dict[FieldKey, int]):
    """Field values to write, as returned by ``force``/``version_floor``; ``reasons`` says why."""

    def __init__(self) -> None:
        super().__init__()
        self.reasons: dict[FieldKey, str] = {}

    def copy(self) -> FieldChanges:
        out = FieldChanges()
        out.update(self)
        out.reasons.update(self.reasons)
        return out


class Def(NamedTuple):
    """A definition of a feature by ID fields: ``guard --> (feature <-> expr)`` (kind "iff") or
    ``guard --> (feature --> expr)`` (kind "requires")."""

    feature: int
    rule: int  # constraint index
    kind: str  # "iff" | "requires"
    guard: Expr | None
    expr: Expr
    field_only: bool
    fields_mapped: bool


class State:
    """Per-check working state: feature values, field region masks and their reasons."""

    __slots__ = ("asserted", "b", "d", "reason", "values")

    def __init__(self, b: list[Tri], d: list[int], values: dict[int, int], asserted: set[int]) -> None:
        self.b = b
        self.d = d
        self.values = values  # field index -> known value
        self.asserted = asserted
        self.reason: dict[int, int] = {}  # feature index -> constraint index that forced it
