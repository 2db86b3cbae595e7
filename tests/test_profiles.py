"""The shipped profiles: each passes check, names its sources, and mutations are caught."""

from __future__ import annotations

import pytest
from conftest import PROFILES, shipped_profiles

from cpumodel.check import Options, check_model
from cpumodel.ops import kvm_defaults
from cpumodel.profile import load
from cpumodel.resolve import Model, resolve

ALL = shipped_profiles()
HOSTS = [p for p in ALL if load(p).role == "host"]


def test_enough_real_cores() -> None:
    assert len(HOSTS) >= 12


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_profile_checks_clean(path) -> None:  # type: ignore[no-untyped-def]
    findings = check_model(resolve(str(path)))
    assert [f for f in findings if f.severity != "info"] == []


@pytest.mark.parametrize("path", HOSTS, ids=lambda p: p.stem)
def test_every_host_value_names_its_source(path) -> None:  # type: ignore[no-untyped-def]
    prof = load(path)
    assert prof.source
    missing = [r for r in prof.registers if r not in prof.sources]
    assert not missing, f"registers without a sources: entry: {missing}"


def _mutated(path, reg: str, **fields: int) -> Model:  # type: ignore[no-untyped-def]
    from cpumodel import regdb

    m = resolve(str(path))
    r = regdb.load().registers[reg]
    v = m.values.get(reg, 0)
    for name, fv in fields.items():
        v = r.field(name).put(v, fv)
    m.values = {**m.values, reg: v}
    return m


@pytest.mark.parametrize("path", HOSTS, ids=lambda p: p.stem)
def test_mutations_are_caught(path) -> None:  # type: ignore[no-untyped-def]
    arch = Options(kvm=False)
    rules = {f.rule for f in check_model(_mutated(path, "ID_AA64ISAR0_EL1", SHA3=1, SHA2=0, SHA1=0), arch)}
    assert any(r.startswith("ARCH-FEAT_SHA3") for r in rules), rules
    rules = {f.rule for f in check_model(_mutated(path, "ID_DFR0_EL1", MProfDbg=1), arch)}
    assert "A004" in rules
    rules = {f.rule for f in check_model(_mutated(path, "ID_AA64PFR0_EL1", SVE=7), arch)}
    assert "A001" in rules
    m = resolve(str(path))
    m.values = {**m.values, "ID_PFR0_EL1": m.values.get("ID_PFR0_EL1", 0) | (1 << 40)}
    assert "A002" in {f.rule for f in check_model(m, arch)}


def test_generated_kvm_view_is_current() -> None:
    """profiles/neoverse-v1-kvm7.3.yaml is what 'cpumodel defaults' gives today."""
    host = resolve(str(PROFILES / "neoverse-v1.yaml"))
    values, _ = kvm_defaults(host, "7.3", frozenset())
    assert resolve(str(PROFILES / "neoverse-v1-kvm7.3.yaml")).values == values
