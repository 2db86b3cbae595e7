"""ARCH-INCOMPLETE: the feature engine never silently gives up (issue 9, item 6).

A constraint group the bounded search cannot decide within its budget yields an info finding
through ``cpumodel check``, not silence. The budget is shrunk to force that path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cpumodel.cli import main
from cpumodel.features import FeatureModel, evaluation
from cpumodel.rules import feature_rules

PROFILE = "registers:\n  ID_AA64PFR0_EL1: {SVE: 1}\n  ID_AA64ISAR0_EL1: {SHA3: 1}\n"


def _check(tmp_path: Path) -> str:
    p = tmp_path / "p.yaml"
    p.write_text(PROFILE)
    res = CliRunner().invoke(main, ["check", str(p), "--no-kvm", "--format", "json"])
    assert res.exit_code in (0, 1), res.output
    return res.output


def test_search_over_budget_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feature_rules, "_MEMO", {})  # no memoised verdicts of earlier tests
    monkeypatch.setattr(FeatureModel.load(), "_sat_cache", {})
    monkeypatch.setattr(evaluation, "_SEARCH_BUDGET", 0)
    assert feature_rules.INCOMPLETE in _check(tmp_path)


def test_no_incomplete_finding_within_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feature_rules, "_MEMO", {})
    assert feature_rules.INCOMPLETE not in _check(tmp_path)
