"""Ignored rules are not run: ``check_model`` skips an ignored hand rule, and the feature engine when every
rule it reports (each ARCH-*/EXTRA-* constraint and ARCH-INCOMPLETE) is ignored. The findings are those
of the full check with the ignored ones dropped (the findings replay relies on it: it judges the kernel's
K/V verdicts with ``--ignore 'ARCH-*' --ignore 'EXTRA-*'``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cpumodel.check import Options, check_model
from cpumodel.resolve import resolve
from cpumodel.rules import feature_rules, hand_rules
from tests.test_cli import run

# SVE without FCMA (ARCH-FEAT_SVE-2), SVE without the vCPU feature (V002), SHA3 above the host (K002),
# M-profile debug (A004 and K002): the README's example guest, on its own.
GUEST = """\
vcpu_features: [pmu]
registers:
  ID_AA64PFR0_EL1: {EL0: 1, EL1: 1, SVE: IMP}
  ID_AA64ISAR0_EL1: {SHA3: 1}
  ID_DFR0_EL1: {MProfDbg: 1}
"""
NO_ARCH = ["ARCH-*", "EXTRA-*"]


def _keys(found: list[Any]) -> list[tuple[object, ...]]:
    return [(f.rule, f.severity, f.register, f.field, f.message) for f in found]


def _check(path: Path, ignore: list[str]) -> list[Any]:
    host = resolve(str(Path(__file__).resolve().parents[1] / "profiles" / "neoverse-n1.yaml"))
    return check_model(resolve(str(path)), Options(kernel="7.3", host=host, ignore=ignore))


def test_engine_not_run_when_every_engine_rule_is_ignored(write: Callable[..., Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    p = write("g.yaml", GUEST)
    full = _check(p, [])
    assert any(f.rule.startswith("ARCH-") for f in full)
    calls: list[str] = []
    real = feature_rules.check
    monkeypatch.setattr(feature_rules, "check", lambda m, c: calls.append(m.name) or real(m, c))
    fast = _check(p, NO_ARCH)
    assert calls == []
    assert _keys(fast) == [k for k in _keys(full) if not k[0].startswith(("ARCH-", "EXTRA-"))]
    assert {f.rule for f in fast} >= {"V002", "K002", "A004"}
    # one engine rule left on: the engine runs, and reports it
    _check(p, ["EXTRA-*"])
    assert calls == ["g"]
    calls.clear()
    _check(p, [*NO_ARCH[:1], "EXTRA-FEAT_EL3-*"])  # EXTRA-FEAT_AA64EL3-1 ... still on
    assert calls == ["g"]
    # the profile's own ignore: counts as well
    calls.clear()
    q = write("h.yaml", GUEST + "ignore: ['ARCH-*', 'EXTRA-*']\n")
    assert _keys(_check(q, [])) == _keys(fast)
    assert calls == []


def test_all_ignored() -> None:
    assert feature_rules.all_ignored(("ARCH-*", "EXTRA-*"))
    assert feature_rules.all_ignored(("ARCH", "EXTRA"))  # group prefixes
    assert not feature_rules.all_ignored(("ARCH-*",))
    assert not feature_rules.all_ignored(("ARCH-FEAT_*", "EXTRA-*"))  # ARCH-INCOMPLETE, ARCH-v8Ap1-* ...
    assert not feature_rules.all_ignored(())


def test_ignored_hand_rule_not_run(write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    p = write("g.yaml", GUEST)
    a004 = hand_rules()["A004"]
    real = a004.check
    assert real is not None
    calls: list[int] = []
    monkeypatch.setattr(a004, "check", lambda m, c: calls.append(1) or real(m, c))
    assert "A004" in {f.rule for f in _check(p, NO_ARCH)} and calls == [1]
    assert "A004" not in {f.rule for f in _check(p, [*NO_ARCH, "A004"])} and calls == [1]


def test_cli_ignore_gives_the_same_kv_findings(write: Callable[..., Path]) -> None:
    p = write("g.yaml", GUEST)
    host = str(Path(__file__).resolve().parents[1] / "profiles" / "neoverse-n1.yaml")
    code, full = run("check", str(p), "--host", host, "--kernel", "7.3", "--format", "json")
    code2, fast = run("check", str(p), "--host", host, "--kernel", "7.3", "--format", "json",
                      "--ignore", "ARCH-*", "--ignore", "EXTRA-*")
    assert code == code2 == 1
    import json

    kv = [f for f in json.loads(full)["findings"] if not f["rule"].startswith(("ARCH-", "EXTRA-"))]
    assert json.loads(fast)["findings"] == kv
