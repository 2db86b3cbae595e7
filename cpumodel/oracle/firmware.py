"""Firmware pseudo-register restores recorded from a real kernel (the oracle's second kind of recording).

KVM's firmware pseudo-registers (Documentation/virt/kvm/arm/fw-pseudo-registers.rst: the PSCI version,
SMCCC_ARCH_WORKAROUND_1/2/3, the hypercall bitmaps STD_BMAP, STD_HYP_BMAP, VENDOR_HYP_BMAP and, from
6.15, VENDOR_HYP_BMAP_2) are what a VMM saves with a vCPU and restores on the destination. The probe
(probe.c) reads each one's default and writes a fixed set of values (:func:`case_values`) with
KVM_SET_ONE_REG, before and after the vCPU's first KVM_RUN, in fresh VMs:

* ``psci_0_2``: a vCPU with the KVM_ARM_VCPU_PSCI_0_2 feature (what every VMM sets);
* ``none``: without it (PSCI 0.1);
* ``psci_0_2+no_ssbs``: a *sequence* VM (writes kept) that first hides the guest's SSBS
  (ID_AA64PFR1_EL1.SSBS = 0, refused before 6.7), then tries the WORKAROUND_2 values: from 6.12 on
  KVM judges WORKAROUND_2 against the guest's SSBS, not the host's (get_kernel_wa_level(); recorded).

Then the hypercall cases (:data:`HYPERCALLS`): what a guest's ``hvc`` to the KVM_FEATURES call and to the
target-implementation calls gets with and without the VENDOR_HYP_BMAP_2 bits and the SMCCC filter.

Each non-sequence case starts from KVM's defaults (an accepted change is written back at once, as the ID
register cases are). The probe also reports the host kernel's /sys/devices/system/cpu/vulnerabilities.

Format (``tests/oracle/firmware/<version>_<cpu>.json.gz``, gzip, schema ``cpumodel-oracle-firmware/1``; this
module is the only reader and writer)::

    {"schema": ..., "kernel": {...}, "qemu": {...}, "probe": {...},
     "vulnerabilities": {"spectre_v2": "Mitigation: CSV2, but not BHB", ...},
     "vms": {"psci_0_2": {"init_errno": 0, "run": {...},
                          "defaults": {"PSCI_VERSION": "0x10001", "VENDOR_HYP_BMAP_2": null, ...},
                          "get_errno": {"VENDOR_HYP_BMAP_2": "ENOENT"},
                          "before_run": {"PSCI_VERSION": {"0": ["0x2", ...], "EINVAL": ["0x0", ...]}, ...},
                          "after_run": {...}}, ...},
     "hypercalls": {"impl_ver bits": {"func": "0xc6000040", "bmap2": "0x3", "filter": null,
                                      "bmap2_errno": 0, "filter_errno": null,
                                      "exits": [{"run_errno": 0, "reason": "MMIO", "data": "0x..."}, ...]}, ...}}

Register names are the model's short names (``cpumodel.kvm.firmware.NAMES``); the restores of a
register and phase are grouped by answer (``"0"`` accepted, else the errno name), values in hex.
"""

from __future__ import annotations

import gzip
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpumodel.oracle.build import build_initramfs, build_probe, probe_hash
from cpumodel.oracle.console import ProbeOutput, check_complete, errno_name, parse_console
from cpumodel.oracle.errors import ProbeCrash
from cpumodel.oracle.kernel import KernelInfo, default_cache_dir
from cpumodel.oracle.qemu import MACHINE, boot, qemu_version
from cpumodel.oracle.sysregs import one_reg_id

SCHEMA = "cpumodel-oracle-firmware/1"

#: KVM_REG_ARM_FW_REG(n) = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_FW | n and
#: KVM_REG_ARM_FW_FEAT_BMAP_REG(n) (KVM_REG_ARM_FW_FEAT_BMAP = 0x0016 << 16), arch/arm64/include/uapi/asm/kvm.h
#: (the ids cpumodel/data/errata/<line>.json cites per line; the same on every line).
REG_IDS: dict[str, int] = {
    "PSCI_VERSION": 0x6030000000140000,
    "SMCCC_ARCH_WORKAROUND_1": 0x6030000000140001,
    "SMCCC_ARCH_WORKAROUND_2": 0x6030000000140002,
    "SMCCC_ARCH_WORKAROUND_3": 0x6030000000140003,
    "STD_BMAP": 0x6030000000160000,
    "STD_HYP_BMAP": 0x6030000000160001,
    "VENDOR_HYP_BMAP": 0x6030000000160002,
    "VENDOR_HYP_BMAP_2": 0x6030000000160003,
}
#: ID_AA64PFR1_EL1 (op0 3, op1 0, CRn 0, CRm 4, op2 1) as a KVM_REG_ARM64_SYSREG id; SSBS is bits 7:4.
ID_AA64PFR1_EL1 = one_reg_id((3, 0, 0, 4, 1))
SSBS_SHIFT = 4

#: probe.c block feature bits: bit6 psci_0_2 (KVM_ARM_VCPU_PSCI_0_2)
FEAT_PSCI_0_2 = 0x40
#: The VMs, in the order the probe creates them: (name, feature bits, sequence, registers tried)
VMS: tuple[tuple[str, int, bool, tuple[str, ...]], ...] = (
    ("psci_0_2", FEAT_PSCI_0_2, False, tuple(REG_IDS)),
    ("none", 0, False, tuple(REG_IDS)),
    ("psci_0_2+no_ssbs", FEAT_PSCI_0_2, True, ("SMCCC_ARCH_WORKAROUND_2",)),
)
PHASES = ("before_run", "after_run")

#: Function ids (include/linux/arm-smccc.h): ARM_SMCCC_VENDOR_HYP_KVM_FEATURES_FUNC_ID (fast, SMC32, owner
#: VENDOR_HYP, function 0) and the 6.15+ target-implementation calls ARM_SMCCC_KVM_FUNC_DISCOVER_IMPL_VER
#: (64) and _CPUS (65) (fast, SMC64): Documentation/virt/kvm/arm/hypercalls.rst 0xC6000040 / 0xC6000041.
KVM_FEATURES = 0x86000000
DISCOVER_IMPL_VER = 0xC6000040
DISCOVER_IMPL_CPUS = 0xC6000041
#: The hypercall cases (probe.c ``H``): (name, function, VENDOR_HYP_BMAP_2 written, filter base, filter
#: length): each a fresh PSCI_0_2 VM whose vCPU issues ``hvc #0`` with x0 = the function; the SMCCC
#: filter range, when given, is set to KVM_SMCCC_FILTER_FWD_TO_USER (KVM_ARM_VM_SMCCC_FILTER).
HYPERCALLS: tuple[tuple[str, int, int, int, int], ...] = (
    ("impl_ver bits", DISCOVER_IMPL_VER, 0x3, 0, 0),
    ("impl_ver bits+filter", DISCOVER_IMPL_VER, 0x3, DISCOVER_IMPL_VER, 2),
    ("impl_ver filter", DISCOVER_IMPL_VER, 0x0, DISCOVER_IMPL_VER, 2),
    ("impl_cpus bits", DISCOVER_IMPL_CPUS, 0x3, 0, 0),
    ("features bits", KVM_FEATURES, 0x3, 0, 0),
    ("features", KVM_FEATURES, 0x0, 0, 0),
)

# include/uapi/linux/psci.h PSCI_VERSION(major, minor) = major << 16 | minor
_PSCI = [0x1, 0x2, 0x10000, 0x10001, 0x10002, 0x10003]  # 0.1, 0.2, 1.0 ... 1.3: KVM_ARM_PSCI_* (arm_psci.h)
_PSCI_UNDEFINED = [0x0, 0x3, 0x10004, 0x20000, 0xFFFFFFFF, 0x100010001]


def case_values(name: str) -> list[int]:
    """The values tried for firmware register ``name`` (the same on every kernel line)."""
    if name == "PSCI_VERSION":
        return _PSCI + _PSCI_UNDEFINED
    if name in ("SMCCC_ARCH_WORKAROUND_1", "SMCCC_ARCH_WORKAROUND_3"):
        # levels NOT_AVAIL 0, AVAIL 1, NOT_REQUIRED 2 (uapi/asm/kvm.h), undefined 3..15, bits above the mask
        return [0, 1, 2, 3, 4, 0xF, 0x10, 0x11, 1 << 63]
    if name == "SMCCC_ARCH_WORKAROUND_2":
        # NOT_AVAIL 0, UNKNOWN 1, AVAIL 2, NOT_REQUIRED 3, ENABLED = bit 4 (uapi/asm/kvm.h)
        return [0, 1, 2, 3, 4, 0xF, 0x10, 0x11, 0x12, 0x13, 0x20, 0x22, 1 << 63]
    # the bitmaps: nothing, every single bit, all ones
    return [0, 3, *(1 << i for i in range(64)), (1 << 64) - 1]


def case_text(watchdog_seconds: int = 120) -> tuple[str, list[tuple[str, str, str]]]:
    """The probe's input and, per case in order, (vm, phase, register)."""
    lines = [f"T {watchdog_seconds}", "V"]
    lines += [f"G {rid:x}" for rid in REG_IDS.values()]
    lines.append(f"G {ID_AA64PFR1_EL1:x}")
    order: list[tuple[str, str, str]] = []
    for vm, feat, seq, regs in VMS:
        lines.append(f"{'S' if seq else 'B'} {feat:x}")
        if seq:
            lines.append(f"M {ID_AA64PFR1_EL1:x} {SSBS_SHIFT} 4 0")
            order.append((vm, "setup", "ID_AA64PFR1_EL1.SSBS=0"))
        for phase in PHASES:
            if phase == "after_run":
                lines.append("X")
            for r in regs:
                for v in case_values(r):
                    lines.append(f"W {REG_IDS[r]:x} {v:x}")
                    order.append((vm, phase, r))
        lines.append("E")
    for _name, func, bmap2, fbase, fn in HYPERCALLS:
        lines.append(f"H {FEAT_PSCI_0_2:x} {func:x} {bmap2:x} {fbase:x} {fn:x}")
    return "\n".join(lines) + "\n", order


@dataclass
class FirmwareRecording:
    kernel: dict[str, Any]
    qemu: dict[str, Any]
    probe: dict[str, Any]
    vulnerabilities: dict[str, str]
    vms: dict[str, dict[str, Any]] = field(default_factory=dict)
    hypercalls: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def kernel_version(self) -> str:
        """"6.12.117" from the Debian package version (else the release)."""
        pv = self.kernel.get("package_version") or self.kernel.get("release") or ""
        return str(pv).split("-")[0].split("~")[0].split("+")[0]

    @property
    def kernel_line(self) -> str:
        return ".".join(self.kernel_version.split(".")[:2])

    @property
    def cpu(self) -> str:
        return str(self.qemu.get("cpu"))

    def restores(self) -> list[tuple[str, str, str, int, int | str]]:
        """Every recorded restore: (vm, phase, register, value, 0 or errno name)."""
        out: list[tuple[str, str, str, int, int | str]] = []
        for vm, v in self.vms.items():
            for phase in PHASES:
                for reg, by in v.get(phase, {}).items():
                    for answer, values in by.items():
                        for x in values:
                            out.append((vm, phase, reg, int(x, 16), 0 if answer == "0" else answer))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "kernel": self.kernel, "qemu": self.qemu, "probe": self.probe,
                "vulnerabilities": self.vulnerabilities, "vms": self.vms, "hypercalls": self.hypercalls}


def save(rec: FirmwareRecording, path: Path) -> None:
    text = json.dumps(rec.to_json(), indent=1, sort_keys=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        path.write_text(text)


def load(path: Path) -> FirmwareRecording:
    raw = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    d = json.loads(raw)
    if d.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a {SCHEMA} recording (schema {d.get('schema')!r})")
    return FirmwareRecording(d["kernel"], d["qemu"], d["probe"], d["vulnerabilities"], d["vms"],
                             d.get("hypercalls", {}))


#: include/uapi/linux/kvm.h: KVM_EXIT_HYPERCALL 3, KVM_EXIT_MMIO 6
EXIT_REASONS = {3: "HYPERCALL", 6: "MMIO"}


def _attempted(e: int) -> int | str | None:
    return None if e < 0 else errno_name(e)


def _ids() -> dict[int, str]:
    return {**{v: k for k, v in REG_IDS.items()}, ID_AA64PFR1_EL1: "ID_AA64PFR1_EL1"}


def _hypercalls(out: ProbeOutput) -> dict[str, dict[str, Any]]:
    """The probe's \"hc\" messages, by case name."""
    hcs = out.of_type("hc")
    if len(hcs) != len(HYPERCALLS):
        raise ProbeCrash(f"the probe reported {len(hcs)} hypercall cases, expected {len(HYPERCALLS)}")
    hypercalls: dict[str, dict[str, Any]] = {}
    for m, (hname, func, bmap2, fbase, fn) in zip(hcs, HYPERCALLS, strict=True):
        hypercalls[hname] = {
            "func": f"{func:#x}", "bmap2": f"{bmap2:#x}", "filter": [f"{fbase:#x}", fn] if fn else None,
            "bmap2_errno": _attempted(int(str(m["bmap2_errno"]))),
            "filter_errno": _attempted(int(str(m["filter_errno"]))),
            "exits": [{"run_errno": errno_name(int(x["run_errno"])), "reason": EXIT_REASONS.get(int(x["reason"]),
                       int(x["reason"])), **({"data": x["data"]} if int(x["reason"]) == 6 else {}),
                       **({"nr": x["nr"]} if int(x["reason"]) == 3 else {})}
                      for x in m["exits"]],  # type: ignore[union-attr]
        }
    return hypercalls


def record(kernel_image: Path, cpu: str, *, kernel: KernelInfo | None = None, cache_dir: Path | None = None,
           timeout: float = 300.0) -> FirmwareRecording:
    """Boot ``kernel_image`` under QEMU ``-cpu <cpu>`` and record the firmware-register restores."""
    cache = cache_dir or default_cache_dir()
    text, order = case_text(max(30, int(timeout) - 30))
    probe = build_probe(cache)
    initrd_bytes = build_initramfs(probe, text)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cpumodel-oracle-fw-") as tmp:
        initrd = Path(tmp) / "initrd.gz"
        initrd.write_bytes(initrd_bytes)
        result = boot(Path(kernel_image), initrd, cpu, timeout)
    out = parse_console(result.console)
    done = check_complete(out, result.console)
    hello = out.first("hello") or {}
    names = _ids()
    fs = out.of_type("fs")
    if len(fs) != len(VMS) + len(HYPERCALLS):
        raise ProbeCrash(f"the probe reported {len(fs)} VMs, expected {len(VMS) + len(HYPERCALLS)}")
    block_vm = {int(str(m["b"])): vm[0] for m, vm in zip(fs, VMS, strict=False)}
    vms: dict[str, dict[str, Any]] = {}
    for m, (vm, _feat, seq, _regs) in zip(fs, VMS, strict=False):
        vms[vm] = {"init_errno": errno_name(int(str(m["init_errno"]))), "sequence": seq,
                   "defaults": {}, "get_errno": {}, **({"setup": {}} if seq else {}),
                   "before_run": {}, "after_run": {}}
    for m in out.of_type("get"):
        if int(str(m["b"])) not in block_vm:
            continue  # a hypercall case's VM
        v = vms[block_vm[int(str(m["b"]))]]
        name = names.get(int(str(m["id"]), 16), str(m["id"]))
        e = int(str(m["e"]))
        v["defaults"][name] = None if e else hex(int(str(m["v"]), 16))
        if e:
            v["get_errno"][name] = errno_name(e)
    hypercalls = _hypercalls(out)
    for m in out.of_type("run"):
        vms[block_vm[int(str(m["b"]))]]["run"] = {k: (errno_name(x) if k.endswith("errno") and isinstance(x, int)
                                                     else x) for k, x in m.items() if k not in ("n", "t", "b")}
    errs: list[int | None] = [None] * len(order)
    for m in out.of_type("res"):
        start = int(str(m["i"]))
        es = m["e"]
        assert isinstance(es, list)
        for j, e in enumerate(es):
            errs[start + j] = int(e)
    values = [int(ln.split()[2], 16) if ln.startswith("W") else 0 for ln in text.splitlines() if ln[:1] in "WM"]
    for k, ((vm, phase, reg), val) in enumerate(zip(order, values, strict=True)):
        e = errs[k]
        if e is None:
            if vms[vm]["init_errno"] == 0:
                raise ProbeCrash(f"no result for firmware case {k} ({vm} {phase} {reg})")
            continue
        answer = str(errno_name(e))
        if phase == "setup":
            vms[vm]["setup"][reg] = errno_name(e)
            continue
        vms[vm][phase].setdefault(reg, {}).setdefault(answer, []).append(f"{val:#x}")
    for m in out.of_type("restore"):  # an accepted change that could not be undone: recorded, not hidden
        vm = block_vm[int(str(m["b"]))]
        vms[vm].setdefault("restore_failures", []).append({"case": int(str(m["i"])), "errno": errno_name(
            int(str(m["e"])))})
    vulns = {str(m["name"]): str(m["text"]) for m in out.of_type("vuln")}
    return FirmwareRecording(
        kernel={"release": hello.get("release"), "uname_version": hello.get("version"),
                "debian_package": kernel.package if kernel else None,
                "package_version": kernel.package_version if kernel else None},
        qemu={"version": qemu_version(), "cpu": cpu, "machine": MACHINE},
        probe={"source_hash": probe_hash(), "cases": len(order),
               "boot_seconds": round(result.first_marker_seconds or 0.0, 3),
               "probe_seconds": done.get("probe_seconds"), "total_seconds": round(time.monotonic() - t0, 3)},
        vulnerabilities=vulns, vms=vms, hypercalls=hypercalls)
