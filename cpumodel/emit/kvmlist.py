"""KVM one-reg list (``kvm``) and C header (``c-header``): the register writes a VMM replays.

Both formats list the model's registers in the order a VMM must write them with
``KVM_SET_ONE_REG``: every register of the ID space first (op0=3, op1 in {0,1,3}, CRn=0),
by encoding, then any other register by encoding. The writes belong after
``KVM_ARM_VCPU_INIT`` (``KVM_SET_ONE_REG`` answers ENOEXEC before it) and before the first
``KVM_RUN`` of any vCPU: from then on the ID registers are immutable and a write of a
different value answers EBUSY.

Sources (Linux 7.3.4, Debian linux-source-7.3 7.3.4-1~bpo13+1, read locally):

* Documentation/virt/kvm/api.rst 4.68 KVM_SET_ONE_REG (``struct kvm_one_reg``),
  4.82 KVM_ARM_VCPU_INIT (feature bits), 4.139 KVM_ARM_GET_REG_WRITABLE_MASKS (the ID range),
  7.42 KVM_CAP_ARM_WRITABLE_IMP_ID_REGS (MIDR_EL1/REVIDR_EL1/AIDR_EL1).
* Documentation/virt/kvm/arm/vcpu-features.rst, section "The ID Registers": ID registers
  are mutable until KVM_RUN has been called on any vCPU, may be VM-scoped, and should be
  written before the rest of the vCPU's register state.
* arch/arm64/kvm/sys_regs.c set_id_reg(): after the first run a write of a different value
  answers -EBUSY; arm64_check_features(): a non-writable field that differs from KVM's
  limit answers -E2BIG.
* arch/arm64/kvm/arm.c kvm_arch_vcpu_ioctl(), case KVM_SET_ONE_REG: -ENOEXEC before
  KVM_ARM_VCPU_INIT.

Registers KVM has no one-reg for (``NO_ONE_REG``, e.g. DCZID_EL0) cannot be written by any
VMM: the guest reads the hardware value. They are not written as lines (a replay would stop
at ENOENT); the ``kvm`` list keeps them as commented-out lines under a heading that says
why, the C header as a comment outside the array.

``only_changed=True`` writes only the registers the model changes relative to KVM's default
view on the target hosts (``hosts``) or on its origin (``cpumodel/template.py`` says what that
means), each with the fields it changes named; MIDR_EL1/REVIDR_EL1/AIDR_EL1 only when the model
declares ``kvm_caps: [writable_imp_id_regs]``. The values are whole registers (a one-reg write
is), equal to KVM's view on every target host outside the changed fields.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cpumodel import __version__, regdb
from cpumodel.emit.escape import c_comment, one_line
from cpumodel.resolve import Model

if TYPE_CHECKING:
    from cpumodel.template import Template

# KVM_ARM_VCPU_* feature bit numbers in struct kvm_vcpu_init::features[0]:
# arch/arm64/include/uapi/asm/kvm.h lines 101-106 (Linux 7.3.4; same numbers in 6.12 and 7.2):
# EL1_32BIT 1, PMU_V3 3, SVE 4, PTRAUTH_ADDRESS 5, PTRAUTH_GENERIC 6. ptrauth needs both
# pointer-auth bits (api.rst 4.82: "both ... must be requested or neither").
VCPU_FEATURE_BITS: dict[str, tuple[int, ...]] = {
    "el1_32bit": (1,),
    "pmu": (3,),
    "sve": (4,),
    "ptrauth": (5, 6),
}
# The KVM capability each vCPU feature depends on: include/uapi/linux/kvm.h (Linux 7.3.4)
# KVM_CAP_ARM_EL1_32BIT 93, KVM_CAP_ARM_PMU_V3 126, KVM_CAP_ARM_SVE 170,
# KVM_CAP_ARM_PTRAUTH_ADDRESS 171, KVM_CAP_ARM_PTRAUTH_GENERIC 172 (api.rst 4.82 "Depends on").
VCPU_FEATURE_CAPS: dict[str, tuple[int, ...]] = {
    "el1_32bit": (93,),
    "pmu": (126,),
    "sve": (170,),
    "ptrauth": (171, 172),
}
# KVM_CAP_ARM_WRITABLE_IMP_ID_REGS: include/uapi/linux/kvm.h line 989 (Linux 7.3.4).
CAP_WRITABLE_IMP_ID_REGS = 239
#: Implementation ID registers: KVM accepts a different value only with
#: KVM_CAP_ARM_WRITABLE_IMP_ID_REGS enabled on the VM before any vCPU is created
#: (api.rst 7.42; sys_regs.c set_imp_id_reg(): equal value -> 0, cap off -> -EINVAL).
IMP_ID_REGS = ("MIDR_EL1", "REVIDR_EL1", "AIDR_EL1")
#: Registers of the register database that KVM has no one-reg for: no entry in
#: sys_reg_descs[] of arch/arm64/kvm/sys_regs.c in Linux 6.12.117, 7.2.13 and 7.3.4 (checked
#: with grep); KVM_GET/SET_ONE_REG answer ENOENT and the guest reads the hardware register.
NO_ONE_REG: dict[str, str] = {
    "DCZID_EL0": "KVM has no one-reg for DCZID_EL0 (not in sys_reg_descs[], Linux 6.12-7.3); "
                 "the guest reads the host's DCZID_EL0",
}


def is_id_space(reg: regdb.Register) -> bool:
    """True for the feature ID range of api.rst 4.139: op0=3, op1 in {0,1,3}, CRn=0, CRm 0-7."""
    op0, op1, crn, crm, _ = reg.encoding
    return op0 == 3 and op1 in (0, 1, 3) and crn == 0 and crm <= 7


def write_order(model: Model) -> list[tuple[regdb.Register, int]]:
    """(register, value) in the order a VMM writes them: ID space first, each part by encoding."""
    db = regdb.load()
    regs = [(db.registers[n], v) for n, v in model.values.items()]
    return sorted(regs, key=lambda rv: (not is_id_space(rv[0]), rv[0].encoding))


def settable(model: Model) -> tuple[list[tuple[regdb.Register, int]], list[tuple[regdb.Register, int]]]:
    """Split the write order into registers KVM has a one-reg for, and the others."""
    rows = write_order(model)
    return ([rv for rv in rows if rv[0].name not in NO_ONE_REG],
            [rv for rv in rows if rv[0].name in NO_ONE_REG])


def template_of(model: Model, opts: dict[str, object]) -> Template:
    """The model as writes over KVM's view (cpumodel/template.py), with the emit options."""
    from cpumodel.template import make_template

    hosts = opts.get("hosts") or None
    return make_template(model, hosts=hosts, kernel=opts.get("kernel"),  # type: ignore[arg-type]
                         vcpu_features=opts.get("vcpu_features"),  # type: ignore[arg-type]
                         resolver=opts.get("resolver"), caps=opts.get("kvm_caps"))  # type: ignore[arg-type]


def rows_of(model: Model, opts: dict[str, object]) -> tuple[list[tuple[regdb.Register, int, str]],
                                                           list[tuple[regdb.Register, int, str]]]:
    """(register, value, comment) to write and to leave out, for the full list or ``only_changed``."""
    if not opts.get("only_changed"):
        ok, skipped = settable(model)
        return [(r, v, "") for r, v in ok], [(r, v, NO_ONE_REG[r.name]) for r, v in skipped]
    tpl = template_of(model, opts)
    db = regdb.load()
    return ([(w.register, w.value, f"changes {', '.join(w.fields)}; mask {w.mask:#018x}") for w in tpl.writes],
            [(db.registers[n], model.values[n], why) for n, why in tpl.left_out])


def vcpu_features(model: Model, opts: dict[str, object]) -> frozenset[str] | None:
    """The vCPU features in force: the caller's override, else the profile's; None if neither says."""
    over = opts.get("vcpu_features")
    if over is not None:
        return frozenset(over)  # type: ignore[arg-type]
    return model.vcpu_features


def features_word(features: frozenset[str]) -> int:
    """The bits of kvm_vcpu_init::features[0] that cpumodel's vCPU features set."""
    word = 0
    for f in features:
        for bit in VCPU_FEATURE_BITS[f]:
            word |= 1 << bit
    return word


def describe_features(features: frozenset[str] | None) -> str:
    if features is None:
        return "not given by the profile (the VMM's defaults apply)"
    if not features:
        return "none (features[0] bits 1, 3, 4, 5, 6 clear)"
    parts = [f"{f} (bit{'s' if len(VCPU_FEATURE_BITS[f]) > 1 else ''} "
             f"{', '.join(str(b) for b in VCPU_FEATURE_BITS[f])})" for f in sorted(features)]
    return f"{', '.join(parts)}: features[0] |= {features_word(features):#x}"


def _header_lines(model: Model, opts: dict[str, object], fmt: str) -> list[str]:
    kernel = opts.get("kernel")
    feats = vcpu_features(model, opts)
    lines = [
        f"cpumodel {__version__}: {fmt} for {model.name} ({model.path})"
        + (f", checked against the KVM rules of Linux {kernel}" if kernel else ""),
        "Write each register with KVM_SET_ONE_REG (Documentation/virt/kvm/api.rst 4.68), in this order,",
        "after KVM_ARM_VCPU_INIT and before the first KVM_RUN of any vCPU: ID registers are immutable once",
        "a vCPU has run (a different value answers EBUSY), may be VM-scoped, and should be written before",
        "the rest of the vCPU's registers (Documentation/virt/kvm/arm/vcpu-features.rst, 'The ID Registers').",
        f"KVM_ARM_VCPU_INIT features (api.rst 4.82): {describe_features(feats)}",
    ]
    if opts.get("only_changed"):
        tpl = template_of(model, opts)
        lines.append("Only the registers the model changes, relative to "
                     + ("; ".join(r.label for r in tpl.references) or "nothing (no host and no origin: all)") + ";")
        lines.append("write them over KVM's view: every other register keeps the value KVM gives. On a host")
        lines.append("other than those, write (KVM's value & ~mask) | (value & mask): the mask holds the fields")
        lines.append("the model changes.")
        for reg_fields, why in tpl.unequal:
            lines.append(f"{reg_fields}: {why}; a VMM keeps KVM's value of these fields (read, modify, write).")
        written = {w.register.name for w in tpl.writes}
    else:
        written = set(model.values)
    if any(n in written for n in IMP_ID_REGS):
        present = ", ".join(n for n in IMP_ID_REGS if n in written)
        lines.append(f"{present}: a value other than the host's needs KVM_CAP_ARM_WRITABLE_IMP_ID_REGS "
                     f"({CAP_WRITABLE_IMP_ID_REGS}) enabled")
        lines.append("on the VM before any vCPU is created (api.rst 7.42); without it KVM answers EINVAL.")
    return lines


def emit_kvm(model: Model, **opts: object) -> str:
    """``<one-reg id> <value>  # NAME`` lines, in write order, under a ``#`` comment header."""
    ok, skipped = rows_of(model, opts)
    out = [f"# {one_line(line)}" for line in _header_lines(model, opts, "KVM one-reg list")]
    out.append("# Format: <KVM one-reg id> <64-bit value>  # <register>")
    out += [f"{r.onereg:#018x} {v:#018x}  # {r.name}" + (f" ({c})" if c else "") for r, v, c in ok]
    if model.firmware:  # firmware pseudo-registers (fw-pseudo-registers.rst), also before the first KVM_RUN
        from cpumodel import identity
        from cpumodel.kvm import firmware

        regs = firmware.registers(identity.line_or_newest(opts.get("kernel")))  # type: ignore[arg-type]
        out.append("# Firmware pseudo-registers (Documentation/virt/kvm/arm/fw-pseudo-registers.rst):")
        for name in firmware.NAMES:
            if name in model.firmware and name in regs:
                out.append(f"{int(regs[name]['id'], 16):#018x} {model.firmware[name]:#018x}  # "
                           f"{firmware.PREFIX}{name}")
    if skipped:
        out.append("# Not written:" if opts.get("only_changed")
                   else "# Not written: KVM has no one-reg for these, so no VMM can set them:")
        out += [f"# {r.onereg:#018x} {v:#018x}  # {r.name}: {why}" for r, v, why in skipped]
    return "\n".join(out) + "\n"


def c_identifier(name: str) -> str:
    """A C identifier from a model name: non-alphanumerics become '_', a leading digit gets '_'."""
    ident = re.sub(r"[^0-9A-Za-z]", "_", name) or "model"
    return f"_{ident}" if ident[0].isdigit() else ident


def emit_c_header(model: Model, **opts: object) -> str:
    """A C99 header: ``struct cpumodel_reg`` and a static const array of the writes, in order."""
    ok, skipped = rows_of(model, opts)
    ident = c_identifier(model.name)
    upper, lower = ident.upper(), ident.lower()
    guard = f"CPUMODEL_{upper}_H"
    feats = vcpu_features(model, opts)
    out = ["/*"]
    out += [f" * {c_comment(line)}".rstrip() for line in _header_lines(model, opts, "C header")]
    out += [" * Each entry is one struct kvm_one_reg: .id is the one-reg ID, .addr points at .value.", " */",
            f"#ifndef {guard}", f"#define {guard}", "", "#include <stdint.h>", "",
            "#ifndef CPUMODEL_REG_DEFINED", "#define CPUMODEL_REG_DEFINED",
            "struct cpumodel_reg {", "\tuint64_t id;\t/* KVM one-reg ID */",
            "\tuint64_t value;\t/* 64-bit register value */", "};", "#endif", "",
            f"#define CPUMODEL_{upper}_NREGS {len(ok)}"]
    if feats is not None:
        out.append(f"/* kvm_vcpu_init::features[0] bits for the model's vCPU features: "
                   f"{', '.join(sorted(feats)) or 'none'} */")
        out.append(f"#define CPUMODEL_{upper}_VCPU_FEATURES0 {features_word(feats):#x}u")
    if ok:
        out.append(f"static const struct cpumodel_reg cpumodel_{lower}_regs[CPUMODEL_{upper}_NREGS] = {{")
        out += [f"\t{{ UINT64_C({r.onereg:#018x}), UINT64_C({v:#018x}) }},\t/* {r.name} {r.sysreg_name}"
                + (f": {c}" if c else "") + " */" for r, v, c in ok]
        out.append("};")
        if opts.get("only_changed"):
            tpl = template_of(model, opts)
            out.append("/* the fields each entry changes: a VMM may write (KVM's value & ~mask) | (value & mask) */")
            out.append(f"static const uint64_t cpumodel_{lower}_masks[CPUMODEL_{upper}_NREGS] = {{")
            out += [f"\tUINT64_C({w.mask:#018x}),\t/* {w.register.name} */" for w in tpl.writes]
            out.append("};")
    else:
        out.append("/* no register has a KVM one-reg: nothing to write */")
    if skipped:
        out.append("/* Not written:" if opts.get("only_changed")
                   else "/* Not written (KVM has no one-reg for them, so no VMM can set them):")
        out += [f" *   {r.name} = {v:#018x}: {why}" for r, v, why in skipped]
        out.append(" */")
    out += ["", f"#endif /* {guard} */"]
    return "\n".join(out) + "\n"
