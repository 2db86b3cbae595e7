"""Architecture rules generated from Arm's machine-readable feature model (``ARCH-<FEAT>-<n>``).

Data: ``data/features.json``, converted by ``tools/gen_features.py`` from Arm's A-profile
Architecture Machine Readable Specification (Features.json; BSD-3, notice in
``data/ARM-LICENSE.txt``). Each constraint is one rule; its ID names the feature (or
architecture version) whose constraint list holds it and its 1-based position there.
The engine is ``cpumodel/features/``: a constraint is reported only when no choice of
the features that no ID field determines can satisfy it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, lru_cache

from cpumodel import regdb
from cpumodel.findings import Finding
from cpumodel.resolve import Model
from cpumodel.rules import Context, Rule

SOURCE = "Arm A-profile Architecture Machine Readable Specification, Features.json"


@cache
def rules() -> dict[str, Rule]:
    from cpumodel.features import FeatureModel

    fm = FeatureModel.load()
    spec = f"{SOURCE} ({fm.spec_version})"
    out: dict[str, Rule] = {}
    for c in fm.constraints():
        doc = (f"Arm architecture constraint on {c.owner}:\n\n    {c.text}\n\n"
               "Read '-->' as 'requires', '<->' as 'exactly when'. UInt/SInt(REG.FIELD) is an ID "
               "register field read unsigned/signed. Features that no ID field determines are "
               "treated as unknown: this rule fires only when no choice of them can satisfy it.")
        out[c.id] = Rule(c.id, c.owner, "arch", "error", c.text, spec, doc)
    out[INCOMPLETE] = Rule(INCOMPLETE, "search-incomplete", "arch", "info", INCOMPLETE_DOC.splitlines()[0], spec,
                           INCOMPLETE_DOC)
    return out


def rule_ids() -> tuple[str, ...]:
    """The IDs of :func:`rules`, without making the rules (or loading the constraint texts)."""
    from cpumodel.features import FeatureModel

    return (*FeatureModel.load().constraint_ids(), INCOMPLETE)


@lru_cache(maxsize=64)
def all_ignored(patterns: tuple[str, ...]) -> bool:
    """Whether ``patterns`` (ignore entries) silence every rule the feature engine reports
    (each generated constraint and ARCH-INCOMPLETE): then the engine need not run at all."""
    from cpumodel.rules import matches

    return bool(patterns) and all(matches(rid, patterns) for rid in rule_ids())


INCOMPLETE = "ARCH-INCOMPLETE"
INCOMPLETE_DOC = """\
The feature engine gave up on some constraints of this model: they were neither proved nor refuted.

After propagation, groups of constraints that stay undecided go to a bounded search over the
features no ID field determines. A group that exceeds the search budget is not reported as a
violation (it may have a solution), so the model is not known to satisfy it either. Rare; say
more fields (or ``arch:``) to let propagation decide."""


_MEMO: dict[tuple[object, ...], tuple[list, int]] = {}  # type: ignore[type-arg]
_MEMO_MAX = 512  # distinct models' verdicts kept (a few KB each); cleared when full
_KEYS: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}  # one copy of each field-name tuple


_READ_MASKS: dict[str, int] = {}  # register -> the bits of its named fields that the constraints read


def _read_mask(reg: str) -> int:
    """The bits of ``reg``'s named fields that the constraints read (``fm.relevant``'s fields)."""
    m = _READ_MASKS.get(reg)
    if m is None:
        from cpumodel.features import FeatureModel

        fields = regdb.load().registers[reg].named_fields
        read = FeatureModel.load().relevant({(reg, f.name): 0 for f in fields})
        m = _READ_MASKS[reg] = sum(f.mask for f in fields if (reg, f.name) in read)
    return m


def _model_key(model: Model) -> tuple[object, ...]:
    """The memo key of a model whose every field is known: (arch, its registers' bits that the
    constraints read). Equal keys mean equal ``fm.relevant(model.field_values())``: the fields of a
    register are decoded from its value alone."""
    return (model.arch, tuple(sorted((r, v & m) for r, v in model.values.items() if (m := _read_mask(r)))))


def _violations(fm, fields: Callable[[], dict[tuple[str, str], int]],  # type: ignore[no-untyped-def]
                arch: str | None, key: tuple[object, ...] | None = None) -> tuple[list, int]:  # type: ignore[type-arg]
    """fm.check and how many searches it abandoned (the engine's ``incomplete_searches``),
    memoised per distinct model: CI lints many profiles that share a base or differ only in
    fields no constraint reads (MIDR_EL1, REVIDR_EL1, ...). The key is ``key`` (``_model_key``)
    or else (arch, field names, values) of the fields the constraints read, with one shared copy
    of each name tuple. ``fields``: the model's known fields, asked for only when needed."""
    relevant = None
    if key is None:
        relevant = fm.relevant(fields())
        names = tuple(sorted(relevant))
        names = _KEYS.setdefault(names, names)
        if len(_KEYS) > 256:
            _KEYS.clear()
        key = (arch, names, tuple(relevant[n] for n in names))
    hit = _MEMO.get(key)
    if hit is None:
        if len(_MEMO) >= _MEMO_MAX:
            _MEMO.clear()
        before = fm.incomplete_searches  # the engine's count of searches abandoned at its budget
        found = fm.check(relevant if relevant is not None else fm.relevant(fields()),
                         assert_true=[arch] if arch else [])
        hit = _MEMO[key] = (found, fm.incomplete_searches - before)
    return hit


def check(model: Model, ctx: Context) -> list[Finding]:
    from cpumodel.features import FeatureModel

    fm = FeatureModel.load()
    out = []
    known: list[dict[tuple[str, str], int]] = []  # the model's known fields, once asked for

    def fields() -> dict[tuple[str, str], int]:
        if not known:  # field_values() leaves out the fields a capture could not see (unseen: unknown, not 0)
            known.append(model.field_values())
        return known[0]

    violations, incomplete = _violations(fm, fields, model.arch, None if model.unseen else _model_key(model))
    if incomplete:
        out.append(Finding(INCOMPLETE, "info", f"{incomplete} group(s) of Arm constraints were neither proved nor "
                           "refuted within the feature engine's search budget", location=model.loc,
                           why="an incomplete search reports no violation; it does not prove there is none",
                           source=f"{SOURCE} ({fm.spec_version})"))
    for v in violations:
        reg, field = v.fields[0] if v.fields else (None, None)
        loc = model.where(reg, field) if reg else model.loc
        if v.owner == model.arch or (model.arch and v.text.startswith(model.arch)):
            loc = model.arch_loc or loc
        out.append(Finding(v.id, "error", v.message, register=reg, field=field,
                           asked=fields().get((reg, field)) if reg and field else None,
                           why=f"Arm constraint: {v.text}", location=loc,
                           source=f"{SOURCE} ({fm.spec_version})",
                           extra={"fields": [f"{r}.{f}" for r, f in v.fields]}))
    return out
