"""The memo keys that let checks share work are exact: what a key leaves out cannot change the answer."""

from __future__ import annotations

import random
from pathlib import Path

from cpumodel import regdb
from cpumodel.features import FeatureModel
from cpumodel.resolve import SHIPPED, Model, Resolver
from cpumodel.rules import feature_rules


def _relevant_from_key(key: tuple[object, ...]) -> dict[tuple[str, str], int]:
    """The fields the constraints read, decoded from a _model_key's masked register values alone."""
    db = regdb.load()
    fm = FeatureModel.load()
    out: dict[tuple[str, str], int] = {}
    for reg, value in key[1]:  # type: ignore[attr-defined]
        for f in db.registers[reg].named_fields:
            out[(reg, f.name)] = f.get(value)
    return fm.relevant(out)


def test_model_key_determines_the_fields_the_constraints_read() -> None:
    fm = FeatureModel.load()
    rng = random.Random(7)
    resolver = Resolver()
    for p in sorted(Path(SHIPPED).glob("*.yaml")):
        model = resolver.resolve_file(str(p))
        for trial in range(20):
            m = Model(name=model.name, path=model.path, values=dict(model.values), arch=model.arch)
            if trial:  # random values: any bit the key drops must be one no constraint reads
                for reg in rng.sample(sorted(m.values), k=min(5, len(m.values))):
                    m.values[reg] = rng.getrandbits(64)
            key = feature_rules._model_key(m)
            assert key[0] == m.arch
            assert _relevant_from_key(key) == fm.relevant(m.field_values()), (p.name, trial)
