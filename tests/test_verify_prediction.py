"""``cpumodel verify`` puts cpumodel's prediction beside the real kernel's answer (issue 9, item 7).

The kernel's answers come from a committed oracle recording (Linux 7.3.4 under QEMU -cpu
neoverse-n1), fed to ``verify`` in place of a live boot: the CLI path is the one a user runs,
only the QEMU run is replaced by what that kernel really answered.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cpumodel import regdb
from cpumodel.cli import main
from cpumodel.oracle import feature_key, load_recording

REC = Path(__file__).resolve().parent / "oracle" / "recordings" / "7.3.4_neoverse-n1.json.gz"
FEATURES = frozenset({"pmu", "vgic"})


def _picked(n_refused: int = 4) -> tuple[Any, list[Any]]:
    rec = load_recording(REC)
    db = regdb.load()
    chosen: dict[str, Any] = {}
    accepted = refused = 0
    for c in rec.cases:
        if c.after_run or c.seq is not None or c.features != FEATURES or c.reg not in db.registers:
            continue
        if c.reg in chosen or c.reg in ("MIDR_EL1", "REVIDR_EL1", "AIDR_EL1"):
            continue
        if c.errno == 0 and accepted < 4:
            accepted += 1
        elif c.errno != 0 and refused < n_refused:
            refused += 1
        else:
            continue
        chosen[c.reg] = c
    assert accepted == 4 and refused == n_refused
    return rec, list(chosen.values())


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flip: bool = False,
         n_refused: int = 4) -> tuple[int, dict[str, Any]]:
    rec, cases = _picked(n_refused)
    if flip:  # the kernel "answers" the first write differently than it really did
        cases[0] = dataclasses.replace(cases[0], errno="EINVAL" if cases[0].errno == 0 else 0)
    fs = rec.feature_sets[feature_key(FEATURES)]
    fake = dataclasses.replace(rec, cases=cases, feature_sets={feature_key(FEATURES): fs})
    monkeypatch.setattr("cpumodel.oracle.runner.run_cases", lambda *a, **k: fake)
    regs = "".join(f"  {c.reg}: {c.value:#x}\n" for c in cases)
    p = tmp_path / "p.yaml"
    p.write_text(f"vcpu_features: [pmu]\nregisters:\n{regs}")
    res = CliRunner().invoke(main, ["verify", str(p), "--kernel-image", str(tmp_path / "Image"), "--format", "json"])
    return res.exit_code, json.loads(res.output)


def test_prediction_beside_every_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _run(tmp_path, monkeypatch)
    assert out["rules"] == "Linux 7.3.4"
    assert len(out["registers"]) == 8
    assert all(r["predicted"] == r["errno"] for r in out["registers"]), out["registers"]
    assert out["disagreements"] == 0
    assert code == 1  # four writes were refused


def test_all_accepted_and_predicted_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _run(tmp_path, monkeypatch, n_refused=0)
    assert out["disagreements"] == 0 and code == 0


def test_disagreement_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _run(tmp_path, monkeypatch, flip=True, n_refused=0)
    assert out["disagreements"] == 1
    assert code == 1
