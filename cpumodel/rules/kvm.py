"""KVM rules (``K0xx``) and vCPU-feature rules (``V0xx``).

The verdicts come from ``cpumodel.kvm``: a model of what KVM_SET_ONE_REG answers for an
ID register, per kernel version, extracted from the Linux source by tools/gen_kvm.py and
held against the real kernel by the oracle recordings (tests/oracle/). This module turns
those verdicts into findings and adds the vCPU-feature rules that need the whole model.
"""

from __future__ import annotations

from functools import cache, lru_cache

from cpumodel import regdb
from cpumodel.errors import CpumodelError
from cpumodel.findings import Finding
from cpumodel.resolve import Model
from cpumodel.rules import Context, Rule

SYS_REGS = "arch/arm64/kvm/sys_regs.c"
SEED = "linux-arm-kernel, Sep 2023, '[PATCH v9 05/11] KVM: arm64: Enable writable for ID_AA64DFR0_EL1 and ID_DFR0_EL1'"

_DOCS: dict[str, tuple[str, str, str, str]] = {
    # id: (name, kind, severity, doc)
    "K001": ("register-unknown-to-kernel", "kvm", "error", """\
The kernel has no writable ID register at this encoding, so KVM_SET_ONE_REG fails (ENOENT).

Registers join KVM's writable set release by release (CTR_EL0, the implementation ID
registers MIDR/REVIDR/AIDR, ID_AA64MMFR3/4, ID_AA64PFR2, ID_AA64FPFR0, ...), and some are
hidden from userspace altogether. Pick a newer --kernel, or drop the register.

Bad (on a kernel without it):  ``ID_AA64PFR2_EL1: 0x0``"""),
    "K002": ("value-refused", "kvm", "error", """\
KVM refuses this value: KVM_SET_ONE_REG returns the errno shown.

For each field KVM compares the requested value with its limit (the host's sanitised value,
with KVM's own hiding and capping applied) using the kernel's safety policy for that field:
LOWER_SAFE fields may only go down, HIGHER_SAFE only up, EXACT must match; bits outside the
writable mask must equal KVM's value; some registers have handlers with extra checks (e.g.
ID_DFR0_EL1.CopDbg below Armv8, ID_AA64DFR0_EL1.DebugVer below Armv8, PerfMon below PMUv3).
The finding names the field, the asked value, the limit and the policy.

Bad (host without SVE):  ``ID_AA64PFR0_EL1: {SVE: IMP}``"""),
    "K003": ("depends-on-host", "kvm", "info", """\
Whether KVM accepts these registers depends on the host, which was not given.

Most of KVM's checks compare the requested value with the host's (sanitised) value. Give
the host with --host HOST.yaml (a profile: shipped, captured with 'cpumodel capture', or a
baseline) to get a definite verdict for each register."""),
    "K004": ("write-order", "kvm", "info", """\
ID registers must be written before any vCPU of the VM first runs.

ID registers are VM-wide; once a vCPU has run, KVM answers EBUSY to any changed value
(writing the same value back is accepted). Write all ID registers first, right after
KVM_ARM_VCPU_INIT, then the other system registers, then run. 'cpumodel emit --format kvm'
emits them in that order."""),
    "V001": ("hidden-feature-registers", "vcpu", "warning", """\
The VMM enables a vCPU feature whose ID-register field the model hides.

The upstream discussion's interleaving hazard: nothing stops a VMM from hiding a feature in
an ID register (e.g. the PMU via ID_AA64DFR0_EL1.PMUVer=0) and then restoring that feature's
registers (PMCR_EL0, PMCNTENSET_EL0, ...) that a guest with the feature hidden never uses.
Either drop the vCPU feature, or keep the feature visible in the model.

Bad:  ``vcpu_features: [pmu]`` with ``ID_AA64DFR0_EL1: {PMUVer: NI}``"""),
    "V002": ("feature-needs-vcpu-feature", "vcpu", "error", """\
The model advertises a feature that KVM only provides with a KVM_ARM_VCPU_INIT feature the VMM
does not request.

SVE needs KVM_ARM_VCPU_SVE (vcpu feature 'sve'), a PMUv3 needs KVM_ARM_VCPU_PMU_V3 ('pmu'),
pointer authentication needs KVM_ARM_VCPU_PTRAUTH_ADDRESS and _GENERIC ('ptrauth'). Without
them KVM's limit for the field is 0 and the write is refused.

Bad:  ``vcpu_features: []`` with ``ID_AA64PFR0_EL1: {SVE: IMP}``"""),
}

# Fields that a vCPU feature controls (Documentation/virt/kvm/api.rst KVM_ARM_VCPU_INIT;
# sys_regs.c __kvm_read_sanitised_id_reg() hides them without the feature).
VCPU_FIELDS: dict[str, list[tuple[str, str]]] = {
    "sve": [("ID_AA64PFR0_EL1", "SVE")],
    "pmu": [("ID_AA64DFR0_EL1", "PMUVer")],
    "ptrauth": [("ID_AA64ISAR1_EL1", "APA"), ("ID_AA64ISAR1_EL1", "API"), ("ID_AA64ISAR1_EL1", "GPA"),
                ("ID_AA64ISAR1_EL1", "GPI"), ("ID_AA64ISAR2_EL1", "APA3"), ("ID_AA64ISAR2_EL1", "GPA3")],
}
HAZARD_REGS = {
    "pmu": "PMCR_EL0, PMCNTENSET_EL0, PMEVCNTR<n>_EL0, PMEVTYPER<n>_EL0, PMUSERENR_EL0",
    "sve": "ZCR_EL1, the SVE Z/P/FFR registers (KVM_REG_ARM64_SVE)",
    "ptrauth": "APIAKEYLO_EL1/HI, APIBKEY*, APDAKEY*, APDBKEY*, APGAKEY*",
}


def _advertises(feature: str, fv: dict[str, int]) -> bool:
    if feature == "pmu":
        v = fv.get("PMUVer")
        return v is not None and 0 < v < 0xF  # 0xF = IMPLEMENTATION DEFINED, not PMUv3
    return any(v for v in fv.values())


@cache
def rules() -> dict[str, Rule]:
    out = {}
    for rid, (name, kind, sev, doc) in _DOCS.items():
        src = SEED if rid == "V001" else f"{SYS_REGS} (per kernel: cpumodel/data/kvm/<version>.json)"
        out[rid] = Rule(rid, name, kind, sev, doc.splitlines()[0], src, doc)
    return out


def kernel_rules(version: str | None):  # type: ignore[no-untyped-def]
    from cpumodel import kvm as kvmmodel

    try:
        return kvmmodel.load_kernel(version or kvmmodel.kernels()[-1])
    except KeyError as exc:
        raise CpumodelError(str(exc), hint=getattr(exc, "hint", "") or "see 'cpumodel kernels'") from None


def describe_kernels() -> list[str]:
    from cpumodel.kvm.rules import describe_catalogue

    return describe_catalogue()


def _effective_features(model: Model, ctx: Context) -> tuple[frozenset[str], bool]:
    """The vCPU features to assume, and whether they were inferred from the model."""
    given = ctx.vcpu_features if ctx.vcpu_features is not None else model.vcpu_features
    if given is not None:
        return frozenset(given), False
    fv = model.field_values()
    inferred = {feat for feat, fields in VCPU_FIELDS.items()
                if _advertises(feat, {f: fv[(r, f)] for r, f in fields if (r, f) in fv})}
    return frozenset(inferred), True


@lru_cache(maxsize=2048)
def _check_write(kernel: str, name: str, value: int, feats: frozenset[str]):  # type: ignore[no-untyped-def]
    """check_write without a host, memoised: profiles linted together share most register values."""
    from cpumodel import kvm as kvmmodel

    return kvmmodel.check_write(kvmmodel.load_kernel(kernel), name, value, None, feats)


def check(model: Model, ctx: Context) -> list[Finding]:
    from cpumodel import kvm as kvmmodel

    krules = kernel_rules(ctx.kernel)
    kernel = getattr(krules, "kernel", None) or ctx.kernel or "?"
    feats, inferred = _effective_features(model, ctx)
    fv = model.field_values()
    out: list[Finding] = []
    vcpu_loc = model.vcpu_loc or model.loc
    skip: set[tuple[str, str]] = set()
    for feat, fields in VCPU_FIELDS.items():
        present = {f: fv[(r, f)] for r, f in fields if (r, f) in fv}
        if not present:
            continue
        adv = _advertises(feat, present)
        reg = fields[0][0]
        if feat in feats and not adv:
            out.append(Finding("V001", "warning",
                               f"vCPU feature '{feat}' is enabled but the model hides it "
                               f"({', '.join(f'{fields[0][0]}.{f}={v:#x}' for f, v in present.items())})",
                               register=reg, field=next(iter(present)), location=vcpu_loc,
                               why=f"a VMM restoring {HAZARD_REGS[feat]} for a guest that cannot see the "
                                   f"feature interleaves hidden-feature state with ID register writes",
                               source=SEED))
        if adv and feat not in feats:
            for r, f in fields:
                v = fv.get((r, f))
                if v and (feat != "pmu" or v != 0xF):
                    skip.add((r, f))
                    out.append(Finding("V002", "error",
                                       f"{r}.{f}={v:#x} needs the '{feat}' vCPU feature, which is not enabled",
                                       register=r, field=f, asked=v, allowed="0x0 without the vCPU feature",
                                       why=f"KVM hides {f} unless KVM_ARM_VCPU_INIT requests '{feat}'",
                                       location=model.where(r, f), kernel=kernel, errno="EINVAL",
                                       source=f"{SYS_REGS} __kvm_read_sanitised_id_reg(); api.rst KVM_ARM_VCPU_INIT"))
    from cpumodel.policy import sanitise

    host = sanitise(ctx.host.values, str(kernel)) if ctx.host is not None else None
    db = regdb.load()
    pending: list[str] = []
    for name in sorted(model.values, key=lambda n: db.registers[n].encoding):
        value = model.values[name]
        v = _check_write(str(krules.kernel_full), name, value, feats) if host is None else \
            kvmmodel.check_write(krules, name, value, host, feats)
        if v.status == kvmmodel.ACCEPTED:
            continue
        if v.status in (kvmmodel.DEPENDS, kvmmodel.UNMODELLED):
            pending.append(name)
            continue
        if v.errno == "ENOENT":
            out.append(Finding("K001", "error", f"{name}: kernel {kernel} has no writable register here",
                               register=name, asked=value, why=v.reason, location=model.where(name),
                               errno="ENOENT", kernel=kernel, source=v.source))
            continue
        failing = [f for f in v.failing_fields if (name, f.field) not in skip]
        if not failing and v.failing_fields:
            continue  # already explained by V002
        if not failing:
            out.append(Finding("K002", "error", f"{name}={value:#x} refused by KVM ({v.errno})", register=name,
                               asked=value, why=v.reason, location=model.where(name), errno=v.errno,
                               kernel=kernel, source=v.source))
            continue
        for f in failing:
            known = db.registers[name].find_field(f.field)
            fname = known.name if known else ""
            target = f"{name}.{f.field}" if known or f.field.startswith("bit") else name
            out.append(Finding(
                "K002", "error", f"{target}={f.asked:#x} refused by KVM ({v.errno})",
                register=name, field=fname or None, asked=f.asked,
                allowed=(f"<= {f.limit:#x}" if f.policy == "LOWER_SAFE" and f.limit is not None else
                         f">= {f.limit:#x}" if f.policy == "HIGHER_SAFE" and f.limit is not None else
                         f"{f.limit:#x}" if f.limit is not None else None),
                why=f.reason, location=model.where(name, fname), errno=v.errno, kernel=kernel,
                host_value=f.host, policy=f.policy or "must equal KVM's value", source=f.source))
    if pending:
        out.append(Finding("K003", "info",
                           f"{len(pending)} register(s) depend on the host for KVM's verdict: {', '.join(pending)}",
                           why="give --host HOST.yaml for a definite verdict", location=model.loc, kernel=kernel,
                           source=f"{SYS_REGS} arm64_check_features()"))
    if inferred and feats:
        out.append(Finding("K004", "info", f"write the {len(model.values)} ID registers before the first KVM_RUN; "
                           f"vCPU features assumed from the model: {', '.join(sorted(feats))}",
                           why="ID registers are immutable (EBUSY) once a vCPU has run; vcpu_features not given",
                           location=model.loc, kernel=kernel, source=f"{SYS_REGS} set_id_reg()"))
    return out
