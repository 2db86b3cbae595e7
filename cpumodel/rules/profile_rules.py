"""Profile hygiene rules: problems in how a profile is written, not in the CPU it describes."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from cpumodel.findings import Finding
from cpumodel.resolve import Model
from cpumodel.rules import Context, all_rule_ids, matches, rule


@lru_cache(maxsize=4096)
def _matches_some_rule(pattern: str) -> bool:
    return any(matches(i, [pattern]) for i in all_rule_ids())


@rule("P001", "unknown-ignore", kind="profile", severity="warning",
      source="cpumodel (rule registry)")
def unknown_ignore(model: Model, ctx: Context) -> Iterator[Finding]:
    """An ``ignore:`` entry matches no rule, so it silences nothing.

    Usually a typo in a rule ID, or a rule that was renamed. ``cpumodel rules`` lists the
    IDs; entries may be exact IDs, group prefixes (``ARCH-FEAT_SVE``) or globs (``ARCH-*``).

    Bad:  ``ignore: [A0001]``
    Good: ``ignore: [A001]``
    """
    if not model.ignore:
        return
    for pattern, where in model.ignore:
        if not _matches_some_rule(pattern):
            from cpumodel.errors import suggest

            hint = suggest(pattern, all_rule_ids())
            yield Finding("P001", "warning", f"ignore entry {pattern!r} matches no rule"
                          + (f" ({hint})" if hint else ""), location=where,
                          why="it silences nothing", source="cpumodel rule registry")


@rule("P002", "guest-on-host-values", kind="profile", severity="warning", source="cpumodel; see 'cpumodel defaults'")
def guest_on_host_values(model: Model, ctx: Context) -> Iterator[Finding]:
    """A guest model takes its values from a host profile's raw register values.

    A host profile (``role: host``) records what the CPU reports; KVM never shows a guest some
    of it (e.g. AMU, SPE, MPAM, cache geometry) and refuses such values. A guest should start
    from what KVM gives a VM on that host: generate that with
    ``cpumodel defaults HOST.yaml --kernel X.Y -o base.yaml`` and use ``base: base``.

    Bad:  ``role: guest`` with ``base: neoverse-n1`` (a host profile)
    Good: ``base: neoverse-n1-kvm7.3`` (made by ``cpumodel defaults profiles/neoverse-n1.yaml``)
    """
    if model.role == "guest" and model.base_role == "host" and ctx.kvm:
        base = model.chain[-1] if model.chain else "?"
        yield Finding("P002", "warning", f"guest model based on host profile {base!r}: it inherits raw host values",
                      location=model.loc, why=f"start from 'cpumodel defaults {model.base_path}' instead",
                      source="cpumodel defaults")


#: ID_AA64MMFR0_EL1 bits 31:20 (TGRAN4, TGRAN64, TGRAN16) as the EL0 emulation returns them: their
#: safe values NI, NI, NI = 0xf, 0xf, 0x0 in every modelled line's arm64_ftr_bits (tested).
NO_GRANULE = 0xFF0


@rule("P003", "el0-dump-without-unseen", kind="profile", severity="warning",
      source="Documentation/arch/arm64/cpu-feature-registers.rst; arch/arm64/kernel/cpufeature.c emulate_id_reg()")
def el0_dump_without_unseen(model: Model, ctx: Context) -> Iterator[Finding]:
    """The values are those of a Linux EL0 MRS dump, but the profile does not say what that dump hides.

    Linux emulates MRS of ID registers at EL0 (HWCAP_CPUID) and shows only the FTR_VISIBLE fields;
    every other field reads as its safe value (``user_val | (sys_val & user_mask)``), which for
    ID_AA64MMFR0_EL1 means no stage-1 translation granule at all (TGRAN4 = TGRAN64 = 0xf,
    TGRAN16 = 0), a CPU no OS could run on. When ID_AA64MMFR0_EL1 and every other emulated
    register the model gives read exactly so, the hidden fields (EL2, RAS, TLB, TTL, SEL2, PAN, ...)
    are not the CPU's, and rules judging them blame the silicon for what the kernel hid.
    ``unseen: el0-mrs`` (what ``cpumodel capture`` records as an explicit ``unseen:`` list) makes them
    unknown.

    Bad:  an EL0 dump of a Neoverse V1 with no ``unseen:`` (TLBIOS/TTL findings from hidden zeros)
    Good: the same dump with ``unseen: el0-mrs``
    """
    mmfr0 = model.values.get("ID_AA64MMFR0_EL1")
    if mmfr0 is None or model.unseen.get("ID_AA64MMFR0_EL1") or model.value_origin == "kvm-defaults":
        return
    if (mmfr0 >> 20) & 0xFFF != NO_GRANULE:  # the cheap test first: no KVM data loaded for a real CPU
        return
    from cpumodel import el0

    krules = el0.el0_rules(model.kernel_release)
    emulated = [n for n in model.values if el0.el0_emulated(n) and not model.unseen.get(n)]
    if any(el0.el0_view(n, model.values[n], krules) != model.values[n] for n in emulated):
        return
    where = model.where("ID_AA64MMFR0_EL1", "") or model.loc
    yield Finding("P003", "warning",
                  f"this looks like a Linux EL0 MRS dump: its {len(emulated)} emulated ID registers hold only the "
                  "fields the kernel's emulation shows, every other field at the safe value it substitutes "
                  "(ID_AA64MMFR0_EL1: no translation granule at all), and no 'unseen:' says so",
                  location=where, register="ID_AA64MMFR0_EL1",
                  why="findings on the hidden fields judge the kernel's substitutes, not the CPU; add "
                      "'unseen: el0-mrs' (or capture with 'cpumodel capture', which lists them)",
                  source="arch/arm64/kernel/cpufeature.c emulate_id_reg(), init_cpu_ftr_reg() (user_val)")


@rule("P004", "not-a-model-register", kind="profile", severity="warning",
      source="arch/arm64/kvm/sys_regs.c sys_reg_descs[] (data/kvm); arch/arm64/include/asm/sysreg.h")
def not_a_model_register(model: Model, ctx: Context) -> Iterator[Finding]:
    """A register the profile gives is a real system register, but not part of the CPU model: it is ignored.

    Register dumps (VirtualBox's CPU report, Firecracker fingerprints, Linux tools) list system
    registers beside the ID registers: MPIDR_EL1 (which vCPU this is), CCSIDR_EL1 (one cache level,
    as CSSELR_EL1 selects it), ERRIDR_EL1, CNTFRQ_EL0, SCTLR_EL1, PMCR_EL0, unallocated ID encodings.
    cpumodel checks the ID registers only; these are accepted so a dump loads as it is, never checked,
    and ``cpumodel emit`` writes none of them (cpumodel has no field layout or KVM rule for them:
    MPIDR_EL1 differs per vCPU, CCSIDR_EL1 per selected cache level, the others are no ID registers).
    A name that is no register at all stays an error. Real means named
    by Linux: ``sys_reg_descs[]`` of a modelled kernel line, or ``asm/sysreg.h``
    (``cpumodel/sysregs.py``). ``--ignore P004`` or ``ignore: [P004]`` silences it.

    Bad:  ``registers: {MIDR_EL1: 0x611f0231, MPIDR_EL1: 0x80000000}`` in a model meant to set MPIDR
    Good: the dump as it is (the warning says MPIDR_EL1 is ignored), or without MPIDR_EL1
    """
    if not model.system_registers:
        return
    from cpumodel import sysregs
    from cpumodel.yamlsrc import shown

    for name, where in model.system_registers.items():
        real = sysregs.lookup(name)
        what = ("an unallocated ID-register encoding (KVM: ID_UNALLOCATED, reads as zero)"
                if real is not None and real.unallocated else "a system register outside the CPU model")
        written = "; it will not be written to the guest" if model.role == "guest" else ""
        yield Finding("P004", "warning", f"{shown(name)} is {what}: ignored (not checked{written})",
                      location=where, why="cpumodel models ID registers only; a dump's other registers are "
                                          "accepted and left out", source=real.source if real else "")
