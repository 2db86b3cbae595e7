"""``cpumodel diff --migratable A B`` against the recorded migrations, register by register.

Each recording holds migration sequences: another CPU's full KVM defaults (A: a recording of the same
kernel on another QEMU CPU, with the same vCPU features) written in order with KVM_SET_ONE_REG on this
one (B), each write's errno recorded. For each such pair this writes A as the profile ``cpumodel
defaults`` makes (``role: guest``, ``origin: kvm-defaults``, ``vcpu_features``, every register by name)
and B as the host profile of tests/oracle/test_findings_replay.py (KVM's defaults on B with QEMU's
hidden host facts), runs ``cpumodel diff A B --migratable --kernel X.Y --format json`` and requires, for
every register A names: no blocking field exactly when the kernel accepted the write. Registers the
database does not name (unallocated encodings, which a profile cannot hold) are counted and skipped.
All 192 recorded migrations run in the default tier (a few seconds).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from cpumodel import regdb
from cpumodel.cli import main
from cpumodel.oracle import CaseResult, feature_key, load_recording
from tests.oracle.test_findings_replay import (
    CAPS,
    IGNORED,
    PROFILE_FEATURES,
    RECORDINGS,
    _kernel,
    host_yaml,
    known_gaps,
)


def migrations(paths: list[Path]):  # type: ignore[no-untyped-def]
    """(recording name, kernel line, sequence name, B's feature-set record, vCPU features, the writes, the
    registers of a known source gap)."""
    for p in paths:
        rec = load_recording(p, sequences_only=True)
        kernel = _kernel(rec)
        if kernel is None:
            continue
        seqs: dict[str, list[CaseResult]] = {}
        for c in rec.cases:
            if c.seq is not None:
                seqs.setdefault(c.seq, []).append(c)
        for name, cs in seqs.items():
            feats = set(cs[0].features) - IGNORED
            fs = rec.feature_sets.get(feature_key(cs[0].features))
            if fs is None or fs.init_errno != 0 or not feats <= PROFILE_FEATURES or feats & set(CAPS):
                continue
            yield p.name, kernel, name, fs, sorted(feats), cs, known_gaps(rec)


def _diff(tmp: Path, kernel: str, a_text: str, b_text: str) -> dict[str, object]:
    a, b = tmp / "a.yaml", tmp / "b.yaml"
    a.write_text(a_text)
    b.write_text(b_text)
    r = CliRunner().invoke(main, ["diff", str(a), str(b), "--migratable", "--kernel", kernel, "--format", "json"])
    assert r.exit_code in (0, 1) and "Traceback" not in r.output, r.output
    out = json.loads(r.output)
    assert isinstance(out, dict)
    return out


@pytest.mark.skipif(not RECORDINGS, reason="no oracle recordings")
def test_diff_migratable_agrees_with_recorded_migrations(tmp_path: Path) -> None:
    db = regdb.load()
    by_enc = {r.encoding: r.name for r in db}
    count: Counter[str] = Counter()
    bad: list[str] = []
    for rec_name, kernel, seq, fs, vf, cs, gaps in migrations(RECORDINGS):
        host = host_yaml(fs, vf, [])
        assert host is not None
        named = [(by_enc.get(c.encoding), c) for c in cs]
        count["writes to registers the database does not name"] += sum(r is None for r, _ in named)
        count["writes to registers of a known source gap (model replay)"] += sum(r in gaps for r, _ in named)
        writes = [(r, c) for r, c in named if r is not None and r not in gaps]
        guest = (f"name: {seq.split()[1].replace('/', '-')}\nrole: guest\norigin: kvm-defaults\n"
                 f"vcpu_features: [{', '.join(vf)}]\nregisters:\n"
                 + "".join(f"  {r}: {c.value:#018x}\n" for r, c in writes))
        out = _diff(tmp_path, kernel, guest, host)
        fields = out["fields"]
        assert isinstance(fields, list)
        blocked = {f["register"] for f in fields if not f["ok"]}
        assert blocked <= {r for r, _ in writes}
        count["migrations"] += 1
        for r, c in writes:
            count["writes judged"] += 1
            count[f"writes the kernel {'accepted' if c.errno == 0 else 'refused'}"] += 1
            if (r in blocked) != (c.errno != 0):
                why = "; ".join(f"{f['field']}: {f['reason']}" for f in fields if f["register"] == r and not f["ok"])
                bad.append(f"{rec_name} [{seq}] {r}={c.value:#018x}: kernel {c.errno}, diff --migratable "
                           f"{'blocks' if r in blocked else 'passes'} {why}")
        # the verdict as a whole: migratable fields exactly when the kernel took every write
        all_ok = all(f["ok"] for f in fields)
        if all_ok != all(c.errno == 0 for _, c in writes):
            bad.append(f"{rec_name} [{seq}]: fields ok {all_ok}, kernel {Counter(str(c.errno) for _, c in writes)}")
    print("\ndiff --migratable replay: " + ", ".join(f"{n:,} {what}" for what, n in sorted(count.items())))
    assert count["migrations"] > 0
    assert count["writes the kernel refused"] > 0 and count["writes the kernel accepted"] > 0
    assert not bad, f"{len(bad)} disagree:\n" + "\n".join(bad[:30])
