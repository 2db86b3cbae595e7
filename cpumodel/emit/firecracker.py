"""Firecracker aarch64 custom CPU template (``firecracker``).

Output: the JSON body Firecracker takes at ``PUT /cpu-config`` (or as the file named by
``cpu-config`` in its configuration file)::

    {"kvm_capabilities": ["170"],                       # only when vCPU features are given
     "vcpu_features": [{"index": 0, "bitmap": "0b..."}],  # idem
     "reg_modifiers": [{"addr": "0x603000000013c020", "bitmap": "0b<64 x 0/1>"}, ...]}

What Firecracker's source says, and how this module follows it (firecracker-microvm/firecracker;
files and commits read are named at each fact):

* ``CustomCpuTemplate`` (src/vmm/src/cpu_config/aarch64/custom_cpu_template.rs @ 1bc7deef1426)
  has exactly the fields ``kvm_capabilities``, ``vcpu_features`` and ``reg_modifiers``, each
  optional, and ``#[serde(deny_unknown_fields)]``: any other key (a "notes" key, say) makes
  Firecracker refuse the whole template. So this format carries no notes; what it leaves out
  is said on stderr (``EmitNote`` warnings) and refused with ``strict=True``.
* ``RegisterModifier.addr`` is a string with a ``0x`` (hex) or ``0b`` prefix
  (templates_serde.rs ``deserialize_from_str_u64`` @ 074a6530a401); Firecracker writes it as
  ``{:#x}``. It is the KVM one-reg ID (docs/cpu_templates/cpu-templates.md @ 058983d28a1a).
* ``bitmap`` is a ``0b`` string of ``0``/``1``/``x`` read from the right (bit 0 last), ``_``
  ignored; ``x`` leaves the bit as KVM had it, a missing leading character counts as ``x``
  (``RegisterValueFilter`` in src/vmm/src/cpu_config/templates.rs @ c82226848d58).
  ``validate()`` refuses a bitmap wider than the register (64 bits for these IDs, size
  field 0x3 = U64). Firecracker applies ``(current & !filter) | value`` and writes the result
  back with KVM_SET_ONE_REG before booting (src/vmm/src/cpu_config/aarch64/mod.rs
  ``apply_template`` @ 074a6530a401; src/vmm/src/vstate/vcpu/aarch64.rs ``configure`` @ 00a8d521c845).
* ``vcpu_features`` items are ``{"index": <u32>, "bitmap": "0b..."}`` applied to
  ``kvm_vcpu_init.features[index]`` before KVM_ARM_VCPU_INIT (vstate/vcpu/aarch64.rs ``init``);
  Firecracker's defaults there are PSCI_0_2 (bit 2) on every vCPU and POWER_OFF (bit 0) on
  the secondary ones, so this module leaves bits 0 and 2 as ``x``. The schema says only index
  0 is used (docs/cpu_templates/schema.json @ c34ed6c8a27b).
* ``kvm_capabilities`` are decimal strings, ``"!N"`` removing one from Firecracker's checks
  (templates.rs ``KvmCapability``). The capability each vCPU feature depends on is added, as
  Firecracker's own test template does (tests/data/custom_cpu_templates/aarch64_with_sve_and_pac.json
  @ 0501111e357b: ``["170", "171", "172"]`` with ``0b111xxxx``).

What this format cannot express:

* ``pmu``: KVM then needs KVM_ARM_VCPU_PMU_V3_INIT before the first run (Linux 7.3.4
  arch/arm64/kvm/arm.c:986 and pmu-emul.c:914 answer EINVAL without it); Firecracker never
  does it, and its PR #5726 "fix(aarch64): return error when PMU V3 is enabled" (merged; opened
  2026-02-27) makes it refuse the bit itself. -> CpumodelError.
* ``el1_32bit``: Firecracker's boot protocol sets PSTATE to EL1h (AArch64)
  (docs/cpu_templates/boot-protocol.md @ 7c4687fab64d), which KVM refuses for a 32-bit EL1
  vCPU (arch/arm64/kvm/guest.c set_core_reg(), Linux 7.3.4 lines 263-267). -> CpumodelError.
* Registers KVM has no one-reg for (DCZID_EL0): Firecracker reads every template register
  with KVM_GET_ONE_REG first, which would answer ENOENT, so the register is left out (the
  guest reads the host's value anyway) with an ``EmitNote`` warning; ``strict=True`` refuses.

Only what the model changes (``cpumodel/template.py``): each modifier's bitmap has ``0``/``1``
in the fields the model changes relative to KVM's default view on the target hosts (``hosts``
option, else the model's origin: the ``role: host`` or ``origin: kvm-defaults`` profile its
``base:`` chain starts from) and ``x`` everywhere else, so the template boots on every host
whose KVM view it was computed against, and on any host that lets KVM take those fields.
Registers the model does not change are left out; MIDR_EL1/REVIDR_EL1/AIDR_EL1 are written
only when the model changes them and declares ``kvm_caps: [writable_imp_id_regs]``, and then
``kvm_capabilities`` lists KVM_CAP_ARM_WRITABLE_IMP_ID_REGS (239) so that Firecracker refuses
to start where the kernel lacks it (recent Firecracker enables the capability when the kernel
has it: src/vmm/src/arch/aarch64/vm.rs ``KvmVm::new`` @ 0512e491083d). A profile with no
origin and no ``hosts`` has nothing to be relative to: every bit of its registers is pinned.

Options (``**opts``): ``vcpu_features`` (override), ``kernel``, ``hosts`` (target host models),
``resolver`` (to follow ``base:``), ``strict``.
"""

from __future__ import annotations

import json
import warnings

from cpumodel.emit.kvmlist import (
    CAP_WRITABLE_IMP_ID_REGS,
    VCPU_FEATURE_BITS,
    VCPU_FEATURE_CAPS,
    template_of,
    vcpu_features,
)
from cpumodel.errors import CpumodelError
from cpumodel.resolve import Model

#: Registers are 64 bits wide: one bitmap character per bit.
REG_BITS = 64
#: vCPU feature bits this module decides (every other bit of features[0] stays 'x').
DECIDED_BITS = sorted(b for bits in VCPU_FEATURE_BITS.values() for b in bits)  # 1, 3, 4, 5, 6
#: vCPU features Firecracker cannot provide, with the reason.
UNSUPPORTED_FEATURES: dict[str, str] = {
    "pmu": "Firecracker does not initialise a vPMU (no KVM_ARM_VCPU_PMU_V3_INIT, so KVM_RUN answers "
           "EINVAL; Firecracker PR #5726 refuses the PMU_V3 bit)",
    "el1_32bit": "Firecracker boots the guest in AArch64 EL1h, which KVM refuses for a vCPU "
                 "initialised with KVM_ARM_VCPU_EL1_32BIT",
}


class EmitNote(UserWarning):
    """Something an output format left out because it cannot carry it (said on stderr)."""


def bitmap(value: int, mask: int = (1 << REG_BITS) - 1, width: int = REG_BITS) -> str:
    """A ``0b`` bitmap of ``width`` characters: the value's 0 or 1 under ``mask``, ``x`` elsewhere."""
    return "0b" + "".join(("1" if value >> b & 1 else "0") if mask >> b & 1 else "x"
                          for b in range(width - 1, -1, -1))


def features_bitmap(features: frozenset[str]) -> str:
    """The ``vcpu_features[0]`` bitmap: bits 6..0, the decided ones 0/1, the others ``x``."""
    top = max(DECIDED_BITS)
    on = {b for f in features for b in VCPU_FEATURE_BITS[f]}
    chars = ["1" if b in on else "0" if b in DECIDED_BITS else "x" for b in range(top, -1, -1)]
    return "0b" + "".join(chars)


def emit(model: Model, **opts: object) -> str:
    strict = bool(opts.get("strict", False))
    feats = vcpu_features(model, opts)
    if feats is not None:
        bad = sorted(feats & UNSUPPORTED_FEATURES.keys())
        if bad:
            raise CpumodelError(f"a Firecracker template cannot carry the vCPU feature(s) {', '.join(bad)}: "
                                + "; ".join(UNSUPPORTED_FEATURES[f] for f in bad))
    tpl = template_of(model, opts)
    if tpl.left_out or tpl.unequal:
        names = ", ".join(r for r, _ in tpl.left_out + tpl.unequal)
        why = "; ".join(f"{r}: {w}" for r, w in tpl.left_out + tpl.unequal)
        if strict:
            raise CpumodelError(f"a Firecracker template cannot carry {names}: {why}")
        warnings.warn(f"firecracker: left out {why}", EmitNote, stacklevel=2)
    doc: dict[str, object] = {}
    caps = {c for f in feats or () for c in VCPU_FEATURE_CAPS[f]}
    if tpl.kvm_caps:
        caps.add(CAP_WRITABLE_IMP_ID_REGS)
    if caps:
        doc["kvm_capabilities"] = [str(c) for c in sorted(caps)]
    if feats is not None:
        doc["vcpu_features"] = [{"index": 0, "bitmap": features_bitmap(feats)}]
    doc["reg_modifiers"] = [{"addr": f"{w.register.onereg:#x}", "bitmap": bitmap(w.value, w.mask)}
                            for w in tpl.writes]
    return json.dumps(doc, indent=2) + "\n"
