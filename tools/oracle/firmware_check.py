"""Judge recorded firmware pseudo-register restores with cpumodel's model (the layer ``cpumodel check``
runs), for tests/oracle/test_firmware_replay.py and CI's live tier (tools/oracle/ci_live.sh:
``python -m tools.oracle firmware-check LIVE.json.gz --compare tests/oracle/firmware/....json.gz``).

For a recording of a modelled line: a host profile is written as YAML (``role: host``,
``origin: kvm-defaults``: the same kernel and QEMU CPU's ID-register defaults from
tests/oracle/recordings/, and the ``vulnerabilities:`` the recorded host kernel reported in sysfs) and
given as ``--host``; each recorded restore of the PSCI_0_2 VM before its first run becomes a profile
setting the register by name under ``firmware:`` (the guest's ID_AA64PFR1_EL1 as the VM had it: SSBS
decides WORKAROUND_2 from 6.12 on), judged by ``check_model`` with the recording's line. F001 on the
register exactly when the kernel refused, with its errno; never F002 (the host is given).

What a profile cannot say goes through the firmware model ``cpumodel.kvm.firmware.check`` directly,
the function F001 calls: the VM without the PSCI_0_2 vCPU feature, and the restores after the first
KVM_RUN. KVM's defaults (KVM_GET_ONE_REG) are compared with ``firmware.defaults()`` for the host.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cpumodel import regdb
from cpumodel.check import Options, check_model
from cpumodel.kvm import firmware as fwmodel
from cpumodel.oracle import firmware, load_recording
from cpumodel.profile import VULNERABILITIES
from cpumodel.resolve import Resolver
from cpumodel.rules.firmware import levels_on

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = sorted((REPO / "tests" / "oracle" / "firmware").glob("*.json.gz"))
ID_RECORDINGS = REPO / "tests" / "oracle" / "recordings"
#: the bitmaps' values in the default tier: all but the single bits above bit 7 (same verdict class)
SAMPLE_BITS = 8


def line_of(rec: firmware.FirmwareRecording) -> str | None:
    """The modelled line the recording is of: its tables must come from that very release."""
    try:
        fw = fwmodel.table(rec.kernel_line)
    except FileNotFoundError:  # a line without tables (6.16, 7.0): not judged
        return None
    release = re.search(r"\[Linux (\S+)\]", fw["rules"]["wa_mask"])
    return rec.kernel_line if release and release.group(1) == rec.kernel_version else None


def _host(rec: firmware.FirmwareRecording, tmp: Path) -> Any:
    idrec = load_recording(ID_RECORDINGS / f"{rec.kernel_version}_{rec.cpu}.json.gz")
    db = regdb.load()
    lines = [f"name: host-{rec.kernel_version}-{rec.cpu}", "role: host", "origin: kvm-defaults",
             "vulnerabilities:"]
    # the entries a profile takes: spectre_v2's text carries the BHB state, spec_store_bypass the v4 state
    lines += [f"  {k}: {v!r}" for k, v in sorted(rec.vulnerabilities.items()) if k in VULNERABILITIES]
    lines.append("registers:")
    for name, v in idrec.feature_sets["none"].defaults.items():
        canon = db.canonical(name)
        if v is not None and canon is not None:
            lines.append(f"  {canon}: {v:#018x}")
    p = tmp / "host.yaml"
    p.write_text("\n".join(lines) + "\n")
    return Resolver([str(tmp)]).resolve_file(str(p))


def _sampled(reg: str, value: int, exhaustive: bool) -> bool:
    return exhaustive or "BMAP" not in reg or value < (1 << SAMPLE_BITS) or value == (1 << 64) - 1


def _judge(tmp: Path, host: Any, line: str, reg: str, value: int, pfr1: int) -> tuple[int | str, list[str]]:
    p = tmp / "case.yaml"
    p.write_text(f"name: case\nregisters:\n  ID_AA64PFR1_EL1: {pfr1:#x}\nfirmware:\n  {reg}: {value:#x}\n")
    model = Resolver([str(tmp)]).resolve_file(str(p))
    found = check_model(model, Options(kernel=line, host=host))
    f001 = [f for f in found if f.rule == "F001" and f.register == f"KVM_REG_ARM_{reg}"]
    other = [f"{f.rule}: {f.message}" for f in found if f.rule == "F002"]
    return (f001[0].errno or "?") if f001 else 0, other


def replay(paths: list[Path], tmp: Path, exhaustive: bool) -> tuple[int, int, list[str]]:
    """(judged, recorded, disagreements) over the recordings of modelled lines."""
    bad: list[str] = []
    total = judged = 0
    for path in paths:
        rec = firmware.load(path)
        line = line_of(rec)
        if line is None:
            continue
        host = _host(rec, tmp)
        vm = rec.vms["psci_0_2"]
        pfr1 = int(vm["defaults"]["ID_AA64PFR1_EL1"], 16)
        seq = rec.vms["psci_0_2+no_ssbs"]
        pfr1_no_ssbs = pfr1 & ~0xF0 if seq["setup"].get("ID_AA64PFR1_EL1.SSBS=0") == 0 else pfr1
        levels = levels_on(host, Resolver([str(tmp)]).resolve_file(str(_write(tmp, pfr1))), line)
        # KVM_GET_ONE_REG defaults = the model's for this host (None: the line has no such register)
        want = {k: int(v, 16) for k, v in vm["defaults"].items() if v is not None and k in fwmodel.NAMES}
        got = fwmodel.defaults(line, levels)
        if got != want:
            bad.append(f"{path.name}: defaults: kernel {want}, model {got}")
        for vmname, phase, reg, value, errno in rec.restores():
            total += 1
            if vmname == "psci_0_2" and phase == "before_run":
                if not _sampled(reg, value, exhaustive):
                    continue
                res, other = _judge(tmp, host, line, reg, value, pfr1)
            elif vmname == "psci_0_2+no_ssbs" and phase == "before_run":
                res, other = _judge(tmp, host, line, reg, value, pfr1_no_ssbs)
            else:  # after the first run, or without PSCI_0_2: what a profile cannot say
                seen = pfr1_no_ssbs if vmname.endswith("no_ssbs") else pfr1
                lv = levels_on(host, Resolver([str(tmp)]).resolve_file(str(_write(tmp, seen))), line)
                v = fwmodel.check(line, reg, value, lv, psci_0_2=vmname != "none", after_run=phase == "after_run",
                                  current=int(rec.vms[vmname]["defaults"][reg], 16)
                                  if rec.vms[vmname]["defaults"].get(reg) else None)
                res, other = (0 if v.ok else v.errno or "?"), []
            judged += 1
            if res != errno or other:
                bad.append(f"{path.name} [{vmname} {phase}] {reg}={value:#x}: kernel {errno}, cpumodel {res} {other}")
    return judged, total, bad


def _write(tmp: Path, pfr1: int) -> Path:
    p = tmp / f"guest-{pfr1:x}.yaml"
    p.write_text(f"name: guest\nregisters:\n  ID_AA64PFR1_EL1: {pfr1:#x}\n")
    return p




def compare(expected: firmware.FirmwareRecording, actual: firmware.FirmwareRecording) -> list[str]:
    """What differs between two recordings of the same kernel and CPU: defaults, answers, sysfs."""
    diffs: list[str] = []
    if expected.vulnerabilities != actual.vulnerabilities:
        diffs.append(f"vulnerabilities: {expected.vulnerabilities} != {actual.vulnerabilities}")
    for vm in sorted(set(expected.vms) | set(actual.vms)):
        e, a = expected.vms.get(vm, {}), actual.vms.get(vm, {})
        for key in ("init_errno", "defaults", "get_errno", "setup"):
            if e.get(key) != a.get(key):
                diffs.append(f"{vm} {key}: {e.get(key)} != {a.get(key)}")
    want = {(vm, ph, reg, v): errno for vm, ph, reg, v, errno in expected.restores()}
    got = {(vm, ph, reg, v): errno for vm, ph, reg, v, errno in actual.restores()}
    for k in sorted(set(want) | set(got)):
        if want.get(k) != got.get(k):
            diffs.append(f"{k[0]} {k[1]} {k[2]}={k[3]:#x}: {want.get(k)} != {got.get(k)}")
    return diffs
