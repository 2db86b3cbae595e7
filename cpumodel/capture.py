"""``cpumodel capture``: read the ID registers of the arm64 Linux machine cpumodel runs on.

Three sources, each with what the kernel hides or changes (checked against the Linux 7.3 sources):

``sysfs``
    ``/sys/devices/system/cpu/cpuN/regs/identification/{midr_el1,revidr_el1,aidr_el1,smidr_el1}``
    (arch/arm64/kernel/cpuinfo.c; Documentation/arch/arm64/cpu-feature-registers.rst section 2d).
    The raw per-CPU identification registers as the kernel read them, nothing else (aidr_el1 and
    smidr_el1 only on newer kernels; SMIDR_EL1 has SMPS masked).  The CPUs of a big.LITTLE system
    differ, so capture lists them and refuses to pick one unless told to (``cpu=N``).
``mrs``
    Linux's emulation of MRS from EL0, advertised by HWCAP_CPUID
    (Documentation/arch/arm64/cpu-feature-registers.rst sections 3 and 4).  Only Op0=3, Op1=0, CRn=0,
    CRm=0 and 2..7 are emulated; an ID register reads as the system-wide safe value of the fields
    section 4 lists as visible, IMPLEMENTATION DEFINED fields read 0 and every other field reads as
    its safe value, "feature not implemented" for most (cpufeature.c emulate_id_reg(): user_val |
    (sys_val & user_mask)); capture lists those fields as ``unseen``.  MIDR_EL1 is the value of the
    CPU the read ran on; REVIDR_EL1 reads 0.
    The AArch32 registers with CRm=1, CLIDR_EL1 and AIDR_EL1 are not emulated (MRS would raise SIGILL,
    so capture does not try).  CTR_EL0 and DCZID_EL0 are readable at EL0 and read directly.
``kvm``
    The KVM_GET_ONE_REG values of a new VM and vCPU initialised with KVM_ARM_PREFERRED_TARGET and no
    optional vCPU features: the host's system-wide safe values limited to what KVM supports
    (Documentation/virt/kvm/arm/vcpu-features.rst "The ID Registers"; arch/arm64/kvm/sys_regs.c).
    MIDR/REVIDR/AIDR are the boot CPU's, CLIDR_EL1 is made up by KVM from CTR_EL0.

The pure parts (sysfs parsing, instruction encoding, ioctl numbers and structs, YAML output) work
on any machine; the live reads need arm64 Linux.  Standard library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import json
import mmap
import os
import platform
import re
import resource
import signal
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cpumodel import regdb
from cpumodel.el0 import (  # noqa: F401 (re-exported: the EL0 emulation is part of what capture reads)
    EL0_READABLE,
    el0_emulated,
    el0_hidden,
    el0_rules,
    el0_view,
    mrs_emulated,
)
from cpumodel.errors import CpumodelError, Location

if TYPE_CHECKING:
    from cpumodel.yamlout import Writer

#: Source names, and the order ``auto`` tries them in (earlier sources win per register).
SOURCES = ("kvm", "sysfs", "mrs")
DOC_MRS = "Documentation/arch/arm64/cpu-feature-registers.rst"
DOC_KVM = "Documentation/virt/kvm/arm/vcpu-features.rst"


class SourceUnavailable(CpumodelError):
    """A source cannot be read on this machine (``auto`` then tries the next one)."""


# --------------------------------------------------------------------------------------------
# MRS instruction encoding
# --------------------------------------------------------------------------------------------

#: ``ret`` (RET X30).
RET_INSN = 0xD65F03C0


def mrs_insn(op0: int, op1: int, crn: int, crm: int, op2: int, rt: int = 0) -> int:
    """The A64 instruction word of ``MRS X<rt>, S<op0>_<op1>_C<crn>_C<crm>_<op2>``.

    Arm ARM (DDI 0487), A64 MRS: ``1101 0101 0011 o0 op1 CRn CRm op2 Rt`` with o0 = op0 - 2 (MRS
    reaches op0 = 2 or 3 only), i.e. 0xD5300000 | o0<<19 | op1<<16 | CRn<<12 | CRm<<8 | op2<<5 | Rt.
    The same word as the kernel's ``mrs_s`` macro (arch/arm64/include/asm/sysreg.h:
    0xd5200000 | sys_reg(op0, op1, crn, crm, op2) | rt, where sys_reg puts op0 at bit 19).
    """
    for name, value, bits in (("op1", op1, 3), ("CRn", crn, 4), ("CRm", crm, 4), ("op2", op2, 3), ("Rt", rt, 5)):
        if not 0 <= value < (1 << bits):
            raise ValueError(f"MRS {name}={value} does not fit in {bits} bits")
    if op0 not in (2, 3):
        raise ValueError(f"MRS can only read op0=2 or 3 system registers, not op0={op0}")
    return 0xD5300000 | ((op0 - 2) << 19) | (op1 << 16) | (crn << 12) | (crm << 8) | (op2 << 5) | rt


def mrs_stub(encodings: Sequence[tuple[int, int, int, int, int]]) -> bytes:
    """Machine code: one 8-byte function ``mrs x0, <reg>; ret`` per encoding, little-endian."""
    words: list[int] = []
    for enc in encodings:
        words += [mrs_insn(*enc), RET_INSN]
    return struct.pack(f"<{len(words)}I", *words)


# --------------------------------------------------------------------------------------------
# KVM ioctls
# --------------------------------------------------------------------------------------------

# _IOC layout of include/uapi/asm-generic/ioctl.h, which arm64 and x86-64 use:
# nr in bits 0-7, type in 8-15, argument size in 16-29, direction in 30-31 (1 = write, 2 = read).
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _ioc(direction: int, type_: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (type_ << 8) | nr


def _io(type_: int, nr: int) -> int:
    return _ioc(_IOC_NONE, type_, nr, 0)


def _ior(type_: int, nr: int, size: int) -> int:
    return _ioc(_IOC_READ, type_, nr, size)


def _iow(type_: int, nr: int, size: int) -> int:
    return _ioc(_IOC_WRITE, type_, nr, size)


#: struct kvm_one_reg { __u64 id; __u64 addr; } (include/uapi/linux/kvm.h)
KVM_ONE_REG = struct.Struct("=QQ")
#: struct kvm_vcpu_init { __u32 target; __u32 features[7]; } (arch/arm64/include/uapi/asm/kvm.h)
KVM_VCPU_INIT = struct.Struct("=I7I")

# include/uapi/linux/kvm.h (Linux 7.3): KVMIO 0xAE and the ioctls below.
KVMIO = 0xAE
KVM_API_VERSION = 12
KVM_GET_API_VERSION = _io(KVMIO, 0x00)  # _IO(KVMIO, 0x00)
KVM_CREATE_VM = _io(KVMIO, 0x01)  # _IO(KVMIO, 0x01), argument: machine type
KVM_CHECK_EXTENSION = _io(KVMIO, 0x03)  # _IO(KVMIO, 0x03)
KVM_CREATE_VCPU = _io(KVMIO, 0x41)  # _IO(KVMIO, 0x41), argument: vcpu id
KVM_GET_ONE_REG = _iow(KVMIO, 0xAB, KVM_ONE_REG.size)  # _IOW(KVMIO, 0xab, struct kvm_one_reg)
KVM_ARM_VCPU_INIT = _iow(KVMIO, 0xAE, KVM_VCPU_INIT.size)  # _IOW(KVMIO, 0xae, struct kvm_vcpu_init)
KVM_ARM_PREFERRED_TARGET = _ior(KVMIO, 0xAF, KVM_VCPU_INIT.size)  # _IOR(KVMIO, 0xaf, struct kvm_vcpu_init)
KVM_CAP_ARM_VM_IPA_SIZE = 165
KVM_VM_TYPE_ARM_IPA_SIZE_MASK = 0xFF


def pack_one_reg(reg_id: int, addr: int) -> bytes:
    return KVM_ONE_REG.pack(reg_id, addr)


def pack_vcpu_init(target: int, features: Iterable[int] = ()) -> bytes:
    """struct kvm_vcpu_init with the given feature bit numbers set (KVM_ARM_VCPU_*)."""
    words = [0] * 7
    for bit in features:
        words[bit // 32] |= 1 << (bit % 32)
    return KVM_VCPU_INIT.pack(target, *words)


def unpack_vcpu_init(data: bytes) -> tuple[int, list[int]]:
    target, *features = KVM_VCPU_INIT.unpack(data)
    return target, features


# --------------------------------------------------------------------------------------------
# sysfs
# --------------------------------------------------------------------------------------------

SYSFS_CPU_DIR = "sys/devices/system/cpu"
#: file in regs/identification -> register
SYSFS_FILES = {"midr_el1": "MIDR_EL1", "revidr_el1": "REVIDR_EL1", "aidr_el1": "AIDR_EL1",
               "smidr_el1": "SMIDR_EL1"}

#: MIDR_EL1.Implementer codes (arch/arm64/include/asm/cputype.h ARM_CPU_IMP_*).
IMPLEMENTERS = {0x41: "Arm", 0x42: "Broadcom", 0x43: "Cavium", 0x46: "Fujitsu", 0x48: "HiSilicon",
                0x4E: "NVIDIA", 0x50: "APM", 0x51: "Qualcomm", 0x61: "Apple", 0x6D: "Microsoft",
                0xC0: "Ampere"}


def describe_midr(midr: int) -> str:
    """'Arm part 0xd0c r4p1' for MIDR_EL1 0x414fd0c1."""
    imp = (midr >> 24) & 0xFF
    name = IMPLEMENTERS.get(imp, f"implementer {imp:#04x}")
    return f"{name} part {(midr >> 4) & 0xFFF:#05x} r{(midr >> 20) & 0xF}p{midr & 0xF}"


def cpu_list(cpus: Iterable[int]) -> str:
    """'cpu0-3,6' for [0, 1, 2, 3, 6]."""
    nums = sorted(cpus)
    parts: list[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return "cpu" + ",".join(parts)


def _sysfs_base(root: str) -> Path:
    base = Path(root) / SYSFS_CPU_DIR
    if base.is_dir():
        return base
    here = Path(root)  # also accept a saved copy of .../system/cpu itself
    if here.is_dir() and any(re.fullmatch(r"cpu\d+", p.name) for p in here.iterdir()):
        return here
    raise SourceUnavailable(f"sysfs: {base} does not exist")


def parse_sysfs_value(text: str, where: str) -> int | None:
    """A regs/identification file's value ('0x%016llx' by the kernel); None for an empty file."""
    text = text.strip()
    if not text:
        return None  # the kernel prints nothing for a CPU whose registers it has not read yet
    try:
        value = int(text, 16)
    except ValueError:
        raise CpumodelError(f"not a hexadecimal register value: {text[:40]!r}", Location(where)) from None
    if not 0 <= value < 1 << 64:
        raise CpumodelError(f"register value out of range: {text[:40]!r}", Location(where))
    return value


def read_sysfs(root: str = "/") -> dict[int, dict[str, int]]:
    """cpu number -> {register: value} from ``<root>/sys/devices/system/cpu/cpu*/regs/identification``.

    CPUs without that directory (offline, or a kernel older than 4.7) are left out.
    """
    base = _sysfs_base(root)
    cpus: dict[int, dict[str, int]] = {}
    for d in base.iterdir():
        m = re.fullmatch(r"cpu(\d+)", d.name)
        ident = d / "regs" / "identification"
        if not m or not ident.is_dir():
            continue
        values: dict[str, int] = {}
        for fname, reg in SYSFS_FILES.items():
            p = ident / fname
            try:
                text = p.read_text(encoding="ascii", errors="replace")
            except FileNotFoundError:
                continue
            except OSError as e:
                raise CpumodelError(f"cannot read: {e.strerror}", Location(str(p))) from None
            value = parse_sysfs_value(text, str(p))
            if value is not None:
                values[reg] = value
        if "MIDR_EL1" in values:
            cpus[int(m.group(1))] = values
    if not cpus:
        raise SourceUnavailable(f"sysfs: no cpu*/regs/identification/midr_el1 under {base}")
    return dict(sorted(cpus.items()))


def cpu_groups(cpus: dict[int, dict[str, int]]) -> list[tuple[list[int], dict[str, int]]]:
    """CPUs grouped by identical identification values, in CPU order."""
    groups: list[tuple[list[int], dict[str, int]]] = []
    for n, values in cpus.items():
        for members, gvalues in groups:
            if gvalues == values:
                members.append(n)
                break
        else:
            groups.append(([n], values))
    return groups


def describe_groups(groups: list[tuple[list[int], dict[str, int]]]) -> str:
    out = []
    for members, values in groups:
        regs = ", ".join(f"{r}={v:#x}" for r, v in values.items())
        out.append(f"{cpu_list(members)}: {describe_midr(values['MIDR_EL1'])} ({regs})")
    return "; ".join(out)


def select_cpu(cpus: dict[int, dict[str, int]], cpu: int | None) -> dict[str, int]:
    """The identification values of one CPU: ``cpu``, or the only kind there is.

    Raises when the CPUs differ (big.LITTLE) and no CPU was chosen: there is no right answer to pick.
    """
    if cpu is not None:
        if cpu not in cpus:
            raise CpumodelError(f"cpu{cpu} has no identification registers in sysfs "
                                f"(present: {cpu_list(cpus)})")
        return cpus[cpu]
    groups = cpu_groups(cpus)
    if len(groups) > 1:
        raise CpumodelError(f"the CPUs of this system differ, capture will not pick one silently: "
                            f"{describe_groups(groups)}", hint="choose one with --cpu N")
    return groups[0][1]


# --------------------------------------------------------------------------------------------
# MRS emulation (EL0)
# --------------------------------------------------------------------------------------------

AT_HWCAP = 16  # include/uapi/linux/auxvec.h
HWCAP_CPUID = 1 << 11  # arch/arm64/include/uapi/asm/hwcap.h
def mrs_plan(db: regdb.RegisterDB | None = None) -> tuple[list[regdb.Register], dict[str, str]]:
    """(registers the mrs source reads, {register: why it does not read it})."""
    db = db or regdb.load()
    read: list[regdb.Register] = []
    skip: dict[str, str] = {}
    for reg in db:
        op0, op1, crn, crm, _ = reg.encoding
        if reg.name in EL0_READABLE or reg.name == "MIDR_EL1":
            read.append(reg)
        elif reg.name == "REVIDR_EL1":
            skip[reg.name] = (f"the MRS emulation returns 0 for it (IMPLEMENTATION DEFINED; {DOC_MRS} "
                              "section 2d); sysfs has the real value")
        elif mrs_emulated(reg.encoding) and crm != 0:
            read.append(reg)
        elif op0 == 3 and op1 == 0 and crn == 0 and crm == 1:
            skip[reg.name] = (f"CRm=1 is outside the space Linux emulates (Op0=3, Op1=0, CRn=0, CRm=0,2-7; "
                              f"{DOC_MRS} section 3): MRS would raise SIGILL")
        else:
            skip[reg.name] = f"not readable at EL0 and not emulated by Linux ({DOC_MRS} section 3)"
    return read, skip


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def hwcap() -> int:
    """getauxval(AT_HWCAP) of this process."""
    fn = _libc().getauxval
    fn.restype = ctypes.c_ulong
    fn.argtypes = [ctypes.c_ulong]
    return int(fn(AT_HWCAP))


def _exec_page(code: bytes) -> tuple[mmap.mmap, int]:
    """An executable private page holding ``code``; returns (the mapping, its address).

    Written while not executable, then mprotect()ed to read+execute: on arm64 the kernel cleans
    the D-cache and invalidates the I-cache for a page that becomes user-executable
    (arch/arm64/mm/flush.c __sync_icache_dcache), so no explicit cache maintenance is needed.
    """
    size = -(-len(code) // mmap.PAGESIZE) * mmap.PAGESIZE
    page = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                     prot=mmap.PROT_READ | mmap.PROT_WRITE)
    page.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
    mprotect = _libc().mprotect
    mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    mprotect.restype = ctypes.c_int
    if mprotect(addr, size, mmap.PROT_READ | mmap.PROT_EXEC) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mprotect(PROT_EXEC): {os.strerror(err)}")
    return page, addr


def _mrs_child(regs: list[regdb.Register], cpu: int | None, out: int) -> None:
    """In a forked child: run one MRS per register and write 'index value' lines to ``out``."""
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError as e:
            raise OSError(e.errno, f"cannot run on cpu{cpu}: {e.strerror}") from None
    page, addr = _exec_page(mrs_stub([r.encoding for r in regs]))
    fn_type = ctypes.CFUNCTYPE(ctypes.c_uint64)
    for i in range(len(regs)):
        value = fn_type(addr + 8 * i)()
        os.write(out, f"{i} {value:x}\n".encode())
    del page


def _mrs_batch(regs: list[regdb.Register], cpu: int | None) -> tuple[list[int], int]:
    """Run the MRS of ``regs`` in order in a forked child; (values read, child's exit code)."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child only
        status = 0
        try:
            os.close(rfd)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a SIGILL here is an answer, not a crash
            _mrs_child(regs, cpu, wfd)
        except BaseException as e:
            status = 1
            with contextlib.suppress(OSError):
                os.write(wfd, f"error {json.dumps(str(e))}\n".encode())
        finally:
            os._exit(status)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as fh:
        data = fh.read().decode("ascii", "replace")
    _, wstatus = os.waitpid(pid, 0)
    values: list[int] = []
    for line in data.splitlines():
        head, _, rest = line.partition(" ")
        if head == "error":
            raise SourceUnavailable(f"mrs: {json.loads(rest)}")
        values.append(int(rest, 16))
    return values, os.waitstatus_to_exitcode(wstatus)


def mrs_read(regs: list[regdb.Register], cpu: int | None = None) -> tuple[dict[str, int], dict[str, str]]:
    """Execute ``mrs x0, <reg>`` for each register; returns (values, {register: why it gave none}).

    The reads run in a child process, so that a register the kernel (or an emulator such as QEMU
    linux-user, which emulates fewer registers than Linux) does not emulate after all ends in that
    child's SIGILL, not cpumodel's; the child is then restarted after that register.  The child's CPU
    pinning (``cpu``) does not leak into this process either.
    """
    values: dict[str, int] = {}
    refused: dict[str, str] = {}
    start = 0
    while start < len(regs):
        got, code = _mrs_batch(regs[start:], cpu)
        for reg, value in zip(regs[start:], got, strict=False):
            values[reg.name] = value
        start += len(got)
        if code == 0 and start == len(regs):
            break
        if code == -signal.SIGILL and start < len(regs):
            refused[regs[start].name] = "MRS raised SIGILL here: not emulated by this kernel (or emulator)"
            start += 1
            continue
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        raise SourceUnavailable(f"mrs: the reading process failed ({how})")
    return values, refused


# --------------------------------------------------------------------------------------------
# KVM
# --------------------------------------------------------------------------------------------


def _ioctl(fd: int, request: int, arg: int | bytes | bytearray, what: str) -> int:
    """fcntl.ioctl; a bytearray argument is filled in place.  Returns the ioctl's int result (0 for buffers)."""
    try:
        result = fcntl.ioctl(fd, request, arg, True) if isinstance(arg, bytearray) else fcntl.ioctl(fd, request, arg)
    except OSError as e:
        raise SourceUnavailable(f"kvm: {what} failed: {errno.errorcode.get(e.errno or 0, '?')} "
                                f"({e.strerror})") from None
    return result if isinstance(result, int) else 0


def kvm_read(regs: list[regdb.Register], device: str = "/dev/kvm") -> tuple[dict[str, int], dict[str, str], str]:
    """KVM_GET_ONE_REG of each register on a fresh VM + vCPU.

    Returns (values, {register: why KVM did not give it}, what was set up).
    """
    try:
        kvm = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SourceUnavailable(f"kvm: {device} does not exist (no KVM on this kernel, or no "
                                "virtualisation support reachable from here)") from None
    except OSError as e:
        raise SourceUnavailable(f"kvm: cannot open {device}: {e.strerror}"
                                + (" (join the kvm group or run as root)" if e.errno == errno.EACCES else "")
                                ) from None
    fds = [kvm]
    try:
        api = _ioctl(kvm, KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION")
        if api != KVM_API_VERSION:
            raise SourceUnavailable(f"kvm: KVM API version {api}, expected {KVM_API_VERSION}")
        vm_type = 0  # default 40-bit IPA space
        try:
            vm = fcntl.ioctl(kvm, KVM_CREATE_VM, vm_type)
        except OSError:
            # Hosts that cannot do a 40-bit IPA space need the size asked for explicitly
            # (Documentation/virt/kvm/api.rst, KVM_CREATE_VM).
            limit = _ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_VM_IPA_SIZE, "KVM_CHECK_EXTENSION")
            vm_type = limit & KVM_VM_TYPE_ARM_IPA_SIZE_MASK
            if not vm_type:
                raise SourceUnavailable("kvm: KVM_CREATE_VM failed and no IPA size limit is reported") from None
            vm = _ioctl(kvm, KVM_CREATE_VM, vm_type, f"KVM_CREATE_VM({vm_type})")
        fds.append(vm)
        buf = bytearray(KVM_VCPU_INIT.size)
        _ioctl(vm, KVM_ARM_PREFERRED_TARGET, buf, "KVM_ARM_PREFERRED_TARGET")
        target, _ = unpack_vcpu_init(bytes(buf))
        vcpu = _ioctl(vm, KVM_CREATE_VCPU, 0, "KVM_CREATE_VCPU")
        fds.append(vcpu)
        _ioctl(vcpu, KVM_ARM_VCPU_INIT, pack_vcpu_init(target), "KVM_ARM_VCPU_INIT")
        value = ctypes.c_uint64(0)
        values: dict[str, int] = {}
        missing: dict[str, str] = {}
        for reg in regs:
            try:
                fcntl.ioctl(vcpu, KVM_GET_ONE_REG, pack_one_reg(reg.onereg, ctypes.addressof(value)))
            except OSError as e:
                if e.errno == errno.ENOENT:
                    missing[reg.name] = "KVM_GET_ONE_REG: ENOENT (KVM has no such vCPU register)"
                    continue
                raise SourceUnavailable(f"kvm: KVM_GET_ONE_REG {reg.name} failed: {e.strerror}") from None
            values[reg.name] = value.value
        setup = (f"KVM_CREATE_VM type {vm_type}, KVM_ARM_VCPU_INIT target {target} with no optional "
                 "features (so no PMU, SVE, pointer authentication, 32-bit EL1 or nested virtualisation)")
        return values, missing, setup
    finally:
        for fd in reversed(fds):
            os.close(fd)


# --------------------------------------------------------------------------------------------
# Putting the sources together
# --------------------------------------------------------------------------------------------

ABOUT = {
    "sysfs": ("sysfs /sys/devices/system/cpu/cpu*/regs/identification: the per-CPU MIDR_EL1, REVIDR_EL1 "
              f"and AIDR_EL1 as the kernel read them (arch/arm64/kernel/cpuinfo.c; {DOC_MRS} section 2d); "
              "unmodified, identification registers only."),
    "mrs": (f"mrs: Linux's EL0 emulation of MRS, advertised by HWCAP_CPUID ({DOC_MRS} sections 3 and 4). "
            "An ID register reads as the system-wide safe value of the fields section 4 lists as visible; "
            "IMPLEMENTATION DEFINED fields read 0 and all other fields read as their safe value ('not "
            "implemented' for most; cpufeature.c emulate_id_reg()), so the hardware and a KVM guest may have "
            "features these values do not show. MIDR_EL1 is the CPU the read ran on. CTR_EL0 and DCZID_EL0 are "
            "read directly at EL0. Not emulated: the CRm=1 AArch32 registers, CLIDR_EL1, AIDR_EL1; REVIDR_EL1 "
            "reads 0. The hidden fields are listed under 'unseen:', which 'cpumodel check' treats as unknown."),
    "kvm": ("kvm: KVM_GET_ONE_REG defaults of a new VM and vCPU with no optional vCPU features: the host's "
            "system-wide safe ID values limited to what KVM supports and to the vCPU features "
            f"({DOC_KVM} 'The ID Registers'; arch/arm64/kvm/sys_regs.c); the closest capture of what a KVM "
            "guest on this host gets by default. MIDR_EL1/REVIDR_EL1/AIDR_EL1 are the boot CPU's; "
            "KVM makes up CLIDR_EL1 from CTR_EL0 (Linux 7.3 sources; older kernels differ in details)."),
}

NOTE = {
    "sysfs": "regs/identification of {cpu} (raw value)",
    "mrs": f"MRS emulation at EL0 (HWCAP_CPUID): visible fields only, system-wide safe values ({DOC_MRS})",
    "mrs-midr": f"MRS emulation at EL0: MIDR_EL1 of the CPU the read ran on{{pin}} ({DOC_MRS} section 4)",
    "mrs-el0": "read directly by MRS at EL0 (architecturally EL0-readable under Linux)",
    "kvm": "KVM_GET_ONE_REG default of a new vCPU with no optional features",
    "kvm-imp": "KVM_GET_ONE_REG default: the boot CPU's value (arch/arm64/kvm/sys_regs.c reset_imp_id_reg)",
    "kvm-clidr": "KVM_GET_ONE_REG default: made up by KVM from the sanitised CTR_EL0 (sys_regs.c reset_clidr)",
}


@dataclass
class Captured:
    """What ``capture`` read: values per register and where each came from."""

    values: dict[str, int] = field(default_factory=dict)  # register -> value, register-DB order
    origin: dict[str, str] = field(default_factory=dict)  # register -> source name
    notes: dict[str, str] = field(default_factory=dict)  # register -> where exactly it came from
    used: list[str] = field(default_factory=list)  # sources that gave at least one register
    skipped: dict[str, str] = field(default_factory=dict)  # source -> why it was not used
    unread: dict[str, str] = field(default_factory=dict)  # register -> why no source gave it
    caveats: list[str] = field(default_factory=list)  # further remarks for the profile's comments
    cpus: dict[int, dict[str, int]] = field(default_factory=dict)  # sysfs per-CPU values, when read
    host: str = ""  # "Linux 6.12.0 aarch64" or "sysfs tree DIR"
    release: str = ""  # the running kernel's release (uname -r) when captured live
    kvm_setup: str = ""
    #: register -> fields the source that gave it could not see (the MRS emulation hides all but the
    #: FTR_VISIBLE fields): a profile lists them as ``unseen``, and every rule treats them as unknown
    unseen: dict[str, list[str]] = field(default_factory=dict)
    #: /sys/devices/system/cpu/vulnerabilities/<name> -> its text (the host facts registers cannot show)
    vulnerabilities: dict[str, str] = field(default_factory=dict)

    def take(self, db: regdb.RegisterDB, src: str, values: dict[str, int], notes: dict[str, str]) -> None:
        """Record the registers of ``values`` that no earlier source gave."""
        for reg in db:
            if reg.name in values and reg.name not in self.values:
                self.values[reg.name] = values[reg.name]
                self.origin[reg.name] = src
                self.notes[reg.name] = notes[reg.name]

    @property
    def about(self) -> list[str]:
        """What each used source is and what it sanitises."""
        return [ABOUT[s] for s in self.used]


def _is_live(root: str) -> bool:
    return os.path.abspath(root) == "/"


def require_arm64_linux(why: str = "capture reads the ID registers of the machine it runs on") -> None:
    system, machine = platform.system(), platform.machine()
    if system != "Linux" or machine not in ("aarch64", "arm64"):
        raise CpumodelError(f"{why}; this is {machine or 'an unknown machine'} {system or ''}".rstrip()
                            + ", not arm64 Linux; use --sysfs-root DIR for a saved sysfs tree "
                            "(it holds the identification registers MIDR/REVIDR/AIDR only)")


def capture(sources: list[str] | None = None, root: str = "/", cpu: int | None = None) -> Captured:
    """Read the ID registers from ``sources`` (earlier ones win per register; None = auto).

    ``root``: where sysfs is; anything but "/" means a saved tree, which only the sysfs source reads.
    ``cpu``: the CPU whose identification registers to take (sysfs) and to run MRS on.
    Auto: kvm, sysfs, mrs, skipping those this machine cannot give (with --cpu, sysfs comes first,
    so the chosen CPU's identification registers win over KVM's boot-CPU values).
    """
    live = _is_live(root)
    auto = not sources or sources == ["auto"]
    if auto:
        order = (["sysfs", "kvm", "mrs"] if cpu is not None else list(SOURCES)) if live else ["sysfs"]
    else:
        assert sources is not None
        bad = [s for s in sources if s not in SOURCES]
        if bad:
            raise CpumodelError(f"unknown capture source {bad[0]!r}; choose from auto, {', '.join(SOURCES)}")
        order = list(dict.fromkeys(sources))
        if not live and ("mrs" in order or "kvm" in order):
            raise CpumodelError("--sysfs-root reads a saved sysfs tree; the mrs and kvm sources read the "
                                "running machine and cannot be combined with it")
        if cpu is not None and order == ["kvm"]:
            raise CpumodelError("--cpu chooses the CPU for the sysfs and mrs sources; KVM's defaults are "
                                "per VM (its MIDR_EL1 is the boot CPU's)")
    if live:
        require_arm64_linux()
    db = regdb.load()
    out = Captured(host=f"Linux {platform.release()} {platform.machine()}" if live else f"sysfs tree {root}",
                   release=platform.release() if live else "")
    reasons: dict[str, list[str]] = {}
    for src in order:
        try:
            if src == "sysfs":
                _take_sysfs(out, db, root, cpu)
            elif src == "mrs":
                _take_mrs(out, db, root, cpu, reasons)
            else:
                _take_kvm(out, db, reasons)
        except SourceUnavailable as e:
            if not auto:
                raise
            out.skipped[src] = e.message
    if out.origin.get("MIDR_EL1") == "kvm" and len(cpu_groups(out.cpus)) > 1:
        out.caveats.append("this host's CPUs differ; KVM's MIDR_EL1/REVIDR_EL1/AIDR_EL1 defaults are the boot "
                           f"CPU's: {describe_groups(cpu_groups(out.cpus))}")
    out.values = {r.name: out.values[r.name] for r in db if r.name in out.values}
    out.used = [s for s in order if s in out.origin.values()]
    if not out.values:
        why = "; ".join(out.skipped.values()) or "no source gave a register"
        raise CpumodelError(f"capture found nothing to read: {why}")
    for reg in db:
        if reg.name not in out.values:
            out.unread[reg.name] = "; ".join(reasons.get(reg.name, [])) or "no source used reads it"
    out.unseen = mrs_unseen(out, db)
    out.vulnerabilities = read_vulnerabilities(root, out.caveats)
    return out


def _take_sysfs(out: Captured, db: regdb.RegisterDB, root: str, cpu: int | None) -> None:
    out.cpus = read_sysfs(root)
    if all(r in out.values for r in SYSFS_FILES.values() if r in db):
        return  # an earlier source gave them all; the per-CPU values still feed the caveats
    values = select_cpu(out.cpus, cpu)
    if cpu is not None or len(out.cpus) == 1:
        where = f"cpu{cpu if cpu is not None else min(out.cpus)}"
    else:
        where = f"{cpu_list(out.cpus)} (all alike)"
    out.take(db, "sysfs", values, {n: NOTE["sysfs"].format(cpu=where) for n in values})
    if "SMIDR_EL1" in values:
        out.caveats.append(f"sysfs also has SMIDR_EL1 = {values['SMIDR_EL1']:#018x} (SMPS masked by the "
                           "kernel); cpumodel profiles do not model it")


def _take_mrs(out: Captured, db: regdb.RegisterDB, root: str, cpu: int | None,
              reasons: dict[str, list[str]]) -> None:
    if not hwcap() & HWCAP_CPUID:
        raise SourceUnavailable("mrs: the kernel does not advertise HWCAP_CPUID (MRS emulation, Linux 4.11+)")
    regs, skip = mrs_plan(db)
    if cpu is None and "MIDR_EL1" not in out.values:
        try:
            cpus = out.cpus or read_sysfs(root)
        except CpumodelError:
            cpus = {}
        if len(cpu_groups(cpus)) > 1:
            raise CpumodelError("the CPUs of this system differ, and MRS reads MIDR_EL1 of whichever CPU it "
                                f"happens to run on: {describe_groups(cpu_groups(cpus))}",
                                hint="choose one with --cpu N")
    values, refused = mrs_read(regs, cpu)
    for name, why in {**skip, **refused}.items():
        reasons.setdefault(name, []).append(f"mrs: {why}")
    pin = f" (pinned to cpu{cpu})" if cpu is not None else ""
    out.take(db, "mrs", values, {n: NOTE["mrs-midr"].format(pin=pin) if n == "MIDR_EL1"
                                 else NOTE["mrs-el0"] if n in EL0_READABLE else NOTE["mrs"] for n in values})


def _take_kvm(out: Captured, db: regdb.RegisterDB, reasons: dict[str, list[str]]) -> None:
    values, missing, out.kvm_setup = kvm_read(list(db))
    for name, why in missing.items():
        reasons.setdefault(name, []).append(f"kvm: {why}")
    out.take(db, "kvm", values, {n: NOTE["kvm-imp"] if n in ("MIDR_EL1", "REVIDR_EL1", "AIDR_EL1")
                                 else NOTE["kvm-clidr"] if n == "CLIDR_EL1" else NOTE["kvm"] for n in values})


# --------------------------------------------------------------------------------------------
# What registers cannot show: hidden fields, vulnerabilities
# --------------------------------------------------------------------------------------------

#: The files of /sys/devices/system/cpu/vulnerabilities/ a profile records (``profile.VULNERABILITIES``):
#: cpu_show_spectre_v2(), cpu_show_spec_store_bypass() (arch/arm64/kernel/proton-pack.c) and
#: cpu_show_meltdown() (arch/arm64/kernel/cpufeature.c), Documentation/ABI/testing/sysfs-devices-system-cpu.
VULNERABILITY_FILES = ("spectre_v2", "meltdown", "spec_store_bypass")
MAX_VULNERABILITY_CHARS = 200  # the kernel's texts are under 100 characters


def mrs_unseen(captured: Captured, db: regdb.RegisterDB) -> dict[str, list[str]]:
    """register -> the fields the MRS emulation hid, for every register the ``mrs`` source gave.

    The emulation shows only the FTR_VISIBLE fields of each ID register (cpu-feature-registers.rst section 4, as the
    ``arm64_ftr_bits`` tables of the running kernel's line mark them, else the newest line's); every
    other field reads as its safe value ("not implemented" for most), whatever the hardware has.
    MIDR_EL1 (the CPU the read ran on) and the EL0-readable CTR_EL0/DCZID_EL0 are whole.
    """
    names = [n for n, src in captured.origin.items() if src == "mrs" and n != "MIDR_EL1" and n not in EL0_READABLE]
    if not names:
        return {}
    return el0_hidden(names, el0_rules(captured.release))


def read_vulnerabilities(root: str, caveats: list[str]) -> dict[str, str]:
    """name -> text of ``<root>/sys/devices/system/cpu/vulnerabilities/<name>`` for the files a profile
    records; a missing directory or file is left out (unknown), with a caveat saying so."""
    try:
        base = _sysfs_base(root) / "vulnerabilities"
    except SourceUnavailable:
        base = Path(root) / SYSFS_CPU_DIR / "vulnerabilities"
    out: dict[str, str] = {}
    for name in VULNERABILITY_FILES:
        p = base / name
        try:
            text = p.read_text(encoding="utf-8", errors="replace").strip()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise CpumodelError(f"cannot read: {e.strerror}", Location(str(p))) from None
        if not text or len(text) > MAX_VULNERABILITY_CHARS or not text.isprintable():
            caveats.append(f"{p} is not one line of text; {name} left unknown")
            continue
        out[name] = text
    for name in VULNERABILITY_FILES:
        if name not in out:
            caveats.append(f"{name}: not in {base}; left unknown (KVM's CSV2/CSV3 verdicts and its firmware "
                           "workaround levels depend on it)")
    return out


# --------------------------------------------------------------------------------------------
# Profile YAML
# --------------------------------------------------------------------------------------------


def _digits(name: str, value: int) -> int:
    return 16 if name.startswith("ID_AA64") or value >> 32 else 8


def _host_facts_yaml(w: Writer, captured: Captured) -> None:
    """``vulnerabilities:`` and ``unseen:``: what the captured registers cannot show."""
    if captured.vulnerabilities:
        w.comment("Host facts the registers cannot show (/sys/devices/system/cpu/vulnerabilities):")
        w.mapping("vulnerabilities")
        for vname, text in captured.vulnerabilities.items():
            w.value(vname, text, indent=2)
    if captured.unseen:
        w.comment("Fields the source could not see (read as 'not implemented'): unknown, not 0:")
        w.mapping("unseen")
        for reg, names in captured.unseen.items():
            w.flow(reg, names, indent=2)


def capture_role(captured: Captured) -> tuple[str, str]:
    """(``role``, ``origin``) of a capture, by what its ID registers are.

    With the ``kvm`` source they are KVM's view of a VM on this host (sys_regs.c
    kvm_read_sanitised_id_reg; earlier sources win per register, so the few registers another
    source may add are EL0-readable ones KVM does not sanitise): ``role: guest``,
    ``origin: kvm-defaults``, as ``cpumodel defaults`` writes. Without it they are the CPU's own
    registers as its kernel shows them (sysfs: raw; MRS: the system-wide safe values, hidden
    fields listed as ``unseen``): ``role: host``, ``origin: cpu``.
    """
    if "kvm" in captured.used:
        return "guest", "kvm-defaults"
    return "host", "cpu"


def _kvm_view_only(w: Writer, captured: Captured) -> Captured:
    """``captured`` without the registers KVM did not give. KVM's view holds what KVM gives a VM; a
    register KVM has no one-reg for (DCZID_EL0, or one the running kernel does not know) is no part
    of it, as in 'cpumodel defaults', and a VMM could not write it: said in a comment, not listed."""
    kept = {r: v for r, v in captured.values.items() if captured.origin[r] == "kvm"}
    for reg, value in captured.values.items():
        if reg not in kept:
            w.wrapped(f"{reg} = {value:#x} ({captured.origin[reg]}: {captured.notes[reg]}) left out: not "
                      "a KVM vCPU register (KVM_GET_ONE_REG gave none)")
    return dataclasses.replace(captured, values=kept, unseen={r: f for r, f in captured.unseen.items() if r in kept})


def to_profile_yaml(captured: Captured, name: str) -> str:
    """A cpumodel profile of the captured values, saying in ``source``, ``sources`` and comments
    which source each value came from and what that source hides."""
    from cpumodel.yamlout import Writer

    w = Writer()
    w.comment(f"Captured by `cpumodel capture` on {captured.host}.")
    w.comment("What the sources used give and hide:")
    for about in captured.about:
        w.wrapped(about)
    if captured.kvm_setup and "kvm" in captured.used:
        w.wrapped(f"kvm set-up: {captured.kvm_setup}.")
    for remark in captured.caveats:
        w.wrapped(remark)
    for why in captured.skipped.values():
        w.wrapped(f"not used: {why}")
    if captured.unread:
        w.comment("Not captured (a profile without them leaves them to the VMM / KVM):")
        by_reason: dict[str, list[str]] = {}
        for reg, why in captured.unread.items():
            by_reason.setdefault(why, []).append(reg)
        for why, regs in by_reason.items():
            w.wrapped(f"{', '.join(regs)}: {why}")
    midr = captured.values.get("MIDR_EL1")
    what = f"{describe_midr(midr)}, " if midr is not None else ""
    w.value("name", name)
    role, origin = capture_role(captured)
    if origin == "kvm-defaults":
        w.comment("KVM's view of a new VM on this host (KVM_GET_ONE_REG), as 'cpumodel defaults' writes it:")
        w.comment("a model a VMM can write back, and a --host whose values already are KVM's.")
    else:
        w.comment("This CPU as its kernel shows it (sysfs / EL0 MRS emulation): a real CPU, architecture rules")
        w.comment("only; a --host whose values KVM sanitises as it does the CPU's own.")
    w.word("role", role)
    w.word("origin", origin)
    w.value("description", f"Captured from this machine ({what}{captured.host})")
    sanitised = {
        "kvm": "kvm (KVM_GET_ONE_REG defaults of a new vCPU with no optional features: sanitised to what "
               "KVM exposes)",
        "mrs": f"mrs (Linux EL0 MRS emulation: only user-visible fields, system-wide safe values; others "
               f"read as not implemented, per {DOC_MRS})",
        "sysfs": "sysfs (raw per-CPU identification registers)",
    }
    w.value("source", f"cpumodel capture on {captured.host}; " + "; ".join(sanitised[s] for s in captured.used))
    if captured.release:
        w.comment("The running kernel (uname -r): --kernel host, or no --kernel, picks its KVM rule set.")
        w.value("kernel_release", captured.release)
    if "kvm" in captured.used:
        w.comment("The KVM values are those of a vCPU initialised without optional features:")
        w.flow("vcpu_features", [])
    if origin == "kvm-defaults":
        captured = _kvm_view_only(w, captured)
    kept = captured.values
    _host_facts_yaml(w, captured)
    w.mapping("registers")
    for reg, value in kept.items():
        w.hex(reg, value, indent=2, digits=_digits(reg, value))
    w.mapping("sources")
    for reg in kept:
        w.value(reg, f"{captured.origin[reg]}: {captured.notes[reg]}", indent=2)
    return w.text()


def summary(captured: Captured) -> str:
    """One line for the terminal: how many registers from which sources."""
    counts = {s: sum(1 for o in captured.origin.values() if o == s) for s in captured.used}
    text = f"captured {len(captured.values)} registers (" + ", ".join(f"{s}: {n}" for s, n in counts.items()) + ")"
    if captured.skipped:
        text += "; not used: " + "; ".join(captured.skipped.values())
    return text
