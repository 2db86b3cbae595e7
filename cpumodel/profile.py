"""Load step: a YAML profile file -> ``Profile`` (requested values + where each was written).

Profile format (JSON Schema: ``data/profile.schema.json``)::

    name: my-model                  # optional; defaults to the file name
    role: guest                     # guest (default): a model a VMM writes with KVM_SET_ONE_REG, checked
                                    # against all rules; host: a physical CPU as its kernel sees it,
                                    # checked against architecture rules only (not inherited)
    description: ...                # optional
    source: ...                     # optional: where the values come from
    base: neoverse-n1               # optional: a profile name or a path (relative to this file)
    arch: v8Ap2                     # optional: architecture version asserted (also armv8.2-a)
    registers:
      ID_AA64ISAR0_EL1: 0x0000100010211120        # raw 64-bit value
      ID_AA64PFR0_EL1: {SVE: IMP, FP: 1}         # by field: named or numeric values
    features: [+FEAT_SVE, -FEAT_SHA3]              # by feature
    vcpu_features: [pmu, sve]       # optional: KVM_ARM_VCPU_INIT features the VMM will set
    kvm_caps: [writable_imp_id_regs]  # optional: VM capabilities the VMM enables (KVM_ENABLE_CAP)
    origin: cpu                     # what the values are: cpu (default for role: host: the CPU's registers
                                    # as its kernel sanitises them) or kvm-defaults (KVM's view of a VM
                                    # on that host: 'cpumodel defaults', 'cpumodel capture' from /dev/kvm)
    vulnerabilities: {spectre_v2: "Not affected", meltdown: "Vulnerable"}  # host facts, as
                                    # /sys/devices/system/cpu/vulnerabilities/* reports them
    host_registers:                 # origin: kvm-defaults: raw host fields KVM hides from its view
      ID_AA64PFR0_EL1: {MPAM: 0}
    unseen: {ID_AA64MMFR2_EL1: [TTL]}  # fields the capture could not see (unknown, not 0); or
                                    # unseen: el0-mrs (read by MRS at EL0 under Linux: every field the
                                    # kernel's emulation hides, per kernel_release's line, else the newest)
    firmware: {PSCI_VERSION: 0x10001, SMCCC_ARCH_WORKAROUND_3: 1}  # KVM firmware pseudo-registers
                                    # (fw-pseudo-registers.rst) the VMM restores, by name
    ignore: [A001, ARCH-FEAT_SVE-*]  # optional: rule IDs or patterns to silence
    sources: {ID_AA64PFR0_EL1: "..."}   # optional: per-register source notes
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from pathlib import Path

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from cpumodel import regdb
from cpumodel.errors import CpumodelError, Location, suggest
from cpumodel.records import record
from cpumodel.yamlsrc import (
    BOOL_TAG,
    NULL_TAG,
    STR_TAG,
    compose,
    describe,
    int_too_long,
    loc,
    parse_int,
    read_text,
    shown,
)

ROLES = ("guest", "host")
TOP_KEYS = ("name", "description", "source", "role", "base", "arch", "registers", "features",
            "vcpu_features", "kvm_caps", "origin", "vulnerabilities", "host_registers", "unseen", "ignore",
            "sources", "kernel_release", "firmware")
VCPU_FEATURES = ("pmu", "sve", "ptrauth", "el1_32bit")
#: VM capabilities a VMM enables with KVM_ENABLE_CAP that change KVM's ID-register verdicts.
KVM_CAPS = ("writable_imp_id_regs",)
#: What a profile's values are: a CPU's own registers, or KVM's view of a VM on that CPU.
ORIGINS = ("cpu", "kvm-defaults")
#: ``unseen: el0-mrs``: the registers were read with MRS at EL0 under Linux (HWCAP_CPUID), so every field
#: the emulation hides (all but the FTR_VISIBLE ones of the kernel line's arm64_ftr_bits) is unseen.
UNSEEN_EL0 = "el0-mrs"
#: Host facts the ID registers cannot show: the files of /sys/devices/system/cpu/vulnerabilities/
#: that KVM's verdicts depend on (arm64_get_spectre_v2_state(), arm64_get_meltdown_state(), and
#: arm64_get_spectre_v4_state() for SMCCC_ARCH_WORKAROUND_2: cpu_show_spec_store_bypass()).
VULNERABILITIES = ("spectre_v2", "meltdown", "spec_store_bypass")
#: Longest name accepted for an architecture version, feature, vCPU feature or ignore entry
#: (the longest real one is under 40), and for a base: reference (PATH_MAX on Linux).
MAX_NAME_CHARS = 256
MAX_BASE_CHARS = 4096


@record
class FieldValue:
    """A field value as a profile gives it, with its location."""

    field: str  # canonical field name
    value: int
    loc: Location


@record
class RegisterSpec:
    """A register as a profile gives it: a raw value and/or field values."""

    name: str  # canonical register name
    loc: Location
    raw: int | None = None
    fields: dict[str, FieldValue] = field(default_factory=dict)


@record
class Profile:
    """A profile file as read (before resolving its base)."""

    path: str
    name: str
    loc: Location
    description: str = ""
    source: str = ""
    role: str = "guest"
    base: tuple[str, Location] | None = None
    arch: tuple[str, Location] | None = None
    registers: dict[str, RegisterSpec] = field(default_factory=dict)
    features: list[tuple[str, bool, Location]] = field(default_factory=list)
    vcpu_features: list[tuple[str, Location]] | None = None
    kvm_caps: list[tuple[str, Location]] | None = None
    origin: tuple[str, Location] | None = None
    vulnerabilities: dict[str, tuple[str, Location]] = field(default_factory=dict)
    host_registers: dict[str, RegisterSpec] = field(default_factory=dict)
    unseen: dict[str, tuple[list[str], Location]] = field(default_factory=dict)  # register -> fields not seen
    ignore: list[tuple[str, Location]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    kernel_release: str = ""  # the host's `uname -r`, recorded by capture (--kernel host)
    firmware: dict[str, tuple[int, Location]] = field(default_factory=dict)  # firmware pseudo-registers
    # registers: entries that are real system registers outside the CPU model (sysregs.py): name -> where
    # given. Never checked nor emitted; rule P004 reports each.
    system_registers: dict[str, Location] = field(default_factory=dict)


def load(path: str | Path, *, referenced: bool = False) -> Profile:
    """Read and parse one profile file. Raises CpumodelError with file:line on any problem.

    ``referenced``: the file was named by another profile (``base:``), not by the user. Until it
    is seen to be a profile (a mapping whose keys are all profile keys), a problem is reported
    without quoting anything from it: a hostile ``base:`` must not print another file's content.
    """
    p = str(path)
    if not referenced:
        return parse(compose(read_text(p), p), p)
    try:
        node = compose(read_text(p), p)
    except CpumodelError as e:
        raise _not_a_profile(p, e.location, "cannot be read as YAML here") from None
    if not (isinstance(node, MappingNode)
            and all(isinstance(k, ScalarNode) and k.value in TOP_KEYS for k, _ in node.value)):
        raise _not_a_profile(p, None, "not a cpumodel profile")
    return parse(node, p)


def _not_a_profile(path: str, where: Location | None, what: str) -> CpumodelError:
    return CpumodelError(f"base profile {what} (nothing from the file is shown; run 'cpumodel check' on it)",
                         Location(path, where.line if where and where.file == path else 0))


def parse(node: Node | None, path: str) -> Profile:
    if node is None or (isinstance(node, ScalarNode) and node.tag == NULL_TAG):  # also '---' or '~' alone
        raise CpumodelError("empty profile (expected a mapping with at least 'registers', "
                            "'base', 'arch' or 'features')", Location(path, 1))
    if not isinstance(node, MappingNode):
        # Say what it is, not what it holds: the file may be anything (a secret, a log).
        kind = "a list" if isinstance(node, SequenceNode) else "a single value"
        raise CpumodelError(f"a profile must be a mapping, not {kind}",
                            loc(path, node))
    # The default name is the file name, made valid Unicode: non-UTF-8 bytes in a file name
    # (surrogate escapes in Python) could not be written to a UTF-8 output or a YAML file.
    stem = Path(path).stem.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    prof = Profile(path=path, name=stem, loc=loc(path, node))
    db = regdb.load()
    for knode, vnode in node.value:
        key = _key(knode, path)
        read = _READERS.get(key)
        if read is None:
            raise CpumodelError(f"unknown key {shown(key)}", loc(path, knode),
                                hint=suggest(key, TOP_KEYS) or f"expected one of: {', '.join(TOP_KEYS)}")
        if key == "registers":
            prof.registers = _registers(vnode, path, db, prof.system_registers)
            continue
        setattr(prof, key, read(vnode, path, db))
    return prof


def _role(node: Node, path: str) -> str:
    role = _name(node, path, "role").strip().lower()
    if role not in ROLES:
        raise CpumodelError(f"role: {shown(role)} is not one of {', '.join(ROLES)}", loc(path, node),
                            hint=suggest(role, ROLES))
    return role


def _host_registers(node: Node, path: str, db: regdb.RegisterDB) -> dict[str, RegisterSpec]:
    """Registers given by field only: the fields KVM hides from its view of the host."""
    specs = _registers(node, path, db)
    raw = [s for s in specs.values() if s.raw is not None]
    if raw:
        raise CpumodelError(f"host_registers: give {raw[0].name} by field (the fields KVM hides), "
                            "not as a raw value", raw[0].loc)
    return specs


def _firmware(node: Node, path: str) -> dict[str, tuple[int, Location]]:
    from cpumodel.kvm.firmware import NAMES, canonical

    if not isinstance(node, MappingNode):
        raise CpumodelError(f"firmware: expected a mapping of firmware pseudo-registers ({', '.join(NAMES)}) "
                            f"to values, got {describe(node)}", loc(path, node))
    out: dict[str, tuple[int, Location]] = {}
    for k, v in node.value:
        raw = _key(k, path)
        name = canonical(raw)
        if name is None:
            raise CpumodelError(f"firmware: unknown firmware register {shown(raw)}", loc(path, k),
                                hint=suggest(raw.upper(), NAMES) or f"expected one of: {', '.join(NAMES)}")
        if name in out:
            raise CpumodelError(f"firmware: {name} given twice", loc(path, k))
        value = _number(v, path, f"firmware.{name}")
        if value is None or not 0 <= value < 1 << 64:
            raise CpumodelError(f"firmware.{name}: expected a 64-bit unsigned integer, got {describe(v)}",
                                loc(path, v))
        out[name] = (value, loc(path, v))
    return out


def _key(node: Node, path: str) -> str:
    if not isinstance(node, ScalarNode) or node.tag == NULL_TAG:
        raise CpumodelError(f"mapping keys must be names, not {describe(node)}", loc(path, node))
    return str(node.value)


def _string(node: Node, path: str, what: str) -> str:
    if not isinstance(node, ScalarNode) or node.tag in (NULL_TAG, BOOL_TAG):
        raise CpumodelError(f"{what}: expected a string, got {describe(node)}", loc(path, node))
    return str(node.value)


def _name(node: Node, path: str, what: str, limit: int = MAX_NAME_CHARS) -> str:
    """A string that names something (a feature, a rule, a profile): bounded in length, so no
    lookup or 'did you mean' search ever works on a megabyte-long name."""
    text = _string(node, path, what)
    if len(text) > limit:
        raise CpumodelError(f"{what}: {shown(text)} is too long for a name (limit {limit} characters)",
                            loc(path, node))
    return text


def _seq(node: Node, path: str, what: str) -> list[Node]:
    if isinstance(node, ScalarNode) and node.tag == NULL_TAG:
        return []
    if not isinstance(node, SequenceNode):
        raise CpumodelError(f"{what}: expected a list, got {describe(node)}", loc(path, node))
    return list(node.value)


def _feature(node: Node, path: str) -> tuple[str, bool, Location]:
    text = _name(node, path, "features entry").strip()
    on = True
    if text and text[0] in "+-":
        on, text = text[0] == "+", text[1:].strip()
    if not text:
        raise CpumodelError("features entry: empty feature name", loc(path, node))
    return text, on, loc(path, node)


def _vcpu_feature(node: Node, path: str) -> tuple[str, Location]:
    text = _name(node, path, "vcpu_features entry").strip().lower()
    if text not in VCPU_FEATURES:
        raise CpumodelError(f"unknown vCPU feature {shown(text)}", loc(path, node),
                            hint=suggest(text, VCPU_FEATURES) or f"expected one of {', '.join(VCPU_FEATURES)}")
    return text, loc(path, node)


def _choice(node: Node, path: str, what: str, choices: tuple[str, ...]) -> tuple[str, Location]:
    text = _name(node, path, what).strip().lower()
    if text not in choices:
        raise CpumodelError(f"{what}: {shown(text)} is not one of {', '.join(choices)}", loc(path, node),
                            hint=suggest(text, choices))
    return text, loc(path, node)


def _vulnerabilities(node: Node, path: str) -> dict[str, tuple[str, Location]]:
    if not isinstance(node, MappingNode):
        raise CpumodelError(f"vulnerabilities: expected a mapping of {', '.join(VULNERABILITIES)} to what "
                            f"/sys/devices/system/cpu/vulnerabilities/<name> says, got {describe(node)}",
                            loc(path, node))
    out: dict[str, tuple[str, Location]] = {}
    for k, v in node.value:
        name = _key(k, path).strip().lower()
        if name not in VULNERABILITIES:
            raise CpumodelError(f"vulnerabilities: unknown entry {shown(name)}", loc(path, k),
                                hint=suggest(name, VULNERABILITIES) or f"expected {', '.join(VULNERABILITIES)}")
        if name in out:
            raise CpumodelError(f"vulnerabilities: {name} given twice", loc(path, k))
        out[name] = (_name(v, path, f"vulnerabilities.{name}"), loc(path, v))
    return out


def _unseen(node: Node, path: str, db: regdb.RegisterDB) -> dict[str, tuple[list[str], Location]]:
    if isinstance(node, ScalarNode) and node.tag == STR_TAG and node.value.strip().lower() == UNSEEN_EL0:
        return {UNSEEN_EL0: ([], loc(path, node))}  # resolved against the kernel's tables (resolve.py)
    if not isinstance(node, MappingNode):
        raise CpumodelError(f"unseen: expected a mapping of registers to lists of fields, or {UNSEEN_EL0} "
                            f"(every field Linux's EL0 MRS emulation hides), got {describe(node)}",
                            loc(path, node))
    out: dict[str, tuple[list[str], Location]] = {}
    for k, v in node.value:
        canon = _register_name(k, path, db, "unseen: ")
        assert canon is not None
        reg = db.registers[canon]
        fields = []
        for n in _seq(v, path, f"unseen.{canon}"):
            f = reg.find_field(_name(n, path, "unseen field"))
            if f is None:
                raise CpumodelError(f"unseen: {canon} has no field {shown(n.value)}", loc(path, n),
                                    hint=suggest(str(n.value), [x.name for x in reg.named_fields]))
            fields.append(f.name)
        out[canon] = (fields, loc(path, k))
    return out


def _register_name(node: Node, path: str, db: regdb.RegisterDB, prefix: str = "",
                   system: dict[str, Location] | None = None) -> str | None:
    """The canonical name of the register a mapping key names (any spelling ``db`` knows). With ``system``,
    a real system register outside the CPU model (``sysregs.lookup``) is recorded there and None returned."""
    name = _key(node, path)
    canon = db.canonical(name)
    if canon is not None:
        return canon
    if len(name) <= MAX_NAME_CHARS:
        from cpumodel import sysregs  # only on this path: a name the register database does not know

        real = sysregs.lookup(name)
        if real is not None and system is not None:
            if real.name in system:
                raise CpumodelError(f"register {real.name} given twice (first at line {system[real.name].line})",
                                    loc(path, node))
            system[real.name] = loc(path, node)
            return None
        if real is not None:
            raise CpumodelError(f"{prefix}{shown(name)} is a system register outside the CPU model "
                                "(cpumodel knows none of its fields)", loc(path, node),
                                hint="only ID registers can be given here")
    # An exact system-register name wins over a 'did you mean' (MPIDR_EL1 is close to MIDR_EL1): that
    # similarity is loose; a name that is neither stays an error, with the nearest ID register.
    hint = suggest(name, list(db.registers))
    if hint is None and len(name) <= MAX_NAME_CHARS:
        from cpumodel import sysregs

        near = suggest(name, sysregs.names())
        hint = f"{near} (a system register outside the CPU model, ignored)" if near else None
    raise CpumodelError(f"{prefix}unknown register {shown(name)}", loc(path, node), hint=hint)


def _sources(node: Node, path: str, db: regdb.RegisterDB) -> dict[str, str]:
    if not isinstance(node, MappingNode):
        raise CpumodelError(f"sources: expected a mapping, got {describe(node)}", loc(path, node))
    return {_key(k, path): _string(v, path, f"sources.{k.value}") for k, v in node.value}


def _registers(node: Node, path: str, db: regdb.RegisterDB,
               system: dict[str, Location] | None = None) -> dict[str, RegisterSpec]:
    """The ID registers of a ``registers:`` mapping; with ``system``, the real system registers outside
    the CPU model it also holds (MPIDR_EL1, CNTFRQ_EL0, ...: a dump's) go there, their values checked
    as 64-bit integers and then dropped."""
    if isinstance(node, ScalarNode) and node.tag == NULL_TAG:
        return {}
    if not isinstance(node, MappingNode):
        raise CpumodelError(f"registers: expected a mapping of register names to values, got {describe(node)}",
                            loc(path, node))
    out: dict[str, RegisterSpec] = {}
    for knode, vnode in node.value:
        canon = _register_name(knode, path, db, system=system)
        if canon is None:  # a system register outside the model: recorded in ``system``
            assert system is not None
            _system_register_value(next(reversed(system)), vnode, path)
            continue
        if canon in out:
            raise CpumodelError(f"register {canon} given twice (first at line {out[canon].loc.line})",
                                loc(path, knode))
        reg = db.registers[canon]
        spec = RegisterSpec(canon, loc(path, knode))
        if isinstance(vnode, MappingNode):
            for fk, fv in vnode.value:
                fname = _key(fk, path)
                f = reg.find_field(fname)
                if f is None:
                    raise CpumodelError(f"{canon} has no field {shown(fname)}", loc(path, fk),
                                        hint=suggest(fname, [x.name for x in reg.named_fields]))
                if f.name in spec.fields:
                    raise CpumodelError(f"field {canon}.{f.name} given twice", loc(path, fk))
                spec.fields[f.name] = FieldValue(f.name, field_value(f, fv, path), loc(path, fv))
        else:
            spec.raw = register_value(reg, vnode, path)
        out[canon] = spec
    return out


def _system_register_value(name: str, vnode: Node, path: str) -> None:
    """A system register outside the model (``name``: as Linux names it) is given as a dump gives it:
    one 64-bit value."""
    if isinstance(vnode, MappingNode):
        raise CpumodelError(f"{name} is a system register outside the CPU model: cpumodel knows none of its "
                            "fields; give its raw value (it is ignored)", loc(path, vnode))
    value = _number(vnode, path, name)
    if value is None or not 0 <= value < 1 << 64:
        raise CpumodelError(f"{name}: expected a 64-bit unsigned integer, got {describe(vnode)}", loc(path, vnode))


def _number(node: Node, path: str, what: str) -> int | None:
    """The integer a scalar spells, None if it is a string that is not a number."""
    if not isinstance(node, ScalarNode) or node.tag in (NULL_TAG, BOOL_TAG):
        raise CpumodelError(f"{what}: expected an integer, got {describe(node)}"
                            + (" (YAML reads yes/no/on/off/true/false as booleans)"
                               if node.tag == BOOL_TAG else ""), loc(path, node))
    value = parse_int(str(node.value))
    if value is None and int_too_long(str(node.value)):
        raise CpumodelError(f"{what}: a {len(str(node.value).strip())}-character number is far too large "
                            "(register values are 64-bit)", loc(path, node))
    if value is None and node.tag != STR_TAG:
        raise CpumodelError(f"{what}: {shown(node.value)} is not an integer (accepted: 42, 0x2a, 0b101010, "
                            "0o52, with optional '_' between digits)", loc(path, node))
    return value


def register_value(reg: regdb.Register, node: Node, path: str) -> int:
    value = _number(node, path, reg.name)
    if value is None:
        raise CpumodelError(f"{reg.name}: expected an integer or a mapping of fields, got {shown(node.value)}",
                            loc(path, node))
    if value < 0:
        raise CpumodelError(f"{reg.name}: negative value {shown(node.value)} (register values are unsigned)",
                            loc(path, node))
    if value >> 64:
        raise CpumodelError(f"{reg.name}: {shown(node.value)} does not fit in 64 bits", loc(path, node))
    return value


def field_value(f: regdb.Field, node: Node, path: str) -> int:
    what = f.qualname
    value = _number(node, path, what)
    if value is None:  # a name: an enum value of this field
        text = str(node.value)
        value = f.lookup_value(text)
        if value is None:
            names = sorted(f.values.values())
            raise CpumodelError(f"{what}: unknown value name {shown(text)}", loc(path, node),
                                hint=suggest(text, names) or (f"named values: {', '.join(names)}" if names
                                                              else "this field has no named values"))
        return value
    width = f.width
    if value < 0:
        if not f.signed:
            raise CpumodelError(f"{what}: negative value {value} for an unsigned field", loc(path, node))
        if value < -(1 << (width - 1)):
            raise CpumodelError(f"{what}: {value} is below the signed {width}-bit range", loc(path, node))
        return value & ((1 << width) - 1)
    if value >> width:
        # Some value names are numbers (PARANGE '40', ASIDBITS '16'); a number always means the
        # field value, but say which value the name stands for.
        named = f.lookup_value(str(node.value).strip())
        hint = (f"the value named {str(node.value).strip()!r} is {named:#x}: write {named:#x}"
                if named is not None else None)
        raise CpumodelError(f"{what}: {shown(node.value)} does not fit the {width}-bit field "
                            f"(bits {f.msb}:{f.lsb}; maximum {(1 << width) - 1:#x})", loc(path, node), hint=hint)
    return value


#: How each top-level key is read: (value node, path, register database) -> the ``Profile``
#: attribute of the same name. The keys are ``TOP_KEYS`` (the schema's, tools/gen_schema.py).
_READERS: dict[str, Callable[[Node, str, regdb.RegisterDB], object]] = {
    "name": lambda n, p, db: _string(n, p, "name"),
    "description": lambda n, p, db: _string(n, p, "description"),
    "source": lambda n, p, db: _string(n, p, "source"),
    "role": lambda n, p, db: _role(n, p),
    "base": lambda n, p, db: (_name(n, p, "base", MAX_BASE_CHARS), loc(p, n)),
    "arch": lambda n, p, db: (_name(n, p, "arch"), loc(p, n)),
    "registers": _registers,
    "features": lambda n, p, db: [_feature(x, p) for x in _seq(n, p, "features")],
    "vcpu_features": lambda n, p, db: [_vcpu_feature(x, p) for x in _seq(n, p, "vcpu_features")],
    "kvm_caps": lambda n, p, db: [_choice(x, p, "kvm_caps entry", KVM_CAPS) for x in _seq(n, p, "kvm_caps")],
    "origin": lambda n, p, db: _choice(n, p, "origin", ORIGINS),
    "vulnerabilities": lambda n, p, db: _vulnerabilities(n, p),
    "host_registers": _host_registers,
    "unseen": _unseen,
    "ignore": lambda n, p, db: [(_name(x, p, "ignore entry"), loc(p, x)) for x in _seq(n, p, "ignore")],
    "sources": _sources,
    "kernel_release": lambda n, p, db: _name(n, p, "kernel_release").strip(),
    "firmware": lambda n, p, db: _firmware(n, p),
}
assert tuple(_READERS) == TOP_KEYS
