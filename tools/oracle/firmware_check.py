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
A profile restores one value per register, so each check_model call judges up to eight restores
(KVM judges each register alone, and every recorded case starts from the defaults); identical
questions across recordings are asked once (40,640 restores: a few seconds).
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


def tables_release(line: str) -> str | None:
    """The Linux release the line's firmware tables come from (None: no tables for the line)."""
    try:
        fw = fwmodel.table(line)
    except FileNotFoundError:  # a line without tables (6.16, 7.0)
        return None
    release = re.search(r"\[Linux (\S+)\]", fw["rules"]["wa_mask"])
    return release.group(1) if release else None


def line_of(rec: firmware.FirmwareRecording) -> str | None:
    """The modelled line the recording is of: its tables must come from that very release."""
    return rec.kernel_line if tables_release(rec.kernel_line) == rec.kernel_version else None


def _host(rec: firmware.FirmwareRecording, tmp: Path) -> Any:
    idrec = load_recording(ID_RECORDINGS / f"{rec.kernel_version}_{rec.cpu}.json.gz", cases=False)
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


Answer = int | str


def _judge_batch(tmp: Path, host: Any, line: str, values: dict[str, int], pfr1: int) -> dict[str, Answer]:
    """One profile restoring one value per firmware register (each judged alone, as KVM does: every
    recorded case starts from the defaults): register -> 0 or the errno of its F001."""
    p = tmp / "case.yaml"
    body = "".join(f"  {reg}: {v:#x}\n" for reg, v in values.items())
    p.write_text(f"name: case\nregisters:\n  ID_AA64PFR1_EL1: {pfr1:#x}\nfirmware:\n{body}")
    model = Resolver([str(tmp)]).resolve_file(str(p))
    found = check_model(model, Options(kernel=line, host=host))
    if any(f.rule == "F002" for f in found):
        return dict.fromkeys(values, "F002 (depends on the host)")
    out: dict[str, Answer] = dict.fromkeys(values, 0)
    for f in found:
        if f.rule == "F001" and f.register and f.register.removeprefix("KVM_REG_ARM_") in out:
            out[f.register.removeprefix("KVM_REG_ARM_")] = f.errno or "?"
    return out


def _key(line: str, levels: dict[str, int] | None, reg: str, value: int) -> tuple[Any, ...]:
    """What a restore's verdict can depend on: the line, and for a workaround the host's level of it."""
    return (line, (levels or {}).get(reg), reg, value)


def _through_check_model(tmp: Path, host: Any, line: str, pfr1: int, todo: list[tuple[str, int]],
                         cache: dict[tuple[Any, ...], Answer], levels: dict[str, int] | None) -> None:
    """Judge the (register, value) pairs not yet in ``cache``, several registers per profile."""
    queues: dict[str, list[int]] = {}
    for reg, value in todo:
        if _key(line, levels, reg, value) not in cache and value not in queues.setdefault(reg, []):
            queues[reg].append(value)
    while any(queues.values()):
        batch = {reg: q.pop() for reg, q in queues.items() if q}
        for reg, answer in _judge_batch(tmp, host, line, batch, pfr1).items():
            cache[_key(line, levels, reg, batch[reg])] = answer


def replay(paths: list[Path], tmp: Path) -> tuple[int, int, list[str]]:
    """(judged, recorded, disagreements) over the recordings of modelled lines. Identical questions
    (same line, register and value, and for a workaround the same host level) are put to check_model once."""
    bad: list[str] = []
    total = judged = 0
    cache: dict[tuple[Any, ...], Answer] = {}
    for path in paths:
        rec = firmware.load(path)
        line = line_of(rec)
        if line is None:
            continue
        host = _host(rec, tmp)
        vm = rec.vms["psci_0_2"]
        pfr1 = int(vm["defaults"]["ID_AA64PFR1_EL1"], 16)
        seq = rec.vms["psci_0_2+no_ssbs"]
        pfr1s = {"psci_0_2": pfr1, "none": pfr1,
                 "psci_0_2+no_ssbs": pfr1 & ~0xF0 if seq["setup"].get("ID_AA64PFR1_EL1.SSBS=0") == 0 else pfr1}
        levels = {v: levels_on(host, Resolver([str(tmp)]).resolve_file(str(_write(tmp, x))), line)
                  for v, x in pfr1s.items()}
        # KVM_GET_ONE_REG defaults = the model's for this host (None: the line has no such register)
        want = {k: int(v, 16) for k, v in vm["defaults"].items() if v is not None and k in fwmodel.NAMES}
        got = fwmodel.defaults(line, levels["psci_0_2"])
        if got != want:
            bad.append(f"{path.name}: defaults: kernel {want}, model {got}")
        restores = rec.restores()
        total += len(restores)
        # what a profile can say (PSCI_0_2, before the first run) goes through check_model
        for v in ("psci_0_2", "psci_0_2+no_ssbs"):
            todo = [(reg, x) for vmn, ph, reg, x, _ in restores
                    if vmn == v and ph == "before_run"]
            _through_check_model(tmp, host, line, pfr1s[v], todo, cache, levels[v])
        for vmname, phase, reg, value, errno in restores:
            ck = _key(line, levels[vmname], reg, value)
            if vmname != "none" and phase == "before_run" and ck in cache:
                res: Answer = cache[ck]
            else:  # after the first run, or without PSCI_0_2
                d = rec.vms[vmname]["defaults"].get(reg)
                v = fwmodel.check(line, reg, value, levels[vmname], psci_0_2=vmname != "none",
                                  after_run=phase == "after_run", current=int(d, 16) if d else None)
                res = v.errno_or_zero if v.status in ("accepted", "rejected") else v.status
            judged += 1
            if res != errno:
                bad.append(f"{path.name} [{vmname} {phase}] {reg}={value:#x}: kernel {errno}, cpumodel {res}")
    return judged, total, bad


def _write(tmp: Path, pfr1: int) -> Path:
    p = tmp / f"guest-{pfr1:x}.yaml"
    p.write_text(f"name: guest\nregisters:\n  ID_AA64PFR1_EL1: {pfr1:#x}\n")
    return p


def compare(expected: firmware.FirmwareRecording, actual: firmware.FirmwareRecording) -> list[str]:
    """What differs between two recordings of the same kernel and CPU: defaults, answers, hypercalls, sysfs."""
    diffs: list[str] = []
    if expected.vulnerabilities != actual.vulnerabilities:
        diffs.append(f"vulnerabilities: {expected.vulnerabilities} != {actual.vulnerabilities}")
    for vm in sorted(set(expected.vms) | set(actual.vms)):
        e, a = expected.vms.get(vm, {}), actual.vms.get(vm, {})
        for key in ("init_errno", "defaults", "get_errno", "setup"):
            if e.get(key) != a.get(key):
                diffs.append(f"{vm} {key}: {e.get(key)} != {a.get(key)}")
    for name in sorted(set(expected.hypercalls) | set(actual.hypercalls)):
        if expected.hypercalls.get(name) != actual.hypercalls.get(name):
            diffs.append(f"hypercall {name}: {expected.hypercalls.get(name)} != {actual.hypercalls.get(name)}")
    want = {(vm, ph, reg, v): errno for vm, ph, reg, v, errno in expected.restores()}
    got = {(vm, ph, reg, v): errno for vm, ph, reg, v, errno in actual.restores()}
    for k in sorted(set(want) | set(got)):
        if want.get(k) != got.get(k):
            diffs.append(f"{k[0]} {k[1]} {k[2]}={k[3]:#x}: {want.get(k)} != {got.get(k)}")
    return diffs
