"""``cpumodel verify``: apply a profile to a REAL KVM and report what it does with each register.

Boots an unmodified Debian arm64 kernel (or a given Image) under qemu-system-aarch64 with
virtualization=on, so the guest kernel is a KVM host; the oracle probe (cpumodel/oracle/)
creates a VM the way a VMM does (vCPU features from the profile, an in-kernel GICv3) and
writes each of the profile's registers with KVM_SET_ONE_REG, recording the errno. No
arm64 hardware needed. Requires Debian's qemu-system-arm, gcc-aarch64-linux-gnu,
libc6-dev-arm64-cross (``python -m tools.oracle setup`` installs them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cpumodel import regdb
from cpumodel.errors import CpumodelError
from cpumodel.resolve import Model

IMP_ID = ("MIDR_EL1", "REVIDR_EL1", "AIDR_EL1")


@dataclass
class RegResult:
    register: str
    value: int
    default: int | None  # what KVM started the VM with
    errno: int | str
    # cpumodel's prediction for the same write: 0, an errno, "depends_on_host"/"unmodelled", or None
    # when the kernel's line has no rule set
    predicted: int | str | None = None

    @property
    def agrees(self) -> bool | None:
        return None if self.predicted is None else self.predicted == self.errno


@dataclass
class VerifyReport:
    kernel: str
    cpu: str
    features: list[str]
    init_errno: int | str | None
    results: list[RegResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    boot_seconds: float | None = None
    rules: str | None = None  # the rule set the predictions come from ("Linux 7.3.4"), None if not modelled

    @property
    def disagreements(self) -> list[RegResult]:
        return [r for r in self.results if r.agrees is False]

    @property
    def ok(self) -> bool:
        """VCPU_INIT succeeded, every write was accepted and cpumodel predicted every answer."""
        return self.init_errno == 0 and all(r.errno == 0 for r in self.results) and not self.disagreements


def verify(model: Model, *, kernel_image: str | None = None, debian_kernel: str | None = None,
           cpu: str = "max", vcpu_features: frozenset[str] | None = None,
           timeout: float | None = None) -> VerifyReport:
    from cpumodel.oracle.cases import Case
    from cpumodel.oracle.kernel import KernelInfo, get_kernel
    from cpumodel.oracle.runner import run_cases
    from cpumodel.oracle.sysregs import ORACLE_REGISTERS

    if bool(kernel_image) == bool(debian_kernel):
        raise CpumodelError("give exactly one of --kernel-image PATH or --debian-kernel VERSION")
    info: KernelInfo | None = None
    if debian_kernel:
        info = get_kernel(debian_kernel)
        image = info.image
    else:
        image = Path(str(kernel_image))
    db = regdb.load()
    feats = set(vcpu_features if vcpu_features is not None else (model.vcpu_features or frozenset()))
    feats.add("vgic")  # a VMM creates an in-kernel GIC before the vCPU runs
    if any(r in model.values for r in IMP_ID):
        feats.add("writable_imp_id")  # KVM_CAP_ARM_WRITABLE_IMP_ID_REGS, needed to change MIDR/REVIDR/AIDR
    fs = frozenset(feats)
    cases, skipped = [], []
    known = set(ORACLE_REGISTERS)
    for name, value in sorted(model.values.items(), key=lambda kv: db.registers[kv[0]].encoding):
        enc = db.registers[name].encoding
        if enc not in known or name == "DCZID_EL0":
            skipped.append(name)  # KVM has no one-reg for it (DCZID_EL0: ENOENT on 6.12-7.3)
            continue
        cases.append(Case(enc, value, fs))
    rec = run_cases(image, cpu, cases, [fs], kernel=info, timeout=timeout)
    fsrec = next(iter(rec.feature_sets.values()))
    report = VerifyReport(kernel=str(rec.kernel.get("release", "?")), cpu=cpu,
                          features=sorted(fs), init_errno=fsrec.init_errno, skipped=skipped,
                          boot_seconds=rec.timing.get("boot_seconds"))  # type: ignore[arg-type]
    for c in rec.cases:
        report.results.append(RegResult(c.reg, c.value, fsrec.defaults.get(c.reg), c.errno))
    predict(report, rec.kernel_version, fsrec.defaults, fs)
    return report


def predict(report: VerifyReport, release: str, defaults: dict[str, int | None], features: frozenset[str]) -> None:
    """Put cpumodel's own verdict beside each of the kernel's answers: the KVM model of the
    kernel's line, with the VM's defaults (what KVM_GET_ONE_REG gave) as KVM's view of the host,
    as ``check`` judges a profile against an ``origin: kvm-defaults`` host. Lines without a rule
    set leave ``predicted`` None (nothing to compare)."""
    from cpumodel import kvm

    try:
        rules = kvm.load_kernel(release)
    except (KeyError, CpumodelError):
        return
    view = kvm.prepare_defaults(rules, defaults, features)
    report.rules = f"Linux {rules.kernel_full}"
    db = regdb.load()
    for r in report.results:
        v = view.check(db.registers[r.register].encoding if r.register in db.registers else r.register, r.value)
        r.predicted = v.errno_or_zero if v.status in (kvm.ACCEPTED, kvm.REJECTED) else v.status
