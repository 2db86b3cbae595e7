"""Oracle test cases: the JSON-lines case format, the generator and the probe's text format.

A case file has one JSON object per line::

    {"reg": "ID_AA64PFR0_EL1", "encoding": [3,0,0,4,0], "value": "0x...",
     "features": ["pmu","sve"], "after_run": false}

``value`` is either an absolute 64-bit value ("0x..." or an int), or
``{"field_shift": 8, "field_width": 4, "field_value": 3}`` meaning "the default (as read
by the probe in that vCPU-feature set) with that field replaced", or
``{"mask": "0x...", "bits": "0x..."}`` meaning "the default with the bits under mask
replaced by those of bits" (several fields and/or single bits at once), or the string
``"default"`` meaning the default itself (an unchanged write).

An optional ``"seq": "<name>"`` puts the case in a *sequence*: the cases of one sequence
run in their order in a fresh VM of their own (same features), and an accepted write is
kept, not undone, so each case sees what the earlier ones left. The standard set uses
this for migrations (:func:`migration_cases`): another CPU's full KVM defaults written
register by register on this one.

The kinds of case in the standard set are documented in tools/oracle/README.md.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cpumodel.oracle.errors import OracleError
from cpumodel.oracle.sysregs import (
    ORACLE_REGISTERS,
    Encoding,
    check_encoding,
    encoding_of,
    one_reg_id,
    sysreg_name,
)

#: Features the probe knows, in the order of its feature bitmask (bit 0 = pmu).
#: pmu = KVM_ARM_VCPU_PMU_V3, sve = KVM_ARM_VCPU_SVE (+ KVM_ARM_VCPU_FINALIZE),
#: ptrauth = KVM_ARM_VCPU_PTRAUTH_ADDRESS + _GENERIC, el1_32bit = KVM_ARM_VCPU_EL1_32BIT.
#: vgic is not a vCPU feature: the VM gets an in-kernel GICv3 (KVM_CREATE_DEVICE
#: KVM_DEV_TYPE_ARM_VGIC_V3 + KVM_DEV_ARM_VGIC_CTRL_INIT) right after KVM_ARM_VCPU_INIT,
#: as QEMU does, before the defaults are read. Without it KVM clears the GIC fields of
#: ID_AA64PFR0_EL1/ID_PFR1_EL1 at the first KVM_RUN.
#: writable_imp_id is not a vCPU feature either: KVM_ENABLE_CAP(KVM_CAP_ARM_WRITABLE_IMP_ID_REGS)
#: on the VM before KVM_CREATE_VCPU (Linux >= 6.15); without it MIDR_EL1, REVIDR_EL1 and
#: AIDR_EL1 only accept their current value even where the writable mask says otherwise.
FEATURES: tuple[str, ...] = ("pmu", "sve", "ptrauth", "el1_32bit", "vgic", "writable_imp_id")

FeatureSet = frozenset[str]

#: The feature sets the generator covers by default.
DEFAULT_FEATURE_SETS: tuple[FeatureSet, ...] = (
    frozenset(),
    frozenset({"pmu"}),
    frozenset({"sve"}),
    frozenset({"ptrauth"}),
    frozenset({"el1_32bit"}),
    frozenset({"pmu", "sve", "ptrauth"}),
    frozenset({"pmu", "sve", "ptrauth", "el1_32bit"}),
    frozenset({"vgic"}),
    frozenset({"pmu", "vgic"}),
    frozenset({"pmu", "sve", "ptrauth", "vgic"}),
    frozenset({"vgic", "writable_imp_id"}),
)


def check_features(features: Iterable[str]) -> FeatureSet:
    fs = frozenset(features)
    unknown = sorted(fs - set(FEATURES))
    if unknown:
        raise OracleError(f"unknown vCPU feature(s) {', '.join(unknown)}; known: {', '.join(FEATURES)}")
    return fs


def feature_key(features: Iterable[str]) -> str:
    """Canonical name of a feature set: "none" or e.g. "pmu+sve" (in FEATURES order)."""
    fs = check_features(features)
    return "+".join(f for f in FEATURES if f in fs) or "none"


def features_of_key(key: str) -> FeatureSet:
    return frozenset() if key == "none" else check_features(key.split("+"))


def feature_mask(features: Iterable[str]) -> int:
    fs = check_features(features)
    return sum(1 << i for i, f in enumerate(FEATURES) if f in fs)


def sorted_features(features: Iterable[str]) -> list[str]:
    fs = frozenset(features)
    return [f for f in FEATURES if f in fs]


@dataclass(frozen=True)
class FieldValue:
    """ "The default with bits [shift, shift+width) replaced by value"; width 0 = the default."""

    shift: int
    width: int
    value: int

    def __post_init__(self) -> None:
        if not (0 <= self.shift < 64 and 0 <= self.width <= 64 and self.shift + self.width <= 64):
            raise OracleError(f"bad field: shift {self.shift}, width {self.width}")
        if self.value < 0 or (self.width < 64 and self.value >> self.width):
            raise OracleError(f"field value {self.value:#x} does not fit in {self.width} bits")

    def apply(self, default: int) -> int:
        mask = (1 << self.width) - 1
        return (default & ~(mask << self.shift) & (2**64 - 1)) | ((self.value & mask) << self.shift)


UNCHANGED = FieldValue(0, 0, 0)


@dataclass(frozen=True)
class MaskedValue:
    """ "The default with the bits under ``mask`` replaced by those of ``bits``"."""

    mask: int
    bits: int

    def __post_init__(self) -> None:
        if not (0 <= self.mask < 2**64 and 0 <= self.bits < 2**64):
            raise OracleError(f"bad masked value: mask {self.mask:#x}, bits {self.bits:#x}")
        if self.bits & ~self.mask:
            raise OracleError(f"masked value: bits {self.bits:#x} outside mask {self.mask:#x}")

    def apply(self, default: int) -> int:
        return (default & ~self.mask & (2**64 - 1)) | self.bits


Relative = FieldValue | MaskedValue
Value = int | FieldValue | MaskedValue


@dataclass(frozen=True)
class Case:
    """One KVM_SET_ONE_REG test: write ``value`` to ``encoding`` in a vCPU with ``features``."""

    encoding: Encoding
    value: Value
    features: FeatureSet = frozenset()
    after_run: bool = False
    seq: str | None = None  # sequence name: run in order in a VM of its own, writes kept

    @property
    def reg(self) -> str:
        return sysreg_name(self.encoding)

    @property
    def reg_id(self) -> int:
        return one_reg_id(self.encoding)

    def resolve(self, default: int | None) -> int:
        """The 64-bit value actually written, given the default read by the probe (None = 0)."""
        if isinstance(self.value, (FieldValue, MaskedValue)):
            return self.value.apply(default or 0)
        return self.value

    def value_json(self) -> str | dict[str, object]:
        return value_json(self.value)

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {
            "reg": self.reg,
            "encoding": list(self.encoding),
            "value": self.value_json(),
            "features": sorted_features(self.features),
            "after_run": self.after_run,
        }
        if self.seq is not None:
            d["seq"] = self.seq
        return d

    @classmethod
    def from_json(cls, obj: object) -> Case:
        if not isinstance(obj, dict):
            raise OracleError(f"a case must be a JSON object, got {obj!r}")
        if "encoding" in obj:
            encoding = check_encoding(obj["encoding"])
            if "reg" in obj and obj["reg"] != sysreg_name(encoding):
                raise OracleError(
                    f"case names {obj['reg']!r} but its encoding {list(encoding)} is {sysreg_name(encoding)}"
                )
        elif "reg" in obj:
            encoding = encoding_of(str(obj["reg"]))
        else:
            raise OracleError(f"case has neither 'encoding' nor 'reg': {obj!r}")
        features = check_features(obj.get("features", []))
        after_run = obj.get("after_run", False)
        if not isinstance(after_run, bool):
            raise OracleError(f"after_run must be true or false, got {after_run!r}")
        seq = obj.get("seq")
        if seq is not None and (not isinstance(seq, str) or not seq or after_run):
            raise OracleError(f"seq must be a non-empty name (and not after_run), got {seq!r}")
        return cls(encoding, parse_value(obj.get("value")), features, after_run, seq)


def value_json(v: Value) -> str | dict[str, object]:
    """A case value as the case and recording files write it (see the module docstring)."""
    if isinstance(v, FieldValue):
        if v == UNCHANGED:
            return "default"
        return {"field_shift": v.shift, "field_width": v.width, "field_value": v.value}
    if isinstance(v, MaskedValue):
        return {"mask": f"{v.mask:#018x}", "bits": f"{v.bits:#018x}"}
    return f"{v:#018x}"


def parse_value(raw: object) -> Value:
    if raw == "default":
        return UNCHANGED
    if isinstance(raw, bool):
        raise OracleError(f"bad case value {raw!r}")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str):
        try:
            value = int(raw, 0)
        except ValueError:
            raise OracleError(f"bad case value {raw!r}: want '0x...', a field object or 'default'") from None
    elif isinstance(raw, dict) and "mask" in raw:
        try:
            return MaskedValue(int(str(raw["mask"]), 0), int(str(raw["bits"]), 0))
        except (KeyError, TypeError, ValueError):
            raise OracleError(f"bad masked value {raw!r}: want mask and bits ('0x...')") from None
    elif isinstance(raw, dict):
        try:
            return FieldValue(int(raw["field_shift"]), int(raw["field_width"]), int(raw["field_value"]))
        except (KeyError, TypeError, ValueError):
            raise OracleError(f"bad field value {raw!r}: want field_shift, field_width and field_value") from None
    else:
        raise OracleError(f"bad case value {raw!r}")
    if not 0 <= value < 2**64:
        raise OracleError(f"case value {raw!r} is not a 64-bit unsigned value")
    return value


def read_cases(path: Path) -> list[Case]:
    """Read a JSON-lines case file (blank lines and lines starting with # are ignored)."""
    cases: list[Case] = []
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise OracleError(f"cannot read case file {path}: {e.strerror}") from None
    for n, text in enumerate(lines, 1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise OracleError(f"{path}:{n}: not JSON: {e.msg}") from None
        try:
            cases.append(Case.from_json(obj))
        except OracleError as e:
            raise OracleError(f"{path}:{n}: {e.message}") from None
    return cases


def write_cases(path: Path, cases: Iterable[Case]) -> int:
    n = 0
    with path.open("w") as f:
        for case in cases:
            f.write(json.dumps(case.to_json(), separators=(",", ":")) + "\n")
            n += 1
    return n


#: Registers whose value a VM may set freely with KVM_CAP_ARM_WRITABLE_IMP_ID_REGS (6.15+):
#: the standard set gives them extra whole-register values in feature sets with that cap.
IMP_ID_REGISTERS: tuple[Encoding, ...] = ((3, 0, 0, 0, 0), (3, 0, 0, 0, 6), (3, 1, 0, 0, 7))  # MIDR, REVIDR, AIDR

#: Random cases per feature set and register in the standard set (see random_cases()).
RANDOM_PER_REGISTER = 6
RANDOM_IMP_ID_EXTRA = 8
RANDOM_SEED = "cpumodel-oracle-1"


def random_cases(
    feature_sets: Sequence[FeatureSet],
    registers: Sequence[Encoding] = ORACLE_REGISTERS,
    per_register: int = RANDOM_PER_REGISTER,
    seed: str = RANDOM_SEED,
) -> list[Case]:
    """Random values, deterministic per (seed, feature set, register), per feature set and register:

    - 2 "clear several fields": 2-4 random 4-bit fields of the default set to 0 at once
      (mostly safe values, so the combination, not one field, decides);
    - 2 "random multi-field": 2-4 random 4-bit fields given random values, plus 0-2 random
      single bits flipped anywhere (RES0 bits included);
    - 2 whole random 64-bit values (absolute; every RES0 bit has a 50 % chance);
    - with ``writable_imp_id`` in the set, MIDR_EL1/REVIDR_EL1/AIDR_EL1 get 8 more absolute
      values (4 with the upper 32 bits clear, 4 whole 64-bit).
    ``per_register`` scales the first three kinds (6 = 2 each).
    """
    cases: list[Case] = []
    each = max(per_register // 3, 0)
    for fs in feature_sets:
        fs = check_features(fs)
        key = feature_key(fs)
        for enc in registers:
            rng = random.Random(f"{seed}:{key}:{list(enc)}")
            for _ in range(each):
                shifts = rng.sample(range(0, 64, 4), rng.randint(2, 4))
                mask = sum(0xF << sh for sh in shifts)
                cases.append(Case(enc, MaskedValue(mask, 0), fs))
            for _ in range(each):
                shifts = rng.sample(range(0, 64, 4), rng.randint(2, 4))
                mask = sum(0xF << sh for sh in shifts)
                bits = sum(rng.randrange(16) << sh for sh in shifts)
                for b in rng.sample(range(64), rng.randint(0, 2)):
                    if not mask >> b & 1:
                        mask |= 1 << b
                        bits |= rng.getrandbits(1) << b
                cases.append(Case(enc, MaskedValue(mask, bits), fs))
            for _ in range(each):
                cases.append(Case(enc, rng.getrandbits(64), fs))
            if "writable_imp_id" in fs and enc in IMP_ID_REGISTERS:
                cases += [Case(enc, rng.getrandbits(32), fs) for _ in range(RANDOM_IMP_ID_EXTRA // 2)]
                cases += [Case(enc, rng.getrandbits(64), fs) for _ in range(RANDOM_IMP_ID_EXTRA // 2)]
    return cases


@dataclass(frozen=True)
class MigrationSource:
    """One VM's register values to migrate from: ``label`` names it (e.g. "7.3.4/max")."""

    label: str
    features: FeatureSet
    values: dict[Encoding, int]


#: The feature sets migrations are recorded in (a QEMU-like VM: in-kernel GICv3, with/without PMU).
MIGRATION_FEATURE_SETS: tuple[FeatureSet, ...] = (frozenset({"vgic"}), frozenset({"pmu", "vgic"}))


def migration_name(source: MigrationSource) -> str:
    return f"migrate {source.label} [{feature_key(source.features)}]"


def migration_cases(sources: Iterable[MigrationSource], registers: Sequence[Encoding] = ORACLE_REGISTERS) -> list[Case]:
    """For each source, a sequence: its value of every register it has, in ``registers``
    order (what a VMM restoring a saved vCPU does), absolute, in a VM with the source's
    features; accepted writes are kept, each errno recorded."""
    cases: list[Case] = []
    for src in sources:
        name = migration_name(src)
        cases += [Case(enc, src.values[enc], src.features, seq=name) for enc in registers if enc in src.values]
    return cases


def generate_cases(
    feature_sets: Sequence[FeatureSet] = DEFAULT_FEATURE_SETS,
    registers: Sequence[Encoding] = ORACLE_REGISTERS,
    *,
    nibble_sweep: bool = True,
    absolute: bool = True,
    after_run: bool = True,
    random_values: int = RANDOM_PER_REGISTER,
    migrations: Sequence[MigrationSource] = (),
) -> list[Case]:
    """The standard set, per feature set and register:

    - nibble sweep: every 4-bit field (shift 0..60) set to every value 0..15, relative to
      the default (this includes every single-bit flip of the default, so every bit
      outside the writable mask is probed, and the unchanged value);
    - absolute: the all-zeros and all-ones values;
    - random: see :func:`random_cases` (``random_values`` per register, 0 = none);
    - after_run (after the vCPU has run once): the unchanged default, and every nibble set
      to 0 (a change unless that nibble already is 0) - KVM must answer EBUSY to changes;
    - migrations: one sequence per source (:func:`migration_cases`) whose feature set is
      among ``feature_sets``.
    """
    cases: list[Case] = []
    for fs in feature_sets:
        fs = check_features(fs)
        for enc in registers:
            if nibble_sweep:
                for shift in range(0, 64, 4):
                    for v in range(16):
                        cases.append(Case(enc, FieldValue(shift, 4, v), fs))
            if absolute:
                cases.append(Case(enc, 0, fs))
                cases.append(Case(enc, 2**64 - 1, fs))
        if random_values:
            cases += random_cases([fs], registers, random_values)
        if after_run:
            for enc in registers:
                cases.append(Case(enc, UNCHANGED, fs, after_run=True))
                for shift in range(0, 64, 4):
                    cases.append(Case(enc, FieldValue(shift, 4, 0), fs, after_run=True))
    wanted = {check_features(fs) for fs in feature_sets}
    cases += migration_cases([m for m in migrations if m.features in wanted], registers)
    return cases


Block = tuple[FeatureSet, str | None]  # (features, sequence name or None)


@dataclass(frozen=True)
class CaseFile:
    """The probe's text input and how its case numbers map back to the caller's list."""

    text: str
    order: list[int]  # order[probe case number] = index into the caller's case list
    blocks: list[Block]  # in probe order: the feature sets, then one per sequence


def encode_case_file(
    cases: Sequence[Case],
    feature_sets: Sequence[FeatureSet],
    registers: Sequence[Encoding] = ORACLE_REGISTERS,
    watchdog_seconds: int = 900,
) -> CaseFile:
    """The line-based text the probe reads (format documented at the top of probe.c).

    One block per feature set (in the given order, each a fresh VM); within a block the
    before-run cases come first, then ``X`` (run once), then the after-run cases. Then one
    sequence block (``S``, a fresh VM, writes kept) per sequence, in order of appearance.
    """
    sets = [check_features(fs) for fs in feature_sets]
    if len(set(sets)) != len(sets):
        raise OracleError("a feature set is listed twice")
    blocks: list[Block] = [(fs, None) for fs in sets]
    by_block: dict[Block, tuple[list[int], list[int]]] = {b: ([], []) for b in blocks}
    for i, case in enumerate(cases):
        if case.seq is not None:
            b: Block = (case.features, case.seq)
            if b not in by_block:
                if any(seq == case.seq for _, seq in by_block):
                    raise OracleError(f"sequence {case.seq!r} mixes feature sets")
                blocks.append(b)
                by_block[b] = ([], [])
            by_block[b][0].append(i)
            continue
        if case.features not in sets:
            raise OracleError(
                f"case {i} ({case.reg}) uses feature set {feature_key(case.features)!r}, which is not"
                f" among the requested feature sets ({', '.join(feature_key(b) for b in sets)})"
            )
        by_block[(case.features, None)][1 if case.after_run else 0].append(i)
    regs = list(dict.fromkeys([*registers, *(c.encoding for c in cases)]))
    if len(regs) > 256:
        raise OracleError(f"too many distinct registers ({len(regs)}); the probe reads at most 256")
    lines = [f"T {int(watchdog_seconds)}"]
    lines += [f"G {one_reg_id(r):x}" for r in regs]
    order: list[int] = []
    for fs, seq in blocks:
        lines.append(f"{'S' if seq is not None else 'B'} {feature_mask(fs):x}")
        before, after = by_block[(fs, seq)]
        for phase, idxs in enumerate((before, after)):
            if phase == 1 and idxs:
                lines.append("X")
            for i in idxs:
                case = cases[i]
                v = case.value
                if isinstance(v, FieldValue):
                    lines.append(f"M {case.reg_id:x} {v.shift} {v.width} {v.value:x}")
                elif isinstance(v, MaskedValue):
                    lines.append(f"R {case.reg_id:x} {v.mask:x} {v.bits:x}")
                else:
                    lines.append(f"W {case.reg_id:x} {v:x}")
                order.append(i)
        lines.append("E")
    return CaseFile("\n".join(lines) + "\n", order, blocks)
