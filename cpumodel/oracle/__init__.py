"""The real-KVM oracle: record what an actual arm64 KVM answers to ID register writes.

An unmodified Debian arm64 kernel boots under ``qemu-system-aarch64`` (TCG,
``-M virt,virtualization=on,gic-version=3``) so that it runs at EL2 and has /dev/kvm;
a small static probe (probe.c) is its /init and does what a VMM does (KVM_CREATE_VM,
KVM_ARM_VCPU_INIT with vCPU features, KVM_GET/SET_ONE_REG, KVM_ARM_GET_REG_WRITABLE_MASKS,
KVM_RUN), printing JSON lines that are turned into a :class:`Recording`.

Typical use::

    from cpumodel.oracle import generate_cases, get_kernel, run_cases, save_recording
    k = get_kernel("6.12")
    rec = run_cases(k.image, "max", generate_cases(), kernel=k)
    save_recording(rec, Path("out.json.gz"))

Importing this package has no side effects (nothing is run, downloaded or compiled).
Host tools (Debian packages): qemu-system-arm, gcc-aarch64-linux-gnu,
libc6-dev-arm64-cross; apt for kernels.
"""

from cpumodel.oracle.cases import (
    DEFAULT_FEATURE_SETS,
    FEATURES,
    UNCHANGED,
    Case,
    FeatureSet,
    FieldValue,
    feature_key,
    generate_cases,
    read_cases,
    write_cases,
)
from cpumodel.oracle.errors import BootTimeout, KernelNotFound, OracleError, ProbeCrash, ToolMissing
from cpumodel.oracle.kernel import KernelInfo, default_cache_dir, get_kernel
from cpumodel.oracle.recording import (
    SCHEMA,
    CaseResult,
    FeatureSetRecord,
    Recording,
    compare_recordings,
    load_recording,
    save_recording,
)
from cpumodel.oracle.runner import run_cases
from cpumodel.oracle.sysregs import ORACLE_REGISTERS, one_reg_id, sysreg_name

__all__ = [
    "DEFAULT_FEATURE_SETS",
    "FEATURES",
    "ORACLE_REGISTERS",
    "SCHEMA",
    "UNCHANGED",
    "BootTimeout",
    "Case",
    "CaseResult",
    "FeatureSet",
    "FeatureSetRecord",
    "FieldValue",
    "KernelInfo",
    "KernelNotFound",
    "OracleError",
    "ProbeCrash",
    "Recording",
    "ToolMissing",
    "compare_recordings",
    "default_cache_dir",
    "feature_key",
    "generate_cases",
    "get_kernel",
    "load_recording",
    "one_reg_id",
    "read_cases",
    "run_cases",
    "save_recording",
    "sysreg_name",
    "write_cases",
]
