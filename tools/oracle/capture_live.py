"""Live check of `cpumodel capture`: what capture reads on a real arm64 kernel equals what
the oracle's probe reads there.

tools/capture_arm64_check.sh --vm boots a Debian arm64 kernel under qemu-system-aarch64 with
an arm64 Python as /init that runs ``cpumodel.capture`` with each source alone (kvm, sysfs,
mrs) and prints ``=== VALUES <source> {json}`` lines. This module compares them with the
committed recording of the same kernel and QEMU CPU (the probe's KVM_GET_ONE_REG defaults of a
VM with no vCPU features, feature set "none"):

- kvm: every register capture read equals the probe's default, and every register capture
  reports as ENOENT is one the probe could not read either;
- sysfs: MIDR_EL1 and REVIDR_EL1 of each CPU (regs/identification) equal KVM's defaults
  for them (reset_imp_id_reg copies the boot CPU's: arch/arm64/kvm/sys_regs.c);
- mrs: MIDR_EL1 read through the kernel's EL0 emulation equals KVM's default too.

    python -m tools.oracle capture-compare CONSOLE.txt RECORDING.json.gz
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cpumodel.oracle import Recording

VALUES_LINE = re.compile(r"^=== VALUES (\w+) (\{.*\})\s*$")


def parse_values(console: str) -> dict[str, dict[str, object]]:
    """{source: {"values": {reg: int}, "unread": {reg: why}}} from the /init's console."""
    out: dict[str, dict[str, object]] = {}
    for line in console.splitlines():
        m = VALUES_LINE.match(line.strip())
        if m:
            data = json.loads(m.group(2))
            values = {k: int(v, 16) if isinstance(v, str) else int(v) for k, v in data.get("values", {}).items()}
            out[m.group(1)] = {"values": values, "unread": dict(data.get("unread", {})), "error": data.get("error")}
    return out


def compare(captured: dict[str, dict[str, object]], rec: Recording) -> tuple[list[str], list[str]]:
    """(differences, what agreed) between capture's sources and the probe's defaults."""
    probe = rec.feature_sets["none"]
    diffs: list[str] = []
    agreed: list[str] = []
    kvm = captured.get("kvm")
    if kvm is None or kvm.get("error"):
        diffs.append(f"kvm: capture read nothing ({kvm.get('error') if kvm else 'no VALUES line'})")
    else:
        values = kvm["values"]
        assert isinstance(values, dict)
        n = 0
        for reg, v in values.items():
            if reg not in probe.defaults:
                continue
            want = probe.defaults[reg]
            if want is None:
                diffs.append(f"kvm: {reg}: capture read {v:#018x}, the probe got {probe.get_errno.get(reg)}")
            elif v != want:
                diffs.append(f"kvm: {reg}: capture {v:#018x}, probe {want:#018x}")
            else:
                n += 1
        unread = kvm["unread"]
        assert isinstance(unread, dict)
        for reg, why in unread.items():
            if "ENOENT" in str(why) and probe.defaults.get(reg, None) is not None:
                diffs.append(f"kvm: {reg}: capture says ENOENT, the probe read {probe.defaults[reg]:#018x}")
        if n == 0:
            diffs.append("kvm: no register in common with the recording")
        agreed.append(f"kvm: {n} registers equal to the probe's KVM defaults")
    for src, regs in (("sysfs", ("MIDR_EL1", "REVIDR_EL1")), ("mrs", ("MIDR_EL1",))):
        got = captured.get(src)
        if got is None or got.get("error"):
            diffs.append(f"{src}: capture read nothing ({got.get('error') if got else 'no VALUES line'})")
            continue
        values = got["values"]
        assert isinstance(values, dict)
        for reg in regs:
            if reg not in values:
                diffs.append(f"{src}: {reg} not read")
            elif values[reg] != probe.defaults.get(reg):
                diffs.append(f"{src}: {reg} {values[reg]:#018x}, KVM's default {probe.defaults.get(reg)!r}")
            else:
                agreed.append(f"{src}: {reg} = {values[reg]:#x} = KVM's default")
    return diffs, agreed


def compare_files(console: Path, recording: Path) -> tuple[list[str], list[str]]:
    from cpumodel.oracle import load_recording

    return compare(parse_values(console.read_text(errors="replace")), load_recording(recording))
