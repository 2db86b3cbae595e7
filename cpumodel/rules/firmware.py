"""Firmware pseudo-register rules (``F0xx``): the values a profile's ``firmware:`` key restores with
KVM_SET_ONE_REG, judged by ``kvm_arm_set_fw_reg()`` of the kernel line (``cpumodel.kvm.firmware``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from cpumodel.findings import Finding
from cpumodel.resolve import Model
from cpumodel.rules import Context, LazyModule, rule

if TYPE_CHECKING:
    from cpumodel import identity
else:
    identity = LazyModule("cpumodel.identity")  # the errata engine: only guests' identity rules use it

if TYPE_CHECKING:
    from cpumodel.kvm.model import Verdict

HYPERCALLS = "arch/arm64/kvm/hypercalls.c kvm_arm_set_fw_reg()"
PREFIX = "KVM_REG_ARM_"


def levels_on(host: Model | None, guest: Model, line: str) -> dict[str, int] | None:
    """get_kernel_wa_level() of ``host`` for ``guest`` (None without a host that sets MIDR_EL1)."""
    from cpumodel.kvm import firmware

    if host is None or "MIDR_EL1" not in host.values:
        return None
    hd = identity.host_decision(host.values, host.field_values(), line, host.vulnerabilities)
    if hd is None:
        return None
    ssbs = (guest.field_values().get(("ID_AA64PFR1_EL1", "SSBS")) or 0) >= 1
    return firmware.host_levels(line, hd, ssbs)


def verdicts(model: Model, ctx: Context) -> list[tuple[str, int, Verdict]]:
    if not model.firmware:
        return []
    from cpumodel.kvm import firmware

    key = "firmware.verdicts"
    if key not in ctx.memo:
        line = identity.line_or_newest(ctx.kernel)
        lv = levels_on(ctx.host, model, line)
        ctx.memo[key] = [(n, v, firmware.check(line, n, v, lv)) for n, v in model.firmware.items()]
    out: list[tuple[str, int, Verdict]] = ctx.memo[key]
    return out


@rule("F001", "firmware-register-refused", kind="kvm", severity="error",
      source=f"Linux {HYPERCALLS}; Documentation/virt/kvm/arm/fw-pseudo-registers.rst")
def firmware_refused(model: Model, ctx: Context) -> Iterator[Finding]:
    """KVM refuses a firmware pseudo-register value the profile restores.

    A VMM saves the firmware pseudo-registers (PSCI version, SMCCC_ARCH_WORKAROUND_1/2/3 levels,
    the hypercall bitmaps) with the vCPU and restores them on the destination; KVM refuses what
    its kernel line does not know (ENOENT, unknown PSCI version or bitmap bit: EINVAL) and a
    workaround level above what the host kernel itself has (``get_kernel_wa_level()``): a guest
    saved on a host unaffected by Spectre-BHB (WORKAROUND_3 NOT_REQUIRED) cannot be restored on
    an affected one. With ``--host`` the levels come from the host's own Spectre states.

    Bad (on a Neoverse N1 host):  ``firmware: {SMCCC_ARCH_WORKAROUND_3: 2}``
    Good: ``firmware: {SMCCC_ARCH_WORKAROUND_3: 1}``
    """
    from cpumodel.kvm.model import REJECTED

    for name, value, v in verdicts(model, ctx):
        if v.status == REJECTED:
            yield Finding("F001", "error", f"firmware register {name}={value:#x} refused by KVM ({v.errno})",
                          register=f"{PREFIX}{name}", asked=value, why=v.reason, errno=v.errno,
                          location=model.firmware_loc.get(name), source=v.source,
                          kernel=identity.line_or_newest(ctx.kernel))


@rule("F002", "firmware-depends-on-host", kind="kvm", severity="info",
      source=f"Linux {HYPERCALLS} get_kernel_wa_level()")
def firmware_depends_on_host(model: Model, ctx: Context) -> Iterator[Finding]:
    """Whether KVM accepts a restored SMCCC_ARCH_WORKAROUND level depends on the host, not given.

    KVM accepts a workaround level only up to the host kernel's own (its Spectre-v2, -v4 and -BHB
    states). Give the host with ``--host HOST.yaml``.
    """
    from cpumodel.kvm.model import DEPENDS

    pending = [n for n, _, v in verdicts(model, ctx) if v.status == DEPENDS]
    if pending:
        yield Finding("F002", "info", f"firmware register(s) {', '.join(pending)}: accepted only up to the host "
                      "kernel's own level; give --host", location=model.firmware_loc.get(pending[0]),
                      source=verdicts(model, ctx)[0][2].source)


def migration_findings(a: Model, b: Model, kernel: str | None) -> list[Finding]:
    """F001 for restoring A's firmware pseudo-registers on host B: A's ``firmware:`` values, or, when A
    is a host, what KVM gives a VM there (the values a VMM saves)."""
    from cpumodel.kvm import firmware
    from cpumodel.kvm.model import REJECTED

    line = identity.line_or_newest(kernel)
    values = dict(a.firmware)
    if not values and a.role == "host":
        values = firmware.defaults(line, levels_on(a, a, line))
    lv = levels_on(b, a, line)
    out = []
    for name, value in values.items():
        v = firmware.check(line, name, value, lv)
        if v.status == REJECTED:
            out.append(Finding("F001", "error", f"[restore on {b.name}] firmware register {name}={value:#x} "
                               f"refused by KVM ({v.errno})", register=f"{PREFIX}{name}", asked=value,
                               why=v.reason, errno=v.errno, location=a.firmware_loc.get(name), source=v.source,
                               kernel=line))
    return out


@rule("F003", "target-impl-needs-the-vmm", kind="kvm", severity="info",
      source="Linux arch/arm64/kvm/hypercalls.c kvm_smccc_get_action(), kvm_smccc_test_fw_bmap(); "
             "Documentation/virt/kvm/arm/hypercalls.rst ARM_SMCCC_VENDOR_HYP_KVM_DISCOVER_IMPL_VER/CPUS_FUNC_ID")
def target_impl_needs_the_vmm(model: Model, ctx: Context) -> Iterator[Finding]:
    """The profile offers the target-implementation hypercalls (6.15+); KVM does not answer them.

    Setting KVM_REG_ARM_VENDOR_HYP_BMAP_2 bits DISCOVER_IMPL_VER/_CPUS makes KVM advertise the calls
    (KVM_FEATURES), but KVM has no handler for them: unless the VMM forwards them with the SMCCC filter
    (KVM_ARM_VM_SMCCC_FILTER, KVM_SMCCC_FILTER_FWD_TO_USER, before the first KVM_RUN) and answers the
    KVM_EXIT_HYPERCALL exits, the guest gets NOT_SUPPORTED and keeps matching errata against its own
    MIDR only (recorded on 6.16.12-7.3.4, tests/oracle/firmware/). Also said when FUNC_FEAT is cleared in
    VENDOR_HYP_BMAP, which hides every KVM service from the guest.

    Bad:  ``firmware: {VENDOR_HYP_BMAP_2: 0x3}`` with a VMM that does not handle the calls
    Good: the same with the VMM forwarding and answering them (QEMU's target-implementation series does)
    """
    from cpumodel.kvm import firmware

    if "VENDOR_HYP_BMAP_2" not in model.firmware:
        return
    line = identity.line_or_newest(ctx.kernel)
    if "VENDOR_HYP_BMAP_2" not in firmware.registers(line):
        return  # F001 says ENOENT
    ti = firmware.target_impl(line, model.firmware)
    if ti.enabled or model.firmware["VENDOR_HYP_BMAP_2"]:
        yield Finding("F003", "info", ("target-implementation hypercalls offered: " if ti.enabled else
                                       "target-implementation hypercalls not reachable: ") + ti.why,
                      register=f"{PREFIX}VENDOR_HYP_BMAP_2", location=model.firmware_loc.get("VENDOR_HYP_BMAP_2"),
                      source=ti.source, kernel=line)
