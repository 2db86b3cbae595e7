"""Rule registry. One rule = one small, documented function with a stable ID.

IDs: ``A0xx`` hand-written architecture rules, ``ARCH-<FEAT>-<n>`` constraints generated
from Arm's machine-readable feature model, ``K0xx`` KVM rules, ``V0xx`` vCPU-feature
rules, ``P0xx`` profile hygiene. ``cpumodel rules`` lists them; ``cpumodel rules ID``
prints a rule's documentation (its docstring); ``ignore:`` / ``--ignore`` silence them.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import field
from typing import TYPE_CHECKING, Any

from cpumodel.records import record

if TYPE_CHECKING:
    from cpumodel.findings import Finding
    from cpumodel.resolve import Model


@record
class Context:
    """What a check run knows besides the model: kernel, host, vCPU features and KVM capabilities
    (None: the profile's own), whether KVM rules run, and a memo for what several rules of one
    model share (a Context serves one model)."""

    kernel: str | None = None
    host: Model | None = None
    vcpu_features: frozenset[str] | None = None
    kvm_caps: frozenset[str] | None = None
    kvm: bool = True
    memo: dict[str, Any] = field(default_factory=dict)


CheckFn = Callable[["Model", Context], Iterable["Finding"]]


@record
class Rule:
    """A registered rule: ID, name, kind, severity, documentation and function."""

    id: str
    name: str
    kind: str  # "arch" | "kvm" | "vcpu" | "profile" | "identity"
    severity: str
    summary: str
    source: str
    doc: str = ""
    check: CheckFn | None = None  # None for generated rules checked in bulk


_RULES: dict[str, Rule] = {}


def rule(id: str, name: str, *, kind: str, severity: str, source: str) -> Callable[[CheckFn], CheckFn]:
    """Register a check function as a rule. Its docstring's first line is the summary."""

    def deco(fn: CheckFn) -> CheckFn:
        doc = inspect.cleandoc(fn.__doc__ or "")
        summary = doc.splitlines()[0] if doc else name
        _RULES[id] = Rule(id, name, kind, severity, summary, source, doc, fn)
        return fn

    return deco


class LazyModule:
    """A module imported at its first attribute use: every rule module is imported to register its
    rules, but a check of a host CPU runs no identity rule and needs none of their engines."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import importlib

        return getattr(importlib.import_module(self._name), attr)


def _load_builtin() -> None:
    # Importing the modules registers their rules.
    from cpumodel.rules import arch, firmware, identity, kvm_writes, profile_rules, vcpu  # noqa: F401


_LOADED: list[bool] = []


def hand_rules() -> dict[str, Rule]:
    if not _LOADED:  # not "if not _RULES": importing one rule module registers only its own rules
        _load_builtin()
        _LOADED.append(True)
    return _RULES


def all_rules(include_generated: bool = True) -> dict[str, Rule]:
    rules = dict(hand_rules())
    if include_generated:
        from cpumodel.rules import feature_rules

        rules.update(feature_rules.rules())
    return rules


def all_rule_ids() -> list[str]:
    """The IDs of :func:`all_rules` (the generated ones without making their rules)."""
    from cpumodel.rules import feature_rules

    return [*hand_rules(), *feature_rules.rule_ids()]


def matches(rule_id: str, patterns: Iterable[str]) -> bool:
    """True when a rule ID is silenced by any pattern: an exact ID, a group prefix
    (``ARCH-FEAT_SVE`` silences ``ARCH-FEAT_SVE-3``) or a shell-style glob (``ARCH-*``)."""
    return any(rule_id == p or rule_id.startswith(p + "-") or fnmatch.fnmatchcase(rule_id, p) for p in patterns)


def run(rules: Iterable[Rule], model: Model, ctx: Context) -> Iterator[Finding]:
    for r in rules:
        if r.check is not None:
            yield from r.check(model, ctx)
