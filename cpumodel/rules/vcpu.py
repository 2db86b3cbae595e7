"""vCPU-feature rules (``V0xx``): what the ``KVM_ARM_VCPU_INIT`` features a VMM sets change.

A field that advertises a feature KVM provides only with a vCPU feature (SVE, PMUv3, pointer
authentication) is refused without it; a feature enabled while the model hides it is the
interleaving hazard of the upstream discussion. The vCPU features are the ``--vcpu-features``
option, else the profile's ``vcpu_features``, else those the model advertises (rule K004 says so).
"""

from __future__ import annotations

from collections.abc import Iterator

from cpumodel.findings import Finding
from cpumodel.resolve import Model
from cpumodel.rules import Context, rule

SYS_REGS = "arch/arm64/kvm/sys_regs.c"
SEED = "linux-arm-kernel, Sep 2023, '[PATCH v9 05/11] KVM: arm64: Enable writable for ID_AA64DFR0_EL1 and ID_DFR0_EL1'"

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


def effective_features(model: Model, ctx: Context) -> tuple[frozenset[str], bool]:
    """The vCPU features to assume, and whether they were inferred from the model."""
    given = ctx.vcpu_features if ctx.vcpu_features is not None else model.vcpu_features
    if given is not None:
        return frozenset(given), False
    fv = model.field_values()
    inferred = {feat for feat, fields in VCPU_FIELDS.items()
                if _advertises(feat, {f: fv[(r, f)] for r, f in fields if (r, f) in fv})}
    return frozenset(inferred), True


def missing_features(model: Model, ctx: Context) -> list[tuple[str, str, str, int]]:
    """(vCPU feature, register, field, value) for every field that advertises a feature KVM only
    provides with a vCPU feature the VMM does not set."""
    feats, _ = effective_features(model, ctx)
    fv = model.field_values()
    out = []
    for feat, fields in VCPU_FIELDS.items():
        present = {f: fv[(r, f)] for r, f in fields if (r, f) in fv}
        if present and feat not in feats and _advertises(feat, present):
            out += [(feat, r, f, v) for r, f in fields
                    if (v := fv.get((r, f))) and (feat != "pmu" or v != 0xF)]
    return out


@rule("V001", "hidden-feature-registers", kind="vcpu", severity="warning", source=SEED)
def hidden_feature_registers(model: Model, ctx: Context) -> Iterator[Finding]:
    """The VMM enables a vCPU feature whose ID-register field the model hides.

    The upstream discussion's interleaving hazard: nothing stops a VMM from hiding a feature in
    an ID register (e.g. the PMU via ID_AA64DFR0_EL1.PMUVer=0) and then restoring that feature's
    registers (PMCR_EL0, PMCNTENSET_EL0, ...) that a guest with the feature hidden never uses.
    Either drop the vCPU feature, or keep the feature visible in the model.

    Bad:  ``vcpu_features: [pmu]`` with ``ID_AA64DFR0_EL1: {PMUVer: NI}``
    """
    feats, _ = effective_features(model, ctx)
    fv = model.field_values()
    for feat, fields in VCPU_FIELDS.items():
        present = {f: fv[(r, f)] for r, f in fields if (r, f) in fv}
        if present and feat in feats and not _advertises(feat, present):
            reg = fields[0][0]
            yield Finding("V001", "warning",
                          f"vCPU feature '{feat}' is enabled but the model hides it "
                          f"({', '.join(f'{reg}.{f}={v:#x}' for f, v in present.items())})",
                          register=reg, field=next(iter(present)), location=model.vcpu_loc or model.loc,
                          why=f"a VMM restoring {HAZARD_REGS[feat]} for a guest that cannot see the "
                              f"feature interleaves hidden-feature state with ID register writes",
                          source=SEED)


@rule("V002", "feature-needs-vcpu-feature", kind="vcpu", severity="error",
      source=f"{SYS_REGS} __kvm_read_sanitised_id_reg(); api.rst KVM_ARM_VCPU_INIT")
def feature_needs_vcpu_feature(model: Model, ctx: Context) -> Iterator[Finding]:
    """The model advertises a feature KVM provides only with a vCPU feature the VMM does not set.

    KVM_ARM_VCPU_INIT features change what KVM shows and accepts: SVE needs KVM_ARM_VCPU_SVE (vcpu
    feature 'sve'), a PMUv3 needs KVM_ARM_VCPU_PMU_V3 ('pmu'), pointer authentication needs
    KVM_ARM_VCPU_PTRAUTH_ADDRESS and _GENERIC ('ptrauth'). Without them KVM's limit for the field is
    0 and the write is refused.

    Bad:  ``vcpu_features: []`` with ``ID_AA64PFR0_EL1: {SVE: IMP}``
    """
    from cpumodel.rules.kvm_writes import kernel_name, writes

    # the kernel's own verdict decides: some lines accept such a write and drop the field (e.g. 6.17-6.19
    # take ID_AA64DFR0_EL1.PMUVer without the PMU feature, as the oracle recordings show)
    accepted = {w.name for w in writes(model, ctx) if w.verdict.status == "accepted"}
    for feat, r, f, v in missing_features(model, ctx):
        if r in accepted:
            continue
        yield Finding("V002", "error", f"{r}.{f}={v:#x} needs the '{feat}' vCPU feature, which is not enabled",
                      register=r, field=f, asked=v, allowed="0x0 without the vCPU feature",
                      why=f"KVM hides {f} unless KVM_ARM_VCPU_INIT requests '{feat}'",
                      location=model.where(r, f), kernel=kernel_name(ctx), errno="EINVAL",
                      source=f"{SYS_REGS} __kvm_read_sanitised_id_reg(); api.rst KVM_ARM_VCPU_INIT")
