"""The recorded kernels' answers replayed through the findings layer ``cpumodel check`` uses.

tests/kvm/test_kvm_model.py replays every recording through cpumodel's KVM model; this replays
them through what a user runs: for each recording and vCPU-feature set, a host profile is written
as YAML (``role: host``, ``origin: kvm-defaults``: the recording's KVM_GET_ONE_REG defaults, plus
the facts about QEMU's emulated CPUs that KVM hides, as ``host_registers``) and loaded through the
Resolver like ``--host``; each case becomes a profile naming its register (by its name in the
register database) with ``vcpu_features`` / ``kvm_caps``, judged by ``check_model`` with the
recording's kernel. A K/V error on the register exactly when the kernel refused, with its errno.

Recordings are globbed (new kernels, CPUs and case shapes are taken as they come); identical
cases across recordings are judged once. After-run cases are left to the model replay: a profile
says nothing about a vCPU having run. Feature sets a profile cannot say (nv, mte) are skipped.
The default tier judges a deterministic sample of each recording; ``-m exhaustive`` all of them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cpumodel import regdb
from cpumodel.check import Options, check_model
from cpumodel.kvm import kernels, load_kernel
from cpumodel.oracle import FeatureSetRecord, Recording, feature_key, load_recording
from cpumodel.resolve import Resolver

REPO = Path(__file__).resolve().parents[2]
RECORDINGS = sorted((REPO / "tests" / "oracle" / "recordings").glob("*.json.gz"))
PROFILE_FEATURES = {"pmu", "sve", "ptrauth", "el1_32bit"}
# What a VMM sets that changes nothing before the first run (an in-kernel vGIC), and capabilities
CAPS = {"writable_imp_id": "writable_imp_id_regs", "writable_imp_id_regs": "writable_imp_id_regs"}
IGNORED = {"vgic"}
# Facts about QEMU 7.2's emulated CPUs that KVM hides from its defaults (the same facts
# tests/kvm/test_kvm_model.py gives the model; sources there): no FEAT_MPAM, no MTE without
# tag memory (-M virt without mte=on), no FEAT_NV, no GICv5 CPU interface (FEAT_GCIE: ID_AA64PFR2_EL1
# reads 0, so 6.17-6.19's vgic_is_v3_compat() is false; KVM hides GCIE from its defaults).
QEMU_HOST_FACTS = {"ID_AA64PFR0_EL1": {"MPAM": 0}, "ID_AA64PFR1_EL1": {"MPAM_frac": 0, "MTE": 0},
                   "ID_AA64MMFR2_EL1": {"NV": 0}, "ID_AA64PFR2_EL1": {"GCIE": 0}}
SAMPLE = 60  # cases per recording in the default tier


def _kernel(rec: Recording) -> str | None:
    """The rule set to judge with: only a recording of the very release the rules come from
    (6.17.13 differs from the 6.17.8 rules by a stable backport; tests/kvm/test_kvm_model.py
    replays such recordings with their known gaps)."""
    if rec.kernel_line not in kernels() or load_kernel(rec.kernel_line).kernel_full != rec.kernel_version:
        return None
    return rec.kernel_line


def _host_yaml(fs: FeatureSetRecord, feats: list[str], caps: list[str]) -> str | None:
    db = regdb.load()
    by_enc = {r.encoding: r.name for r in db}
    lines = ["role: host", "origin: kvm-defaults", f"vcpu_features: [{', '.join(feats)}]"]
    if caps:
        lines.append(f"kvm_caps: [{', '.join(caps)}]")
    lines.append("host_registers:")
    for reg, fields in QEMU_HOST_FACTS.items():
        lines.append(f"  {reg}: {{{', '.join(f'{k}: {v}' for k, v in fields.items())}}}")
    lines.append("registers:")
    n = 0
    for name, v in fs.defaults.items():
        if v is None:
            continue
        canon = db.canonical(name) or _by_generic(name, by_enc)
        if canon is not None:
            lines.append(f"  {canon}: {v:#018x}")
            n += 1
    return "\n".join(lines) + "\n" if n else None


def _by_generic(name: str, by_enc: dict[tuple[int, ...], str]) -> str | None:
    import re

    m = re.fullmatch(r"S(\d)_(\d)_C?(\d+)_C?(\d+)_(\d)", name)
    return by_enc.get(tuple(int(x) for x in m.groups())) if m else None


def cases(paths: list[Path], tmp: Path, sample: int | None) -> Iterator[tuple[str, Any, str, int, str, str, Any]]:
    """(id, resolved host, kernel, encoding name, value, features/caps YAML, expected errno) per
    distinct case."""
    db = regdb.load()
    by_enc = {r.encoding: r.name for r in db}
    seen: set[tuple[object, ...]] = set()
    for path in paths:
        rec = load_recording(path)
        kernel = _kernel(rec)
        if kernel is None:
            continue
        hosts: dict[str, Any] = {}
        picked = 0
        # migration sequences (c.seq) keep earlier writes: the model replay judges them
        todo = [c for c in rec.cases if not c.after_run and c.seq is None]
        step = max(1, len(todo) // sample) if sample else 1
        for i, c in enumerate(todo):
            if sample and (i % step or picked >= sample):
                continue
            key = feature_key(c.features)
            fs = rec.feature_sets.get(key)
            feats = set(c.features) - IGNORED
            if fs is None or fs.init_errno != 0 or not feats <= PROFILE_FEATURES | set(CAPS):
                continue
            reg = by_enc.get(c.encoding)
            if reg is None:
                continue
            vf = sorted(feats & PROFILE_FEATURES)
            caps = sorted({CAPS[f] for f in feats & set(CAPS)})
            dkey = (kernel, json.dumps(fs.defaults, sort_keys=True), tuple(vf), tuple(caps), reg, c.value)
            if dkey in seen:
                continue
            seen.add(dkey)
            if key not in hosts:
                text = _host_yaml(fs, vf, caps)
                if text is None:
                    continue
                hp = tmp / f"{path.name.split('.json')[0]}-{key}.yaml"
                hp.write_text(text)
                hosts[key] = Resolver([str(tmp)]).resolve_file(str(hp))
            picked += 1
            profile = f"vcpu_features: [{', '.join(vf)}]\n" + (f"kvm_caps: [{', '.join(caps)}]\n" if caps else "")
            yield (f"{path.name}[{key}] {reg}:={c.value:#018x}", hosts[key], kernel, reg, c.value,
                   profile, c.errno)


def judge(tmp: Path, host: Any, kernel: str, reg: str, value: int, head: str) -> tuple[str | int, list[str]]:
    p = tmp / "case.yaml"
    p.write_text(f"{head}registers:\n  {reg}: {value:#x}\n")
    model = Resolver([str(tmp)]).resolve_file(str(p))
    found = check_model(model, Options(kernel=kernel, host=host))
    kv = [f for f in found if f.rule[0] in "KV" and f.severity == "error" and f.register == reg]
    other = [f"{f.rule}: {f.message}" for f in found if f.rule in ("K003",)]
    errnos = {f.errno for f in kv}
    return (0 if not kv else next(iter(errnos)) if len(errnos) == 1 else "/".join(sorted(map(str, errnos)))), other


def _replay(tmp: Path, sample: int | None) -> None:
    assert RECORDINGS
    bad, total = [], 0
    for cid, host, kernel, reg, value, head, errno in cases(RECORDINGS, tmp, sample):
        total += 1
        got, other = judge(tmp, host, kernel, reg, value, head)
        if got != errno or other:
            bad.append(f"{cid}: kernel {errno}, cpumodel check {got} {other}")
    assert total > 0
    assert not bad, f"{len(bad)}/{total} disagree:\n" + "\n".join(bad[:30])


@pytest.mark.skipif(not RECORDINGS, reason="no oracle recordings")
def test_findings_replay_sample(tmp_path: Path) -> None:
    _replay(tmp_path, SAMPLE)


# Every recorded case through check_model is ~6 million profile checks (hours): more than CI's time.
# The exhaustive tier takes a fifty times larger spread of every recording (every case goes through the
# model in tests/kvm/test_kvm_model.py's exhaustive replay); CPUMODEL_FINDINGS_REPLAY=all takes them all.
EXHAUSTIVE_SAMPLE = 3000


@pytest.mark.exhaustive
@pytest.mark.skipif(not RECORDINGS, reason="no oracle recordings")
def test_findings_replay_all(tmp_path: Path) -> None:
    _replay(tmp_path, None if os.environ.get("CPUMODEL_FINDINGS_REPLAY") == "all" else EXHAUSTIVE_SAMPLE)
