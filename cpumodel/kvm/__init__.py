"""KVM/arm64's rules for userspace writes to ID registers, per kernel version.

A standalone model (standard library only, no other cpumodel module) of what
``KVM_SET_ONE_REG`` answers for an ID register before a vCPU first runs (and
after), built from data that ``tools/gen_kvm.py`` extracts from the Linux
source of each kernel version::

    from cpumodel.kvm import load_kernel, check_write

    rules = load_kernel("6.12")
    v = check_write(rules, "ID_AA64PFR0_EL1", 0x1101001120110222, host=None,
                    vcpu_features=frozenset({"pmu"}))
    v.status, v.errno, v.reason      # ('depends_on_host', None, 'depends on the host: ...')
"""

from cpumodel.kvm.model import (
    ACCEPTED,
    DEPENDS,
    REJECTED,
    UNMODELLED,
    DefaultsView,
    FieldVerdict,
    HostDependent,
    Partial,
    Verdict,
    check_write,
    check_write_against_defaults,
    field_allowed,
    host_caps_from_vulnerabilities,
    host_view_from_defaults,
    init_check,
    kvm_default,
    kvm_limit,
    prepare_defaults,
    prepare_host,
    rewritten_fields,
    safe_value,
    writable_masks,
)
from cpumodel.kvm.rules import FieldRule, KernelRules, LayoutField, RegisterRules, kernels, load_kernel

__all__ = [
    "ACCEPTED", "DEPENDS", "REJECTED", "UNMODELLED", "DefaultsView", "FieldRule", "FieldVerdict", "HostDependent",
    "KernelRules", "LayoutField", "Partial", "RegisterRules", "Verdict", "check_write",
    "check_write_against_defaults", "field_allowed", "host_caps_from_vulnerabilities",
    "host_view_from_defaults", "init_check", "kernels",
    "kvm_default", "kvm_limit", "load_kernel", "prepare_defaults", "prepare_host", "rewritten_fields", "safe_value",
    "writable_masks",
]
