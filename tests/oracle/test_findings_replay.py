"""The recorded kernels' answers replayed through the findings layer ``cpumodel check`` uses.

tests/kvm/test_kvm_model.py replays every recording through cpumodel's KVM model; this replays
them through what a user runs: for each recording and vCPU-feature set, a host profile is written
as YAML (``role: host``, ``origin: kvm-defaults``: the recording's KVM_GET_ONE_REG defaults, plus
the facts about QEMU's emulated CPUs that KVM hides, as ``host_registers``) and loaded through the
Resolver like ``--host``, once; each case becomes a profile naming its register (by its name in the
register database) with ``vcpu_features`` / ``kvm_caps``, judged by ``check_model`` with the
recording's kernel and ``--ignore 'ARCH-*' --ignore 'EXTRA-*'``: the kernel judges KVM's rules, not
Arm's (``check_model`` then skips the feature engine; tests/test_check_ignore.py shows the K/V
findings are those of the full check). A K/V error on the register exactly when the kernel refused,
with its errno, and no K003 ("depends on host"): the host is given.

A case profile is the ``Profile`` the loader makes of ``registers: {REG: VALUE}``, ``vcpu_features``
and ``kvm_caps``, built directly (no YAML text per case) and resolved by the Resolver as
``cpumodel check`` does; the default tier also writes every 20th case it judges as YAML and loads it
like ``cpumodel check FILE``, and requires the same findings both ways (locations included).

Migration sequences (``seq``: another CPU's full KVM defaults written in order on this one) are one
profile with all those registers; each register's K/V verdict must be the kernel's answer to that
write. After-run cases (a write after the first KVM_RUN) are left to the model replay: a profile
says nothing about a vCPU having run (cpumodel judges what a VMM writes before it, as ``emit``
orders it). Registers the database does not name (unallocated encodings: a profile cannot name
them) and feature sets a profile cannot say (nv, mte) are counted and skipped.

Recordings are globbed (new kernels, CPUs and case shapes are taken as they come), streamed one at
a time, by kernel line: identical cases (same kernel line, same host defaults and vCPU features,
same writes) are judged once across all recordings of the line (a case is never identical across
lines: the rules differ). The default tier judges a deterministic sample of each recording and
every migration; ``-m exhaustive`` judges every distinct case, the kernel lines spread over worker
processes (``CPUMODEL_REPLAY_JOBS``, default one per usable core).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cpumodel import regdb
from cpumodel.check import Options, check_model
from cpumodel.errors import Location
from cpumodel.kvm import kernels, load_kernel
from cpumodel.oracle import CaseResult, FeatureSetRecord, Recording, feature_key, load_recording
from cpumodel.profile import Profile, RegisterSpec
from cpumodel.resolve import Model, Resolver

REPO = Path(__file__).resolve().parents[2]
RECORDINGS = sorted((REPO / "tests" / "oracle" / "recordings").glob("*.json.gz"))
PROFILE_FEATURES = {"pmu", "sve", "ptrauth", "el1_32bit"}
# Capabilities a VMM enables (the probe's names -> the profile's), and what a VMM sets that changes
# nothing before the first run (an in-kernel vGIC)
CAPS = {"writable_imp_id": "writable_imp_id_regs", "writable_imp_id_regs": "writable_imp_id_regs"}
IGNORED = {"vgic"}
# Facts about QEMU 7.2's emulated CPUs that KVM hides from its defaults (the same facts
# tests/kvm/test_kvm_model.py gives the model; sources there): no FEAT_MPAM, no MTE without
# tag memory (-M virt without mte=on), no FEAT_NV, no GICv5 CPU interface (FEAT_GCIE: ID_AA64PFR2_EL1
# reads 0, so 6.17-6.19's vgic_is_v3_compat() is false; KVM hides GCIE from its defaults).
QEMU_HOST_FACTS = {"ID_AA64PFR0_EL1": {"MPAM": 0}, "ID_AA64PFR1_EL1": {"MPAM_frac": 0, "MTE": 0},
                   "ID_AA64MMFR2_EL1": {"NV": 0}, "ID_AA64PFR2_EL1": {"GCIE": 0}}
# The kernel judges KVM's rules; Arm's architecture constraints are cpumodel's own (--ignore them)
NO_ARCH = ["ARCH-*", "EXTRA-*"]
SAMPLE = 1000  # single-write cases per recording in the default tier (and every migration)
YAML_EVERY = 20  # the default tier also writes every 20th case judged as a YAML file and loads it


def _kernel(rec: Recording) -> str | None:
    """The rule set to judge with: the recorded line's, if cpumodel has one (a line without rules,
    such as 6.16 or 7.0, is recorded ahead of them)."""
    return rec.kernel_line if rec.kernel_line in kernels() else None


def known_gaps(rec: Recording) -> frozenset[str]:
    """Registers where the recorded release is known to differ from the release the line's rules come
    from (6.17.13's stable backport vs the 6.17.8 rules: tests/kvm/test_kvm_model.py KNOWN_SOURCE_GAPS)."""
    from tests.kvm.test_kvm_model import KNOWN_SOURCE_GAPS

    if load_kernel(rec.kernel_line).kernel_full == rec.kernel_version:
        return frozenset()
    return KNOWN_SOURCE_GAPS.get(rec.kernel_version, (frozenset(), ""))[0]


def _by_generic(name: str, by_enc: dict[tuple[int, ...], str]) -> str | None:
    m = re.fullmatch(r"S(\d)_(\d)_C?(\d+)_C?(\d+)_(\d)", name)
    return by_enc.get(tuple(int(x) for x in m.groups())) if m else None


def host_yaml(fs: FeatureSetRecord, feats: list[str], caps: list[str]) -> str | None:
    """A host profile of a recorded feature set: KVM's defaults (``origin: kvm-defaults``), the
    vCPU features and capabilities they were read with, and QEMU's hidden host facts."""
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


def guest_profile(path: str, registers: dict[str, int], vf: tuple[str, ...], caps: tuple[str, ...]) -> Profile:
    """What the loader (cpumodel/profile.py) makes of a file holding ``vcpu_features: [vf]``, ``kvm_caps: [caps]``
    (when any) and ``registers:`` with each register by name and a raw value, one key a line."""
    line = 1

    def at() -> Location:
        return Location(path, line, 1)

    top = at()
    vcpu = [(f, Location(path, line, 17 + sum(len(g) + 2 for g in vf[:i]))) for i, f in enumerate(vf)]
    line += 1
    kvm_caps = None
    if caps:
        kvm_caps = [(c, Location(path, line, 12 + sum(len(g) + 2 for g in caps[:i]))) for i, c in enumerate(caps)]
        line += 1
    line += 1  # registers:
    specs = {}
    for name, value in registers.items():
        specs[name] = RegisterSpec(name, Location(path, line, 3), raw=value)
        line += 1
    return Profile(path=path, name=Path(path).stem, loc=top, registers=specs, vcpu_features=vcpu, kvm_caps=kvm_caps)


def guest_yaml(registers: dict[str, int], vf: tuple[str, ...], caps: tuple[str, ...]) -> str:
    """The file ``guest_profile`` stands for."""
    head = f"vcpu_features: [{', '.join(vf)}]\n" + (f"kvm_caps: [{', '.join(caps)}]\n" if caps else "")
    return head + "registers:\n" + "".join(f"  {r}: {v:#x}\n" for r, v in registers.items())


def kv_errnos(found: list[Any], names: list[str]) -> dict[str, int | str]:
    """Register -> what ``check`` says KVM answers: 0 without a K/V error on it, else the errno."""
    out: dict[str, int | str] = {}
    for n in names:
        errnos = {f.errno for f in found if f.rule[0] in "KV" and f.severity == "error" and f.register == n}
        out[n] = 0 if not errnos else next(iter(errnos)) if len(errnos) == 1 else "/".join(sorted(map(str, errnos)))
    return out


def finding_keys(found: list[Any]) -> list[tuple[object, ...]]:
    return [(f.rule, f.severity, f.register, f.field, f.errno, f.message, str(f.location)) for f in found]


@dataclass
class Tally:
    """What a replay judged and skipped, and how it disagreed."""

    counts: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)  # the first disagreements, one line each
    nbad: int = 0
    seconds: float = 0.0

    def add(self, other: Tally) -> None:
        self.counts.update(other.counts)
        self.bad += other.bad[: max(0, 40 - len(self.bad))]
        self.nbad += other.nbad
        self.seconds += other.seconds

    def disagree(self, line: str) -> None:
        self.nbad += 1
        if len(self.bad) < 40:
            self.bad.append(line)


@dataclass
class Host:
    model: Model
    key: int  # index of (defaults, vCPU features, caps) in the line's table: cases are identical only with the same
    vf: tuple[str, ...]
    caps: tuple[str, ...]


class LineReplay:
    """Replays the recordings of one kernel line (one rule set) through ``check_model``."""

    def __init__(self, kernel: str, tmp: Path, sample: int | None, via_yaml: bool = False) -> None:
        self.kernel, self.tmp, self.sample, self.via_yaml = kernel, tmp, sample, via_yaml
        db = regdb.load()
        self.by_enc = {r.encoding: r.name for r in db}
        self.resolver = Resolver([str(tmp)])
        self.host_keys: dict[tuple[object, ...], int] = {}
        # verdicts already given (host, writes) -> per register: identical cases are judged once and
        # every one of them is held against that verdict (their kernels may be other releases of the line)
        self.seen: dict[tuple[object, ...], Any] = {}
        self.tally = Tally()
        self.case_path = str(tmp / "case.yaml")
        self.opts: dict[int, Options] = {}
        self.judged = 0

    def host(self, rec: Recording, path: Path, features: frozenset[str], hosts: dict[str, Host | None]) -> Host | None:
        key = feature_key(features)
        if key in hosts:
            return hosts[key]
        fs = rec.feature_sets.get(key)
        feats = set(features) - IGNORED
        hosts[key] = None
        if fs is None or fs.init_errno != 0 or not feats <= PROFILE_FEATURES | set(CAPS):
            return None
        vf = tuple(sorted(feats & PROFILE_FEATURES))
        caps = tuple(sorted({CAPS[f] for f in feats & set(CAPS)}))
        text = host_yaml(fs, list(vf), list(caps))
        if text is None:
            return None
        hp = self.tmp / f"{path.name.split('.json')[0]}-{key}.yaml"
        hp.write_text(text)
        ident = (json.dumps(fs.defaults, sort_keys=True), vf, caps)
        hkey = self.host_keys.setdefault(ident, len(self.host_keys))
        h = hosts[key] = Host(self.resolver.resolve_file(str(hp)), hkey, vf, caps)
        self.opts[h.key] = Options(kernel=self.kernel, host=h.model, ignore=list(NO_ARCH))
        return h

    def judge(self, host: Host, registers: dict[str, int]) -> list[Any]:
        """check_model of the profile holding ``registers`` (and the host's vCPU features/caps)."""
        opts = self.opts[host.key]
        model = self.resolver.resolve_profile(guest_profile(self.case_path, registers, host.vf, host.caps))
        found = check_model(model, opts)
        self.judged += 1
        if self.via_yaml and self.judged % YAML_EVERY == 1:  # the case as a file, loaded as `cpumodel check FILE` does
            p = Path(self.case_path)
            p.write_text(guest_yaml(registers, host.vf, host.caps))
            again = check_model(self.resolver.resolve_file(str(p)), opts)
            assert finding_keys(again) == finding_keys(found), f"{registers}: the YAML file and the Profile differ"
        return found

    def recording(self, path: Path) -> None:
        t0 = time.perf_counter()
        rec = load_recording(path)
        assert _kernel(rec) == self.kernel
        self.gaps = known_gaps(rec)
        hosts: dict[str, Host | None] = {}
        count = self.tally.counts
        plain: list[CaseResult] = []
        seqs: dict[str, list[CaseResult]] = {}
        for c in rec.cases:
            if c.seq is not None:
                seqs.setdefault(c.seq, []).append(c)
            elif c.after_run:
                count["after-run cases (left to the model replay)"] += 1
            else:
                plain.append(c)
        count["cases"] += len(rec.cases)
        step = max(1, len(plain) // self.sample) if self.sample else 1
        for i, c in enumerate(plain):
            if i % step or (self.sample and i // step >= self.sample):
                count["single writes not in the sample"] += 1
                continue
            self.single(rec, path, c, hosts)
        for name, cs in seqs.items():
            self.sequence(rec, path, name, cs, hosts)
        self.tally.seconds += time.perf_counter() - t0

    def single(self, rec: Recording, path: Path, c: CaseResult, hosts: dict[str, Host | None]) -> None:
        count = self.tally.counts
        host = self.host(rec, path, c.features, hosts)
        reg = self.by_enc.get(c.encoding)
        if host is None:
            count["single writes in feature sets a profile cannot say"] += 1
            return
        if reg is None:
            count["single writes to registers the database does not name"] += 1
            return
        if reg in self.gaps:
            count["single writes to registers of a known source gap (model replay)"] += 1
            return
        key = (host.key, reg, c.value)
        hit = self.seen.get(key)
        if hit is not None:
            count["single writes identical to one judged"] += 1
            got, other = hit
        else:
            count["single writes judged"] += 1
            found = self.judge(host, {reg: c.value})
            got = kv_errnos(found, [reg])[reg]
            other = [f"{f.rule}: {f.message}" for f in found if f.rule == "K003"]
            self.seen[key] = (got, other)
        if got != c.errno or other:
            self.tally.disagree(f"{path.name}[{feature_key(c.features)}] {reg}:={c.value:#018x}: kernel {c.errno}, "
                                f"cpumodel check {got} {other}")

    def sequence(self, rec: Recording, path: Path, name: str, cs: list[CaseResult],
                 hosts: dict[str, Host | None]) -> None:
        count = self.tally.counts
        host = self.host(rec, path, cs[0].features, hosts)
        if host is None:
            count["migration writes in feature sets a profile cannot say"] += len(cs)
            return
        named = [(self.by_enc.get(c.encoding), c) for c in cs]
        count["migration writes to registers the database does not name"] += sum(r is None for r, _ in named)
        count["migration writes to registers of a known source gap (model replay)"] += sum(
            r in self.gaps for r, _ in named if r is not None)
        named = [(r, c) for r, c in named if r is not None and r not in self.gaps]
        registers = {r: c.value for r, c in named}
        assert len(registers) == len(named), f"{name}: a register written twice"
        key = (host.key, tuple(registers.items()))
        hit = self.seen.get(key)
        if hit is not None:
            count["migration writes identical to ones judged"] += len(named)
            got, other = hit
        else:
            count["migrations judged (one profile each)"] += 1
            count["migration writes judged"] += len(named)
            found = self.judge(host, registers)
            got = kv_errnos(found, list(registers))
            other = [f"{f.rule}: {f.message}" for f in found if f.rule == "K003"]
            self.seen[key] = (got, other)
        for r, c in named:
            if got[r] != c.errno or other:
                self.tally.disagree(f"{path.name} [{name}] {r}:={c.value:#018x}: kernel {c.errno}, "
                                    f"cpumodel check {got[r]} {other}")


def by_line(paths: list[Path]) -> tuple[list[tuple[str, list[Path]]], list[str]]:
    """The recordings grouped by the kernel line judged with (largest first), and those left out."""
    lines: dict[str, list[Path]] = {}
    skipped = []
    for p in paths:
        rec = load_recording(p, cases=False)
        k = _kernel(rec)
        if k is None:
            skipped.append(f"{p.name} (no rules of Linux {rec.kernel_line})")
        else:
            lines.setdefault(k, []).append(p)
    return sorted(lines.items(), key=lambda kv: -sum(p.stat().st_size for p in kv[1])), skipped


def replay_line(task: tuple[str, list[Path], Path, int | None, bool]) -> Tally:
    kernel, paths, tmp, sample, via_yaml = task
    tmp = tmp / kernel
    tmp.mkdir(parents=True, exist_ok=True)
    r = LineReplay(kernel, tmp, sample, via_yaml)
    for p in paths:
        r.recording(p)
    return r.tally


def jobs() -> int:
    env = os.environ.get("CPUMODEL_REPLAY_JOBS")
    if env:
        return max(1, int(env))
    from cpumodel.parallel import usable_cores

    return usable_cores()


def replay(paths: list[Path], tmp: Path, sample: int | None, workers: int = 1,
           via_yaml: bool = False) -> tuple[Tally, list[str]]:
    lines, skipped = by_line(paths)
    tasks = [(k, ps, tmp, sample, via_yaml) for k, ps in lines]
    total = Tally()
    if workers > 1 and len(tasks) > 1:  # one kernel line per task: its identical cases meet in one worker
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(min(workers, len(tasks))) as pool:
            for t in pool.imap_unordered(replay_line, tasks):
                total.add(t)
    else:
        for task in tasks:
            total.add(replay_line(task))
    return total, skipped


def _report(total: Tally, skipped: list[str], wall: float) -> str:
    lines = [f"findings replay: {wall:.0f} s wall, {total.seconds:.0f} s in workers; {total.nbad} disagreements"]
    lines += [f"  {n:>9,} {what}" for what, n in sorted(total.counts.items())]
    lines += [f"  left out: {s}" for s in skipped]
    return "\n".join(lines)


def _accounted(total: Tally) -> None:
    """Every recorded case of a judged recording is judged, identical to one judged, or skipped for a said reason."""
    c = total.counts
    assert c["cases"] == sum(n for what, n in c.items()
                             if what not in ("cases", "migrations judged (one profile each)")), c


def _run(tmp: Path, sample: int | None, workers: int, via_yaml: bool) -> Tally:
    assert RECORDINGS
    t0 = time.perf_counter()
    total, skipped = replay(RECORDINGS, tmp, sample, workers, via_yaml)
    print("\n" + _report(total, skipped, time.perf_counter() - t0))
    _accounted(total)
    assert total.counts["single writes judged"] > 0 and total.counts["migration writes judged"] > 0
    assert not total.nbad, f"{total.nbad} disagree:\n" + "\n".join(total.bad[:30])
    return total


@pytest.mark.skipif(not RECORDINGS, reason="no oracle recordings")
def test_findings_replay_sample(tmp_path: Path) -> None:
    _run(tmp_path, SAMPLE, 1, via_yaml=True)


@pytest.mark.exhaustive
@pytest.mark.skipif(not RECORDINGS, reason="no oracle recordings")
def test_findings_replay_all(tmp_path: Path) -> None:
    """Every distinct recorded case a profile can express, of every recording of a line with rules (1.77
    million single writes standing for 3.28 million recorded ones, and every migration), in 5-6 minutes
    on 2 cores."""
    total = _run(tmp_path, None, jobs(), via_yaml=False)
    assert total.counts["single writes not in the sample"] == 0


@pytest.mark.parametrize(("vf", "caps"), [((), ()), (("pmu",), ()),
                                          (("pmu", "ptrauth", "sve"), ("writable_imp_id_regs",))])
def test_case_profile_is_what_the_loader_makes(tmp_path: Path, vf: tuple[str, ...], caps: tuple[str, ...]) -> None:
    from cpumodel.profile import load

    registers = {"MIDR_EL1": 0x410FD0C0, "ID_AA64PFR0_EL1": 0x1101001121110222, "ID_DFR0_EL1": 0}
    p = tmp_path / "case.yaml"
    p.write_text(guest_yaml(registers, vf, caps))
    assert guest_profile(str(p), registers, vf, caps) == load(p)


@pytest.mark.skipif(not RECORDINGS, reason="no oracle recordings")
def test_identical_cases_are_judged_once_and_each_held_against_the_verdict(tmp_path: Path) -> None:
    """Two recordings of one line with the same cases: the second's are not judged again, but a kernel
    answer that differs from the verdict (here: one errno changed) is still a disagreement."""
    from dataclasses import replace

    from cpumodel.oracle import save_recording

    src = next(p for p in RECORDINGS if "neoverse-n1" in p.name and _kernel(load_recording(p, cases=False)))
    rec = load_recording(src)
    named = {r.encoding for r in regdb.load()}
    rec.cases = [c for c in rec.cases if not c.after_run and c.seq is None and c.encoding in named][:400]
    save_recording(rec, tmp_path / "a.json.gz")
    i = next(i for i, c in enumerate(rec.cases) if c.errno == 0 and i > 100)
    rec.cases[i] = replace(rec.cases[i], errno="EINVAL")
    save_recording(rec, tmp_path / "b.json.gz")
    total, _ = replay([tmp_path / "a.json.gz", tmp_path / "b.json.gz"], tmp_path / "w", None)
    judged = total.counts["single writes judged"]
    assert 0 < judged <= 400 and total.counts["single writes identical to one judged"] == 800 - judged
    assert total.nbad == 1 and "b.json.gz" in total.bad[0] and "kernel EINVAL, cpumodel check 0" in total.bad[0]
